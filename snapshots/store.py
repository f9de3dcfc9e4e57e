"""Apply snapshots to the store: compare by hash, version what changed, record every poll.

The caller owns the transaction: these functions add to a `Session` and never commit, so that a poll,
its versions, its change records and (in later layers) the impacts and alerts they cause land in one
commit or not at all.

Storage grows with changes, not with polls: `record_poll` counts a poll that changed nothing (or failed as
the previous one did) in the source's latest row, a run with `repeats` and `last_at`, instead of adding a
row. The runs account for every poll that ran, and `last_at` of the last successful run is exactly the
last poll that saw the tables as they were, the `previous_poll_at` bound of the changes found next.

A table that cannot be applied for a reason that is not bad data (a bug, a database error) raises
`ApplyFailed` naming its symbol, so that the caller records a failed poll that says which table it was.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlmodel import Session

from snapshots import catalog
from snapshots.bulk import insert_many
from snapshots.catalog import poll as pl
from snapshots.catalog import table_version as tv
from snapshots.db import Poll, TableVersion
from snapshots.diff import diff_tables
from snapshots.errors import OutOfOrder, SnapshotError, TierdriftError
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
    retry_at: datetime | None = None  # failed: the exchange asked not to be called again before this

    @property
    def changes(self) -> list[Change]:
        return [c for u in self.updates for c in u.changes]


class ApplyFailed(SnapshotError):
    """Applying one symbol's table raised something unexpected (a bug or a database error, not bad data)."""

    def __init__(self, symbol: str, cause: Exception) -> None:
        # SQLAlchemy's message appends the statement and its parameters; the driver's own says what failed.
        inner = getattr(cause, "orig", None)
        detail = " ".join(str(inner if isinstance(inner, BaseException) else cause).split())[:200] or "(no message)"
        super().__init__(f"{symbol}: unexpected {type(cause).__name__} while applying its table: {detail}")
        self.symbol = symbol
        self.cause = cause


@dataclass(frozen=True, slots=True)
class RestRequest:
    """The latest poll of a source asked to stay away from the exchange until `until`."""

    until: datetime
    reason: str  # that poll's reason
    kind: str | None  # that poll's error kind ("resting" when it was itself a resting poll)


@dataclass(frozen=True, slots=True)
class ApplyPolicy:
    """When a poll that drops many symbols at once is held back instead of applied."""

    max_vanish_share: float | None = 0.10  # None: never quarantine (archives a user imports)
    confirmations: int = 3  # this many consecutive polls agreeing on the same symbol set apply it
    accept_removals: bool = False


#: The version table itself (the Core handle in `catalog` has no primary key to return): versions are inserted
#: as rows, not ORM objects, whose construction and flush cost more than the statement.
_VERSION_TABLE: Table = TableVersion.__table__  # type: ignore[attr-defined]
_TIER_COLUMNS = ("version_id", "tier", "floor", "cap", "maintenance_margin_rate", "maintenance_amount",
                 "max_leverage", "initial_margin_rate")  # fmt: skip
_CHANGE_COLUMNS = ("symbol", "kind", "tier", "field", "old", "new")  # and the poll's: `insert_many(same=...)`


def _dumps(items: Iterable[str]) -> str | None:
    items = list(items)
    return json.dumps(items, ensure_ascii=False) if items else None


def last_success_at(session: Session, source: str) -> datetime | None:
    """When the last successful poll of `source` started (the end of its latest successful run)."""
    stmt = select(func.max(pl.c.last_at)).where(pl.c.source == source, pl.c.outcome == "ok")
    return as_utc(session.execute(stmt).scalar_one_or_none())


#: The columns two polls must agree on to be one run: the same outcome, for the same reason, of the same set.
_RUN_KEY = ("kind", "outcome", "provenance", "symbols", "symbols_hash", "error", "error_kind", "retry_at", "warnings")
#: Outcomes that roll up. A quarantined poll stays a row of its own: the confirmations count those rows.
_ROLLED_OUTCOMES = ("ok", "failed")


def _same_run(row: Any, poll: Poll) -> bool:
    """True when `poll` repeats the run `row` (the source's latest row): nothing changed by either."""
    if poll.outcome not in _ROLLED_OUTCOMES or poll.symbols_changed or poll.changes or poll.tiers_written:
        return False
    if row.symbols_changed or row.changes or row.tiers_written:
        return False
    mine = {k: getattr(poll, k) for k in _RUN_KEY} | {"retry_at": as_utc(poll.retry_at)}
    theirs = {k: getattr(row, k) for k in _RUN_KEY} | {"retry_at": as_utc(row.retry_at)}
    last = as_utc(row.last_at)
    return mine == theirs and last is not None and last <= poll.started_at


