"""Impacts computed before the poll's write transaction: the same rows, never stale, and no writer held out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.config.settings import Settings
from monitor.risk.impacts import ImpactContext, ImpactHook, make_hook
from monitor.service.polling import poll_source
from monitor.store.models import Account, Impact, MarketData, Position
from snapshots.model import Snapshot, Tier, TierTable, Unit
from snapshots.store import PollResult, apply_snapshot

SRC = "binance-usdm"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SYMBOLS = [f"S{i}/USDT:USDT" for i in range(4)]


def table(symbol: str, scale: float) -> TierTable:
    floors, rates, tiers, amount = [0.0, 10_000.0, 100_000.0, 1e6], [0.005, 0.01, 0.025, 0.05], [], 0.0
    for i, floor in enumerate(floors):
        if i:
            amount += floor * (rates[i] - rates[i - 1]) * scale
        cap = floors[i + 1] if i + 1 < len(floors) else 1e8
        tiers.append(Tier(i + 1, floor, cap, rates[i] * scale, amount, 20.0 / (i + 1)))
    return TierTable(SRC, symbol, Unit.QUOTE, tuple(tiers), raw="{}")


def snapshot(scale: float, at: datetime) -> Snapshot:
    return Snapshot(SRC, at, "test", {s: table(s, scale) for s in SYMBOLS})


def position(i: int, *, cross: bool = False) -> dict[str, Any]:
    sym = SYMBOLS[i % len(SYMBOLS)]
    return {"source": SRC, "symbol": sym, "side": "long" if i % 2 else "short", "entry_price": 100.0 + i,
            "size": 500.0 + 40 * i, "size_input": "qty", "contract_size": 1.0, "mode": "cross" if cross else "isolated",
            "margin": None if cross else 6_000.0, "opened_at": T0}  # fmt: skip


@pytest.fixture
def book(engine: Engine) -> Engine:
    with Session(engine) as s:
        apply_snapshot(s, snapshot(1.0, T0), started_at=T0, duration_ms=0)
        s.execute(insert(Position), [position(i, cross=i % 3 == 0) for i in range(12)])
        fresh = T0 + timedelta(days=1)
        marks = [
            {
                "source": SRC,
                "symbol": sym,
                "mark_price": 103.0,
                "mark_at": fresh,
                "adr": 4.0,
                "adr_days": 14,
                "adr_at": fresh,
            }
            for sym in SYMBOLS
        ]
        s.execute(insert(MarketData), marks)
        s.add(Account(source=SRC, wallet_balance=2e6, updated_at=T0))
        s.commit()
    return engine


def impacts(engine: Engine) -> list[tuple[Any, ...]]:
    tab = Impact.__table__  # type: ignore[attr-defined]
    cols = [c for c in tab.c if c.name not in ("id", "poll_id")]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*cols).order_by(tab.c.position_id))]


def poll(engine: Engine, hooks: list[Any], scale: float = 1.2) -> PollResult:
    at = T0 + timedelta(days=1)
    return poll_source(engine, Settings(), SRC, lambda _s, _st: snapshot(scale, at), clock=lambda: at, hooks=hooks)


class Between:
    """The impact hook with `meanwhile()` run after its `prepare`, as another writer would between the two."""

    def __init__(self, inner: ImpactHook, meanwhile: Callable[[], None]) -> None:
        self.inner, self.meanwhile = inner, meanwhile

    def prepare(self, engine: Engine, snap: Snapshot, started_at: datetime) -> None:
        self.inner.prepare(engine, snap, started_at)
        self.meanwhile()

    def __call__(self, session: Session, result: PollResult) -> None:
        self.inner(session, result)


def test_prepared_rows_are_the_rows_computed_in_the_transaction(book: Engine, db_url: str) -> None:
    hook = make_hook(ImpactContext(2.0))
    result = poll(book, [hook])
    assert result.outcome == "ok" and hook.reused
    prepared = impacts(book)
    assert len(prepared) == 12

    with Session(book) as s:  # the same poll again, priced inside its transaction this time
        s.execute(text("DELETE FROM impact"))
        s.commit()
    in_transaction = make_hook(ImpactContext(2.0))
    with Session(book) as s:
        in_transaction(s, result)
        s.commit()
    assert not in_transaction.reused
    assert impacts(book) == prepared


def test_a_position_added_after_prepare_gets_its_impact(book: Engine) -> None:
    def add() -> None:
        with Session(book) as s:
            s.execute(insert(Position), [position(40)])
            s.commit()

    hook = make_hook(ImpactContext(2.0))
    poll(book, [Between(hook, add)])
    assert not hook.reused  # the open positions moved: computed again, in the transaction
    assert len(impacts(book)) == 13


def test_market_data_refreshed_after_prepare_is_used(book: Engine) -> None:
    def refresh() -> None:
        with Session(book) as s:
            s.execute(text("UPDATE market_data SET mark_price = 90.0"))
            s.commit()

    hook = make_hook(ImpactContext(2.0))
    poll(book, [Between(hook, refresh)])
    assert not hook.reused
    with book.connect() as conn:
        marks = {r[0] for r in conn.execute(text("SELECT mark_price FROM impact"))}
    assert marks == {90.0}


def test_prepare_holds_no_write_lock(book: Engine, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's single writer is the case that can block")
    path = db_url.removeprefix("sqlite:///")
    import sqlite3

    def write_now() -> None:
        conn = sqlite3.connect(path, timeout=0)  # no waiting: a held write lock fails at once
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE account SET wallet_balance = wallet_balance")
        conn.execute("COMMIT")
        conn.close()

    hook = make_hook(ImpactContext(2.0))
    poll(book, [Between(hook, write_now)])
    assert hook.reused and len(impacts(book)) == 12


def test_an_unchanged_poll_prepares_nothing(book: Engine) -> None:
    hook = make_hook(ImpactContext(2.0))
    result = poll(book, [hook], scale=1.0)
    assert result.outcome == "ok" and not result.changes
    assert hook.prepared is None and impacts(book) == []


def test_pricing_leaves_the_garbage_collector_as_it_found_it(book: Engine) -> None:
    import gc

    assert gc.isenabled()
    hook = make_hook(ImpactContext(2.0))
    poll(book, [hook])
    assert gc.isenabled() and len(impacts(book)) == 12
    gc.disable()
    try:
        poll(book, [make_hook(ImpactContext(2.0))], scale=1.3)
        assert not gc.isenabled()  # not switched on behind the back of whoever turned it off
    finally:
        gc.enable()
