"""Writing the journal: the entry record of a new position, edits as events, the exit record at close.

    log_entry(session, position, settings, now=..., fetch=...) -> PositionRecord
    edit(session, position_id, change, at=..., now=...) -> [PositionEvent]
    close(session, position_id, price=..., at=..., settings, now=..., fetch=...) -> PositionRecord
    backfill(session, settings, now=...) -> int

Nothing here commits: the caller's transaction holds the position, its records and its events together.
Positions logged before the journal existed (migration 0007) get their entry record from `backfill`, which
every journal write runs first: computed from the stored history at `opened_at`, marked `recomputed`, with
the market of that time from the candle cache only (a backfill never calls an exchange).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, func, select

from monitor.config.settings import Settings
from monitor.journal.figures import Memo, record_at
from monitor.journal.history import CandleFetch
from monitor.journal.pnl import average_entry, margin_after_add, margin_after_reduce, realised
from monitor.risk.figures import spec_of
from monitor.risk.liquidation import PositionError
from monitor.store.models import Impact, Position, PositionEvent, PositionRecord, RiskEpisode
from snapshots.db import ChangeRecord
from snapshots.errors import NotFound
from snapshots.history import versions
from snapshots.reader import as_utc
from snapshots.timefmt import iso


@dataclass(frozen=True, slots=True)
class Change:
    """One `positions edit`: at most one margin or size action, and/or a new note."""

    add_margin: float | None = None
    remove_margin: float | None = None
    add_size: float | None = None
    reduce_size: float | None = None
    price: float | None = None
    note: str | None = None


def log_entry(
    session: Session, position: Position, settings: Settings, *, now: datetime, fetch: CandleFetch | None = None
) -> PositionRecord:
    """Compute and add the entry record of `position` (flushed, so that it has an id)."""
    rec = record_at(session, position, position.opened_at, settings, now=now, kind="entry", fetch=fetch)
    session.add(rec)
    session.flush()
    return rec


def backfill(session: Session, settings: Settings, *, now: datetime) -> int:
    """Add the missing entry records of every position (marked `recomputed`); how many were added."""
    have = select(PositionRecord.position_id).where(PositionRecord.kind == "entry")
    missing = list(session.exec(select(Position).where(col(Position.id).not_in(have)).order_by(col(Position.id))))
    memo = Memo()  # thousands of positions share a few hundred symbols and versions
    records = []
    with session.no_autoflush:  # nothing read here depends on the records being added
        for p in missing:
            opened = as_utc(p.opened_at)
            assert opened is not None
            rec = record_at(session, p, opened, settings, now=now, kind="entry", fetch=None, memo=memo)
            rec.recomputed = True
            records.append(rec)
    session.add_all(records)
    session.flush()
    return len(missing)


def _open(session: Session, position_id: int) -> Position:
    p = session.get(Position, position_id)
    if p is None:
        raise NotFound(f"no position with id {position_id}")
    if p.closed_at is not None:
        raise NotFound(f"position {position_id} is already closed")
    return p


def _check_at(session: Session, p: Position, at: datetime, now: datetime) -> None:
    """An event's time lies between the position's opening (and its last event) and now."""
    if at > now:
        raise PositionError(f"{iso(at)} is in the future (now {iso(now)})")
    opened = as_utc(p.opened_at)
    assert opened is not None
    if at < opened:
        raise PositionError(f"{iso(at)} is before position {p.id} was opened ({iso(opened)})")
    last = session.exec(
        select(PositionEvent.at).where(PositionEvent.position_id == p.id).order_by(col(PositionEvent.at).desc())
    ).first()
    if last is not None and at < (as_utc(last) or at):
        raise PositionError(f"{iso(at)} is before position {p.id}'s last event ({iso(as_utc(last))})")


def _event(p: Position, at: datetime, kind: str, **values: Any) -> PositionEvent:
    assert p.id is not None
    return PositionEvent(
        position_id=p.id, at=at, kind=kind, size_after=p.size, margin_after=p.margin, entry_price_after=p.entry_price,
        **values,
    )  # fmt: skip


def edit(session: Session, position_id: int, change: Change, *, at: datetime, now: datetime) -> list[PositionEvent]:
    """Apply `change` to an open position, one event per action, in the order margin/size, then note."""
    p = _open(session, position_id)
    _check_at(session, p, at, now)
    actions = [
        (k, v)
        for k, v in (
            ("add_margin", change.add_margin),
            ("remove_margin", change.remove_margin),
            ("add_size", change.add_size),
            ("reduce_size", change.reduce_size),
        )
        if v is not None
    ]
    if len(actions) > 1:
        raise PositionError("give one of --add-margin, --remove-margin, --add-size or --reduce-size per edit")
    if not actions and change.note is None:
        raise PositionError("nothing to edit: give --add-margin, --remove-margin, --add-size, --reduce-size or --note")
    events = []
    if actions:
        kind, value = actions[0]
        events.append(_apply(p, kind, value, change.price, at))
    if change.note is not None:
        p.note = change.note or None
        events.append(_event(p, at, "note", note=change.note))
    session.add(p)
    for e in events:
        session.add(e)
    session.flush()
    return events


def _apply(p: Position, kind: str, value: float, price: float | None, at: datetime) -> PositionEvent:
    """Change `p` by one margin or size action and return its event (the figures follow from `p`)."""
    if not value > 0 or value == float("inf"):
        raise PositionError(f"--{kind.replace('_', '-')} must be a positive number, got {value!r}")
    if kind in ("add_margin", "remove_margin"):
        if p.mode != "isolated" or p.margin is None:
            raise PositionError(f"position {p.id} is cross: it has no margin of its own (`account set`)")
        if price is not None:
            raise PositionError("--price goes with --add-size or --reduce-size")
        margin = p.margin + value if kind == "add_margin" else p.margin - value
        if not margin > 0:
            raise PositionError(f"cannot remove {value:g}: position {p.id} has {p.margin:g} of margin")
        p.margin = margin
        return _event(p, at, "margin_added" if kind == "add_margin" else "margin_removed", amount=value)
    if price is None:
        raise PositionError(f"--{kind.replace('_', '-')} needs --price (the price of that fill)")
    spec = spec_of(p)
    if kind == "add_size":
        if p.mode == "isolated":
            p.margin = margin_after_add(spec, value, price)
        p.entry_price = average_entry(spec, value, price)
        p.size = p.size + value
        return _event(p, at, "size_added", amount=value, price=price)
    if value >= p.size:
        raise PositionError(f"--reduce-size {value:g} is the whole position ({p.size:g}): use `positions close`")
    pnl = realised(spec, value, price)
    if p.mode == "isolated":
        p.margin = margin_after_reduce(spec, value)
    p.size = p.size - value
    return _event(p, at, "size_reduced", amount=value, price=price, pnl=pnl)


def close(
    session: Session,
    position_id: int,
    *,
    price: float | None,
    at: datetime,
    settings: Settings,
    now: datetime,
    fetch: CandleFetch | None = None,
) -> PositionRecord:
    """Close a position at `at` and add its exit record (price and PnL unknown when `price` is None)."""
    p = _open(session, position_id)
    _check_at(session, p, at, now)
    if price is not None and not (price > 0 and price != float("inf")):
        raise PositionError(f"--price must be a positive number, got {price!r}")
    rec = record_at(session, p, at, settings, now=now, kind="exit", fetch=fetch)
    rec.price = price
    unknown = json.loads(rec.unknown)
    if price is None:
        unknown["price"] = unknown["pnl"] = "no exit price given (--price)"
    else:
        rec.pnl = realised(spec_of(p), p.size, price)
    rec.unknown = json.dumps(unknown, sort_keys=True)
    entry = session.exec(
        select(PositionRecord).where(PositionRecord.position_id == p.id, PositionRecord.kind == "entry")
    ).first()
    rec.period = json.dumps(holding_period(session, p, at, entry, rec), sort_keys=True)
    p.closed_at = at
    session.add(p)
    session.add(_event(p, at, "closed", amount=p.size, price=price, pnl=rec.pnl))
    session.add(rec)
    session.flush()
    return rec


def holding_period(
    session: Session, p: Position, until: datetime, entry: PositionRecord | None, exit_: PositionRecord
) -> dict[str, Any]:
    """What changed while `p` was open: its table's versions (`table_changes`, their `valid_from`) and the
    change records detected in the period, its impacts, the tiers it crossed, the worst buffer seen (at
    entry, exit, impacts and the last market check), violations at entry and in impacts, its risk episode."""
    opened = as_utc(p.opened_at)
    assert opened is not None
    assert p.id is not None
    table_changes = [
        iso(v.valid_from) for v in versions(session.connection(), p.source, p.symbol) if opened < v.valid_from <= until
    ]
    impacts = list(
        session.exec(select(Impact).where(Impact.position_id == p.id).order_by(col(Impact.detected_at), col(Impact.id)))
    )
    tiers_seen = [i.new_tier for i in impacts if i.new_tier is not None and i.new_tier != i.old_tier]
    episode = session.get(RiskEpisode, p.id)
    checked = iso(as_utc(episode.checked_at)) if episode else None
    changes = session.exec(
        select(func.count())
        .select_from(ChangeRecord)
        .where(
            ChangeRecord.source == p.source,
            ChangeRecord.symbol == p.symbol,
            col(ChangeRecord.detected_at) > opened,
            col(ChangeRecord.detected_at) <= until,
        )
    ).one()
    buffers = [
        (b, where)
        for b, where in (
            *((i.new_buffer_adr, f"impact at {iso(as_utc(i.detected_at))}") for i in impacts),
            (entry.buffer_adr if entry else None, "entry"),
            (exit_.buffer_adr, "exit"),
            (episode.buffer_adr if episode else None, f"market check at {checked}"),
        )
        if b is not None
    ]
    worst = min(buffers, key=lambda t: t[0]) if buffers else None
    return {
        "table_changes": table_changes,
        "tier_change_records": changes,
        "impacts": len(impacts),
        "tier_changes": tiers_seen,
        "liquidation_price_moves": [
            [i.old_liquidation_price, i.new_liquidation_price] for i in impacts if i.new_liquidation_price is not None
        ],
        "worst_buffer_adr": worst[0] if worst else None,
        "worst_buffer_at": worst[1] if worst else None,
        "violation_at_entry": entry.violation if entry else None,
        "violation_impacts": sum(1 for i in impacts if i.violation),
        "risk_episode": None
        if episode is None
        else {"level": episode.level, "worst": episode.worst, "since": iso(as_utc(episode.since))},
    }
