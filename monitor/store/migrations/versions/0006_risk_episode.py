"""risk episode per open position; held and grouped deliveries

Where each open position stood at the last market check (its risk level and the figures then), so that a
`position_risk` alert goes out once per episode and a recovery once when it ends (monitor.risk.episodes).
A delivery records why it was held back (`hold`: quiet hours, digest interval) and the grouped message it
was claimed into (`group_id`), so that a resend of the group keeps its id (alerts.deliver).

Revision ID: 0006
Revises: 0004 (re-chained after 0005 when the branches merge)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_episode",
        sa.Column("position_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worst", sa.String(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mark_price", sa.Float(), nullable=True),
        sa.Column("adr", sa.Float(), nullable=True),
        sa.Column("liquidation_price", sa.Float(), nullable=True),
        sa.Column("distance", sa.Float(), nullable=True),
        sa.Column("buffer_adr", sa.Float(), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["position_id"], ["position.id"]),
        sa.PrimaryKeyConstraint("position_id"),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hold", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("group_id", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("group_id")
        batch_op.drop_column("hold")
    op.drop_table("risk_episode")
