"""The quarterly review the journal rule asks for: for each instrument traded or watched in a period, its
tier changes, its trades, and the "scaling mistake".

    review(session, Period(start, end), threshold_adr=2.0) -> [instrument dict, …]

Each instrument dict is the `review --json` contract: `source`, `symbol`, `watch` (or None), `changes`,
`trades` and `scaling`. Figures are unformatted numbers; `monitor.journal.review_render` turns the list
into text, Markdown, CSV or HTML.

- `changes` are the stored change records of the symbol detected in the period (the diff's own records,
  so the review names exactly what `tierdrift changes` names), grouped by detection time into table
  changes. Each table change is tightening, loosening or mixed (a rate or amount up, a cap or leverage
  down, a tier removed: tighter). The largest maintenance-rate jump is measured at the traded sizes (each
  trade's entry notional and the watch's size) between the versions before and after.
- `trades` are the positions open at some time in the period, with their entry and exit records
  (`monitor.journal.records`) and what the impacts recorded during them did to the liquidation price and
  the buffer.
- `scaling` places the usual size (the median entry notional, the lower of the two middle ones) and the
  largest against the table in force at the end of the period: its tier, the next tier's floor, the
  headroom, the LP at that size and the LP one tier up (scaled to the next tier's floor at the same entry
  price and margin: `RiskFigures.headroom_liquidation_price`).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from monitor.journal.records import records_for
from monitor.risk.figures import spec_of
from monitor.risk.liquidation import PositionError, liquidation, notional
from monitor.store.models import Impact, Position, Watch
from snapshots.history import StoredChange, VersionInfo, list_changes, versions
from snapshots.model import Change, TierTable, is_inverse
from snapshots.reader import as_utc
from snapshots.tables import load_tables
from snapshots.timefmt import iso

Key = tuple[str, str]

#: Fields whose rise tightens a table for traders; and those whose fall does. The maintenance amount is
#: left out: it follows the rates (cum_n = cum_{n−1} + floor_n × (r_n − r_{n−1})), so a rate raised in tier
#: 1 lowers the amounts above it, and counting those would call every rise "mixed". A floor follows a cap.
_TIGHTER_IF_UP = {"maintenance_margin_rate"}
_TIGHTER_IF_DOWN = {"max_leverage", "cap"}


@dataclass(frozen=True, slots=True)
class Period:
    """The review's period: changes detected in [start, end], positions open at some time in it."""

    start: datetime
    end: datetime


def direction(c: Change) -> int:
    """+1 when `c` tightens margin requirements, −1 when it loosens them, 0 when neither (a listing)."""
    if c.kind in ("tier_removed", "symbol_delisted"):
        return 1
    if c.kind == "tier_added":
        return -1
    if c.kind != "tier_changed" or c.old is None or c.new is None or c.old == c.new:
        return 0
    up = c.new > c.old
    if c.field in _TIGHTER_IF_UP:
        return 1 if up else -1
    if c.field in _TIGHTER_IF_DOWN:
        return -1 if up else 1
    return 0


def instruments(session: Session, period: Period) -> tuple[dict[Key, list[Position]], dict[Key, Watch]]:
    """Positions open at some time in `period`, by instrument, and the watches added by its end."""
    stmt = select(Position).where(
        col(Position.opened_at) <= period.end,
        or_(col(Position.closed_at).is_(None), col(Position.closed_at) >= period.start),
    )
    traded: dict[Key, list[Position]] = {}
    for p in session.exec(stmt.order_by(col(Position.opened_at), col(Position.id))):
        traded.setdefault((p.source, p.symbol), []).append(p)
    watched = {(w.source, w.symbol): w for w in session.exec(select(Watch).where(col(Watch.added_at) <= period.end))}
    return traded, watched


class _Tables:
    """The versions of one symbol, loaded on demand: the table in force at any time."""

    def __init__(self, session: Session, source: str, symbol: str) -> None:
        self._conn = session.connection()
        self._versions: list[VersionInfo] = versions(self._conn, source, symbol)
        self._starts = [_utc(v.valid_from) for v in self._versions]
        self._loaded: dict[int, TierTable] = {}

    def at(self, when: datetime, *, before: bool = False) -> TierTable | None:
        """The table in force at `when` (just before it with `before`), None when not listed then."""
        i = (bisect.bisect_left if before else bisect.bisect_right)(self._starts, when) - 1
        if i < 0:
            return None
        v = self._versions[i]
        ends = as_utc(v.valid_to)
        if ends is not None and (ends < when or (ends == when and not before)):
            return None  # delisted by then
        if v.id not in self._loaded:
            self._loaded.update(load_tables(self._conn, [v.id]))
        return self._loaded[v.id]


