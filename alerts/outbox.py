"""Write alerts to the outbox, in the caller's transaction, and read them back.

`enqueue` never commits: the poll that detected a change commits its change records, the impacts and the
alerts together, so an alert exists if and only if its cause does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from alerts.config import Filters, Marked
from alerts.db import AlertRecord, Delivery
from alerts.model import Alert, Severity
from snapshots.reader import as_utc


@dataclass(frozen=True, slots=True)
class Route:
    """A configured channel as the outbox sees it: a name and the filters that pick its alerts."""

    name: str
    filters: Filters


def to_json(alert: Alert) -> str:
    return json.dumps(
        {"lines": list(alert.lines), "rows": [list(r) for r in alert.rows], "data": alert.data},
        ensure_ascii=False,
        default=str,
    )


def from_record(rec: AlertRecord) -> Alert:
    body: dict[str, Any] = json.loads(rec.body)
    created = as_utc(rec.created_at)
    assert created is not None
    return Alert(
        id=rec.id,
        kind=rec.kind,
        severity=Severity(rec.severity),
        created_at=created,
        title=rec.title,
        source=rec.source,
        symbol=rec.symbol,
        lines=tuple(body.get("lines", ())),
        rows=tuple((str(a), str(b), str(c)) for a, b, c in body.get("rows", ())),
        data=body.get("data", {}),
    )


def enqueue(
    session: Session, alerts: Iterable[Alert], routes: Sequence[Route], now: datetime, traded: Marked = ()
) -> int:
    """Store `alerts` with one pending delivery per accepting route; return the deliveries created.
    `traded` is the traded and watched instruments now, for the routes filtered on `symbols = "traded"`."""
    alert_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for alert in alerts:
        alert_rows.append(
            {
                "id": alert.id,
                "kind": alert.kind,
                "severity": int(alert.severity),
                "created_at": alert.created_at,
                "source": alert.source,
                "symbol": alert.symbol,
                "title": alert.title,
                "body": to_json(alert),
            }
        )
        delivery_rows.extend(
            {
                "alert_id": alert.id,
                "channel": route.name,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for route in routes
            if route.filters.accepts(alert, traded)
        )
    if alert_rows:
        session.execute(insert(AlertRecord), alert_rows)
    if delivery_rows:
        session.execute(insert(Delivery), delivery_rows)
    return len(delivery_rows)
