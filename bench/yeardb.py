"""A year's database for the benchmarks, built through the store's own code and cached.

The recipe (`Recipe`): 4 sources polled every 5 minutes for a year (105,120 polls each, 420,480 in all),
starting 2025-01-01. On binance-usdm, the real consecutive pairs of the 134 recorded versions
(`../shared/data/binance-usdm-tiers-history`) are replayed at `rate` × their real rate (133 pairs over
their 1,546 days: 31.4 a year, so 314 changing polls a year at 10×), evenly spaced; past the newest
version the replay walks back through the same pairs (newest → oldest, then forward again), so every
changing poll is a real pair, some of them reversed. The other three sources store the oldest version's
tables as their first snapshot (their content matters to none of the reads) and never change.

How the rows are made:
- every first snapshot and every changing poll goes through `snapshots.store.apply_snapshot` (as an
  import does: no quarantine, `max_vanish_share=None`, since the real history renamed its keys once);
- the unchanged polls in between are written in bulk, as the rows the store writes for them: with the
  roll-up (`Recipe.rollup`), the first poll of each run through `snapshots.store.record_poll` and the
  rest in one update of that row (`repeats`, `last_at`: what `record_poll` would make them); without
  it, one row per poll, as the store did before revision 0005. Only `duration_ms` is invented
  (`UNCHANGED_MS`: the store records what it measured). tests/snapshots/test_yeardb.py checks, at a
  small scale, that the bulk rows equal those of polling through `apply_snapshot` poll by poll.

`year_db(recipe)` and `real_history_db()` build once and cache the file under `bench/results/yeardb/`
(ignored by git), keyed by `VERSION`, the recipe and the schema revision: bump `VERSION` when the recipe
changes. A file is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update
from sqlmodel import Session

from monitor.service.importer import Planned, import_files, load_snapshot, plan
from monitor.store.database import open_engine
from monitor.store.revision import HEAD
from snapshots import catalog
from snapshots.db import Poll
from snapshots.model import SOURCES, Snapshot, TierTable
from snapshots.store import ApplyPolicy, _symbols_hash, apply_snapshot, record_poll

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance-usdm-tiers-history"
CACHE = ROOT / "bench" / "results" / "yeardb"
VERSION = 1

START = datetime(2025, 1, 1, tzinfo=UTC)
INTERVAL = timedelta(minutes=5)
SLOTS = 365 * 24 * 60 // 5  # polls of one source in a year
CHANGING = "binance-usdm"
UNCHANGED_MS = 160.0  # the recorded duration of a bulk-written unchanged poll
REPLAY = ApplyPolicy(max_vanish_share=None)

Tables = dict[str, TierTable]


@dataclass(frozen=True, slots=True)
class Recipe:
    rate: float = 10.0  # × the real change rate of the recorded history
    rollup: bool = True  # False: one row per unchanged poll (the store before revision 0005)
    slots: int = SLOTS  # polls per source

    def key(self) -> str:
        return f"year-{self.rate:g}x-{'runs' if self.rollup else 'rows'}-{self.slots}-v{VERSION}-r{HEAD}"


@dataclass(frozen=True, slots=True)
class Versions:
    """The recorded versions, oldest first, loaded one at a time (all at once would take gigabytes)."""

    names: tuple[str, ...]
    load: Callable[[int], Tables]
    pairs_per_year: float  # the real rate: consecutive pairs per year over the recorded span


def recorded_versions(data: Path = DATA) -> Versions:
    if not (data / "index.tsv").is_file():
        sys.exit(f"no recorded history at {data}: the year benchmark needs ../shared/data (see its README)")
    with (data / "index.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    items = plan([data / r["file"] for r in rows])
    span = (items[-1].at - items[0].at).days

    def load(i: int) -> Tables:
        return load_snapshot(CHANGING, items[i]).tables

    return Versions(tuple(i.path.name for i in items), load, (len(items) - 1) * 365 / span)


def walk(count: int, steps: int) -> list[int]:
    """Version indexes for a baseline and `steps` changes: 0, 1, …, count-1, count-2, …, 0, 1, …"""
    period = 2 * (count - 1)
    return [i % period if i % period < count else period - i % period for i in range(steps + 1)]


def change_slots(changes: int, slots: int) -> list[int]:
    """`changes` slots spread evenly over 1 … slots-1 (slot 0 is every source's first snapshot)."""
    return [round((k + 1) * slots / (changes + 1)) for k in range(changes)]


def slot_time(slot: int) -> datetime:
    return START + INTERVAL * slot


def _unchanged_rows(source: str, snap: Snapshot, first: int, end: int, rollup: bool) -> Iterator[dict[str, object]]:
    """The rows the store writes for unchanged polls of `snap`'s tables in slots first … end-1."""
    if end <= first:
        return
    base: dict[str, object] = {
        "source": source, "kind": "poll", "duration_ms": UNCHANGED_MS, "outcome": "ok",
        "provenance": snap.provenance, "symbols": len(snap.tables), "symbols_changed": 0, "changes": 0,
        "tiers_written": 0, "error": None, "warnings": None, "symbols_hash": _symbols_hash(snap.tables),
        "error_kind": None, "retry_at": None,
    }  # fmt: skip
    if rollup:
        yield {**base, "started_at": slot_time(first), "last_at": slot_time(end - 1), "repeats": end - first}
        return
    for slot in range(first, end):
        at = slot_time(slot)
        yield {**base, "started_at": at, "last_at": at, "repeats": 1}


def _write_unchanged(session: Session, rows: Iterator[dict[str, object]], rollup: bool) -> None:
    """Store the rows of unchanged polls. Rolled up: a run's first poll through `record_poll` (which extends
    the source's latest row when it may, as after a formatting-only pair), the rest in one update of it."""
    if not rollup:
        batch: list[dict[str, object]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 10_000:
                session.execute(insert(catalog.poll), batch)
                batch.clear()
        if batch:
            session.execute(insert(catalog.poll), batch)
        return
    for row in rows:
        more = int(str(row["repeats"])) - 1
        run = record_poll(session, Poll(**{**row, "last_at": row["started_at"], "repeats": 1}))
        if more:
            stmt = update(catalog.poll).where(catalog.poll.c.id == run)
            session.execute(stmt.values(repeats=catalog.poll.c.repeats + more, last_at=row["last_at"]))


def _apply(session: Session, snap: Snapshot) -> None:
    apply_snapshot(session, snap, started_at=snap.taken_at, duration_ms=UNCHANGED_MS, policy=REPLAY)


def changes_in(recipe: Recipe, versions: Versions) -> int:
    """How many polls change the tables in the recipe's span: `rate` × the recorded rate."""
    return round(versions.pairs_per_year * recipe.rate * recipe.slots / SLOTS)


def build_year(url: str, recipe: Recipe, versions: Versions, *, changes: int | None = None) -> None:
    """Write the year of `recipe` into the empty database at `url` (see the module's docstring); `changes`
    overrides the number of changing polls (small test builds)."""
    engine = open_engine(url)
    changes = changes_in(recipe, versions) if changes is None else changes
    steps = walk(len(versions.names), changes)
    slots = change_slots(changes, recipe.slots)
    first = versions.load(0)
    for source in SOURCES:
        tables = first if source == CHANGING else {s: replace(t, source=source) for s, t in first.items()}
        snap = Snapshot(source, slot_time(0), f"replay:{versions.names[0]}", tables)
        with Session(engine) as session:
            _apply(session, snap)
            if source != CHANGING:
                rows = _unchanged_rows(source, snap, 1, recipe.slots, recipe.rollup)
                _write_unchanged(session, rows, recipe.rollup)
            session.commit()
    snap = Snapshot(CHANGING, slot_time(0), f"replay:{versions.names[0]}", first)
    for k, slot in enumerate([*slots, recipe.slots]):
        with Session(engine) as session:
            previous_end = slots[k - 1] + 1 if k else 1
            rows = _unchanged_rows(CHANGING, snap, previous_end, slot, recipe.rollup)
            _write_unchanged(session, rows, recipe.rollup)
            if slot < recipe.slots:
                i = steps[k + 1]
                snap = Snapshot(CHANGING, slot_time(slot), f"replay:{versions.names[i]}", versions.load(i))
                _apply(session, snap)
            session.commit()
    engine.dispose()


def _cached(name: str, build: Callable[[str], None], cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}.db"
    if path.exists():
        return path
    partial = cache / f"{name}.partial-{os.getpid()}.db"
    for leftover in cache.glob(f"{partial.name}*"):
        leftover.unlink()
    build(f"sqlite:///{partial}")
    with sqlite3.connect(partial) as conn:  # one file: fold the write-ahead log in
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    partial.rename(path)
    for leftover in cache.glob(f"{partial.name}*"):  # the emptied log, its index, the migration lock
        leftover.unlink()
    return path


def year_db(recipe: Recipe, *, data: Path = DATA, cache: Path = CACHE) -> Path:
    """The cached year database of `recipe`, built first if needed."""
    return _cached(recipe.key(), lambda url: build_year(url, recipe, recorded_versions(data)), cache)


def real_history_db(*, data: Path = DATA, cache: Path = CACHE) -> Path:
    """The 134 recorded versions imported with `tierdrift import`'s code (71,784 change records)."""

    def build(url: str) -> None:
        versions = recorded_versions(data)
        engine = open_engine(url)
        import_files(engine, CHANGING, [Planned(data / n, d) for n, d in _dated(versions, data)])
        engine.dispose()

    return _cached(f"real-history-v{VERSION}-r{HEAD}", build, cache)


def _dated(versions: Versions, data: Path) -> list[tuple[str, datetime]]:
    return [(p.path.name, p.at) for p in plan([data / n for n in versions.names])]


def main() -> None:
    for recipe in (Recipe(), Recipe(rate=1.0), Recipe(rate=1.0, rollup=False)):
        print(year_db(recipe))
    print(real_history_db())


if __name__ == "__main__":
    main()
