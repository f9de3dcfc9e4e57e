"""Benchmark: `tierdrift review` over a year of real Binance history with 1,000 logged trades (issue 12).

Set-up (not timed): a SQLite file holding a year of the recorded Binance USDⓈ-M versions
(`../shared/data/binance-usdm-tiers-history`, 2024-04-25 as the baseline, then 2024-05-02 … 2025-04-24),
imported week by week through the importer with the impacts hook, and 1,000 trades on 25 symbols opened
through the year (each held one to eight weeks), each with its entry record computed by the journal from
the table in force when it opened. The trades open before the imports that follow them, so the impacts of
the year's tier changes on them are recorded as a running daemon would have recorded them.

Timed: the whole process, `python -m monitor review --from 2024-05-01 --to 2025-04-30 --format F --output
FILE`, for each format, median of `--runs` runs. Floor, in the same run: `python -m monitor changes
--source binance-usdm --since 2024-05-01 --until 2025-04-30 --json`, the read-only command that lists the
same year's change records (the review reads those, plus trades, records, impacts and tables).

Usage: python bench/bench_review.py [--trades N] [--runs N] [--out bench/results/review.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.config.settings import Settings  # noqa: E402
from monitor.journal.figures import record_at  # noqa: E402
from monitor.risk.impacts import ImpactContext, make_hook  # noqa: E402
from monitor.service.importer import import_files, plan  # noqa: E402
from monitor.store.database import open_engine  # noqa: E402
from monitor.store.models import Position  # noqa: E402

HISTORY = ROOT.parent / "shared" / "data" / "binance-usdm-tiers-history"
START, END = "2024-05-01", "2025-04-30"
FORMATS = ("json", "text", "csv", "md", "html")


def year_files() -> list[Path]:
    files = sorted(p for p in HISTORY.glob("*.json.gz") if "2024-04-25" <= p.name[:10] <= "2025-04-24")
    if not files:
        sys.exit(f"the recorded Binance history is not at {HISTORY}")
    return files


def pick_symbols(files: list[Path], n: int, rng: random.Random) -> list[str]:
    """`n` perpetuals listed in every version of the year."""
    common: set[str] | None = None
    for f in (files[0], files[-1]):
        with gzip.open(f, "rt") as fh:
            keys = {k for k in json.load(fh) if k.endswith(":USDT")}
        common = keys if common is None else common & keys
    assert common is not None
    return rng.sample(sorted(common), n)


def setup(db: Path, trades: int, rng: random.Random) -> None:
    """Import the year week by week, opening and recording the trades of each week before the next import."""
    url = f"sqlite:///{db}"
    engine = open_engine(url)
    settings = Settings(channels=[])
    files = year_files()
    symbols = pick_symbols(files, 25, rng)
    per_week = trades // (len(files) - 1) + 1
    hook = make_hook(ImpactContext(settings.violation_threshold_adr))
    made, closing = 0, {}  # position id -> when it closes
    for i, f in enumerate(files):
        import_files(engine, "binance-usdm", plan([f]), hooks=[hook])
        if i == len(files) - 1:
            break
        at = datetime.fromisoformat(f.name[:10]).replace(tzinfo=UTC) + timedelta(hours=1)
        with Session(engine) as s:
            for _ in range(min(per_week, trades - made)):
                notional, entry = rng.uniform(5_000, 600_000), rng.uniform(0.5, 500)
                p = Position(
                    source="binance-usdm", symbol=rng.choice(symbols), side=rng.choice(("long", "short")),
                    entry_price=entry, size=notional / entry, size_input=f"notional={notional:.0f}",
                    margin=notional / rng.uniform(3, 20), opened_at=at, note=f"bench trade {made}",
                )  # fmt: skip
                s.add(p)
                s.flush()
                s.add(record_at(s, p, at, settings, now=at))
                assert p.id is not None
                closing[p.id] = at + timedelta(weeks=rng.randint(1, 8))
                made += 1
            for pid in [pid for pid, when in closing.items() if when <= at]:
                p = s.get_one(Position, pid)
                p.closed_at = closing.pop(pid)
                s.add(p)
            s.commit()
    engine.dispose()


def timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "monitor", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "review.json")
    args = parser.parse_args()
    rng = random.Random(12)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "review.db"
        t0 = time.perf_counter()
        setup(db, args.trades, rng)
        print(f"set-up: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TIERDRIFT_CONFIG": str(Path(tmp) / "absent.toml")}
        base = ["--db", f"sqlite:///{db}"]
        floor_cmd = [*base, "changes", "--source", "binance-usdm", "--since", START, "--until", END, "--json"]
        results: dict[str, dict[str, float]] = {}
        floors = [timed(floor_cmd, env) for _ in range(args.runs)]
        for fmt in FORMATS:
            out = str(Path(tmp) / f"review.{fmt}")
            cmd = [*base, "review", "--from", START, "--to", END, "--format", fmt, "--output", out]
            runs = [timed(cmd, env) for _ in range(args.runs)]
            results[fmt] = {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}
        floors += [timed(floor_cmd, env) for _ in range(args.runs)]
        with open(Path(tmp) / "review.json") as fh:
            items = json.load(fh)
        trades = sum(len(i["trades"]) for i in items)
        changes = sum(i["changes"]["count"] for i in items)
    floor = statistics.median(floors)
    report = {
        "instruments": len(items),
        "trades": trades,
        "table_changes": changes,
        "floor_changes_json_s": floor,
        "review": {k: {**v, "ratio": v["median_s"] / floor} for k, v in results.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
