"""Migration 0005 on a database made at revision 0004: poll rows rolled up into runs, and back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from monitor.store.database import MIGRATIONS, current_revision
from snapshots.engine import make_engine
from snapshots.history import list_changes, recent_polls, source_status
from snapshots.reader import as_utc
from tests.conftest import ts

T0 = ts("2024-03-01")
STEP = timedelta(minutes=5)
USDM, LINEAR = "binance-usdm", "bybit-linear"
TIMEOUT = "fapi.binance.com: timed out after 10 s"


def migrate(engine: Engine, target: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


@pytest.fixture
def old(db_url: str) -> Iterator[Engine]:
    """An engine on a database at revision 0004, holding a history as the 0004 store wrote it."""
    engine = make_engine(db_url)
    migrate(engine, "0004")
    with engine.begin() as conn:
        write_history(conn)
    yield engine
    engine.dispose()


#: (source, outcome, what) per poll, 5 minutes apart: `what` is changed (versions and changes point at the
#: poll), same (an unchanged poll), or an error text.
HISTORY: list[tuple[str, str, str]] = [
    (USDM, "ok", "changed"),  # the baseline
    (LINEAR, "ok", "changed"),
    *[(USDM, "ok", "same")] * 4,
    (LINEAR, "ok", "same"),
    *[(USDM, "failed", TIMEOUT)] * 3,
    (USDM, "failed", "fapi.binance.com: HTTP 503"),
    *[(USDM, "ok", "same")] * 2,
    *[(USDM, "quarantined", "5 of 20 symbols (25%) vanished at once")] * 2,
    (USDM, "ok", "changed"),
    *[(USDM, "ok", "same")] * 3,
    *[(LINEAR, "ok", "same")] * 2,
]


def write_history(conn: sa.Connection) -> None:
    meta = sa.MetaData()
    meta.reflect(conn, only=["poll", "table_version", "change_record"])
    poll, version, change = (meta.tables[n] for n in ("poll", "table_version", "change_record"))
    last_ok: dict[str, datetime] = {}
    for i, (source, outcome, what) in enumerate(HISTORY):
        at = T0 + STEP * i
        changed = what == "changed"
        row: dict[str, Any] = {
            "source": source, "kind": "poll", "started_at": at, "duration_ms": 100.0 + i, "outcome": outcome,
            "provenance": None if outcome == "failed" else "GET /fapi/v1/leverageBracket",
            "symbols": 0 if outcome == "failed" else 2, "symbols_changed": 1 if changed else 0,
            "changes": 1 if changed and source in last_ok else 0, "tiers_written": 3 if changed else 0,
            "error": None if outcome == "ok" else what, "warnings": None,
            "symbols_hash": "h" if outcome != "failed" else None,
            "error_kind": "fetch_timeout" if outcome == "failed" else None, "retry_at": None,
        }  # fmt: skip
        poll_id = conn.execute(poll.insert().values(row)).inserted_primary_key[0]
        if changed:
            conn.execute(version.insert().values(
                source=source, symbol="BTC/USDT:USDT", valid_from=at, content_hash=f"c{i}", unit="quote",
                poll_id=poll_id, previous_poll_at=last_ok.get(source), provenance="test", raw=b"x",
            ))  # fmt: skip
            if source in last_ok:
                conn.execute(change.insert().values(
                    poll_id=poll_id, source=source, symbol="BTC/USDT:USDT", detected_at=at,
                    previous_poll_at=last_ok[source], kind="tier_changed", tier=1, field="cap", old=1.0, new=2.0,
                ))  # fmt: skip
        if outcome == "ok":
            last_ok[source] = at


def expected_runs(source: str) -> list[tuple[datetime, datetime, int, str]]:
    """(first, last, repeats, outcome) of each run the store would have written, oldest first."""
    runs: list[list[Any]] = []
    prev: tuple[str, str] | None = None
    for i, (src, outcome, what) in enumerate(HISTORY):
        if src != source:
            continue
        at = T0 + STEP * i
        key = (outcome, what)
        if runs and key == prev and what != "changed" and outcome != "quarantined":
            runs[-1][1], runs[-1][2] = at, runs[-1][2] + 1
        else:
            runs.append([at, at, 1, outcome])
        prev = key
    return [tuple(r) for r in runs]  # type: ignore[misc]


def runs(engine: Engine, source: str) -> list[tuple[datetime, datetime, int, str]]:
    with engine.connect() as conn:
        return [(p.started_at, p.ended_at, p.repeats, p.outcome) for p in reversed(recent_polls(conn, source, 100))]


def poll_times(engine: Engine) -> list[tuple[str, datetime, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source, started_at, outcome FROM poll ORDER BY started_at, id"))
        return [(s, as_utc(at if isinstance(at, datetime) else datetime.fromisoformat(at)), o) for s, at, o in rows]


def test_upgrade_rolls_the_unchanged_and_repeated_polls_up(old: Engine) -> None:
    migrate(old, "0005")
    assert current_revision(old) == "0005"
    for source in (USDM, LINEAR):
        assert runs(old, source) == expected_runs(source)
    with old.connect() as conn:
        status = source_status(conn, USDM)
        (change,) = list_changes(conn, source=USDM)
        mean = conn.execute(
            sa.text("SELECT duration_ms FROM poll WHERE repeats = 3 AND outcome = 'failed'")
        ).scalar_one()
    assert status.polls == sum(1 for s, _, _ in HISTORY if s == USDM)
    assert status.last_poll_at == T0 + STEP * max(i for i, h in enumerate(HISTORY) if h[0] == USDM)
    assert status.last_error == "5 of 20 symbols (25%) vanished at once"
    assert change.previous_poll_at == T0 + STEP * 12  # untouched: the last poll that saw the old table
    assert mean == pytest.approx(sum(100.0 + i for i in (7, 8, 9)) / 3)  # the three timeouts


def test_downgrade_gives_every_poll_its_row_back_and_upgrade_again_is_the_same(old: Engine) -> None:
    before = poll_times(old)
    migrate(old, "0005")
    rolled = {s: runs(old, s) for s in (USDM, LINEAR)}
    migrate(old, "0004", down=True)
    assert current_revision(old) == "0004"
    after = poll_times(old)
    # Each poll has a row again, the first and last of a run at their times, the others spread evenly:
    # the real times but for bybit-linear's run of three (polls 6, 19 and 20), whose middle one is put at 13.
    assert sorted((s, o) for s, _, o in after) == sorted((s, o) for s, _, o in before)
    moved = {(LINEAR, T0 + STEP * 19)}
    assert {(s, at) for s, at, _ in before} - {(s, at) for s, at, _ in after} == moved
    assert {(s, at) for s, at, _ in after} - {(s, at) for s, at, _ in before} == {(LINEAR, T0 + STEP * 13)}
    migrate(old, "0005")
    assert {s: runs(old, s) for s in (USDM, LINEAR)} == rolled