def _utc(dt: datetime) -> datetime:
    found = as_utc(dt)
    assert found is not None
    return found


def _rate_at(table: TierTable | None, size: float) -> float | None:
    if table is None:
        return None
    for t in table.tiers:
        if t.holds(size):
            return t.maintenance_margin_rate
    return None


def _change_json(c: StoredChange) -> dict[str, Any]:
    ch = c.change
    return {"kind": ch.kind, "tier": ch.tier, "field": ch.field, "old": ch.old, "new": ch.new}


def changes_of(records: Sequence[StoredChange], tables: _Tables, sizes: Sequence[float]) -> dict[str, Any]:
    """The `changes` object of one instrument from its change records in the period."""
    by_time: dict[datetime, list[StoredChange]] = {}
    for r in records:
        by_time.setdefault(as_utc(r.detected_at) or r.detected_at, []).append(r)
    events, counts, cuts = [], Counter[str](), []
    jump: dict[str, Any] | None = None
    for at, group in by_time.items():
        ways = {direction(r.change) for r in group} - {0}
        way = "mixed" if len(ways) > 1 else {1: "tightening", -1: "loosening"}.get(next(iter(ways), 0), "neutral")
        counts[way] += 1
        for r in group:
            c = r.change
            if c.kind == "tier_changed" and c.field == "max_leverage" and c.old and c.new and c.new < c.old:
                cuts.append({"at": iso(at), "tier": c.tier, "old": c.old, "new": c.new})
        old, new = tables.at(at, before=True), tables.at(at)
        for size in sizes:
            a, b = _rate_at(old, size), _rate_at(new, size)
            if a is not None and b is not None and a != b and (jump is None or abs(b - a) > abs(jump["jump"])):
                jump = {"at": iso(at), "notional": size, "old": a, "new": b, "jump": b - a}
        events.append({"at": iso(at), "direction": way, "records": [_change_json(r) for r in group]})
    kinds = Counter(r.change.kind for r in records)
    return {
        "count": len(events),
        "records": len(records),
        "tightening": counts["tightening"],
        "loosening": counts["loosening"],
        "mixed": counts["mixed"],
        "neutral": counts["neutral"],
        "largest_rate_jump": jump,
        "max_leverage_cuts": cuts,
        "tiers_added": kinds["tier_added"],
        "tiers_removed": kinds["tier_removed"],
        "events": events,
    }


def _impacts(session: Session, ids: Sequence[int]) -> dict[int, list[Impact]]:
    out: dict[int, list[Impact]] = {i: [] for i in ids}
    if not ids:
        return out
    stmt = select(Impact).where(col(Impact.position_id).in_(ids)).order_by(col(Impact.detected_at), col(Impact.id))
    for row in session.exec(stmt):
        out[row.position_id].append(row)
    return out


def during(impacts: Sequence[Impact]) -> dict[str, Any]:
    """How the tier changes during a trade moved its liquidation price and buffer (from its impact rows)."""
    lps = [(i.old_liquidation_price, i.new_liquidation_price) for i in impacts]
    buffers = [b for i in impacts for b in (i.old_buffer_adr, i.new_buffer_adr) if b is not None]
    first_lp = next((o for o, _ in lps if o is not None), None)
    last_lp = next((n for _, n in reversed(lps) if n is not None), None)
    move = None if first_lp is None or last_lp is None else last_lp - first_lp
    return {
        "impacts": len(impacts),
        "liquidation_price_before": first_lp,
        "liquidation_price_after": last_lp,
        "liquidation_price_move": move,
        "buffer_adr_before": next((i.old_buffer_adr for i in impacts if i.old_buffer_adr is not None), None),
        "buffer_adr_after": next((i.new_buffer_adr for i in reversed(impacts) if i.new_buffer_adr is not None), None),
        "worst_buffer_adr": min(buffers) if buffers else None,
        "tier_crossings": sum(1 for i in impacts if i.crosses_tier),
        "new_violations": sum(1 for i in impacts if i.newly_violates),
        "moves": [
            {
                "at": iso(as_utc(i.detected_at)),
                "old_liquidation_price": i.old_liquidation_price,
                "new_liquidation_price": i.new_liquidation_price,
                "old_buffer_adr": i.old_buffer_adr,
                "new_buffer_adr": i.new_buffer_adr,
                "changes": json.loads(i.changes),
            }
            for i in impacts
        ],
    }