def record_poll(session: Session, poll: Poll) -> int:
    """Store `poll` (not yet added) and return the id of the row that counts it.

    A poll that changed nothing and ends as the source's latest row did (same outcome, reason, symbol set,
    warnings) extends that row's run: `repeats` + 1, `last_at` = its start, `duration_ms` the run's mean.
    Anything else (a change, another outcome or error, a quarantine) starts a row of its own.
    """
    cols = [pl.c.id, pl.c.last_at, pl.c.repeats, pl.c.duration_ms, pl.c.symbols_changed, pl.c.changes]
    cols += [pl.c.tiers_written, *(pl.c[k] for k in _RUN_KEY)]
    latest = session.execute(
        select(*cols).where(pl.c.source == poll.source).order_by(pl.c.last_at.desc(), pl.c.id.desc()).limit(1)
    ).first()
    if latest is not None and _same_run(latest, poll):
        n = latest.repeats
        mean = (latest.duration_ms * n + poll.duration_ms) / (n + 1)
        session.execute(
            update(pl).where(pl.c.id == latest.id).values(repeats=n + 1, last_at=poll.started_at, duration_ms=mean)
        )
        return int(latest.id)
    poll.last_at = poll.started_at
    session.add(poll)
    session.flush()
    assert poll.id is not None
    return poll.id


def record_failure(
    session: Session,
    source: str,
    started_at: datetime,
    duration_ms: float,
    reason: str,
    *,
    kind: str = "poll",
    provenance: str | None = None,
    error_kind: str | None = None,
    retry_at: datetime | None = None,
) -> PollResult:
    """Record a poll that produced no usable snapshot. It never touches versions.

    `error_kind` is a short stable label of why; `retry_at` when the exchange asked not to be called
    again before then (the next polls of the source rest until it, see `requested_rest`).
    """
    poll = Poll(
        source=source,
        kind=kind,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome="failed",
        provenance=provenance,
        error=reason,
        error_kind=error_kind,
        retry_at=retry_at,
    )
    return PollResult(
        record_poll(session, poll),
        source,
        kind,
        "failed",
        started_at,
        duration_ms=duration_ms,
        error=reason,
        error_kind=error_kind,
        retry_at=retry_at,
    )


