"""Apply snapshots to the store: compare by hash, version what changed, record every poll.

The caller owns the transaction: these functions add to a `Session` and never commit, so that a poll,
its versions, its change records and (in later layers) the impacts and alerts they cause land in one
commit or not at all.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from snapshots import catalog
from snapshots.catalog import poll as pl
from snapshots.catalog import table_version as tv
from snapshots.db import Poll, TableVersion
from snapshots.diff import diff_tables
from snapshots.errors import OutOfOrder
from snapshots.model import Change, Snapshot, TierTable
from snapshots.reader import as_utc
from snapshots.tables import load_tables


@dataclass(frozen=True, slots=True)
class SymbolUpdate:
    """A symbol whose table changed in a poll, with both sides (None: listed or delisted)."""

    symbol: str
    old: TierTable | None
    new: TierTable | None
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class PollResult:
    poll_id: int
    source: str
    kind: str
    outcome: str  # ok | failed | quarantined
    started_at: datetime
    previous_poll_at: datetime | None = None
    duration_ms: float = 0.0
    symbols: int = 0
    tiers_written: int = 0
    baseline: bool = False  # the first snapshot of a source: stored, but nothing to compare with
    error: str | None = None
    warnings: tuple[str, ...] = ()
    updates: tuple[SymbolUpdate, ...] = field(default=())
    error_kind: str | None = None  # a short label for metrics, e.g. "fetch_timeout", "invalid_table"

    @property
    def changes(self) -> list[Change]:
        return [c for u in self.updates for c in u.changes]


@dataclass(frozen=True, slots=True)
class ApplyPolicy:
    """When a poll that drops many symbols at once is held back instead of applied."""

    max_vanish_share: float | None = 0.10  # None: never quarantine (archives a user imports)
    confirmations: int = 3  # this many consecutive polls agreeing on the same symbol set apply it
    accept_removals: bool = False


def _dumps(items: Iterable[str]) -> str | None:
    items = list(items)
    return json.dumps(items, ensure_ascii=False) if items else None


def last_success_at(session: Session, source: str) -> datetime | None:
    stmt = select(func.max(pl.c.started_at)).where(pl.c.source == source, pl.c.outcome == "ok")
    return as_utc(session.execute(stmt).scalar_one_or_none())


def record_failure(
    session: Session,
    source: str,
    started_at: datetime,
    duration_ms: float,
    reason: str,
    *,
    kind: str = "poll",
    provenance: str | None = None,
) -> PollResult:
    """Record a poll that produced no usable snapshot. It never touches versions."""
    poll = Poll(
        source=source,
        kind=kind,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome="failed",
        provenance=provenance,
        error=reason,
    )
    session.add(poll)
    session.flush()
    assert poll.id is not None
    return PollResult(poll.id, source, kind, "failed", started_at, duration_ms=duration_ms, error=reason)


def _current(session: Session, source: str) -> dict[str, tuple[int, str]]:
    stmt = select(tv.c.symbol, tv.c.id, tv.c.content_hash).where(tv.c.source == source, tv.c.valid_to.is_(None))
    return {sym: (vid, h) for sym, vid, h in session.execute(stmt)}


def _symbols_hash(symbols: Iterable[str]) -> str:
    return hashlib.blake2b("\n".join(sorted(symbols)).encode(), digest_size=16).hexdigest()


def _confirmed(session: Session, source: str, symbols_hash: str, needed: int) -> bool:
    """True when the last `needed - 1` polls were quarantined with exactly this symbol set."""
    if needed <= 1:
        return True
    stmt = (
        select(pl.c.outcome, pl.c.symbols_hash)
        .where(pl.c.source == source, pl.c.outcome != "failed")
        .order_by(pl.c.started_at.desc(), pl.c.id.desc())
        .limit(needed - 1)
    )
    recent = session.execute(stmt).all()
    return len(recent) == needed - 1 and all(o == "quarantined" and h == symbols_hash for o, h in recent)


def apply_snapshot(
    session: Session,
    snap: Snapshot,
    *,
    started_at: datetime,
    duration_ms: float,
    kind: str = "poll",
    policy: ApplyPolicy | None = None,
) -> PollResult:
    """Record one successful fetch: compare it with the current versions and store what changed."""
    policy = policy or ApplyPolicy()
    source, at = snap.source, snap.taken_at
    previous = last_success_at(session, source)
    if previous is not None and at < previous:
        raise OutOfOrder(
            f"{source}: snapshot at {at.isoformat()}Z is older than the stored history "
            f"(last snapshot {previous.isoformat()}Z); import in date order"
        )
    current = _current(session, source)
    vanished = sorted(set(current) - set(snap.tables))
    sym_hash = _symbols_hash(snap.tables)
    poll = Poll(
        source=source,
        kind=kind,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome="ok",
        provenance=snap.provenance,
        symbols=len(snap.tables),
        symbols_hash=sym_hash,
    )
    if (
        current
        and policy.max_vanish_share is not None
        and not policy.accept_removals
        and len(vanished) / len(current) > policy.max_vanish_share
    ):
        if not _confirmed(session, source, sym_hash, policy.confirmations):
            share = len(vanished) / len(current)
            shown = ", ".join(vanished[:5]) + (", …" if len(vanished) > 5 else "")
            poll.outcome = "quarantined"
            poll.error = (
                f"{len(vanished)} of {len(current)} symbols ({share:.0%}) vanished at once ({shown}); "
                f"not applied (threshold {policy.max_vanish_share:.0%})"
            )
            session.add(poll)
            session.flush()
            assert poll.id is not None
            return PollResult(
                poll.id,
                source,
                kind,
                "quarantined",
                started_at,
                previous,
                duration_ms,
                len(snap.tables),
                error=poll.error,
            )
        poll.warnings = _dumps(
            [f"{len(vanished)} symbols vanished; applied after {policy.confirmations} consecutive polls agreed"]
        )

    session.add(poll)
    session.flush()
    assert poll.id is not None
    baseline = not current and not _has_history(session, source)
    changed = [s for s, t in snap.tables.items() if s not in current or current[s][1] != t.hash]
    old_tables = load_tables(session, [current[s][0] for s in changed + vanished if s in current])
    updates: list[SymbolUpdate] = []
    tier_rows: list[dict[str, object]] = []
    versions: list[tuple[TableVersion, TierTable]] = []
    for sym in changed + vanished:
        old = old_tables.get(current[sym][0]) if sym in current else None
        new = snap.tables.get(sym)
        if sym in current:
            session.execute(update(tv).where(tv.c.id == current[sym][0]).values(valid_to=at))
        if new is not None:
            v = TableVersion(
                source=source,
                symbol=sym,
                valid_from=at,
                content_hash=new.hash,
                unit=new.unit.value,
                poll_id=poll.id,
                previous_poll_at=previous,
                provenance=snap.provenance,
                notional_coef=new.notional_coef,
                warnings=_dumps(new.warnings),
                raw=zlib.compress(new.raw.encode(), 6),
            )
            session.add(v)
            versions.append((v, new))
        changes = () if baseline else tuple(diff_tables(old, new))
        updates.append(SymbolUpdate(sym, old, new, changes))
    session.flush()
    for v, table in versions:
        tier_rows.extend(
            {
                "version_id": v.id,
                "tier": t.tier,
                "floor": t.floor,
                "cap": t.cap,
                "maintenance_margin_rate": t.maintenance_margin_rate,
                "maintenance_amount": t.maintenance_amount,
                "max_leverage": t.max_leverage,
                "initial_margin_rate": t.initial_margin_rate,
            }
            for t in table.tiers
        )
    if tier_rows:
        session.execute(insert(catalog.tier_row), tier_rows)
    change_rows = [
        {
            "poll_id": poll.id,
            "source": source,
            "symbol": c.symbol,
            "detected_at": at,
            "previous_poll_at": previous,
            "kind": c.kind,
            "tier": c.tier,
            "field": c.field,
            "old": c.old,
            "new": c.new,
        }
        for u in updates
        for c in u.changes
    ]
    if change_rows:
        session.execute(insert(catalog.change_record), change_rows)
    # Table warnings are kept on their version; a poll repeats only those of the tables it changed.
    warnings = list(snap.warnings) + [w for sym in changed for w in _prefixed(snap.tables[sym])]
    poll.symbols_changed = len(updates)
    poll.changes = len(change_rows)
    poll.tiers_written = len(tier_rows)
    if warnings:
        poll.warnings = _dumps(([*json.loads(poll.warnings)] if poll.warnings else []) + warnings)
    session.add(poll)
    session.flush()
    return PollResult(
        poll.id,
        source,
        kind,
        "ok",
        started_at,
        previous,
        duration_ms,
        len(snap.tables),
        len(tier_rows),
        baseline,
        None,
        tuple(warnings),
        tuple(updates),
    )


def _prefixed(table: TierTable) -> list[str]:
    return [f"{table.symbol}: {w}" for w in table.warnings]


def _has_history(session: Session, source: str) -> bool:
    return session.execute(select(tv.c.id).where(tv.c.source == source).limit(1)).first() is not None
