"""positions, accounts, market data, impacts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("wallet_balance", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "market_data",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("mark_price", sa.Float(), nullable=True),
        sa.Column("mark_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("adr", sa.Float(), nullable=True),
        sa.Column("adr_days", sa.Integer(), nullable=True),
        sa.Column("adr_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("error_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source", "symbol"),
    )
    op.create_table(
        "position",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("size", sa.Float(), nullable=False),
        sa.Column("size_input", sa.String(), nullable=False),
        sa.Column("contract_size", sa.Float(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=True),
        sa.Column("adr_override", sa.Float(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("position", schema=None) as batch_op:
        batch_op.create_index("ix_position_open", ["source", "symbol", "closed_at"], unique=False)

    op.create_table(
        "impact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position_id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("changes", sa.String(), nullable=False),
        sa.Column("old_tier", sa.Integer(), nullable=True),
        sa.Column("new_tier", sa.Integer(), nullable=True),
        sa.Column("old_rate", sa.Float(), nullable=True),
        sa.Column("new_rate", sa.Float(), nullable=True),
        sa.Column("old_amount", sa.Float(), nullable=True),
        sa.Column("new_amount", sa.Float(), nullable=True),
        sa.Column("old_liquidation_price", sa.Float(), nullable=True),
        sa.Column("new_liquidation_price", sa.Float(), nullable=True),
        sa.Column("old_distance", sa.Float(), nullable=True),
        sa.Column("new_distance", sa.Float(), nullable=True),
        sa.Column("old_buffer_adr", sa.Float(), nullable=True),
        sa.Column("new_buffer_adr", sa.Float(), nullable=True),
        sa.Column("mark_price", sa.Float(), nullable=True),
        sa.Column("adr", sa.Float(), nullable=True),
        sa.Column("newly_violates", sa.Boolean(), nullable=False),
        sa.Column("crosses_tier", sa.Boolean(), nullable=False),
        sa.Column("violation", sa.Boolean(), nullable=True),
        sa.Column("reasons", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["poll.id"],
        ),
        sa.ForeignKeyConstraint(
            ["position_id"],
            ["position.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("impact", schema=None) as batch_op:
        batch_op.create_index("ix_impact_detected", ["detected_at"], unique=False)
        batch_op.create_index("ix_impact_position", ["position_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("impact", schema=None) as batch_op:
        batch_op.drop_index("ix_impact_position")
        batch_op.drop_index("ix_impact_detected")

    op.drop_table("impact")
    with op.batch_alter_table("position", schema=None) as batch_op:
        batch_op.drop_index("ix_position_open")

    op.drop_table("position")
    op.drop_table("market_data")
    op.drop_table("account")
