"""`tierdrift run` serves the API (and health, metrics, pages) on web_port next to the daemon; `--once` serves
nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import run
from monitor.fake_exchange.scenarios import generate_tables
from monitor.fake_exchange.server import FakeExchange
from tests.conftest import point_at_fake
from tests.web.conftest import free_port


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with FakeExchange(tables={"binance-usdm": generate_tables("binance-usdm", 6, seed=3)}) as fake:
        point_at_fake(fake, monkeypatch, tmp_path, page_retries=0)
        monkeypatch.setenv("TIERDRIFT_SOURCES", '["binance-usdm"]')
        yield f"sqlite:///{tmp_path / 'tierdrift.db'}"


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_run_serves_the_api_health_and_metrics_on_the_web_port_and_stops_on_sigterm(
    fake_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("TIERDRIFT_WEB_PORT", str(port))
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", fake_env, "run"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            status, body = get(base + "/api/v1/sources") if _listening(port) else (0, b"")
            if status == 200 and json.loads(body)[0]["last_outcome"] == "ok":
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the first poll never showed in the API"
            time.sleep(0.2)
        assert get(base + "/readyz") == (200, b"ready\n")  # this replica holds the writer lock
        assert get(base + "/healthz") == (200, b"ok\n")
        status, metrics = get(base + "/metrics")
        assert status == 200 and b'tierdrift_polls_total{outcome="ok",source="binance-usdm"} 1.0' in metrics
        status, polls = get(base + "/api/v1/polls")
        assert status == 200 and json.loads(polls)[0]["outcome"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"INFO dashboard: {base}/ (read-only API under {base}/api/v1; no token: this machine only)" in err
    assert not _listening(port)  # the port is free again


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_run_once_serves_nothing(
    fake_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:  # the web port is taken: --once does not even try to bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("TIERDRIFT_WEB_PORT", str(taken.getsockname()[1]))
        assert run(["--db", fake_env, "run", "--once"]) == 0
    captured = capsys.readouterr()
    assert "1/1 polls ok" in captured.out and "dashboard: off (--once)" in captured.err
