"""Benchmark: the risk-episode step after a market refresh, for 10,000 open positions (issue 13).

Set-up (not timed): the store of `bench/bench_impacts.py` (700 symbols, 10,000 positions, cached marks and
ADRs). Timed, in one transaction committed as the daemon's market job does it: `track_risk` (assess every
open position, step its level, write its `risk_episode` row, enqueue the alerts through the real sink).
Each run moves every mark by a random ±3 %, so some positions enter, leave or worsen their episode.

Floor, in the same run: `assess_now` alone, which the market job ran before this work (for the
violations gauge), so the ratio is what tracking the episodes adds.

Usage: python bench/bench_risk.py [--positions N] [--symbols N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_impacts import T0, setup

from monitor.config.settings import Settings
from monitor.risk.episodes import track_risk
from monitor.risk.impacts import assess_now
from monitor.risk.positions import open_positions
from monitor.service.alerting import risk_sink
from monitor.store.models import MarketData

ROOT = Path(__file__).resolve().parents[1]


def move_marks(engine: object, rng: random.Random, at: object) -> None:
    with Session(engine) as s:  # type: ignore[arg-type]
        for row in s.exec(select(MarketData)):
            row.mark_price = (row.mark_price or 1.0) * rng.uniform(0.97, 1.03)
            row.mark_at = row.adr_at = at  # type: ignore[assignment]
            s.add(row)
        s.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--symbols", type=int, default=700)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "risk.json")
    args = parser.parse_args()
    settings = Settings(channels=[], mark_max_age_minutes=60 * 24, adr_max_age_hours=24 * 30)
    rng = random.Random(7)
    ours, floors, events = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        engine, _ = setup(f"sqlite:///{Path(tmp) / 'b.db'}", args.symbols, args.positions)
        for run in range(args.runs + 1):  # run 0 writes the first rows: not counted
            at = T0 + timedelta(minutes=5 * (run + 1))
            move_marks(engine, rng, at)
            with Session(engine) as s:
                t0 = time.perf_counter()
                assess_now(s, open_positions(s), settings, at)
                t1 = time.perf_counter()
            with Session(engine) as s:
                t2 = time.perf_counter()
                found, _ = track_risk(s, settings, at, [risk_sink(settings, lambda at=at: at)])  # type: ignore[misc]
                s.commit()
                t3 = time.perf_counter()
            if run:
                floors.append((t1 - t0) * 1000)
                ours.append((t3 - t2) * 1000)
                events.append(len(found))
        engine.dispose()
    results = {
        "positions": args.positions,
        "runs": args.runs,
        "track_risk_median_ms": round(statistics.median(ours), 1),
        "assess_only_median_ms": round(statistics.median(floors), 1),
        "ratio": round(statistics.median(ours) / statistics.median(floors), 2),
        "events_per_run": events,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