def entry_notional(p: Position) -> float:
    """The position's notional at its entry price, in its table's unit (quote; coin for inverse)."""
    return notional(spec_of(p), p.entry_price)


def _trade(
    p: Position, entry: dict[str, Any] | None, exit_: dict[str, Any] | None, moves: list[Impact]
) -> dict[str, Any]:
    return {
        "id": p.id,
        "side": p.side,
        "size_input": p.size_input,
        "entry_price": p.entry_price,
        "margin": p.margin,
        "mode": p.mode,
        "notional": entry_notional(p),
        "note": p.note,
        "opened_at": iso(as_utc(p.opened_at)),
        "closed_at": iso(as_utc(p.closed_at)),
        "entry": entry,
        "exit": exit_,
        "violation_at_entry": None if entry is None else entry.get("violation"),
        "during": during(moves),
    }


def _at_size(p: Position, table: TierTable | None, threshold_adr: float) -> dict[str, Any]:
    """Where `p`'s size sits in `table`: its tier, the next boundary, the headroom, its LP, the LP one up."""
    size = entry_notional(p)
    out: dict[str, Any] = {"position_id": p.id, "notional": size, "entry_price": p.entry_price, "margin": p.margin}
    if table is None:
        return {**out, "reason": f"{p.symbol} is not listed at the end of the period"}
    if p.mode != "isolated":
        return {**out, "reason": "cross margin: the scaling figures are computed for isolated positions only"}
    try:
        f = liquidation(spec_of(p), table, mark=None, adr=None, threshold_adr=threshold_adr)
    except PositionError as exc:
        return {**out, "reason": str(exc)}
    nxt = next((t for t in table.tiers if t.tier > f.current_tier.tier), None)
    return {
        **out,
        "tier": f.current_tier.tier,
        "maintenance_margin_rate": f.current_tier.maintenance_margin_rate,
        "next_tier": None if nxt is None else nxt.tier,
        "next_tier_floor": None if nxt is None else nxt.floor,
        "share_of_tier": None if nxt is None else size / nxt.floor,
        "headroom_notional": f.headroom_notional,
        "liquidation_price": f.liquidation_price,
        "next_tier_liquidation_price": f.headroom_liquidation_price,
        "reason": f.reasons.get("headroom_liquidation_price") or f.reasons.get("liquidation_price"),
    }


def scaling(positions: Sequence[Position], table: TierTable | None, threshold_adr: float) -> dict[str, Any]:
    """The `scaling` object: the usual (median-low) and the largest entry notional against `table`."""
    if not positions:
        return {"usual": None, "largest": None, "reason": "no trades in the period"}
    ranked = sorted(positions, key=entry_notional)
    usual, largest = ranked[(len(ranked) - 1) // 2], ranked[-1]
    return {
        "usual": _at_size(usual, table, threshold_adr),
        "largest": _at_size(largest, table, threshold_adr),
        "reason": None,
    }


def _watch_json(w: Watch | None) -> dict[str, Any] | None:
    if w is None:
        return None
    return {"size_notional": w.size_notional, "note": w.note, "added_at": iso(as_utc(w.added_at))}


def review(session: Session, period: Period, *, threshold_adr: float) -> list[dict[str, Any]]:
    """The review of every instrument traded or watched in `period`, by source then symbol."""
    traded, watched = instruments(session, period)
    ids = [p.id for ps in traded.values() for p in ps if p.id is not None]
    journal = records_for(session, ids)
    moves = _impacts(session, ids)
    out = []
    for key in sorted(set(traded) | set(watched)):
        source, symbol = key
        positions, watch = traded.get(key, []), watched.get(key)
        tables = _Tables(session, source, symbol)
        sizes = sorted({entry_notional(p) for p in positions} | _watch_size(watch, source))
        records = list_changes(session.connection(), source=source, symbol=symbol, since=period.start, until=period.end)
        trades = []
        for p in positions:
            assert p.id is not None
            j = journal[p.id]
            trades.append(_trade(p, j.entry, j.exit, moves[p.id]))
        out.append(
            {
                "source": source,
                "symbol": symbol,
                "watch": _watch_json(watch),
                "changes": changes_of(records, tables, sizes),
                "trades": trades,
                "scaling": scaling(positions, tables.at(period.end), threshold_adr),
            }
        )
    return out


def _watch_size(w: Watch | None, source: str) -> set[float]:
    # A watch's size is a quote notional; inverse tables are in coin, so it does not place in them.
    return {w.size_notional} if w is not None and w.size_notional and not is_inverse(source) else set()
