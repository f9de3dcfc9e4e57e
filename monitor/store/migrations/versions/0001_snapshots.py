"""Snapshot store: polls, table versions, tier rows, change records.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("provenance", sa.String(), nullable=True),
        sa.Column("symbols", sa.Integer(), nullable=False),
        sa.Column("symbols_changed", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("tiers_written", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("warnings", sa.String(), nullable=True),
        sa.Column("symbols_hash", sa.String(), nullable=True),
    )
    op.create_index("ix_poll_source_started", "poll", ["source", "started_at"])
    op.create_table(
        "table_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("unit", sa.String(), nullable=False),
        sa.Column("poll_id", sa.Integer(), sa.ForeignKey("poll.id"), nullable=False),
        sa.Column("previous_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provenance", sa.String(), nullable=False),
        sa.Column("notional_coef", sa.Float(), nullable=True),
        sa.Column("warnings", sa.String(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_version_lookup", "table_version", ["source", "symbol", "valid_from"])
    op.create_index("ix_version_current", "table_version", ["source", "valid_to"])
    op.create_table(
        "tier_row",
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("table_version.id"), primary_key=True),
        sa.Column("tier", sa.Integer(), primary_key=True),
        sa.Column("floor", sa.Float(), nullable=False),
        sa.Column("cap", sa.Float(), nullable=False),
        sa.Column("maintenance_margin_rate", sa.Float(), nullable=False),
        sa.Column("maintenance_amount", sa.Float(), nullable=False),
        sa.Column("max_leverage", sa.Float(), nullable=False),
        sa.Column("initial_margin_rate", sa.Float(), nullable=True),
    )
    op.create_table(
        "change_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("poll_id", sa.Integer(), sa.ForeignKey("poll.id"), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=True),
        sa.Column("field", sa.String(), nullable=True),
        sa.Column("old", sa.Float(), nullable=True),
        sa.Column("new", sa.Float(), nullable=True),
    )
    op.create_index("ix_change_symbol", "change_record", ["source", "symbol", "detected_at"])
    op.create_index("ix_change_detected", "change_record", ["detected_at"])
    op.create_index("ix_change_record_poll_id", "change_record", ["poll_id"])


def downgrade() -> None:
    op.drop_table("change_record")
    op.drop_table("tier_row")
    op.drop_table("table_version")
    op.drop_table("poll")
