"""Run the read side's SQL on either the standard library's sqlite3 or a SQLAlchemy connection.

`tierdrift tiers` must answer in 300 ms as a whole process, and importing SQLAlchemy alone costs about
150 ms on a small machine. So the read-only queries (snapshots.history, snapshots.tables) are plain SQL
with `:name` parameters, written once, and run through a `Reader`:

- `SqliteReader` on a `sqlite3` connection (read-only commands on a SQLite database: no SQLAlchemy);
- `AlchemyReader` on a SQLAlchemy `Connection` or `Session` (PostgreSQL, and everywhere a transaction is
  already open, such as a poll's).

Both return rows as dicts with aware UTC datetimes, so the queries' callers cannot tell them apart;
tests run every query through both on the same SQLite file.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

#: Columns (and aliases) that hold timestamps; SQLite returns them as text.
TIMESTAMPS = frozenset(
    {
        "valid_from",
        "valid_to",
        "previous_poll_at",
        "started_at",
        "detected_at",
        "first_valid_from",
        "last_change",
        "retry_at",
        "last_at",
        "first_poll_at",
    }
)
#: How SQLAlchemy stores a DateTime in SQLite (UTC, as SQLModel's UTCDateTime hands it over).
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

Row = dict[str, Any]


class Reader(Protocol):
    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...


def as_utc(dt: datetime | None) -> datetime | None:
    """Aware UTC from what a driver returned (SQLite gives naive UTC, PostgreSQL aware)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def utc(value: datetime | str | None) -> datetime | None:
    """A stored time of a column outside `TIMESTAMPS` as aware UTC: SQLite's text (as SQLAlchemy writes
    it, naive UTC) or a driver's datetime; None stays None."""
    if isinstance(value, str):
        return _parse(value)
    return as_utc(value)


class SqliteReader:
    def __init__(self, conn: Any) -> None:  # a sqlite3.Connection
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        bound = {k: _to_sqlite(v) for k, v in (params or {}).items()}
        cur = self.conn.execute(sql, bound)
        names = [d[0] for d in cur.description]
        stamps = [n for n in names if n in TIMESTAMPS]  # converted by name, the others as they come
        out = []
        for row in cur.fetchall():
            item = dict(zip(names, row, strict=True))
            for n in stamps:
                item[n] = _from_sqlite(n, item[n])
            out.append(item)
        return out


def _to_sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(_SQLITE_FORMAT)
    return value


def _from_sqlite(name: str, value: Any) -> Any:
    if name in TIMESTAMPS and isinstance(value, str):
        return _parse(value)
    return value


def _parse(value: str) -> datetime:
    if len(value) >= 19:  # date and time to the second, as stored: parsed with its offset in one call
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # a text that carries an offset already
            pass
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class AlchemyReader:
    def __init__(self, conn: Any) -> None:  # a sqlalchemy Connection or Session
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # Heavy: loaded only here, so that SqliteReader users never pay for it.
        from sqlalchemy import DateTime, bindparam, text

        params = dict(params or {})
        stmt = text(sql)
        # Typed datetime parameters, so each dialect binds them as it stores them (SQLite compares text).
        typed = [bindparam(k, type_=DateTime(timezone=True)) for k, v in params.items() if isinstance(v, datetime)]
        if typed:
            stmt = stmt.bindparams(*typed)
        result = self.conn.execute(stmt, params)
        out = []
        for row in result.mappings():
            item = dict(row)
            for name in TIMESTAMPS.intersection(item):
                value = item[name]
                if isinstance(value, str):  # SQLite through SQLAlchemy's text(): not type-processed
                    value = datetime.fromisoformat(value)
                item[name] = as_utc(value)
            out.append(item)
        return out


def reader_of(conn: Any) -> Reader:
    """A `Reader` as is, or a SQLAlchemy connection/session wrapped in one."""
    return conn if isinstance(conn, SqliteReader | AlchemyReader) else AlchemyReader(conn)


def placeholders(prefix: str, values: list[Any]) -> tuple[str, dict[str, Any]]:
    """`:v0, :v1, …` and their parameters, for an `IN (…)` list."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))
