"""Benchmark of the snapshot store against a naive baseline, on the 134 recorded Binance versions.

Measured, each in this same run:
1. importing all 134 versions (about 190 MB of JSON): wall time and database size;
2. processing an unchanged poll of the newest 716-symbol table (parse, validate, hash, compare, record;
   network excluded): median time, and the tier rows it adds;
3. `tierdrift tiers SYMBOL --at DATE` as a whole process: median wall time.

The naive baseline does what a first implementation would: store every tier of every poll, and deep-diff
the whole previous snapshot against the whole new one (deepdiff over all symbols). Ratios are naive/ours.

Usage: python bench/bench_snapshots.py [--data DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deepdiff import DeepDiff
from sqlmodel import Session

from monitor.service.importer import Planned, import_files, load_snapshot, plan
from monitor.store.database import open_engine
from snapshots.history import table_at
from snapshots.model import Snapshot, TierTable
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import ApplyPolicy, apply_snapshot

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance-usdm-tiers-history"
SRC = "binance-usdm"


def db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def checkpoint(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- the naive baseline ------------------------------------------------------------------------------


def naive_shape(tables: dict[str, TierTable]) -> dict[str, list[dict[str, float]]]:
    return {s: [t.as_dict() for t in table.tiers] for s, table in tables.items()}  # type: ignore[misc]


class Naive:
    """Store every tier of every poll; diff whole snapshots with deepdiff."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS tiers (taken_at TEXT, symbol TEXT, tier INT, floor REAL, cap REAL,"
            " mmr REAL, amount REAL, lev REAL)"
        )
        self.conn.execute("CREATE INDEX IF NOT EXISTS ix ON tiers (symbol, taken_at)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS changes (taken_at TEXT, diff TEXT)")
        self.previous: dict[str, list[dict[str, float]]] | None = None

    def apply(self, snap: Snapshot) -> int:
        shape = naive_shape(snap.tables)
        diff = DeepDiff(self.previous, shape, verbose_level=2) if self.previous is not None else {}
        at = snap.taken_at.isoformat()
        rows = [
            (at, s, t["tier"], t["floor"], t["cap"], t["maintenance_margin_rate"], t["maintenance_amount"],
             t["max_leverage"])
            for s, tiers in shape.items()
            for t in tiers
        ]  # fmt: skip
        self.conn.executemany("INSERT INTO tiers VALUES (?,?,?,?,?,?,?,?)", rows)
        if diff:
            self.conn.execute("INSERT INTO changes VALUES (?, ?)", (at, diff.to_json()))
        self.conn.commit()
        self.previous = shape
        return len(rows)


NAIVE_TIERS = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
at = conn.execute("SELECT max(taken_at) FROM tiers WHERE symbol = ? AND taken_at <= ?", (sys.argv[2], sys.argv[3]))
at = at.fetchone()[0]
rows = conn.execute("SELECT tier, floor, cap, mmr, amount, lev FROM tiers WHERE symbol = ? AND taken_at = ?"
                    " ORDER BY tier", (sys.argv[2], at)).fetchall()
