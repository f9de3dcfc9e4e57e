"""The engine factory: a PostgreSQL server that accepts TCP but never answers must not hold a command for minutes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from snapshots import engine as engine_module

pytest.importorskip("psycopg")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A socket that completes the TCP handshake (the kernel's backlog) and then says nothing, ever."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_silent_postgresql_host_fails_within_the_connect_timeout(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PG_CONNECT_TIMEOUT", 1)
    engine = engine_module.make_engine(f"postgresql+psycopg://trader:pw@127.0.0.1:{silent_server}/tierdrift")
    started = time.monotonic()

    with pytest.raises(OperationalError), engine.connect():
        pass

    assert time.monotonic() - started < 20  # without the timeout: until TCP gives up, about two minutes


def test_a_connect_timeout_in_the_url_is_kept(silent_server: int) -> None:
    url = f"postgresql+psycopg://trader:pw@127.0.0.1:{silent_server}/tierdrift?connect_timeout=1"
    engine = engine_module.make_engine(url)
    started = time.monotonic()

    with pytest.raises(OperationalError), engine.connect():
        pass

    assert time.monotonic() - started < 20
