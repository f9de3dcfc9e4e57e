"""poll runs (repeats, last_at) and the indexes of the read commands

A poll row stands for a run of identical outcomes of one source: `repeats` polls, the first at
`started_at`, the last at `last_at`. Upgrading rolls the existing rows up as the store now records them:
consecutive polls of a source (by start time) that changed nothing and ended alike (same kind, outcome,
provenance, symbol set, error, error kind, rest and warnings; ok or failed, never quarantined) become
one row, the first, with their count, the last start and the mean duration. Rows that versions, changes
or impacts point at are never folded into another.

Downgrading gives every poll its own row again: a run of n becomes n rows, its first and last at their
exact times and the ones between spread evenly (their own times were not kept).

New indexes make the latest row of a source, of an outcome or of a kind, the latest rows overall, and a
source's latest change one index lookup each.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_KEY = ("kind", "outcome", "provenance", "symbols", "symbols_hash", "error", "error_kind", "retry_at", "warnings")
_COUNTS = ("symbols_changed", "changes", "tiers_written")
_OTHER = ("source", "started_at", "duration_ms")
_BATCH = 1000

poll = sa.table(
    "poll",
    sa.column("id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("kind", sa.String),
    sa.column("started_at", _TS),
    sa.column("last_at", _TS),
    sa.column("repeats", sa.Integer),
    sa.column("duration_ms", sa.Float),
    sa.column("outcome", sa.String),
    sa.column("provenance", sa.String),
    sa.column("symbols", sa.Integer),
    sa.column("symbols_changed", sa.Integer),
    sa.column("changes", sa.Integer),
    sa.column("tiers_written", sa.Integer),
    sa.column("error", sa.String),
    sa.column("warnings", sa.String),
    sa.column("symbols_hash", sa.String),
    sa.column("error_kind", sa.String),
    sa.column("retry_at", _TS),
)

_NEW_POLL_INDEXES = {
    "ix_poll_source_last": ["source", "last_at"],
    "ix_poll_source_outcome_last": ["source", "outcome", "last_at"],
    "ix_poll_source_kind_last": ["source", "kind", "last_at"],
    "ix_poll_last": ["last_at"],
}


def _chunks(items: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _referenced(conn: sa.Connection) -> set[int]:
    """Poll ids that other rows point at: those polls stay rows of their own."""
    found: set[int] = set()
    for name in ("table_version", "change_record", "impact"):
        pointing = sa.table(name, sa.column("poll_id", sa.Integer))
        found.update(conn.execute(sa.select(pointing.c.poll_id).distinct()).scalars())
    return found


def _unchanged(row: sa.Row[Any]) -> bool:
    return row.outcome in ("ok", "failed") and not any(getattr(row, c) for c in _COUNTS)


def _runs(conn: sa.Connection) -> tuple[list[dict[str, Any]], list[int]]:
    """The runs of more than one poll among the existing rows (each source's in start order), as the
    updates of their first rows, and the ids of the rows they fold in. Only the current run is held."""
    referenced = _referenced(conn)
    cols = [poll.c.id, *(poll.c[c] for c in (*_KEY, *_COUNTS, *_OTHER))]
    rows = conn.execute(sa.select(*cols).order_by(poll.c.source, poll.c.started_at, poll.c.id))
    heads: list[dict[str, Any]] = []
    folded: list[int] = []
    head: sa.Row[Any] | None = None
    run: list[tuple[int, float]] = []  # (id, duration) of the current run's rows

    def close() -> None:
        if len(run) > 1:
            mean = sum(d for _, d in run) / len(run)
            heads.append({"head": run[0][0], "tail": run[-1][0], "n": len(run), "mean": mean})
            folded.extend(i for i, _ in run[1:])

    for row in rows:
        joins = (
            head is not None
            and head.source == row.source
            and _unchanged(head)
            and _unchanged(row)
            and row.id not in referenced
            and all(getattr(head, k) == getattr(row, k) for k in _KEY)
        )
        if not joins:
            close()
            head, run = row, []
        run.append((row.id, row.duration_ms))
    close()
    return heads, folded


def _roll_up(conn: sa.Connection) -> None:
    heads, folded = _runs(conn)
    # last_at is copied in SQL from the run's last row, so that the stored value is exactly its start.
    tail = poll.alias("tail_poll")
    ended = sa.select(tail.c.started_at).where(tail.c.id == sa.bindparam("tail"))
    stmt = (
        poll.update()
        .where(poll.c.id == sa.bindparam("head"))
        .values(repeats=sa.bindparam("n"), duration_ms=sa.bindparam("mean"), last_at=ended.scalar_subquery())
    )
    for chunk in _chunks(heads):
        conn.execute(stmt, list(chunk))
    # Each deleted poll is checked against the rows that may point at it: without an index on their
    # poll_id, every check reads those tables whole (hours on a year of rows). Temporary ones, dropped after.
    temporary = [(f"ix_tmp_0005_{name}", name) for name in ("table_version", "impact")]
    for index, table in temporary:
        op.create_index(index, table, ["poll_id"])
    for ids in _chunks(folded):
        conn.execute(poll.delete().where(poll.c.id.in_(list(ids))))
    for index, table in temporary:
        op.drop_index(index, table_name=table)


#: A placeholder for the rows already there, replaced by their `started_at` before anything reads them.
#: SQLite adds a NOT NULL column in place only with a default; rebuilding the table instead would trip the
#: foreign keys of the versions, changes and impacts that point at polls.
_PLACEHOLDER = "1970-01-01 00:00:00.000000"


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    # Plain ALTER TABLE ADD COLUMN on both backends (no batch: see _PLACEHOLDER).
    op.add_column(
        "poll", sa.Column("last_at", _TS, nullable=not sqlite, server_default=_PLACEHOLDER if sqlite else None)
    )
    op.add_column("poll", sa.Column("repeats", sa.Integer(), server_default="1", nullable=False))
    conn.execute(sa.text("UPDATE poll SET last_at = started_at"))
    if not sqlite:
        op.alter_column("poll", "last_at", existing_type=_TS, nullable=False)
    _roll_up(conn)
    op.drop_index("ix_poll_source_started", table_name="poll")
    for name, columns in _NEW_POLL_INDEXES.items():
        op.create_index(name, "poll", columns, unique=False)
    op.create_index("ix_change_source", "change_record", ["source", "detected_at"])


def _expand(conn: sa.Connection) -> None:
    """Every run of n polls back to n rows (the copies follow the run's first row)."""
    cols = [c for c in poll.c if c.name not in ("id", "last_at", "repeats")]
    runs = conn.execute(sa.select(poll.c.id, poll.c.last_at, poll.c.repeats, *cols).where(poll.c.repeats > 1))
    copies: list[dict[str, Any]] = []
    for run in runs:
        first, last, n = run.started_at, run.last_at, run.repeats
        step = (last - first) / (n - 1)
        base = {c.name: getattr(run, c.name) for c in cols}
        for i in range(1, n):
            at = last if i == n - 1 else first + step * i
            copies.append({**base, "started_at": at, "last_at": at, "repeats": 1})
    for chunk in _chunks(copies):
        conn.execute(poll.insert(), list(chunk))


def downgrade() -> None:
    op.drop_index("ix_change_source", table_name="change_record")
    _expand(op.get_bind())
    for name in _NEW_POLL_INDEXES:
        op.drop_index(name, table_name="poll")
    op.create_index("ix_poll_source_started", "poll", ["source", "started_at"], unique=False)
    # ALTER TABLE DROP COLUMN (SQLite 3.35+) in place, for the same reason as in `upgrade`.
    op.drop_column("poll", "repeats")
    op.drop_column("poll", "last_at")
