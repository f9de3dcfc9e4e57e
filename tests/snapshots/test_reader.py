"""The read side gives the same answers through the stdlib's sqlite3 and through SQLAlchemy."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from snapshots import history
from snapshots.reader import SqliteReader
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, ts, write_archive

SRC = "binance-usdm"


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    engine = open_engine(f"sqlite:///{tmp_path / 'r.db'}")
    tighter = [(f, r * 1.5, lev) for f, r, lev in ETH_ROWS]
    files = []
    for day, eth in (("2024-01-01", ETH_ROWS), ("2024-02-01", tighter), ("2024-03-01", None)):
        payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)}
        if eth is not None:
            payload["ETH/USDT:USDT"] = ccxt_tiers("ETH/USDT:USDT", eth)
        files.append(write_archive(tmp_path / f"{day}.json", payload))
    import_files(engine, SRC, plan(files))
    return engine


QUERIES: list[tuple[str, Callable[[Any], Any]]] = [
    ("resolve", lambda c: history.resolve_symbol(c, SRC, "ETHUSDT")),
    ("table_at", lambda c: history.table_at(c, SRC, "ETH/USDT:USDT", ts("2024-02-15"))),
    ("tables_at", lambda c: history.tables_at(c, SRC, ts("2024-01-15"))),
    ("versions", lambda c: history.versions(c, SRC, "ETH/USDT:USDT")),
    ("changes", lambda c: history.list_changes(c, source=SRC, since=ts("2024-01-02"), limit=50)),
    ("status", lambda c: history.source_status(c, SRC)),
    ("polls", lambda c: history.recent_polls(c, SRC, 10)),
]


@pytest.mark.parametrize(("name", "query"), QUERIES, ids=[n for n, _ in QUERIES])
def test_both_readers_agree(sqlite_engine: Engine, name: str, query: Callable[[Any], Any]) -> None:
    path = sqlite_engine.url.database
    assert path is not None
    raw = sqlite3.connect(path)
    try:
        through_sqlite3 = query(SqliteReader(raw))
    finally:
        raw.close()
    with sqlite_engine.connect() as conn:
        through_alchemy = query(conn)
    assert through_sqlite3 == through_alchemy
    assert through_sqlite3  # something was found, so the comparison means something


def test_errors_are_the_same_too(sqlite_engine: Engine) -> None:
    path = sqlite_engine.url.database
    assert path is not None
    raw = sqlite3.connect(path)
    messages = []
    for conn in (SqliteReader(raw), sqlite_engine.connect()):
        for at in ("2023-01-01", "2024-03-15"):  # before its history; after its delisting
            with pytest.raises(history.NotFound) as err:
                history.table_at(conn, SRC, "ETH/USDT:USDT", ts(at))
            messages.append(str(err.value))
    raw.close()
    assert messages[:2] == messages[2:]
    assert "before its history begins" in messages[0] and "was not listed" in messages[1]


@pytest.mark.parametrize(
    "text", ["2025-01-01", "2025-01-01 00:00", "2025-01-01 12:34:56", "2025-01-01 12:34:56.123456"]
)
def test_sqlite_times_read_as_aware_utc_whatever_their_precision(text: str) -> None:
    from datetime import UTC, datetime

    from snapshots.reader import _from_sqlite

    got = _from_sqlite("detected_at", text)
    assert got == datetime.fromisoformat(text).replace(tzinfo=UTC) and got.tzinfo is not None