def requested_rest(session: Session, source: str) -> RestRequest | None:
    """The rest asked for by the latest poll (not import) of `source`, if it asked for one."""
    stmt = (
        select(pl.c.retry_at, pl.c.error, pl.c.error_kind)
        .where(pl.c.source == source, pl.c.kind == "poll")
        .order_by(pl.c.last_at.desc(), pl.c.id.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    until = as_utc(row.retry_at) if row is not None else None
    if row is None or until is None:
        return None
    return RestRequest(until, row.error or "", row.error_kind)


def _current(session: Session, source: str) -> dict[str, tuple[int, str]]:
    stmt = select(tv.c.symbol, tv.c.id, tv.c.content_hash).where(tv.c.source == source, tv.c.valid_to.is_(None))
    return {sym: (vid, h) for sym, vid, h in session.execute(stmt)}


def current_versions(session: Session, source: str) -> dict[str, tuple[int, str]]:
    """Symbol → (version id, content hash) of every table of `source` in force now: what a snapshot is
    compared with (read only, so a caller may ask before its write transaction)."""
    return _current(session, source)


def _symbols_hash(symbols: Iterable[str]) -> str:
    return hashlib.blake2b("\n".join(sorted(symbols)).encode(), digest_size=16).hexdigest()


def _confirmed(session: Session, source: str, symbols_hash: str, needed: int) -> bool:
    """True when the last `needed - 1` polls were quarantined with exactly this symbol set."""
    if needed <= 1:
        return True
    stmt = (
        select(pl.c.outcome, pl.c.symbols_hash)
        .where(pl.c.source == source, pl.c.outcome != "failed")
        .order_by(pl.c.last_at.desc(), pl.c.id.desc())
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
    known: Mapping[str, TierTable] | None = None,
) -> PollResult:
    """Record one successful fetch: compare it with the current versions and store what changed.

    `known`: tables the caller holds of what is stored (an import's previous file, by symbol); one whose
    content hash is that of its symbol's current version is taken as that version's table instead of being
    read back (the hash covers every tier, so it is that table)."""
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
            poll.last_at = started_at
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

    baseline = not current and not _has_history(session, source)
    changed = [s for s, t in snap.tables.items() if s not in current or current[s][1] != t.hash]
    if not changed and not vanished:  # nothing to version: the poll joins its source's run when it can
        poll.warnings = _dumps(snap.warnings)
        poll_id = record_poll(session, poll)
        return PollResult(
            poll_id, source, kind, "ok", started_at, previous, duration_ms, len(snap.tables),
            baseline=baseline, warnings=tuple(snap.warnings),
        )  # fmt: skip
    poll.last_at = started_at
    session.add(poll)
    session.flush()
    assert poll.id is not None
    old_tables = _old_tables(session, [(s, *current[s]) for s in changed + vanished if s in current], known)
    updates: list[SymbolUpdate] = []
    for sym in changed + vanished:
        with _blame(sym):
            old = old_tables.get(current[sym][0]) if sym in current else None
            new = snap.tables.get(sym)
            changes = () if baseline else tuple(diff_tables(old, new))
            updates.append(SymbolUpdate(sym, old, new, changes))
    _close_versions(session, [(sym, current[sym][0]) for sym in changed + vanished if sym in current], at)
    added = [snap.tables[sym] for sym in changed]
    version_rows = [
        {
            "source": source,
            "symbol": sym,
            "valid_from": at,
            "valid_to": None,
            "content_hash": t.hash,
            "unit": t.unit.value,
            "poll_id": poll.id,
            "previous_poll_at": previous,
            "provenance": snap.provenance,
            "notional_coef": t.notional_coef,
            "warnings": _dumps(t.warnings),
            "raw": zlib.compress(t.raw.encode(), 6),
        }
        for sym, t in zip(changed, added, strict=True)
    ]
    version_ids: list[int] = []
    if version_rows:
        # One executemany; RETURNING in parameter order pairs each id with its table (ids as a flush gave them).
        stmt = insert(_VERSION_TABLE).returning(_VERSION_TABLE.c.id, sort_by_parameter_order=True)
        version_ids = [int(r[0]) for r in session.execute(stmt, version_rows)]
    tier_rows = [
        (vid, t.tier, t.floor, t.cap, t.maintenance_margin_rate, t.maintenance_amount, t.max_leverage,
         t.initial_margin_rate)
        for vid, table in zip(version_ids, added, strict=True)
        for t in table.tiers
    ]  # fmt: skip
    insert_many(session, catalog.tier_row, _TIER_COLUMNS, tier_rows)
    change_rows = [(c.symbol, c.kind, c.tier, c.field, c.old, c.new) for u in updates for c in u.changes]
    same = {"poll_id": poll.id, "source": source, "detected_at": at, "previous_poll_at": previous}
    insert_many(session, catalog.change_record, _CHANGE_COLUMNS, change_rows, same)
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


def _old_tables(
    session: Session, current: list[tuple[str, int, str]], known: Mapping[str, TierTable] | None
) -> dict[int, TierTable]:
    """The tables of the current versions `current` ((symbol, version id, content hash) triples), by id."""
    out: dict[int, TierTable] = {}
    unknown = []
    for symbol, vid, content_hash in current:
        table = known.get(symbol) if known else None
        if table is not None and table.hash == content_hash:
            out[vid] = table
        else:
            unknown.append(vid)
    out.update(load_tables(session, unknown))
    return out


def _close_versions(session: Session, closing: list[tuple[str, int]], at: datetime) -> None:
    """Set `valid_to = at` on the versions in `closing` ((symbol, version id) pairs) with one executemany.

    When it fails, the rows are tried one by one to name the symbol whose row the database refused
    (`ApplyFailed`); on PostgreSQL the batch runs in a savepoint so that the transaction survives for that,
    SQLite only aborts the failed statement. If every row then succeeds, the batch's error is raised as is.
    """
    if not closing:
        return
    stmt = update(tv).where(tv.c.id == bindparam("closing_id")).values(valid_to=at)
    savepoint = session.get_bind().dialect.name != "sqlite"
    try:
        with session.begin_nested() if savepoint else nullcontext():
            session.execute(stmt, [{"closing_id": vid} for _, vid in closing])
    except Exception:
        for sym, vid in closing:
            with _blame(sym):
                session.execute(stmt, [{"closing_id": vid}])
        raise


@contextmanager
def _blame(symbol: str) -> Iterator[None]:
    """Turn an unexpected exception while handling `symbol` into `ApplyFailed` naming it."""
    try:
        yield
    except TierdriftError:
        raise
    except Exception as exc:  # a bug or a database error in this table: fail the poll, naming it
        raise ApplyFailed(symbol, exc) from exc


def _prefixed(table: TierTable) -> list[str]:
    return [f"{table.symbol}: {w}" for w in table.warnings]


def _has_history(session: Session, source: str) -> bool:
    return session.execute(select(tv.c.id).where(tv.c.source == source).limit(1)).first() is not None
