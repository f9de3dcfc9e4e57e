"""poll error kind and rest, delivery claim

A failed poll records a short, stable label of why (`error_kind`, e.g. "fetch_timeout", "rate_limited") and,
when the exchange asked clients to stay away (Bybit's HTTP 403 IP limit, Binance's 451 geo-block), until when
(`retry_at`). A delivery being sent carries `claimed_until`, so that two processes never send it at once
while neither holds a database transaction during the send.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("poll", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_kind", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
    with op.batch_alter_table("poll", schema=None) as batch_op:
        batch_op.drop_column("retry_at")
        batch_op.drop_column("error_kind")
