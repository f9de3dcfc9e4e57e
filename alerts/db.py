"""Outbox tables: alerts, their per-channel deliveries, and each channel's health.

An alert row is written in the same transaction as the change or impact that caused it, together with
one delivery row per channel whose filters accept it. Delivery rows move pending → sent, or pending →
failed (given up, not retryable, or the channel was disabled), never back without `alerts retry`. A pending
delivery can be held (quiet hours, digest interval): it then waits until `next_attempt_at` and goes, with
its channel's other held ones, as one grouped message whose members are marked together.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class AlertRecord(SQLModel, table=True):
    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_created", "created_at"),)

    id: str = Field(primary_key=True)  # stable: the webhook-id and Message-ID of every attempt
    kind: str
    severity: int
    created_at: datetime
    source: str | None = None
    symbol: str | None = None
    title: str
    body: str  # JSON of the Alert (lines, rows, data)


class Delivery(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", name="uq_delivery_alert_channel"),
        Index("ix_delivery_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = Field(foreign_key="alert.id")
    channel: str
    status: str = "pending"  # pending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime
    created_at: datetime
    last_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    claimed_until: datetime | None = None  # a process is sending it; others leave it alone until then
    #: Why it was held back (alerts.schedule: "quiet", "digest"); None: never held. A held delivery goes in
    #: its channel's next grouped message.
    hold: str | None = None
    #: The grouped message it was claimed into (its id, the same on every attempt); None: sent on its own.
    group_id: str | None = None


class ChannelState(SQLModel, table=True):
    """Per-channel back-off and the record of a channel disabled by its endpoint (HTTP 410)."""

    __tablename__ = "channel_state"

    name: str = Field(primary_key=True)
    consecutive_failures: int = 0
    retry_at: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
