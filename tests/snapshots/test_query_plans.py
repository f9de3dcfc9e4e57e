"""The queries behind `sources`, `polls`, the latest change and `tiers --at` are index lookups.

Structural, not timed: SQLite's plan of every statement they run must SEARCH an index (or the primary
key), never SCAN a table, so that their cost does not grow with a year of polls and changes.
(bench/bench_year.py times them on a year's database.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.store.database import open_engine
from snapshots import history
from snapshots.model import Snapshot
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import apply_snapshot, last_success_at, record_failure, requested_rest
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, ts

SRC = "binance-usdm"
BTC = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A small history: the plans are those of the schema's indexes whatever the size (no ANALYZE)."""
    path: Path = tmp_path_factory.mktemp("plans") / "tierdrift.db"
    eng = open_engine(f"sqlite:///{path}")
    for day, eth in enumerate((ETH_ROWS, ETH_ROWS, ETH_ROWS[:3], ETH_ROWS[:3])):
        payload = {BTC: ccxt_tiers(BTC, BTC_ROWS), "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", eth)}
        at = ts(f"2024-01-0{day + 1}")
        with Session(eng) as s:
            apply_snapshot(s, Snapshot(SRC, at, "test", parse_ccxt_tiers(SRC, payload)), started_at=at, duration_ms=1)
            record_failure(s, SRC, ts(f"2024-01-0{day + 1}T06:00"), 1.0, "down", error_kind="fetch_timeout")
            s.commit()
    yield eng
    eng.dispose()


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plans(engine: Engine, run: Callable[[Session], object]) -> list[tuple[str, list[str]]]:
    """Each statement `run` executes, with the lines of SQLite's plan for it."""
    with Session(engine) as s:
        with statements(engine) as seen:
            run(s)
        raw = s.connection().connection.dbapi_connection
        assert raw is not None
        return [(sql, [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)]) for sql, params in seen]


KEY_QUERIES: dict[str, Callable[[Session], object]] = {
    "sources": lambda s: history.source_status(s, SRC),
    "polls --source": lambda s: history.recent_polls(s, SRC, 20),
    "latest change": lambda s: history.list_changes(s, source=SRC, after=(ts("2024-01-02"), 0), limit=10),
    "tiers --at": lambda s: history.table_at(s, SRC, history.resolve_symbol(s, SRC, "BTCUSDT"), ts("2024-01-03")),
    "last success": lambda s: last_success_at(s, SRC),
    "requested rest": lambda s: requested_rest(s, SRC),
}


@pytest.mark.parametrize("name", KEY_QUERIES)
def test_key_queries_search_an_index(engine: Engine, name: str) -> None:
    found = plans(engine, KEY_QUERIES[name])
    assert found, "no statement ran"
    for sql, lines in found:
        steps = [line for line in lines if not line.startswith(("USE TEMP B-TREE", "LIST SUBQUERY"))]
        assert steps, sql
        for line in steps:
            indexed = ("USING" in line and "INDEX" in line) or "PRIMARY KEY" in line
            assert line.startswith("SEARCH") and indexed, f"{name}: {sql!r} plans {lines}"


def test_latest_polls_of_all_sources_walk_the_index_in_order(engine: Engine) -> None:
    ((sql, lines),) = plans(engine, lambda s: history.recent_polls(s, None, 20))
    assert lines == ["SCAN poll USING INDEX ix_poll_last"], sql  # read backwards, stopping at the limit
