"""Read-only questions about the stored history: tables at a time, versions, changes, source status.

These run on a Core `Connection` through `snapshots.catalog`, never the ORM: they back commands that
must start fast.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from snapshots.catalog import as_utc
from snapshots.catalog import change_record as cr
from snapshots.catalog import poll as pl
from snapshots.catalog import table_version as tv
from snapshots.errors import NotFound
from snapshots.model import SOURCES, Change, TierTable
from snapshots.symbols import canonical_symbol
from snapshots.tables import load_tables
from snapshots.timefmt import iso


@dataclass(frozen=True, slots=True)
class VersionInfo:
    id: int
    source: str
    symbol: str
    valid_from: datetime
    valid_to: datetime | None
    content_hash: str
    provenance: str
    previous_poll_at: datetime | None
    notional_coef: float | None
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredChange:
    detected_at: datetime
    previous_poll_at: datetime | None
    change: Change


@dataclass(frozen=True, slots=True)
class PollInfo:
    id: int
    source: str
    kind: str
    started_at: datetime
    duration_ms: float
    outcome: str
    provenance: str | None
    symbols: int
    symbols_changed: int
    changes: int
    error: str | None


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str
    symbols: int
    last_poll_at: datetime | None
    last_outcome: str | None
    last_success_at: datetime | None
    last_change_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None


_VERSION_COLS = (
    tv.c.id,
    tv.c.source,
    tv.c.symbol,
    tv.c.valid_from,
    tv.c.valid_to,
    tv.c.content_hash,
    tv.c.provenance,
    tv.c.previous_poll_at,
    tv.c.notional_coef,
    tv.c.warnings,
)


def _info(v: Any) -> VersionInfo:
    valid_from = as_utc(v.valid_from)
    assert valid_from is not None
    return VersionInfo(
        v.id,
        v.source,
        v.symbol,
        valid_from,
        as_utc(v.valid_to),
        v.content_hash,
        v.provenance,
        as_utc(v.previous_poll_at),
        v.notional_coef,
        tuple(json.loads(v.warnings)) if v.warnings else (),
    )


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise NotFound(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    return source


def resolve_symbol(conn: Connection, source: str, text: str) -> str:
    """The stored symbol a user meant: exact, then canonical (`BTCUSDT` → `BTC/USDT:USDT`), then upper case."""
    check_source(source)
    for cand in dict.fromkeys([text, canonical_symbol(source, text), canonical_symbol(source, text.upper())]):
        stmt = select(tv.c.id).where(tv.c.source == source, tv.c.symbol == cand).limit(1)
        if conn.execute(stmt).first():
            return cand
    names = [s for (s,) in conn.execute(select(tv.c.symbol).where(tv.c.source == source).distinct())]
    if not names:
        raise NotFound(f"no history for {source} yet; run `tierdrift poll` or `tierdrift import` first")
    close = difflib.get_close_matches(canonical_symbol(source, text.upper()), names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise NotFound(f"unknown symbol {text!r} for {source}{hint}")


def table_at(conn: Connection, source: str, symbol: str, at: datetime) -> tuple[TierTable, VersionInfo]:
    """The version of `symbol` in force at `at`, or NotFound saying why there is none."""
    stmt = (
        select(*_VERSION_COLS)
        .where(
            tv.c.source == source,
            tv.c.symbol == symbol,
            tv.c.valid_from <= at,
            or_(tv.c.valid_to.is_(None), tv.c.valid_to > at),
        )
        .order_by(tv.c.valid_from.desc())
        .limit(1)
    )
    row = conn.execute(stmt).first()
    if row is None:
        first = as_utc(
            conn.execute(
                select(func.min(tv.c.valid_from)).where(tv.c.source == source, tv.c.symbol == symbol)
            ).scalar_one_or_none()
        )
        if first is None:
            raise NotFound(f"unknown symbol {symbol!r} for {source}")
        if at < first:
            raise NotFound(f"{symbol} on {source}: {iso(at)} is before its history begins ({iso(first)})")
        raise NotFound(f"{symbol} on {source} was not listed at {iso(at)}")
    info = _info(row)
    return load_tables(conn, [info.id])[info.id], info


def versions(conn: Connection, source: str, symbol: str) -> list[VersionInfo]:
    stmt = select(*_VERSION_COLS).where(tv.c.source == source, tv.c.symbol == symbol).order_by(tv.c.valid_from, tv.c.id)
    return [_info(v) for v in conn.execute(stmt)]


def list_changes(
    conn: Connection,
    *,
    source: str | None = None,
    symbol: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[StoredChange]:
    stmt = select(cr)
    if source:
        stmt = stmt.where(cr.c.source == source)
    if symbol:
        stmt = stmt.where(cr.c.symbol == symbol)
    if since:
        stmt = stmt.where(cr.c.detected_at >= since)
    if until:
        stmt = stmt.where(cr.c.detected_at <= until)
    stmt = stmt.order_by(cr.c.detected_at, cr.c.id)
    if limit:
        stmt = stmt.limit(limit)
    out = []
    for r in conn.execute(stmt):
        detected = as_utc(r.detected_at)
        assert detected is not None
        change = Change(r.source, r.symbol, r.kind, r.tier, r.field, r.old, r.new)
        out.append(StoredChange(detected, as_utc(r.previous_poll_at), change))
    return out


def _poll_info(p: Any) -> PollInfo:
    started = as_utc(p.started_at)
    assert started is not None
    return PollInfo(
        p.id, p.source, p.kind, started, p.duration_ms, p.outcome, p.provenance,
        p.symbols, p.symbols_changed, p.changes, p.error,
    )  # fmt: skip


def _latest_poll(conn: Connection, source: str, *conds: Any) -> PollInfo | None:
    stmt = select(pl).where(pl.c.source == source, *conds).order_by(pl.c.started_at.desc(), pl.c.id.desc())
    row = conn.execute(stmt.limit(1)).first()
    return _poll_info(row) if row else None


def source_status(conn: Connection, source: str) -> SourceStatus:
    last = _latest_poll(conn, source)
    ok = _latest_poll(conn, source, pl.c.outcome == "ok")
    bad = _latest_poll(conn, source, pl.c.outcome != "ok")
    last_change = conn.execute(select(func.max(cr.c.detected_at)).where(cr.c.source == source)).scalar()
    symbols = conn.execute(
        select(func.count()).select_from(tv).where(tv.c.source == source, tv.c.valid_to.is_(None))
    ).scalar_one()
    return SourceStatus(
        source,
        symbols,
        last.started_at if last else None,
        last.outcome if last else None,
        ok.started_at if ok else None,
        as_utc(last_change),
        bad.started_at if bad else None,
        bad.error if bad else None,
    )


def recent_polls(conn: Connection, source: str | None = None, limit: int = 20) -> list[PollInfo]:
    stmt = select(pl)
    if source:
        stmt = stmt.where(pl.c.source == source)
    stmt = stmt.order_by(pl.c.started_at.desc(), pl.c.id.desc()).limit(limit)
    return [_poll_info(p) for p in conn.execute(stmt)]


def tables_at(conn: Connection, source: str, at: datetime) -> dict[str, TierTable]:
    """Every symbol's table in force at `at`: the whole snapshot of a source as it stood then."""
    stmt = select(tv.c.id).where(
        tv.c.source == source,
        tv.c.valid_from <= at,
        or_(tv.c.valid_to.is_(None), tv.c.valid_to > at),
    )
    ids = [vid for (vid,) in conn.execute(stmt)]
    return {t.symbol: t for t in load_tables(conn, ids).values()}
