"""Shared fixtures of the web tests: a database with real history, the app over it, a client, a live server.

`web_db_url` is built once per session and backend (the tests only read it): the last 12 recorded Binance
USDⓈ-M versions through the real importer (the project's own small tables when ../shared/data is absent),
positions logged half-way so that the later versions record impacts on them, market data, a symbol and a
note written to break out of HTML, and an outbox with pending, sent and failed deliveries.
"""

from __future__ import annotations

import gzip
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from monitor.config.settings import Settings
from monitor.store.database import open_engine
from snapshots.timefmt import utcnow
from tests.conftest import BACKENDS, BINANCE_HISTORY, BTC_ROWS, ETH_ROWS, PG_URL, ccxt_tiers, write_archive

#: Outside text meant to break out of HTML: a symbol listed by the "exchange" and a position's note.
HOSTILE_SYMBOL = "<script>alert(1)</script>/USDT:USDT"
HOSTILE_NOTE = '"><img src=x onerror=alert(1)>'
#: How many recorded versions the fixture imports (the newest ones: symbols in today's ccxt form).
VERSIONS = 12
BASE_URL = "http://127.0.0.1"


def _archives(folder: Path) -> list[Path]:
    """The files to import, oldest first: real history when present, else two of the project's own tables;
    then one more version that lists the hostile symbol."""
    if BINANCE_HISTORY.is_dir():
        files = sorted(BINANCE_HISTORY.glob("*.json.gz"))[-VERSIONS:]
    else:
        rows = [(f, r * 1.25, lev) for f, r, lev in BTC_ROWS]
        files = [
            write_archive(folder / "2026-01-01_a.json", {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)}),
            write_archive(
                folder / "2026-02-01_b.json",
                {
                    "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS),
                    "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", ETH_ROWS),
                },
            ),
            write_archive(
                folder / "2026-03-01_c.json",
                {
                    "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", rows),
                    "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", ETH_ROWS),
                },
            ),
        ]
    last = json.loads(gzip.decompress(files[-1].read_bytes()) if files[-1].suffix == ".gz" else files[-1].read_bytes())
    last[HOSTILE_SYMBOL] = ccxt_tiers(HOSTILE_SYMBOL, ETH_ROWS)
    return [*files, write_archive(folder / "2026-05-02_hostile.json.gz", last)]


def build_history(url: str, folder: Path) -> None:
    """Fill the empty database at `url` (see the module docstring)."""
    from alerts.config import Filters
    from alerts.events import health_alert, sample_alert
    from alerts.outbox import Route, enqueue
    from monitor.risk.impacts import ImpactContext, make_hook
    from monitor.risk.positions import PositionInput, validate
    from monitor.service.importer import import_files, plan
    from monitor.store.models import MarketData

    engine = open_engine(url)
    try:
        items = plan(_archives(folder))
        half = len(items) // 2
        import_files(engine, "binance-usdm", items[:half])
        opened = items[half].at - timedelta(hours=1)
        # A symbol whose table the later versions change, so that its position gets impact records.
        changed = "COOKIE/USDT:USDT" if BINANCE_HISTORY.is_dir() else "BTC/USDT:USDT"
        now = utcnow()
        with Session(engine) as session:
            conn = session.connection()
            inputs = [
                PositionInput(
                    "binance-usdm", "BTCUSDT", "long", 60_000, notional=50_000, margin=5_000, opened_at=opened
                ),
                PositionInput(
                    "binance-usdm", "ETH/USDT:USDT", "short", 3_000, qty=10, margin=3_000, note=HOSTILE_NOTE,
                    opened_at=opened,
                ),
                PositionInput("binance-usdm", changed, "long", 1.0, notional=20_000, margin=2_000, opened_at=opened),
            ]  # fmt: skip
            for item in inputs:
                session.add(validate(conn, item, now=now))
            for symbol, mark in (("BTC/USDT:USDT", 64_000.0), ("ETH/USDT:USDT", 3_100.0)):
                market = MarketData(source="binance-usdm", symbol=symbol, mark_price=mark, mark_at=now)
                market.adr, market.adr_days, market.adr_at = mark * 0.04, 14, now
                session.add(market)
            session.commit()
        import_files(engine, "binance-usdm", items[half:], hooks=[make_hook(ImpactContext(3.0))])
        with Session(engine) as session:
            routes = [Route("ops-webhook", Filters()), Route("mail", Filters())]
            enqueue(session, [sample_alert(now - timedelta(minutes=5))], routes, now)
            enqueue(
                session, [health_alert("bybit-linear", "failing", since=now, reason="HTTP 503", now=now)], routes, now
            )
            session.commit()
            session.execute(text("UPDATE delivery SET status='sent', attempts=1, sent_at=:t WHERE id=1"), {"t": now})
            session.execute(
                text("UPDATE delivery SET status='failed', attempts=5, last_error='HTTP 500 from hooks.example.com'"
                     " WHERE id=2")
            )  # fmt: skip
            session.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def web_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with real history, positions, impacts and an outbox, shared read-only by the session's tests."""
    folder = tmp_path_factory.mktemp(f"web-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'web.db'}"
        build_history(url, folder)
        yield url
        return
    assert PG_URL is not None
    name = f"td_web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        build_history(url, folder)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def web_settings(url: str, **overrides: Any) -> Settings:
    """Settings as `tierdrift web` would load them, on `url`, without any config file or environment."""
    return Settings(database_url=url, **overrides)


@pytest.fixture
def web_app(web_db_url: str) -> Iterator[FastAPI]:
    app = create_app_on(web_db_url)
    yield app
    app.state.engine.dispose()


def create_app_on(url: str, **overrides: Any) -> FastAPI:
    from monitor.web.app import create_app

    return create_app(web_settings(url, **overrides))


@pytest.fixture
def client(web_app: FastAPI) -> Iterator[TestClient]:
    """A client of `web_app`, as a browser on this machine reaches it (Host: 127.0.0.1)."""
    with TestClient(web_app, base_url=BASE_URL) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(web_app: FastAPI) -> Iterator[str]:
    """`web_app` served by uvicorn on 127.0.0.1 (a free port) in a thread, as `tierdrift run` serves it;
    yields its base URL."""
    from monitor.service.httpserver import Served
    from monitor.web.security import WebServerError

    server = Served("127.0.0.1", 0, what="web server", setting="web_port", error=WebServerError).start(web_app)
    yield server.url
    server.stop()
