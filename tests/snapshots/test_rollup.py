"""Rolled-up polls: the rows account for exactly the polls that ran, and every bound stays exact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from snapshots.db import Poll
from snapshots.history import list_changes, recent_polls, source_status
from snapshots.model import Snapshot, TierTable
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import ApplyPolicy, apply_snapshot, last_success_at, record_failure, requested_rest
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, ts

SRC = "binance-usdm"
T0 = ts("2024-01-01")
STEP = timedelta(minutes=5)
TIGHTER = [(f, r + 0.001 if i == 0 else r, lev) for i, (f, r, lev) in enumerate(ETH_ROWS)]


def tables(eth: list[tuple[float, float, float]]) -> dict[str, TierTable]:
    payload = {s: ccxt_tiers(s, rows) for s, rows in (("BTC/USDT:USDT", BTC_ROWS), ("ETH/USDT:USDT", eth))}
    return parse_ccxt_tiers(SRC, payload)


TABLES = (tables(ETH_ROWS), tables(TIGHTER))
#: What a step does: the same tables again, the other ETH table (a change), or one of two failures.
STEPS = ("same", "change", "fail-a", "fail-b", "rest")


def memory_engine() -> Engine:
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[n] for n in ("poll", "table_version",
                                 "tier_row", "change_record")])  # fmt: skip
    return engine


@pytest.fixture
def mem() -> Iterator[Engine]:
    engine = memory_engine()
    yield engine
    engine.dispose()


class Replay:
    """Runs steps through the real store and keeps what a row per poll would have said."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = 0
        self.times: list[datetime] = []
        self.ok_times: list[datetime] = []
        self.failed_times: list[datetime] = []
        self.change_bounds: list[tuple[datetime, datetime | None]] = []  # (detected, last ok before it)
        self.keys: list[str] = []  # per poll: what it must agree on to share a row with the one before

    def run(self, step: str) -> None:
        at = T0 + STEP * (len(self.times) + 1)
        with Session(self.engine) as s:
            if step in ("same", "change"):
                before = self.ok_times[-1] if self.ok_times else None
                first = before is None  # the baseline: it stores every table
                if step == "change" and not first:
                    self.table = 1 - self.table
                snap = Snapshot(SRC, at, "test", TABLES[self.table])
                result = apply_snapshot(s, snap, started_at=at, duration_ms=2.0, policy=ApplyPolicy())
                assert result.outcome == "ok" and result.previous_poll_at == before
                if result.changes:
                    self.change_bounds.append((at, before))
                self.ok_times.append(at)
                self.keys.append("ok" if step == "same" and not first else f"changed {at}")
            else:
                until = T0 + timedelta(days=1) if step == "rest" else None
                record_failure(s, SRC, at, 1.0, f"down ({step})", error_kind="fetch_timeout", retry_at=until)
                self.failed_times.append(at)
                self.keys.append(step)
            s.commit()
        self.times.append(at)

    def expected_runs(self) -> list[tuple[datetime, datetime, int]]:
        """(first, last, count) of each run of consecutive polls with the same rollable key."""
        runs: list[list[datetime]] = []
        for i, at in enumerate(self.times):
            if i and self.keys[i] == self.keys[i - 1] and not self.keys[i].startswith("changed"):
                runs[-1].append(at)
            else:
                runs.append([at])
        return [(r[0], r[-1], len(r)) for r in runs]


def check(replay: Replay) -> None:
    with replay.engine.connect() as conn:
        rows = recent_polls(conn, SRC, 10_000)
        status = source_status(conn, SRC)
        stored = list_changes(conn, source=SRC)
    assert sum(p.repeats for p in rows) == len(replay.times) == status.polls
    assert [(p.started_at, p.ended_at, p.repeats) for p in reversed(rows)] == replay.expected_runs()
    assert status.first_poll_at == replay.times[0] and status.last_poll_at == replay.times[-1]
    assert status.last_success_at == (replay.ok_times[-1] if replay.ok_times else None)
    assert status.last_error_at == (replay.failed_times[-1] if replay.failed_times else None)
    # Every change is bounded by the last poll that saw the old table, however many polls were rolled up.
    assert sorted({(c.detected_at, c.previous_poll_at) for c in stored}) == replay.change_bounds
    with Session(replay.engine) as s:
        assert last_success_at(s, SRC) == status.last_success_at


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(STEPS), min_size=1, max_size=30))
def test_rolled_up_rows_account_for_exactly_the_polls_that_ran(steps: list[str]) -> None:
    engine = memory_engine()
    replay = Replay(engine)
    for step in steps:
        replay.run(step)
    check(replay)
    engine.dispose()


def test_unchanged_polls_share_one_row_with_their_count_and_span(mem: Engine) -> None:
    replay = Replay(mem)
    for step in ["same"] * 5:
        replay.run(step)
    with mem.connect() as conn:
        baseline, run = reversed(recent_polls(conn, SRC))
    assert (baseline.repeats, baseline.symbols_changed) == (1, 2)
    assert (run.repeats, run.started_at, run.ended_at) == (4, T0 + 2 * STEP, T0 + 5 * STEP)


def test_a_change_or_a_failure_breaks_a_run(mem: Engine) -> None:
    replay = Replay(mem)
    for step in ["same", "same", "same", "fail-a", "fail-a", "same", "change", "same", "same"]:
        replay.run(step)
    with mem.connect() as conn:
        rows = list(reversed(recent_polls(conn, SRC)))
    assert [(p.outcome, p.repeats, p.changes > 0) for p in rows] == [
        ("ok", 1, False),  # the baseline (it stores every table, and reports nothing)
        ("ok", 2, False),
        ("failed", 2, False),
        ("ok", 1, False),
        ("ok", 1, True),
        ("ok", 2, False),
    ]
    assert rows[4].started_at == T0 + 7 * STEP
    check(replay)


def test_the_mean_duration_of_a_run(mem: Engine) -> None:
    with Session(mem) as s:
        for i, ms in enumerate((10.0, 20.0, 60.0)):
            record_failure(s, SRC, T0 + STEP * i, ms, "down", error_kind="fetch_timeout")
        s.commit()
        (row,) = s.execute(select(Poll.repeats, Poll.duration_ms)).all()  # type: ignore[call-overload]
    assert tuple(row) == (3, pytest.approx(30.0))


def test_a_rest_rolled_up_is_still_asked_for(mem: Engine) -> None:
    replay = Replay(mem)
    for step in ("same", "rest", "rest", "rest"):
        replay.run(step)
    with Session(mem) as s:
        asked = requested_rest(s, SRC)
    assert asked is not None and asked.until == T0 + timedelta(days=1) and asked.reason == "down (rest)"


def test_a_mixed_history_on_every_backend(engine: Engine) -> None:
    """The same accounting on the `engine` fixture's databases (SQLite file, and PostgreSQL when set)."""
    replay = Replay(engine)
    steps = ["same", "same", "fail-a", "fail-a", "fail-b", "same", "change", "rest", "rest", "same", "same"]
    for step in [*steps, "change", "same", "fail-a", "same", "same"]:
        replay.run(step)
    check(replay)
