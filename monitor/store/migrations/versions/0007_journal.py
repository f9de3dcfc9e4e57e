"""the trade journal: entry and exit records, position events, the watchlist, cached daily mark candles

`position_record` holds a position's risk figures at entry and at exit (one of each at most),
`position_event` what was done to it while open (margin, size, note, close), `watch` the instruments a
trader watches, and `mark_candle` the daily mark candles fetched for a past `--opened-at`. Entry records
of positions logged before this revision are not written here: monitor.journal.backfill computes them
from the stored history at the first journal write, marked `recomputed`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "position_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("table_version_id", sa.Integer(), nullable=True),
        sa.Column("table_valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("size", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=True),
        sa.Column("notional", sa.Float(), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=True),
        sa.Column("maintenance_margin_rate", sa.Float(), nullable=True),
        sa.Column("maintenance_amount", sa.Float(), nullable=True),
        sa.Column("liquidation_price", sa.Float(), nullable=True),
        sa.Column("mark_price", sa.Float(), nullable=True),
        sa.Column("adr", sa.Float(), nullable=True),
        sa.Column("adr_days", sa.Integer(), nullable=True),
        sa.Column("adr_source", sa.String(), nullable=True),
        sa.Column("distance", sa.Float(), nullable=True),
        sa.Column("buffer_adr", sa.Float(), nullable=True),
        sa.Column("violation", sa.Boolean(), nullable=True),
        sa.Column("headroom_notional", sa.Float(), nullable=True),
        sa.Column("unknown", sa.String(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("period", sa.String(), nullable=True),
        sa.Column("recomputed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["position_id"], ["position.id"]),
        sa.ForeignKeyConstraint(["table_version_id"], ["table_version.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("position_id", "kind", name="uq_position_record_kind"),
    )
    op.create_table(
        "position_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("size_after", sa.Float(), nullable=False),
        sa.Column("margin_after", sa.Float(), nullable=True),
        sa.Column("entry_price_after", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["position_id"], ["position.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("position_event", schema=None) as batch_op:
        batch_op.create_index("ix_position_event_position", ["position_id", "at"], unique=False)
    op.create_table(
        "watch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("size_notional", sa.Float(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "symbol", name="uq_watch_symbol"),
    )
    op.create_table(
        "mark_candle",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "symbol", "opened_at"),
    )


def downgrade() -> None:
    op.drop_table("mark_candle")
    op.drop_table("watch")
    with op.batch_alter_table("position_event", schema=None) as batch_op:
        batch_op.drop_index("ix_position_event_position")
    op.drop_table("position_event")
    op.drop_table("position_record")
