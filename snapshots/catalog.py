"""Lightweight handles on the stored tables, for read-only queries.

`snapshots.db` (SQLModel) is the schema's single definition and the write side. Importing SQLModel and
the ORM costs about 130 ms on a small machine, more than the whole budget of a read-only command such as
`tierdrift tiers` (300 ms as a process), so queries that only read use these Core handles instead.
tests/store/test_schema.py checks every column here against the SQLModel tables.

Datetimes read through these handles come back naive from SQLite; `snapshots.reader.as_utc` makes them
aware UTC.
The queries that back read-only commands are plain SQL in snapshots.history (see snapshots.reader).
"""

from __future__ import annotations

from sqlalchemy import DateTime, Float, Integer, LargeBinary, String, column, table

_TS = DateTime(timezone=True)

poll = table(
    "poll",
    column("id", Integer),
    column("source", String),
    column("kind", String),
    column("started_at", _TS),
    column("last_at", _TS),
    column("repeats", Integer),
    column("duration_ms", Float),
    column("outcome", String),
    column("provenance", String),
    column("symbols", Integer),
    column("symbols_changed", Integer),
    column("changes", Integer),
    column("tiers_written", Integer),
    column("error", String),
    column("warnings", String),
    column("symbols_hash", String),
    column("error_kind", String),
    column("retry_at", _TS),
)

table_version = table(
    "table_version",
    column("id", Integer),
    column("source", String),
    column("symbol", String),
    column("valid_from", _TS),
    column("valid_to", _TS),
    column("content_hash", String),
    column("unit", String),
    column("poll_id", Integer),
    column("previous_poll_at", _TS),
    column("provenance", String),
    column("notional_coef", Float),
    column("warnings", String),
    column("raw", LargeBinary),
)

tier_row = table(
    "tier_row",
    column("version_id", Integer),
    column("tier", Integer),
    column("floor", Float),
    column("cap", Float),
    column("maintenance_margin_rate", Float),
    column("maintenance_amount", Float),
    column("max_leverage", Float),
    column("initial_margin_rate", Float),
)

change_record = table(
    "change_record",
    column("id", Integer),
    column("poll_id", Integer),
    column("source", String),
    column("symbol", String),
    column("detected_at", _TS),
    column("previous_poll_at", _TS),
    column("kind", String),
    column("tier", Integer),
    column("field", String),
    column("old", Float),
    column("new", Float),
)
