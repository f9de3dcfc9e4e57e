"""Benchmark: the journal's reads and its one-off backfill, for 10,000 positions (issue 12).

Set-up (not timed): the store of `bench/bench_impacts.py` (700 symbols, 10,000 positions opened on
2026-01-01, 1 in 10 cross), each position then given an entry record (by the backfill) and two events.

Timed, each in its own session, medians over `--runs`:
- `records_for` of every position, against the floor of reading the same 10,000 `Position` rows, in the
  same run; and `listed_records` (what `positions list --json` adds now: two plain queries on the
  standard library's sqlite3) against `read_positions` on the same connection;
- `positions list --json` as a whole process on this store (every row with its entry and two events);
- `export_rows` + `write_csv` (`positions export`);
- the backfill of 10,000 positions without entry records (the first journal write after migration 0007),
  with its records deleted again between runs.

Usage: python bench/bench_journal.py [--positions N] [--symbols N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, insert
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_impacts import T0, setup

from monitor.config.settings import Settings
from monitor.journal.export import export_rows, write_csv
from monitor.journal.log import backfill
from monitor.journal.records import listed_records, records_for
from monitor.risk.current import read_positions
from monitor.store.models import Position, PositionEvent, PositionRecord
from snapshots.reader import SqliteReader

ROOT = Path(__file__).resolve().parents[1]


def add_events(engine: object) -> None:
    with Session(engine) as s:  # type: ignore[arg-type]
        rows = []
        for p in s.exec(select(Position)):
            for n, kind in enumerate(("margin_added", "note")):
                rows.append(
                    {"position_id": p.id, "at": T0 + timedelta(hours=n + 1), "kind": kind,
                     "amount": 10.0 if kind == "margin_added" else None, "note": "bench" if kind == "note" else None,
                     "size_after": p.size, "margin_after": p.margin, "entry_price_after": p.entry_price}
                )  # fmt: skip
        s.execute(insert(PositionEvent), rows)
        s.commit()


def timed(engine: object, call: object) -> float:
    with Session(engine) as s:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        call(s)  # type: ignore[operator]
        return (time.perf_counter() - t0) * 1000


def clocked(call: object) -> float:
    t0 = time.perf_counter()
    call()  # type: ignore[operator]
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--symbols", type=int, default=700)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "journal.json")
    args = parser.parse_args()
    settings = Settings(channels=[])
    now = T0 + timedelta(days=30)
    with tempfile.TemporaryDirectory() as tmp:
        engine, _ = setup(f"sqlite:///{Path(tmp) / 'b.db'}", args.symbols, args.positions)
        fills = []
        for _ in range(args.runs):

            def fill(s: Session) -> None:
                s.execute(delete(PositionRecord))
                backfill(s, settings, now=now)
                s.commit()

            fills.append(timed(engine, fill))
        add_events(engine)
        with Session(engine) as s:
            ids = [p.id for p in s.exec(select(Position)) if p.id is not None]
        reads = [timed(engine, lambda s: records_for(s, ids)) for _ in range(args.runs)]
        floors = [timed(engine, lambda s: list(s.exec(select(Position)))) for _ in range(args.runs)]
        exports = [timed(engine, lambda s: write_csv(export_rows(s))) for _ in range(args.runs)]
        plain = SqliteReader(sqlite3.connect(f"file:{Path(tmp) / 'b.db'}?mode=ro", uri=True))
        listed = [clocked(lambda: listed_records(plain)) for _ in range(args.runs)]
        listed_floors = [clocked(lambda: read_positions(plain)) for _ in range(args.runs)]
        plain.conn.close()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TIERDRIFT_CONFIG": str(Path(tmp) / "absent.toml"),
               "TIERDRIFT_DATABASE_URL": f"sqlite:///{Path(tmp) / 'b.db'}"}  # fmt: skip
        argv = [sys.executable, "-m", "monitor", "positions", "list", "--json"]
        processes = [clocked(lambda: subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True))
                     for _ in range(args.runs)]  # fmt: skip
        with Session(engine) as s:
            priced = sum(1 for r in s.exec(select(PositionRecord)) if r.liquidation_price is not None)
        engine.dispose()
    results = {
        "positions": args.positions,
        "runs": args.runs,
        "records_for_median_ms": round(statistics.median(reads), 1),
        "read_positions_floor_median_ms": round(statistics.median(floors), 1),
        "records_ratio": round(statistics.median(reads) / statistics.median(floors), 2),
        "listed_records_median_ms": round(statistics.median(listed), 1),
        "read_positions_plain_median_ms": round(statistics.median(listed_floors), 1),
        "list_json_process_median_ms": round(statistics.median(processes), 1),
        "export_csv_median_ms": round(statistics.median(exports), 1),
        "backfill_median_ms": round(statistics.median(fills), 1),
        "entries_with_a_liquidation_price": priced,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
