"""Read-only questions about the stored history: tables at a time, versions, changes, source status.

Plain SQL through `snapshots.reader`, so that the commands behind them can run on the standard library's
sqlite3 and start fast. Every function takes a `Reader`, or a SQLAlchemy connection or session.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from snapshots.errors import NotFound
from snapshots.model import SOURCES, Change, TierTable
from snapshots.reader import Row, reader_of
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
    id: int | None = None  # the stored record's id (None before it is stored): with detected_at, a cursor

    @property
    def cursor(self) -> tuple[datetime, int] | None:
        """Where a page ending at this record stops: pass it as `after` for the next page."""
        return (self.detected_at, self.id) if self.id is not None else None


@dataclass(frozen=True, slots=True)
class PollInfo:
    """A stored poll row: `repeats` polls with the same outcome, the first at `started_at`, the last at `last_at`."""

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
    error_kind: str | None = None  # failed polls: why, e.g. "fetch_timeout", "resting", "unexpected"
    retry_at: datetime | None = None  # failed polls: the exchange asked not to be called before this
    repeats: int = 1  # polls this row stands for (identical outcomes, rolled up)
    last_at: datetime | None = None  # the last of them (None: `started_at`)

    @property
    def ended_at(self) -> datetime:
        """When the last poll of this row started."""
        return self.last_at or self.started_at


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
    polls: int = 0  # polls (and imports) that ran, since `first_poll_at`
    first_poll_at: datetime | None = None


_VERSION_COLS = (
    "id, source, symbol, valid_from, valid_to, content_hash, provenance, previous_poll_at, notional_coef, warnings"
)
_IN_FORCE = "valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)"


def _info(v: Row) -> VersionInfo:
    return VersionInfo(
        v["id"],
        v["source"],
        v["symbol"],
        v["valid_from"],
        v["valid_to"],
        v["content_hash"],
        v["provenance"],
        v["previous_poll_at"],
        v["notional_coef"],
        tuple(json.loads(v["warnings"])) if v["warnings"] else (),
    )


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise NotFound(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    return source


def resolve_symbol(conn: Any, source: str, text: str) -> str:
    """The stored symbol a user meant: exact, then canonical (`BTCUSDT` → `BTC/USDT:USDT`), then upper case."""
    check_source(source)
    reader = reader_of(conn)
    for cand in dict.fromkeys([text, canonical_symbol(source, text), canonical_symbol(source, text.upper())]):
        sql = "SELECT id FROM table_version WHERE source = :source AND symbol = :symbol LIMIT 1"
        if reader.rows(sql, {"source": source, "symbol": cand}):
            return cand
    names = [
        r["symbol"] for r in reader.rows("SELECT DISTINCT symbol FROM table_version WHERE source = :s", {"s": source})
    ]
    if not names:
        raise NotFound(f"no history for {source} yet; run `tierdrift poll` or `tierdrift import` first")
    import difflib  # only for this error: the read-only commands start without it

    close = difflib.get_close_matches(canonical_symbol(source, text.upper()), names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise NotFound(f"unknown symbol {text!r} for {source}{hint}")


def table_at(conn: Any, source: str, symbol: str, at: datetime) -> tuple[TierTable, VersionInfo]:
    """The version of `symbol` in force at `at`, or NotFound saying why there is none."""
    reader = reader_of(conn)
    key = {"source": source, "symbol": symbol}
    found = reader.rows(
        f"SELECT {_VERSION_COLS} FROM table_version WHERE source = :source AND symbol = :symbol AND {_IN_FORCE}"
        " ORDER BY valid_from DESC LIMIT 1",
        {**key, "at": at},
    )
    if not found:
        (first,) = reader.rows(
            "SELECT min(valid_from) AS first_valid_from FROM table_version WHERE source = :source AND symbol = :symbol",
            key,
        )
        begins = first["first_valid_from"]
        if begins is None:
            raise NotFound(f"unknown symbol {symbol!r} for {source}")
        if at < begins:
            raise NotFound(f"{symbol} on {source}: {iso(at)} is before its history begins ({iso(begins)})")
        raise NotFound(f"{symbol} on {source} was not listed at {iso(at)}")
    info = _info(found[0])
    return load_tables(reader, [info.id])[info.id], info


def versions(conn: Any, source: str, symbol: str) -> list[VersionInfo]:
    rows = reader_of(conn).rows(
        f"SELECT {_VERSION_COLS} FROM table_version WHERE source = :source AND symbol = :symbol"
        " ORDER BY valid_from, id",
        {"source": source, "symbol": symbol},
    )
    return [_info(v) for v in rows]


def _change_filter(
    source: str | None,
    symbol: str | None,
    kind: str | None,
    field: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[str, dict[str, Any]]:
    conds: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    for name, cond, value in (
        ("source", "source = :source", source),
        ("symbol", "symbol = :symbol", symbol),
        ("kind", "kind = :kind", kind),
        ("field", "field = :field", field),
        ("since", "detected_at >= :since", since),
        ("until", "detected_at <= :until", until),
    ):
        if value:
            conds.append(cond)
            params[name] = value
    return " AND ".join(conds), params


def list_changes(
    conn: Any,
    *,
    source: str | None = None,
    symbol: str | None = None,
    kind: str | None = None,
    field: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[StoredChange]:
    """Stored changes matching every filter given, oldest first (by detection time, then id), or newest
    first with `newest_first` (the dashboard's feed).

    `after` is a cursor, `StoredChange.cursor` of the last record of the previous page: the page starts
    right after it in the order asked for (keyset paging, so a page costs the same wherever it is)."""
    where, params = _change_filter(source, symbol, kind, field, since, until)
    beyond, order = ("<", "DESC") if newest_first else (">", "ASC")
    if after is not None:
        where += f" AND (detected_at {beyond} :after_at OR (detected_at = :after_at AND id {beyond} :after_id))"
        params["after_at"], params["after_id"] = after
    sql = (
        "SELECT id, source, symbol, kind, tier, field, old, new, detected_at, previous_poll_at FROM change_record"
        f" WHERE {where} ORDER BY detected_at {order}, id {order}"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [
        StoredChange(
            r["detected_at"],
            r["previous_poll_at"],
            Change(r["source"], r["symbol"], r["kind"], r["tier"], r["field"], r["old"], r["new"]),
            r["id"],
        )
        for r in reader_of(conn).rows(sql, params)
    ]


def iter_changes(
    conn: Any, *, limit: int | None = None, batch: int = 5000, **filters: Any
) -> Generator[StoredChange, None, None]:
    """`list_changes(conn, **filters)` as a stream: pages of `batch` records fetched one after another with
    the keyset cursor, so that memory stays flat however many there are. At most `limit` in all."""
    reader = reader_of(conn)
    after: tuple[datetime, int] | None = None
    left = limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        page = list_changes(reader, after=after, limit=size, **filters)
        yield from page
        if len(page) < size:
            return
        after = page[-1].cursor
        left = None if left is None else left - len(page)


def count_changes(
    conn: Any,
    *,
    source: str | None = None,
    symbol: str | None = None,
    kind: str | None = None,
    field: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """How many stored changes match every filter given (as `list_changes`)."""
    where, params = _change_filter(source, symbol, kind, field, since, until)
    (row,) = reader_of(conn).rows(f"SELECT count(*) AS n FROM change_record WHERE {where}", params)
    return int(row["n"])


_POLL_COLS = (
    "id, source, kind, started_at, duration_ms, outcome, provenance, symbols, symbols_changed, changes, error,"
    " error_kind, retry_at, repeats, last_at"
)

#: Each query of `source_status` and `recent_polls` is one lookup in an index of snapshots.db
#: (tests/snapshots/test_query_plans.py checks the plans): rows are ordered by the end of their run.
LATEST_POLL = f"SELECT {_POLL_COLS} FROM poll WHERE source = :source ORDER BY last_at DESC, id DESC LIMIT 1"
LATEST_OUTCOME = (
    f"SELECT {_POLL_COLS} FROM poll WHERE source = :source AND outcome = :outcome"
    " ORDER BY last_at DESC, id DESC LIMIT 1"
)
#: Reads the source's rows, which are few: one per change, per run of unchanged polls and per run of failures.
POLL_COUNT = "SELECT sum(repeats) AS n FROM poll WHERE source = :source"
FIRST_POLL = "SELECT started_at AS first_poll_at FROM poll WHERE source = :source ORDER BY last_at, id LIMIT 1"
LATEST_CHANGE = "SELECT max(detected_at) AS last_change FROM change_record WHERE source = :source"
CURRENT_COUNT = "SELECT count(*) AS n FROM table_version WHERE source = :source AND valid_to IS NULL"
#: Outcomes other than ok, asked one by one: `outcome <> 'ok'` could not use the index's order.
_TROUBLES = ("failed", "quarantined")


def _poll_info(p: Row) -> PollInfo:
    return PollInfo(
        p["id"], p["source"], p["kind"], p["started_at"], p["duration_ms"], p["outcome"], p["provenance"],
        p["symbols"], p["symbols_changed"], p["changes"], p["error"], p["error_kind"], p["retry_at"],
        p["repeats"], p["last_at"],
    )  # fmt: skip


def _latest_poll(reader: Any, source: str, outcome: str | None = None) -> PollInfo | None:
    if outcome is None:
        rows = reader.rows(LATEST_POLL, {"source": source})
    else:
        rows = reader.rows(LATEST_OUTCOME, {"source": source, "outcome": outcome})
    return _poll_info(rows[0]) if rows else None


def source_status(conn: Any, source: str) -> SourceStatus:
    """Where `source` stands: its last poll, success, change and error, how many polls ran and since when."""
    reader = reader_of(conn)
    last = _latest_poll(reader, source)
    ok = _latest_poll(reader, source, "ok")
    troubles = [p for p in (_latest_poll(reader, source, o) for o in _TROUBLES) if p is not None]
    bad = max(troubles, key=lambda p: (p.ended_at, p.id), default=None)
    (change,) = reader.rows(LATEST_CHANGE, {"source": source})
    (count,) = reader.rows(CURRENT_COUNT, {"source": source})
    (polls,) = reader.rows(POLL_COUNT, {"source": source})
    first = reader.rows(FIRST_POLL, {"source": source})
    return SourceStatus(
        source,
        count["n"],
        last.ended_at if last else None,
        last.outcome if last else None,
        ok.ended_at if ok else None,
        change["last_change"],
        bad.ended_at if bad else None,
        bad.error if bad else None,
        int(polls["n"] or 0),
        first[0]["first_poll_at"] if first else None,
    )


def recent_polls(conn: Any, source: str | None = None, limit: int = 20) -> list[PollInfo]:
    """The latest poll rows (each a run of `repeats` polls), newest first."""
    where = "WHERE source = :source" if source else ""
    rows = reader_of(conn).rows(
        f"SELECT {_POLL_COLS} FROM poll {where} ORDER BY last_at DESC, id DESC LIMIT {int(limit)}",
        {"source": source} if source else {},
    )
    return [_poll_info(p) for p in rows]


def tables_at(conn: Any, source: str, at: datetime) -> dict[str, TierTable]:
    """Every symbol's table in force at `at`: the whole snapshot of a source as it stood then."""
    reader = reader_of(conn)
    ids = [
        r["id"]
        for r in reader.rows(
            f"SELECT id FROM table_version WHERE source = :source AND {_IN_FORCE}", {"source": source, "at": at}
        )
    ]
    return {t.symbol: t for t in load_tables(reader, ids).values()}
