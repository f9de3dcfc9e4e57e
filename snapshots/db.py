"""Tables of the snapshot store (the schema's single definition; Alembic migrations follow it).

Storage grows with changes, not with polls: tier rows are written only for a symbol whose content hash
changed, and a `poll` row stands for a run of identical outcomes of one source (`repeats` polls from
`started_at` to `last_at`): a poll that changes nothing, or fails as the one before it did, is counted in
the source's latest row instead of adding one (`snapshots.store.record_poll`). A symbol's versions carry
`valid_from`/`valid_to`, so "the table of S at T" is one indexed lookup on (source, symbol, valid_from).

All datetimes are timezone-aware UTC (SQLModel's UTCDateTime): PostgreSQL stores `timestamptz`, SQLite
stores UTC text, and both hand back aware UTC values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, LargeBinary
from sqlmodel import Field, SQLModel


def _started_at(context: Any) -> Any:
    """A new row's `last_at` unless given: a run of one poll ends where it starts."""
    return context.get_current_parameters()["started_at"]


class Poll(SQLModel, table=True):
    """A run of attempts to take a snapshot of a source with the same outcome (one attempt, most often).

    The indexes serve the questions asked of every source: its latest rows (`ix_poll_source_last`, in the
    order of `ORDER BY last_at, id`: the row id ends every index), its latest row of an outcome (the last
    success, the last error) and of a kind (the rest asked for by the last live poll), and the latest rows
    of all sources.
    """

    __tablename__ = "poll"
    __table_args__ = (
        Index("ix_poll_source_last", "source", "last_at"),
        Index("ix_poll_source_outcome_last", "source", "outcome", "last_at"),
        Index("ix_poll_source_kind_last", "source", "kind", "last_at"),
        Index("ix_poll_last", "last_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str
    kind: str = "poll"  # poll | import
    started_at: datetime  # the first poll of the run
    # The last poll of the run (`started_at` for a run of one): what "the last poll that saw a table" means.
    last_at: datetime | None = Field(default=None, nullable=False, sa_column_kwargs={"default": _started_at})
    repeats: int = Field(default=1, sa_column_kwargs={"server_default": "1"})  # polls in the run
    duration_ms: float = 0.0  # the mean over the run
    outcome: str  # ok | failed | quarantined
    provenance: str | None = None
    symbols: int = 0  # symbols in the snapshot
    symbols_changed: int = 0
    changes: int = 0
    tiers_written: int = 0
    error: str | None = None
    warnings: str | None = None  # JSON list of strings
    symbols_hash: str | None = None  # hash of the symbol set, to confirm a repeated quarantine
    error_kind: str | None = None  # failed polls: a short stable label, e.g. "fetch_timeout", "rate_limited"
    retry_at: datetime | None = None  # failed polls: the exchange asked us not to call again before this


class TableVersion(SQLModel, table=True):
    """One version of one symbol's table, in force over [valid_from, valid_to)."""

    __tablename__ = "table_version"
    __table_args__ = (
        Index("ix_version_lookup", "source", "symbol", "valid_from"),
        Index("ix_version_current", "source", "valid_to"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str
    symbol: str
    valid_from: datetime
    valid_to: datetime | None = None
    content_hash: str
    unit: str
    poll_id: int = Field(foreign_key="poll.id")
    previous_poll_at: datetime | None = None
    provenance: str
    notional_coef: float | None = None
    warnings: str | None = None  # JSON list of strings
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # zlib-compressed JSON text


class TierRow(SQLModel, table=True):
    __tablename__ = "tier_row"

    version_id: int = Field(foreign_key="table_version.id", primary_key=True)
    tier: int = Field(primary_key=True)
    floor: float
    cap: float
    maintenance_margin_rate: float
    maintenance_amount: float
    max_leverage: float
    initial_margin_rate: float | None = None


class ChangeRecord(SQLModel, table=True):
    """One semantic change, detected by a poll; `previous_poll_at` and `detected_at` bound when it happened."""

    __tablename__ = "change_record"
    __table_args__ = (
        Index("ix_change_symbol", "source", "symbol", "detected_at"),
        Index("ix_change_source", "source", "detected_at"),  # a source's changes, and its latest
        Index("ix_change_detected", "detected_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    poll_id: int = Field(foreign_key="poll.id", index=True)
    source: str
    symbol: str
    detected_at: datetime
    previous_poll_at: datetime | None = None
    kind: str
    tier: int | None = None
    field: str | None = None
    old: float | None = None
    new: float | None = None
