"""The daemon's market job keeps one keyless client per source: the market list loads once, not per refresh."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.fake_exchange import FakeExchange, Fault, generate_tables
from monitor.fake_exchange.endpoints import FAPI_EXCHANGE_INFO
from monitor.risk.positions import PositionInput, validate
from monitor.service.daemon import Daemon
from snapshots.timefmt import utcnow
from tests.service.test_daemon import make_daemon, settings_for

SOURCE = "binance-usdm"


class Clock:
    """A clock the test moves (a minute ahead of the fetch's real time, so the tables are in force)."""

    def __init__(self) -> None:
        self.at = utcnow() + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(tables={SOURCE: generate_tables(SOURCE, 5, seed=2)}) as server:
        yield server


@pytest.fixture
def daemon(fake: FakeExchange, engine: Engine, db_url: str) -> Iterator[Daemon]:
    d = make_daemon(settings_for(fake, db_url, sources=[SOURCE]), engine)
    assert d.poll(SOURCE).outcome == "ok"
    clock = Clock()
    d.clock = clock
    ident = sorted(fake.tables(SOURCE))[0]
    fake.set_market(SOURCE, ident, mark=100.0, daily_ranges=[3.0] * 16)
    with Session(engine) as s:
        s.add(validate(s.connection(), PositionInput(SOURCE, ident, "long", 100.0, notional=1_000.0, margin=200.0),
                       now=clock()))  # fmt: skip
        s.commit()
    yield d
    d.close_clients()


def test_refreshes_reuse_the_client_and_its_markets(daemon: Daemon, fake: FakeExchange) -> None:
    fake.clear_requests()
    for _ in range(3):
        assert daemon.refresh_market() == []
        daemon.clock.at += timedelta(minutes=5)  # type: ignore[attr-defined]
    assert len(fake.requests_to(FAPI_EXCHANGE_INFO)) == 1

    daemon.clock.at += timedelta(days=1)  # type: ignore[attr-defined]
    assert daemon.refresh_market() == []
    assert len(fake.requests_to(FAPI_EXCHANGE_INFO)) == 2  # a day later: loaded again


def test_a_failed_refresh_starts_the_next_from_a_new_client(daemon: Daemon, fake: FakeExchange) -> None:
    assert daemon.refresh_market() == []
    fake.clear_requests()
    fake.inject("/fapi/v1/premiumIndex", Fault.http(500))
    assert daemon.refresh_market()  # the failure is reported
    assert daemon._market_clients[SOURCE].client is None
    assert daemon.refresh_market() == []
    assert len(fake.requests_to(FAPI_EXCHANGE_INFO)) == 1  # the new client loaded its own markets
