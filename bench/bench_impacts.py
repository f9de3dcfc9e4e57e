"""Benchmark: recompute 10,000 open positions after a market-wide change of 700 symbols (target ≤ 2 s).

Set-up (not timed): a SQLite store with a baseline of 700 generated USDⓈ-M tables (8 tiers each, shaped
like the real ones), 10,000 open positions spread over them (9,000 isolated, 1,000 cross on one
account), and cached marks and ADRs. Timed: a poll in which every table changes (all maintenance rates
×1.1, then back), processed as `tierdrift poll` does it in one transaction: store the versions and
changes, then the impact hook (old and new figures for every position, impact rows written).

Baseline, in the same run: the naive way, one table lookup per position per side and one ORM insert per
impact, with TMM1/UPNL1 recomputed from all other cross positions for each cross position.

Usage: python bench/bench_impacts.py [--positions N] [--symbols N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from monitor.risk.figures import spec_of
from monitor.risk.impacts import ImpactContext, load_market, make_hook, wallets
from monitor.risk.liquidation import CrossAccount, liquidation, maintenance_margin, unrealised_pnl
from monitor.store.database import open_engine
from monitor.store.models import Account, Impact, MarketData, Position
from snapshots.history import table_at
from snapshots.model import Snapshot, Tier, TierTable, Unit
from snapshots.store import ApplyPolicy, apply_snapshot

ROOT = Path(__file__).resolve().parents[1]
SRC = "binance-usdm"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FLOORS = [0, 5_000, 25_000, 100_000, 250_000, 1_000_000, 5_000_000, 20_000_000]
RATES = [0.005, 0.0065, 0.01, 0.02, 0.05, 0.1, 0.125, 0.25]
LEVERAGE = [75, 50, 25, 20, 10, 5, 4, 2]


def table(symbol: str, scale: float) -> TierTable:
    tiers, amount = [], 0.0
    for i, floor in enumerate(FLOORS):
        rate = RATES[i] * scale
        if i:
            amount += floor * (rate - RATES[i - 1] * scale)
        cap = FLOORS[i + 1] if i + 1 < len(FLOORS) else 50_000_000
        tiers.append(Tier(i + 1, float(floor), float(cap), rate, amount, float(LEVERAGE[i])))
    return TierTable(SRC, symbol, Unit.QUOTE, tuple(tiers), raw="{}")


def snapshot(symbols: list[str], scale: float, at: datetime) -> Snapshot:
    return Snapshot(SRC, at, "bench", {s: table(s, scale) for s in symbols})


def setup(url: str, n_symbols: int, n_positions: int) -> tuple[Any, list[str]]:
    engine = open_engine(url)
    symbols = [f"S{i:03d}/USDT:USDT" for i in range(n_symbols)]
    rng = random.Random(42)
    with Session(engine) as s:
        apply_snapshot(s, snapshot(symbols, 1.0, T0), started_at=T0, duration_ms=0, policy=ApplyPolicy())
        prices = {sym: rng.uniform(0.5, 50_000) for sym in symbols}
        rows = []
        for i in range(n_positions):
            sym = symbols[i % n_symbols]
            price = prices[sym]
            notional = rng.choice([2_000, 20_000, 80_000, 200_000, 600_000])
            cross = i % 10 == 0
            rows.append(
                {
                    "source": SRC, "symbol": sym, "side": rng.choice(["long", "short"]), "entry_price": price,
                    "size": notional / price, "size_input": f"notional={notional}", "contract_size": 1.0,
                    "mode": "cross" if cross else "isolated", "margin": None if cross else notional / 8,
                    "opened_at": T0,
                }
            )  # fmt: skip
        s.execute(insert(Position), rows)
        s.execute(
            insert(MarketData),
            [
                {"source": SRC, "symbol": sym, "mark_price": p * rng.uniform(0.97, 1.03), "mark_at": T0,
                 "adr": p * 0.03, "adr_days": 14, "adr_at": T0}
                for sym, p in prices.items()
            ],
        )  # fmt: skip
        s.add(Account(source=SRC, wallet_balance=50_000_000, updated_at=T0))
        s.commit()
    return engine, symbols


def fresh_market(engine: Any, at: datetime) -> None:
    """Marks and ADRs as if just refreshed (the daemon's market job), so no figure is left unknown."""
    with Session(engine) as s:
        s.execute(update(MarketData).values(mark_at=at, adr_at=at))
        s.commit()


def timed_poll(engine: Any, symbols: list[str], scale: float, at: datetime) -> tuple[float, float, int]:
    """(store ms, impacts ms, impacts written) for one changed poll, committed like `tierdrift poll`."""
    fresh_market(engine, at)
    hook = make_hook(ImpactContext(2.0))
    with Session(engine) as s:
        t0 = time.perf_counter()
        result = apply_snapshot(s, snapshot(symbols, scale, at), started_at=at, duration_ms=0, policy=ApplyPolicy())
        t1 = time.perf_counter()
        hook(s, result)
        s.commit()
        t2 = time.perf_counter()
        written = s.execute(
            select(func.count()).select_from(Impact).where(Impact.poll_id == result.poll_id)
        ).scalar_one()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, written


def naive_poll(engine: Any, symbols: list[str], scale: float, at: datetime) -> tuple[float, int]:
    """The naive impact step: per-position lookups, O(n²) cross sums, one ORM insert per impact."""
    fresh_market(engine, at)
    with Session(engine) as s:
        result = apply_snapshot(s, snapshot(symbols, scale, at), started_at=at, duration_ms=0, policy=ApplyPolicy())
        s.commit()
    t0 = time.perf_counter()
    with Session(engine) as s:
        conn = s.connection()
        positions = list(s.exec(select(Position).where(Position.closed_at.is_(None))).scalars())  # type: ignore[call-overload, union-attr]
        market = load_market(s, {(p.source, p.symbol) for p in positions}, at)
        money = wallets(s)
        crosses = [p for p in positions if p.mode == "cross"]
        n = 0
        for p in positions:
            figures = []
            for when in (at - timedelta(microseconds=1), at):
                tab, _ = table_at(conn, p.source, p.symbol, when)
                m = market[(p.source, p.symbol)]
                cross = None
                if p.mode == "cross":
                    others = [o for o in crosses if o.id != p.id]
                    tmm = sum(
                        maintenance_margin(spec_of(o), table_at(conn, o.source, o.symbol, when)[0],
                                           market[(o.source, o.symbol)].mark or 0)
                        for o in others[:50]  # capped: the full O(n²) would take minutes
                    )  # fmt: skip
                    upnl = sum(unrealised_pnl(spec_of(o), market[(o.source, o.symbol)].mark or 0) for o in others)
                    cross = CrossAccount(money[p.source], tmm, upnl)
                figures.append(liquidation(spec_of(p), tab, mark=m.mark, adr=m.adr, cross=cross))
            new_lp = figures[1].liquidation_price
            impact = Impact(position_id=p.id or 0, poll_id=result.poll_id, detected_at=at, source=p.source,
                            symbol=p.symbol, changes="[]", new_liquidation_price=new_lp)  # fmt: skip
            s.add(impact)
            n += 1
        s.commit()
    return (time.perf_counter() - t0) * 1000, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--symbols", type=int, default=700)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "impacts.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, symbols = setup(f"sqlite:///{Path(tmp) / 'b.db'}", args.symbols, args.positions)
        stores, hooks, totals = [], [], []
        for run in range(args.runs):
            at = T0 + timedelta(minutes=5 * (run + 1))
            store_ms, impact_ms, written = timed_poll(engine, symbols, 1.1 if run % 2 == 0 else 1.0, at)
            assert written == args.positions, written
            stores.append(store_ms)
            hooks.append(impact_ms)
            totals.append(store_ms + impact_ms)
        at = T0 + timedelta(days=1)
        naive_ms, naive_n = naive_poll(engine, symbols, 1.2, at)
        engine.dispose()
    results = {
        "positions": args.positions,
        "symbols_changed": args.symbols,
        "runs": args.runs,
        "store_median_ms": round(statistics.median(stores), 1),
        "impacts_median_ms": round(statistics.median(hooks), 1),
        "poll_total_median_ms": round(statistics.median(totals), 1),
        "naive_impacts_ms": round(naive_ms, 1),
        "naive_over_ours": round(naive_ms / statistics.median(hooks), 1),
        "naive_positions": naive_n,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
