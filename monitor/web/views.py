"""What each dashboard page shows, read from the database: plain values for the templates, nothing rendered.

Every function takes an open `Session` (and its connection for the history questions), reads, and
writes nothing. Inputs from the query string arrive already parsed (`monitor.web.pages` turns a bad one
into a 400); an unknown source, symbol, position or version raises `NotFound` (a 404 page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from alerts.db import AlertRecord, ChannelState, Delivery
from alerts.model import Severity
from monitor.config.settings import Settings
from monitor.exchanges.errors import redact
from monitor.store.models import SourceHealth
from monitor.web.charts import Figure, PositionMark, tier_chart
from monitor.web.position_views import PositionRow, open_positions
from snapshots.diff import diff_tables
from snapshots.errors import NotFound
from snapshots.history import (
    PollInfo,
    SourceStatus,
    StoredChange,
    VersionInfo,
    list_changes,
    recent_polls,
    source_status,
    table_at,
    versions,
)
from snapshots.model import SOURCES, Tier, TierTable, Unit
from snapshots.reader import as_utc
from snapshots.tables import load_tables
from snapshots.timefmt import parse_ts

#: How many rows the overview shows of each list (the full lists have their own pages).
OVERVIEW_ROWS = 15


def unit_name(table: TierTable) -> str:
    """The asset a table's floors and caps are counted in: `USDT` for `BTC/USDT:USDT`, `BTC` for inverse."""
    base, _, rest = table.symbol.partition("/")
    if table.unit is Unit.BASE:
        return base or "base"
    quote = rest.split(":", 1)[0]
    return quote or "quote"


# -- overview ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceRow:
    status: SourceStatus
    health: str  # ok | failing | stale | quarantined
    health_since: datetime | None
    health_reason: str | None
    next_poll: datetime | None  # from the daemon's status; None without a daemon (`tierdrift web`)


def sources(session: Session, settings: Settings, next_poll: Mapping[str, Any]) -> list[SourceRow]:
    """The health of every configured source, and of any other source with history in the database."""
    conn = session.connection()
    secrets = settings.secrets()
    health = {h.source: h for h in session.exec(select(SourceHealth))}
    out = []
    for name in SOURCES:
        status = source_status(conn, name)
        if name not in settings.sources and status.last_poll_at is None and not status.symbols:
            continue
        h = health.get(name)
        reason = redact(h.reason, secrets) if h and h.reason else None
        out.append(
            SourceRow(
                replace(status, last_error=redact(status.last_error, secrets) if status.last_error else None),
                h.state if h else "ok",
                as_utc(h.since) if h else None,
                reason,
                _when(next_poll.get(name)),
            )
        )
    return out


def polls(session: Session, settings: Settings, limit: int = OVERVIEW_ROWS) -> list[PollInfo]:
    """The latest polls of every source, newest first, their errors with every secret redacted."""
    secrets = settings.secrets()
    return [
        replace(p, error=redact(p.error, secrets)) if p.error else p
        for p in recent_polls(session.connection(), limit=limit)
    ]


def _when(value: Any) -> datetime | None:
    """A time from the daemon's status (ISO text, as `app.state.status` gives it), or None if it gives none."""
    if isinstance(value, datetime):
        return value
    return parse_ts(value) if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    alert_id: str
    created_at: datetime | None
    kind: str
    severity: str
    source: str | None
    symbol: str | None
    title: str
    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None


def deliveries(
    session: Session, settings: Settings, *, statuses: Sequence[str] = (), limit: int = 100
) -> list[DeliveryRow]:
    """The outbox, newest alert first, each delivery with its status and last error (secrets redacted)."""
    stmt = (
        select(Delivery, AlertRecord)
        .join(AlertRecord, col(AlertRecord.id) == col(Delivery.alert_id))
        .order_by(col(AlertRecord.created_at).desc(), col(Delivery.id).desc())
        .limit(limit)
    )
    if statuses:
        stmt = stmt.where(col(Delivery.status).in_(list(statuses)))
    secrets = settings.secrets()
    return [_delivery_row(d, a, secrets) for d, a in session.exec(stmt)]


def _delivery_row(d: Delivery, a: AlertRecord, secrets: Sequence[str]) -> DeliveryRow:
    return DeliveryRow(
        alert_id=a.id,
        created_at=as_utc(a.created_at),
        kind=a.kind,
        severity=Severity(a.severity).label,
        source=a.source,
        symbol=a.symbol,
        title=a.title,
        channel=d.channel,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=as_utc(d.next_attempt_at) if d.status == "pending" else None,
        last_attempt_at=as_utc(d.last_attempt_at),
        sent_at=as_utc(d.sent_at),
        last_error=redact(d.last_error, secrets) if d.last_error else None,
    )


