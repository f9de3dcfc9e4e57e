"""Recompute open positions when a poll or an import changes their symbol's table.

`make_hook` gives a poll hook: it runs inside the poll's transaction, so the change records and the
impacts they cause are committed together (and, in the alerts layer, the outbox rows too).

Pricing 100,000 positions takes seconds; a poll's write transaction must not hold every other writer
(a CLI `positions add`) out that long. So the hook also has `prepare`, which the poll calls before its
write transaction with the fetched snapshot: on a read connection it works out which tables will change
(the stored hashes), prices the positions under the old and new tables and keeps the rows. Inside the
transaction the hook uses them only if nothing they were computed from has moved since (the same
symbols changing from the same to the same hashes, the same open positions, wallets and market data);
otherwise it computes them there, as before. Either way they are written in the poll's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.config.settings import Settings
from monitor.risk.columns import POSITION_COLUMNS, PositionRow
from monitor.risk.current import Freshness as Freshness  # re-exported: its users import it from here
from monitor.risk.current import bulk, market_of
from monitor.risk.current import freshness as freshness
from monitor.risk.figures import Assessment, Key, LoggedPosition, Market, assess, assess_under
from monitor.store.models import Account, Impact, MarketData, Position
from snapshots.diff import diff_tables
from snapshots.history import tables_at
from snapshots.model import Change, Snapshot, TierTable
from snapshots.store import PollResult, SymbolUpdate, current_versions
from snapshots.tables import load_tables

#: Called with the new impact rows, inside the same transaction (the alerts layer adds its outbox here).
ImpactSink = Callable[[Session, PollResult, Sequence[dict[str, Any]]], None]


@dataclass(frozen=True, slots=True)
class ImpactContext:
    threshold_adr: float
    sinks: Sequence[ImpactSink] = ()
    freshness: Freshness = field(default_factory=Freshness)


def load_market(
    session: Session, keys: set[Key], now: datetime, freshness: Freshness | None = None
) -> dict[Key, Market]:
    """The cached market data of `keys`, with the reason for whatever is missing or stale."""
    if not keys:
        return {}
    # The ORM, not `current.read_market`: a session may hold market data it has not flushed yet.
    stmt = select(MarketData).where(col(MarketData.source).in_({s for s, _ in keys}))
    rows = ((r.source, r.symbol, r.mark_price, r.mark_at, r.adr, r.adr_at, r.error) for r in session.exec(stmt))
    return market_of(rows, keys, now, freshness or Freshness())


def wallets(session: Session) -> dict[str, float]:
    return {a.source: a.wallet_balance for a in session.exec(select(Account))}


def _open_on(session: Session, source: str, symbols: set[str]) -> list[PositionRow]:
    """The open positions a change of `symbols` touches, as plain rows (an ORM object costs ten times more)."""
    table = Position.__table__  # type: ignore[attr-defined]
    stmt = sa_select(*(table.c[name] for name in POSITION_COLUMNS)).where(
        table.c.source == source, table.c.closed_at.is_(None)
    )
    rows = [PositionRow(*r) for r in session.execute(stmt)]
    cross_touched = any(p.mode == "cross" and p.symbol in symbols for p in rows)
    # A cross position's liquidation price depends on every other cross position of the account.
    return [p for p in rows if p.symbol in symbols or (cross_touched and p.mode == "cross")]


def changes_json(changes: Sequence[Change]) -> str:
    return json.dumps([{"kind": c.kind, "tier": c.tier, "field": c.field, "old": c.old, "new": c.new} for c in changes])


def impact_row(p: LoggedPosition, old: Assessment, new: Assessment, causes: str, result: PollResult) -> dict[str, Any]:
    """One impact row; `causes` is the JSON list of the change records behind it (see `changes_json`)."""
    of, nf = old.figures, new.figures
    old_violation = bool(of and of.violation)
    new_violation = None if nf is None else nf.violation
    old_tiers = (of.tier.tier if of and of.tier else None, of.current_tier.tier if of else None)
    new_tiers = (nf.tier.tier if nf and nf.tier else None, nf.current_tier.tier if nf else None)
    reasons = {f"new.{k}": v for k, v in new.reasons.items()}
    if new.not_computed:
        reasons["new"] = new.not_computed
    if old.not_computed:
        reasons["old"] = old.not_computed
    return {
        "position_id": p.id,
        "poll_id": result.poll_id,
        "detected_at": result.started_at,
        "source": p.source,
        "symbol": p.symbol,
        "changes": causes,
        "old_tier": old_tiers[0],
        "new_tier": new_tiers[0],
        "old_rate": of.maintenance_margin_rate if of else None,
        "new_rate": nf.maintenance_margin_rate if nf else None,
        "old_amount": of.maintenance_amount if of else None,
        "new_amount": nf.maintenance_amount if nf else None,
        "old_liquidation_price": of.liquidation_price if of else None,
        "new_liquidation_price": nf.liquidation_price if nf else None,
        "old_distance": of.distance if of else None,
        "new_distance": nf.distance if nf else None,
        "old_buffer_adr": of.buffer_adr if of else None,
        "new_buffer_adr": nf.buffer_adr if nf else None,
        "mark_price": new.mark,
        "adr": new.adr,
        "newly_violates": bool(new_violation) and not old_violation,
        "crosses_tier": old_tiers != new_tiers and None not in old_tiers + new_tiers,
        "violation": new_violation,
        "reasons": json.dumps(reasons) if reasons else None,
    }


def compute_impacts(
    session: Session, result: PollResult, threshold_adr: float, fresh: Freshness | None = None
) -> list[dict[str, Any]]:
    """Impact rows for every open position on a symbol this poll changed (not yet written)."""
    with bulk():
        return _compute(session, result, threshold_adr, fresh)


def _compute(
    session: Session, result: PollResult, threshold_adr: float, fresh: Freshness | None
) -> list[dict[str, Any]]:
    changed = {u.symbol: u for u in result.updates if u.changes}
    if result.outcome != "ok" or not changed or result.baseline:
        return []
    positions = _open_on(session, result.source, set(changed))
    if not positions:
        return []
    symbols = {p.symbol for p in positions}
    unchanged = symbols - set(changed)
    current: dict[Key, TierTable] = {}
    if unchanged:
        at = tables_at(session.connection(), result.source, result.started_at)
        current = {(result.source, s): at[s] for s in unchanged if s in at}
    old_tables: dict[Key, TierTable] = dict(current)
    new_tables: dict[Key, TierTable] = dict(current)
    for sym, u in changed.items():
        if u.old is not None:
            old_tables[(result.source, sym)] = u.old
        if u.new is not None:
            new_tables[(result.source, sym)] = u.new
    market = load_market(session, {(p.source, p.symbol) for p in positions}, result.started_at, fresh)
    money = wallets(session)
    before, after = assess_under(positions, [old_tables, new_tables], market, money, threshold_adr=threshold_adr)
    causes = {sym: changes_json(u.changes) for sym, u in changed.items()}  # shared by a symbol's positions
    rows = []
    for p in positions:
        assert p.id is not None
        rows.append(impact_row(p, before[p.id], after[p.id], causes.get(p.symbol, "[]"), result))
    return rows


Inputs = tuple[Any, ...]


def _inputs(session: Session, source: str) -> Inputs:
    """What a source's impacts are computed from besides the tables, in a form cheap to read and compare.

    Positions are only ever added or closed, so their count, highest id and id sum on the source tell
    whether the open set moved; wallets and the source's market data are read whole (a few hundred rows).
    """
    pos = Position.__table__  # type: ignore[attr-defined]
    md = MarketData.__table__  # type: ignore[attr-defined]
    ids = (
        sa_select(func.count(pos.c.id), func.max(pos.c.id), func.sum(pos.c.id))
        .where(pos.c.source == source, pos.c.closed_at.is_(None))
    )  # fmt: skip
    market = sa_select(md.c.symbol, md.c.mark_price, md.c.mark_at, md.c.adr, md.c.adr_at, md.c.error).where(
        md.c.source == source
    )
    return (
        tuple(session.execute(ids).one()),
        tuple(sorted(wallets(session).items())),
        tuple(sorted(tuple(r) for r in session.execute(market))),
    )


def _changing(updates: Sequence[SymbolUpdate]) -> frozenset[tuple[str, str | None, str | None]]:
    return frozenset(
        (u.symbol, u.old.hash if u.old else None, u.new.hash if u.new else None) for u in updates if u.changes
    )


@dataclass(frozen=True, slots=True)
class _Prepared:
    source: str
    started_at: datetime
    changing: frozenset[tuple[str, str | None, str | None]]
    inputs: Inputs
    rows: list[dict[str, Any]]


def prepare_impacts(
    session: Session, snap: Snapshot, started_at: datetime, threshold_adr: float, fresh: Freshness | None = None
) -> _Prepared | None:
    """The impact rows `snap` will cause if applied at `started_at` as things stand (read only; None when
    there is nothing to price: a first snapshot, or no table changing)."""
    current = current_versions(session, snap.source)
    if not current:
        return None
    changed = [s for s, t in snap.tables.items() if s not in current or current[s][1] != t.hash]
    gone = [s for s in current if s not in snap.tables]
    old = load_tables(session, [current[s][0] for s in changed + gone if s in current])
    updates = []
    for sym in changed + gone:
        before = old.get(current[sym][0]) if sym in current else None
        after = snap.tables.get(sym)
        updates.append(SymbolUpdate(sym, before, after, tuple(diff_tables(before, after))))
    if not any(u.changes for u in updates):
        return None
    inputs = _inputs(session, snap.source)
    provisional = PollResult(0, snap.source, "poll", "ok", started_at, updates=tuple(updates))
    rows = compute_impacts(session, provisional, threshold_adr, fresh)
    return _Prepared(snap.source, started_at, _changing(updates), inputs, rows)


class ImpactHook:
    """The poll hook that writes impacts (and hands them to `ctx.sinks`) in the poll's transaction;
    `prepare` computes them beforehand, outside it (module docstring)."""

    def __init__(self, ctx: ImpactContext) -> None:
        self.ctx = ctx
        self.prepared: _Prepared | None = None
        self.reused = False  # whether the last call wrote the prepared rows (for the tests)

    def prepare(self, engine: Engine, snap: Snapshot, started_at: datetime) -> None:
        """Price the positions `snap` will touch, on a read connection of `engine`, before the poll writes."""
        self.prepared = None
        try:
            with Session(engine) as session:
                self.prepared = prepare_impacts(session, snap, started_at, self.ctx.threshold_adr, self.ctx.freshness)
        except Exception:  # noqa: S110 - only a head start: the hook computes in the transaction instead
            pass

    def __call__(self, session: Session, result: PollResult) -> None:
        rows = self._still_valid(session, result)
        self.reused = rows is not None
        if rows is None:
            rows = compute_impacts(session, result, self.ctx.threshold_adr, self.ctx.freshness)
        if rows:
            # Core executemany on the table: the ORM's bulk path costs a third more for 10,000 rows.
            with bulk():  # its parameters are 100,000 small dicts too, under the write lock
                session.execute(insert(Impact.__table__), rows)  # type: ignore[attr-defined]
        for sink in self.ctx.sinks:
            sink(session, result, rows)

    def _still_valid(self, session: Session, result: PollResult) -> list[dict[str, Any]] | None:
        """The prepared rows for `result` if what they were computed from is still what the poll applied."""
        prep, self.prepared = self.prepared, None
        if (
            prep is None
            or result.outcome != "ok"
            or result.baseline
            or (prep.source, prep.started_at) != (result.source, result.started_at)
            or prep.changing != _changing(result.updates)
            or prep.inputs != _inputs(session, result.source)
        ):
            return None
        for row in prep.rows:
            row["poll_id"] = result.poll_id
        return prep.rows


def make_hook(ctx: ImpactContext) -> ImpactHook:
    """The poll hook that writes impacts in the poll's transaction (`ImpactHook`)."""
    return ImpactHook(ctx)


def assess_now(
    session: Session, positions: Sequence[LoggedPosition], settings: Settings, now: datetime
) -> dict[int, Assessment]:
    """Current figures of `positions`: the tables in force now, the cached (fresh) market data, the wallets."""
    tables: dict[Key, TierTable] = {}
    for source in {p.source for p in positions}:
        for sym, table in tables_at(session.connection(), source, now).items():
            tables[(source, sym)] = table
    market = load_market(session, {(p.source, p.symbol) for p in positions}, now, freshness(settings))
    with bulk():
        return assess(positions, tables, market, wallets(session), threshold_adr=settings.violation_threshold_adr)
