"""The store on a real SQLite file: versions, diffs, failures, quarantine, and history queries."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from snapshots.db import ChangeRecord, Poll, TierRow
from snapshots.diff import diff_tables
from snapshots.errors import NotFound, OutOfOrder
from snapshots.history import list_changes, source_status, table_at, tables_at, versions
from snapshots.model import Snapshot, TierTable
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import ApplyFailed, ApplyPolicy, PollResult, apply_snapshot, record_failure
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, ts

SRC = "binance-usdm"


def tables(**symbols: list[tuple[float, float, float]]) -> dict[str, TierTable]:
    payload = {f"{name}/USDT:USDT": ccxt_tiers(f"{name}/USDT:USDT", rows) for name, rows in symbols.items()}
    return parse_ccxt_tiers(SRC, payload)


def apply(engine: Engine, at: str, tabs: dict[str, TierTable], **policy: object) -> PollResult:
    with Session(engine) as s:
        result = apply_snapshot(
            s, Snapshot(SRC, ts(at), "test", tabs), started_at=ts(at), duration_ms=1.0, policy=ApplyPolicy(**policy)
        )  # type: ignore[arg-type]
        s.commit()
    return result


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def test_first_snapshot_is_a_baseline_without_change_records(engine: Engine) -> None:
    r = apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    assert r.baseline and r.outcome == "ok" and r.changes == []
    assert count(engine, TierRow) == len(BTC_ROWS) + len(ETH_ROWS)
    assert count(engine, ChangeRecord) == 0


def test_unchanged_polls_add_one_run_row_and_nothing_else(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    rows_before = count(engine, TierRow)
    r = apply(engine, "2024-01-02", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    assert r.changes == [] and not r.baseline and r.tiers_written == 0
    again = apply(engine, "2024-01-03", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    assert again.poll_id == r.poll_id  # counted in the same row
    assert count(engine, TierRow) == rows_before
    assert count(engine, Poll) == 2  # the baseline, and the run of the two unchanged polls


def test_a_changed_rate_becomes_a_new_version_and_a_change_record(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    apply(engine, "2024-01-02", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    tighter = [(f, r + 0.001 if i == 0 else r, lev) for i, (f, r, lev) in enumerate(ETH_ROWS)]
    r = apply(engine, "2024-01-03T12:00", tables(BTC=BTC_ROWS, ETH=tighter))
    kinds = {(c.symbol, c.kind, c.tier, c.field) for c in r.changes}
    assert ("ETH/USDT:USDT", "tier_changed", 1, "maintenance_margin_rate") in kinds
    assert all(c.symbol == "ETH/USDT:USDT" for c in r.changes)  # BTC untouched
    assert r.tiers_written == len(ETH_ROWS)
    with engine.connect() as conn:
        stored = list_changes(conn, source=SRC, symbol="ETH/USDT:USDT")
        assert stored[0].detected_at == ts("2024-01-03T12:00")
        assert stored[0].previous_poll_at == ts("2024-01-02")  # bounds when the change happened
        rate = next(c.change for c in stored if c.change.field == "maintenance_margin_rate")
        assert (rate.old, rate.new) == (pytest.approx(0.005), pytest.approx(0.006))
        hist = versions(conn, SRC, "ETH/USDT:USDT")
        assert [(v.valid_from, v.valid_to) for v in hist] == [
            (ts("2024-01-01"), ts("2024-01-03T12:00")),
            (ts("2024-01-03T12:00"), None),
        ]
        old, _ = table_at(conn, SRC, "ETH/USDT:USDT", ts("2024-01-03T11:59"))
        new, _ = table_at(conn, SRC, "ETH/USDT:USDT", ts("2024-01-03T12:00"))
        assert old.tiers[0].maintenance_margin_rate == 0.005
        assert new.tiers[0].maintenance_margin_rate == pytest.approx(0.006)


def test_listing_and_delisting(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    r = apply(engine, "2024-01-02", tables(BTC=BTC_ROWS, ETH=ETH_ROWS, SOL=ETH_ROWS), max_vanish_share=0.5)
    assert [(c.symbol, c.kind) for c in r.changes] == [("SOL/USDT:USDT", "symbol_listed")]
    r = apply(engine, "2024-01-03", tables(BTC=BTC_ROWS, SOL=ETH_ROWS), max_vanish_share=0.5)
    assert [(c.symbol, c.kind) for c in r.changes] == [("ETH/USDT:USDT", "symbol_delisted")]
    with engine.connect() as conn:
        with pytest.raises(NotFound, match="was not listed"):
            table_at(conn, SRC, "ETH/USDT:USDT", ts("2024-01-04"))
        with pytest.raises(NotFound, match="before its history begins"):
            table_at(conn, SRC, "SOL/USDT:USDT", ts("2024-01-01"))
        assert set(tables_at(conn, SRC, ts("2024-01-03"))) == {"BTC/USDT:USDT", "SOL/USDT:USDT"}


def test_a_mass_vanishing_is_quarantined_not_applied(engine: Engine) -> None:
    many = {f"C{i}": ETH_ROWS for i in range(20)}
    apply(engine, "2024-01-01", tables(**many))
    few = {f"C{i}": ETH_ROWS for i in range(15)}  # 25% vanish
    r = apply(engine, "2024-01-02", tables(**few), max_vanish_share=0.10, confirmations=3)
    assert r.outcome == "quarantined" and "5 of 20 symbols (25%)" in (r.error or "")
    assert count(engine, ChangeRecord) == 0
    with engine.connect() as conn:
        assert len(tables_at(conn, SRC, ts("2024-01-03"))) == 20  # nothing was removed
        status = source_status(conn, SRC)
        assert status.last_outcome == "quarantined" and "vanished" in (status.last_error or "")
        assert status.last_success_at == ts("2024-01-01")


def test_a_repeated_quarantine_is_applied_once_confirmed(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(**{f"C{i}": ETH_ROWS for i in range(20)}))
    few = {f"C{i}": ETH_ROWS for i in range(15)}
    outcomes = [apply(engine, f"2024-01-0{d}", tables(**few), confirmations=3).outcome for d in (2, 3, 4)]
    assert outcomes == ["quarantined", "quarantined", "ok"]
    assert count(engine, ChangeRecord) == 5


def test_accept_removals_applies_at_once(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(**{f"C{i}": ETH_ROWS for i in range(10)}))
    r = apply(engine, "2024-01-02", tables(C0=ETH_ROWS), accept_removals=True)
    assert r.outcome == "ok" and len(r.changes) == 9


def test_a_failure_is_recorded_and_touches_no_version(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS))
    with Session(engine) as s:
        record_failure(s, SRC, ts("2024-01-02"), 15000.0, "timeout after 15s")
        s.commit()
    with engine.connect() as conn:
        status = source_status(conn, SRC)
        assert status.last_outcome == "failed" and status.last_error == "timeout after 15s"
        assert status.last_success_at == ts("2024-01-01")
        assert status.symbols == 1
    r = apply(engine, "2024-01-03", tables(BTC=BTC_ROWS))
    assert r.previous_poll_at == ts("2024-01-01")  # the failed poll does not narrow the bound


def test_an_older_snapshot_is_refused(engine: Engine) -> None:
    apply(engine, "2024-01-05", tables(BTC=BTC_ROWS))
    with pytest.raises(OutOfOrder, match="older than the stored history"):
        apply(engine, "2024-01-01", tables(BTC=BTC_ROWS))


def test_diff_kinds_for_added_and_removed_tiers() -> None:
    old = tables(BTC=BTC_ROWS)["BTC/USDT:USDT"]
    new = tables(BTC=BTC_ROWS[:-1])["BTC/USDT:USDT"]
    changes = diff_tables(old, new)
    assert ("tier_removed", 5) in {(c.kind, c.tier) for c in changes}
    assert ("tier_added", 5) in {(c.kind, c.tier) for c in diff_tables(new, old)}
    cap = next(c for c in changes if c.field == "cap")
    assert (cap.tier, cap.old, cap.new) == (4, 5_000_000, 10_000_000)
    assert diff_tables(old, old) == []


def _when(text: str) -> datetime:
    return ts(text)


def test_changes_filter_by_kind_and_field_and_page_by_cursor(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    bumped = [(floor, mmr * 1.2, lev) for floor, mmr, lev in ETH_ROWS]
    apply(engine, "2024-01-02", tables(BTC=BTC_ROWS[:-1], ETH=bumped))
    apply(engine, "2024-01-03", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    with engine.connect() as conn:
        every = list_changes(conn)
        assert len({c.id for c in every}) == len(every) > 3
        rates = list_changes(conn, field="maintenance_margin_rate")
        assert rates and all(c.change.field == "maintenance_margin_rate" for c in rates)
        assert len(rates) < len(every)
        kinds = {c.change.kind for c in every}
        assert len(kinds) > 1
        for kind in kinds:
            assert {c.id for c in list_changes(conn, kind=kind)} == {c.id for c in every if c.change.kind == kind}
        pages: list[int | None] = []
        cursor = None
        while True:
            page = list_changes(conn, after=cursor, limit=2)
            if not page:
                break
            assert len(page) <= 2
            pages += [c.id for c in page]
            cursor = page[-1].cursor
        assert pages == [c.id for c in every]  # every record once, in order, across pages


def _refuse_updates_of(engine: Engine, symbol: str) -> None:
    """Make the database refuse to close `symbol`'s version, as a broken or locked row would."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON table_version"
                f" WHEN OLD.symbol = '{symbol}' BEGIN SELECT RAISE(ABORT, 'row refused (simulated)'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$"
                " BEGIN RAISE EXCEPTION 'row refused (simulated)'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON table_version FOR EACH ROW"
                f" WHEN (OLD.symbol = '{symbol}') EXECUTE FUNCTION refuse()"
            )


def test_a_version_the_database_refuses_to_close_is_named_and_nothing_is_stored(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    _refuse_updates_of(engine, "ETH/USDT:USDT")
    tighter = [(f, r + 0.001, lev) for f, r, lev in ETH_ROWS]
    wider = [(f, r + 0.001, lev) for f, r, lev in BTC_ROWS]  # BTC comes first: the retry gets past it
    with pytest.raises(ApplyFailed) as caught:
        apply(engine, "2024-01-02", tables(BTC=wider, ETH=tighter))
    assert caught.value.symbol == "ETH/USDT:USDT"
    assert str(caught.value).startswith("ETH/USDT:USDT: unexpected ") and "row refused (simulated)" in str(caught.value)
    assert (count(engine, Poll), count(engine, ChangeRecord)) == (1, 0)  # the baseline only: rolled back
    with engine.connect() as conn:
        assert [v.valid_to for v in versions(conn, SRC, "BTC/USDT:USDT")] == [None]
