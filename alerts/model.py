"""What an alert is, independently of how it is delivered.

An `Alert` is immutable and carries a stable `id`: every delivery attempt of it, on every channel, uses
that id (the webhook's `webhook-id` header too), so that a resend after a crash is recognisably the same
message and receivers can de-duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

#: The kinds of event that become alerts.
KINDS: tuple[str, ...] = (
    "position_impact", "position_risk", "watch_impact", "tier_changes", "source_health", "test",
)  # fmt: skip

#: Version of the JSON payload schema sent to webhooks (README: "Webhook payload").
SCHEMA_VERSION = 1


class Severity(IntEnum):
    INFO = 10
    WARNING = 20
    CRITICAL = 30

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}; choose from info, warning, critical") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Alert:
    """One message to deliver.

    `data` holds the event's figures as JSON-ready values (the webhook payload's `data`); `lines` is a
    short human summary, and `rows` an optional table of `(label, old, new)` for the old → new values.
    """

    id: str
    kind: str
    severity: Severity
    created_at: datetime  # aware UTC
    title: str
    source: str | None = None
    symbol: str | None = None
    lines: tuple[str, ...] = ()
    rows: tuple[tuple[str, str, str], ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
