"""bench/yeardb.py writes, in bulk, exactly the rows that polling through the store writes poll by poll."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlmodel import Session

from monitor.store.database import open_engine
from snapshots.model import SOURCES, Snapshot
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import apply_snapshot
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "yeardb.py"


def load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("yeardb", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["yeardb"] = module
    spec.loader.exec_module(module)
    return module


yeardb = load_harness()
SRC = yeardb.CHANGING


def variant(step: int) -> dict[str, Any]:
    """Version `step` of a small history; versions 1 and 2 hold the same tables (a formatting-only pair)."""
    bump = {0: 0.0, 1: 0.0005, 2: 0.0005, 3: 0.001}[step]
    eth = [(f, r + bump if i == 0 else r, lev) for i, (f, r, lev) in enumerate(ETH_ROWS)]
    payload = {
        "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS),
        "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", eth),
    }
    return parse_ccxt_tiers(SRC, payload)


VERSIONS = yeardb.Versions(("v0", "v1", "v2", "v3"), variant, 31.4)
SLOTS, CHANGES = 40, 7


def poll_by_poll(url: str) -> None:
    """The same year, every poll through `apply_snapshot`."""
    engine = open_engine(url)
    steps = yeardb.walk(len(VERSIONS.names), CHANGES)
    changing = dict(zip(yeardb.change_slots(CHANGES, SLOTS), steps[1:], strict=True))
    first = VERSIONS.load(0)
    from dataclasses import replace

    others = {s: {k: replace(t, source=s) for k, t in first.items()} for s in SOURCES if s != SRC}
    for source in SOURCES:
        version = 0
        for slot in range(SLOTS):
            if source == SRC and slot in changing:
                version = changing[slot]
            tables = VERSIONS.load(version) if source == SRC else others[source]
            at = yeardb.slot_time(slot)
            snap = Snapshot(source, at, f"replay:{VERSIONS.names[version]}", tables)
            with Session(engine) as s:
                apply_snapshot(s, snap, started_at=at, duration_ms=yeardb.UNCHANGED_MS, policy=yeardb.REPLAY)
                s.commit()
    engine.dispose()


POLL = (
    "SELECT source, kind, started_at, last_at, repeats, duration_ms, outcome, provenance, symbols, symbols_changed,"
    " changes, tiers_written, error, warnings, symbols_hash FROM poll ORDER BY source, started_at"
)
CHANGE = (
    "SELECT source, symbol, detected_at, previous_poll_at, kind, tier, field, old, new FROM change_record"
    " ORDER BY detected_at, symbol, kind, tier, field"
)
VERSION = (
    "SELECT source, symbol, valid_from, valid_to, content_hash FROM table_version ORDER BY source, symbol, valid_from"
)


def dump(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:  # the stored text itself, timestamps included
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("yeardb")
    paths = {name: root / f"{name}.db" for name in ("runs", "rows", "reference")}
    yeardb.build_year(f"sqlite:///{paths['runs']}", yeardb.Recipe(slots=SLOTS), VERSIONS, changes=CHANGES)
    yeardb.build_year(f"sqlite:///{paths['rows']}", yeardb.Recipe(slots=SLOTS, rollup=False), VERSIONS, changes=CHANGES)
    poll_by_poll(f"sqlite:///{paths['reference']}")
    return paths


def test_the_rolled_up_build_equals_polling_poll_by_poll(built: dict[str, Path]) -> None:
    for sql in (POLL, CHANGE, VERSION):
        assert dump(built["runs"], sql) == dump(built["reference"], sql), sql
    assert sum(r[4] for r in dump(built["runs"], POLL)) == len(SOURCES) * SLOTS


def test_the_build_without_roll_up_has_a_row_per_poll_and_the_same_changes(built: dict[str, Path]) -> None:
    rows = dump(built["rows"], POLL)
    assert len(rows) == len(SOURCES) * SLOTS and {r[4] for r in rows} == {1}
    assert dump(built["rows"], CHANGE) == dump(built["reference"], CHANGE)  # previous_poll_at included
    assert dump(built["rows"], CHANGE)  # the small history does change


def test_the_replay_walks_back_and_forth_through_real_pairs() -> None:
    assert yeardb.walk(4, 9) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert yeardb.change_slots(3, 40) == [10, 20, 30]