def disabled_channels(session: Session, settings: Settings) -> list[tuple[str, str]]:
    """(channel, why) of every channel its endpoint disabled (a 410, a blocked bot)."""
    secrets = settings.secrets()
    return [
        (s.name, redact(s.disabled_reason or "", secrets))
        for s in session.exec(select(ChannelState).order_by(col(ChannelState.name)))
        if s.disabled_at is not None
    ]


# -- changes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    source: str | None = None
    symbol: str | None = None  # stored (ccxt) form
    kind: str | None = None
    field: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def changes_page(
    session: Session, f: ChangeFilter, *, after: tuple[datetime, int] | None, limit: int
) -> tuple[list[StoredChange], tuple[datetime, int] | None]:
    """One page of the feed, newest first, and the cursor of the next page (None on the last one)."""
    found = list_changes(
        session.connection(), source=f.source, symbol=f.symbol, kind=f.kind, field=f.field, since=f.since,
        until=f.until, after=after, limit=limit + 1, newest_first=True,
    )  # fmt: skip
    more = len(found) > limit
    page = found[:limit]
    return page, (page[-1].cursor if more and page else None)


# -- symbol -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One tier of a side-by-side diff: the old and the new tier (None where it does not exist) and the
    fields whose cells differ."""

    tier: int
    old: Tier | None
    new: Tier | None
    changed: frozenset[str]

    @property
    def state(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed" if self.changed else "same"


@dataclass(frozen=True, slots=True)
class Diff:
    old: VersionInfo
    new: VersionInfo
    rows: list[DiffRow]
    changes: int  # how many change records `snapshots.diff` gives for this pair


def diff_rows(old: TierTable, new: TierTable) -> tuple[list[DiffRow], int]:
    """The tiers of both tables side by side, marked from the diff engine's own records (the same records
    a poll stores), so that the page marks exactly what the change feed reports."""
    records = diff_tables(old, new)
    changed: dict[int, set[str]] = {}
    for c in records:
        if c.kind == "tier_changed" and c.tier is not None and c.field:
            changed.setdefault(c.tier, set()).add(c.field)
    before = {t.tier: t for t in old.tiers}
    after = {t.tier: t for t in new.tiers}
    rows = [
        DiffRow(n, before.get(n), after.get(n), frozenset(changed.get(n, ())))
        for n in sorted(before.keys() | after.keys())
    ]
    return rows, len(records)


@dataclass
class SymbolView:
    source: str
    symbol: str
    at: datetime
    at_given: bool
    table: TierTable | None
    info: VersionInfo | None
    not_in_force: str | None  # why no table is shown at `at`
    versions: list[VersionInfo]
    diff: Diff | None
    chart: Figure | None
    positions: list[PositionRow] = field(default_factory=list)
    unit: str = ""


def symbol_view(
    session: Session,
    settings: Settings,
    source: str,
    symbol: str,
    *,
    at: datetime,
    at_given: bool,
    pair: tuple[int, int] | None,
    now: datetime,
) -> SymbolView:
    """The symbol page: its table at `at`, its versions, the diff of `pair` (default: the version in force
    at `at` and the one before it), and the chart of that pair with the open positions on the symbol."""
    conn = session.connection()
    table: TierTable | None = None
    info: VersionInfo | None = None
    why = None
    try:
        table, info = table_at(conn, source, symbol, at)
    except NotFound as exc:
        why = str(exc)
    history = versions(conn, source, symbol)
    ids = [v.id for v in history]
    if pair is None:
        newer = info.id if info else ids[-1]
        i = ids.index(newer)
        pair = (ids[i - 1], newer) if i else None
    positions = open_positions(session, settings, now, source=source, symbol=symbol)
    diff = None
    old_t: TierTable | None = None
    new_t, labels = table, ("", f"v{info.id}" if info else "")
    if pair is not None:
        by_id = {v.id: v for v in history}
        for vid in pair:
            if vid not in by_id:
                raise NotFound(f"{symbol} on {source} has no version {vid}; its versions are listed on its page")
        loaded = load_tables(conn, list(pair))
        old_t, new_t, labels = loaded[pair[0]], loaded[pair[1]], (f"v{pair[0]}", f"v{pair[1]}")
        rows, count = diff_rows(old_t, new_t)
        diff = Diff(by_id[pair[0]], by_id[pair[1]], rows, count)
    chart = None
    unit = unit_name(new_t) if new_t else ""
    if new_t is not None:
        marks = [PositionMark(r.position.id or 0, r.position.side, r.figures.notional) for r in positions if r.figures]
        chart = tier_chart(new_t, old_t, marks, unit=unit, new_label=labels[1], old_label=labels[0])
    return SymbolView(source, symbol, at, at_given, table, info, why, history, diff, chart, positions, unit)