keys = ("tier", "floor", "cap", "maintenance_margin_rate", "maintenance_amount", "max_leverage")
print(json.dumps([dict(zip(keys, r)) for r in rows]))
"""


# -- measurements ------------------------------------------------------------------------------------


def median_ms(fn: Any, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times


def bench_import(items: list[Planned], work: Path) -> dict[str, Any]:
    ours_db = work / "ours.db"
    t0 = time.perf_counter()
    engine = open_engine(f"sqlite:///{ours_db}")
    import_files(engine, SRC, items)
    ours_s = time.perf_counter() - t0
    engine.dispose()
    checkpoint(ours_db)

    naive = Naive(work / "naive.db")
    t0 = time.perf_counter()
    for item in items:
        naive.apply(load_snapshot(SRC, item))
    naive_s = time.perf_counter() - t0
    naive.conn.close()
    checkpoint(naive.path)
    return {
        "files": len(items),
        "json_mb": round(sum(len(gzip.decompress(i.path.read_bytes())) for i in items) / 1e6, 1),
        "ours_s": round(ours_s, 2),
        "naive_s": round(naive_s, 2),
        "ours_db_mb": round(db_size(ours_db) / 1e6, 2),
        "naive_db_mb": round(db_size(naive.path) / 1e6, 2),
    }


def bench_unchanged_poll(items: list[Planned], work: Path, runs: int) -> dict[str, Any]:
    newest = items[-1]
    payload = json.loads(gzip.decompress(newest.path.read_bytes()))
    base = load_snapshot(SRC, newest)
    engine = open_engine(f"sqlite:///{work / 'poll.db'}")
    with Session(engine) as s:
        apply_snapshot(s, base, started_at=base.taken_at, duration_ms=0, policy=ApplyPolicy())
        s.commit()
    clock = [base.taken_at]

    def ours() -> None:
        clock[0] += timedelta(minutes=5)
        tables = parse_ccxt_tiers(SRC, payload)
        with Session(engine) as s:
            r = apply_snapshot(
                s, Snapshot(SRC, clock[0], "bench", tables), started_at=clock[0], duration_ms=0, policy=ApplyPolicy()
            )
            s.commit()
        assert r.tiers_written == 0 and not r.changes

    tier_rows_before = _count(work / "poll.db", "tier_row")
    ours_ms, _ = median_ms(ours, runs)
    added = _count(work / "poll.db", "tier_row") - tier_rows_before

    naive = Naive(work / "naive-poll.db")
    naive.apply(base)

    def baseline() -> None:
        naive.apply(Snapshot(SRC, base.taken_at, "bench", parse_ccxt_tiers(SRC, payload)))

    naive_ms, _ = median_ms(baseline, runs)
    engine.dispose()
    return {
        "symbols": len(base.tables),
        "runs": runs,
        "ours_median_ms": round(ours_ms, 1),
        "naive_median_ms": round(naive_ms, 1),
        "tier_rows_added_by_unchanged_polls": added,
        "naive_tier_rows_per_poll": sum(len(t.tiers) for t in base.tables.values()),
    }


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def bench_tiers_process(work: Path, runs: int) -> dict[str, Any]:
    exe = shutil.which("tierdrift", path=os.path.dirname(sys.executable)) or shutil.which("tierdrift")
    assert exe, "tierdrift is not installed (pip install -e .)"
    url = f"sqlite:///{work / 'ours.db'}"
    ours_cmd = [exe, "--db", url, "tiers", "BTC/USDT:USDT", "--source", SRC, "--at", "2024-06-01", "--json"]
    naive_cmd = [sys.executable, "-c", NAIVE_TIERS, str(work / "naive.db"), "BTC/USDT:USDT", "2024-06-01T23:59"]
    ours_out = json.loads(subprocess.run(ours_cmd, capture_output=True, text=True, check=True).stdout)
    naive_out = json.loads(subprocess.run(naive_cmd, capture_output=True, text=True, check=True).stdout)
    assert [t["maintenance_margin_rate"] for t in ours_out] == [t["maintenance_margin_rate"] for t in naive_out]
    bare_ms, _ = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs)
    query_ms, naive_query_ms = _query_only(work, runs)
    ours_ms, _ = median_ms(lambda: subprocess.run(ours_cmd, capture_output=True, check=True), runs)
    naive_ms, _ = median_ms(lambda: subprocess.run(naive_cmd, capture_output=True, check=True), runs)
    return {
        "runs": runs,
        "python_startup_median_ms": round(bare_ms, 1),
        "ours_median_ms": round(ours_ms, 1),
        "naive_median_ms": round(naive_ms, 1),
        "ours_query_only_median_ms": round(query_ms, 2),
        "naive_query_only_median_ms": round(naive_query_ms, 2),
    }


def _query_only(work: Path, runs: int) -> tuple[float, float]:
    """The lookup alone, in-process, without start-up: ours through the history API, naive with sqlite3."""
    engine = open_engine(f"sqlite:///{work / 'ours.db'}")
    at = datetime(2024, 6, 1, tzinfo=UTC)
    with engine.connect() as conn:
        ours, _ = median_ms(lambda: table_at(conn, SRC, "BTC/USDT:USDT", at), runs)
    engine.dispose()
    conn2 = sqlite3.connect(work / "naive.db")

    def naive() -> None:
        (taken,) = conn2.execute(
            "SELECT max(taken_at) FROM tiers WHERE symbol = ? AND taken_at <= ?", ("BTC/USDT:USDT", at.isoformat())
        ).fetchone()
        conn2.execute(
            "SELECT * FROM tiers WHERE symbol = ? AND taken_at = ? ORDER BY tier", ("BTC/USDT:USDT", taken)
        ).fetchall()

    naive_ms, _ = median_ms(naive, runs)
    conn2.close()
    return ours, naive_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "snapshots.json")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"recorded data not found at {args.data}")
    items = plan(sorted(args.data.glob("*.json.gz")))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "import": bench_import(items, work),
            "unchanged_poll": bench_unchanged_poll(items, work, args.runs),
            "tiers_process": bench_tiers_process(work, args.runs),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
