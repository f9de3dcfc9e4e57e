"""Shared fixtures: a real SQLite file per test, builders for payloads, the recorded data's location."""

from __future__ import annotations

import gzip
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from monitor.store.database import open_engine

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BINANCE_HISTORY = SHARED_DATA / "binance-usdm-tiers-history"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


#: Set (by .ci/run) to an admin URL of a PostgreSQL server to run every database test on it too.
PG_URL = os.environ.get("TIERDRIFT_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tierdrift run` serves the dashboard on 8470 by default: tests that start it (in-process or in a
    subprocess, which inherits the environment) must not fight over that port. Web tests pick free ports."""
    monkeypatch.setenv("TIERDRIFT_WEB_PORT", "0")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`tierdrift run` configures the root logger; keep that from leaking into the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: a SQLite file, and a new PostgreSQL database when configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tierdrift.db'}"
        return
    assert PG_URL is not None
    name = f"td_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


# (floor, rate, max leverage) rows; caps are the next floor, maintenance amounts follow the recurrence.
BTC_ROWS: list[tuple[float, float, float]] = [
    (0, 0.004, 125),
    (50_000, 0.005, 100),
    (250_000, 0.01, 50),
    (1_000_000, 0.025, 20),
    (5_000_000, 0.05, 10),
]
ETH_ROWS: list[tuple[float, float, float]] = [
    (0, 0.005, 100),
    (10_000, 0.0065, 75),
    (100_000, 0.01, 50),
    (500_000, 0.02, 25),
]


def ccxt_tiers(
    symbol: str, rows: Sequence[tuple[float, float, float]], *, top: float = 10_000_000, strings: bool = True
) -> list[dict[str, Any]]:
    """A ccxt `fetch_leverage_tiers()` list for one symbol, shaped like Binance's (`info.cum` included)."""
    out = []
    cum = 0.0
    for i, (floor, rate, lev) in enumerate(rows):
        cap = rows[i + 1][0] if i + 1 < len(rows) else top
        if i:
            cum += floor * (rate - rows[i - 1][1])
        conv = (lambda v: str(v)) if strings else (lambda v: v)
        out.append(
            {
                "tier": float(i + 1),
                "symbol": symbol,
                "currency": "USDT",
                "minNotional": float(floor),
                "maxNotional": float(cap),
                "maintenanceMarginRate": rate,
                "maxLeverage": float(lev),
                "info": {
                    "bracket": conv(i + 1),
                    "initialLeverage": conv(lev),
                    "notionalCap": conv(cap),
                    "notionalFloor": conv(floor),
                    "maintMarginRatio": conv(rate),
                    "cum": conv(round(cum, 8)),
                },
            }
        )
    return out


def write_archive(path: Path, payload: Any) -> Path:
    data = json.dumps(payload).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def point_at_fake(fake: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, page_retries: int = 1) -> None:
    """Environment for CLI runs against `fake` (a `FakeExchange`): its endpoints, short timeouts, no config file."""
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    for name, url in fake.endpoints().items():
        monkeypatch.setenv(f"TIERDRIFT_ENDPOINTS__{name.upper()}", url)
    monkeypatch.setenv("TIERDRIFT_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("TIERDRIFT_BYBIT_PAGE_RETRIES", str(page_retries))
