"""Source health: failing, stale or quarantined sources, alerted once per episode, and their recovery.

States move ok → failing (a poll failed) → ok, ok → quarantined → ok, and ok → stale (no successful
poll for `stale_after_minutes`, whatever the reason, e.g. the daemon was down). A failing or stale
source is alerted once it has been so for the configured minutes; a quarantine at once; the recovery
only if the trouble was alerted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from alerts.events import health_alert
from alerts.outbox import Route, enqueue
from monitor.service.polling import Hook
from monitor.store.models import SourceHealth
from snapshots.reader import as_utc
from snapshots.store import PollResult, last_success_at


@dataclass(frozen=True, slots=True)
class HealthRules:
    alert_after: timedelta
    stale_after: timedelta


def _state(session: Session, source: str) -> SourceHealth:
    return session.get(SourceHealth, source) or SourceHealth(source=source, state="ok")


def observe(
    session: Session, result: PollResult, rules: HealthRules, routes: Sequence[Route], now: datetime
) -> SourceHealth:
    """Update the health of `result.source` after a poll, enqueueing the alerts it calls for."""
    h = _state(session, result.source)
    if result.outcome == "ok":
        if h.state != "ok" and h.alerted_at is not None:
            since = as_utc(h.since) or now
            enqueue(session, [health_alert(h.source, "recovered", since=since, reason=h.reason, now=now)], routes, now)
        h.state, h.since, h.reason, h.alerted_at = "ok", None, None, None
    elif result.outcome == "quarantined":
        if h.state != "quarantined":
            h.state, h.since, h.reason = "quarantined", result.started_at, result.error
            enqueue(session, [health_alert(h.source, "quarantined", since=now, reason=h.reason, now=now)], routes, now)
            h.alerted_at = now
    else:
        if h.state not in ("failing", "stale"):
            h.state, h.since, h.alerted_at = "failing", result.started_at, None
        h.reason = result.error
        _alert_if_due(session, h, rules.alert_after, routes, now)
    session.add(h)
    return h


def _alert_if_due(session: Session, h: SourceHealth, after: timedelta, routes: Sequence[Route], now: datetime) -> None:
    since = as_utc(h.since)
    if h.alerted_at is None and since is not None and now - since >= after:
        enqueue(session, [health_alert(h.source, h.state, since=since, reason=h.reason, now=now)], routes, now)
        h.alerted_at = now


def check_stale(
    session: Session, sources: Sequence[str], rules: HealthRules, routes: Sequence[Route], now: datetime
) -> list[str]:
    """Mark and alert sources with no successful poll for `rules.stale_after`; return their names."""
    stale = []
    for source in sources:
        last = last_success_at(session, source)
        h = _state(session, source)
        if last is not None and now - last < rules.stale_after:
            continue
        if h.state == "ok":
            h.state, h.since, h.alerted_at = "stale", last or now, None
            h.reason = "no successful poll yet" if last is None else f"last successful poll at {last.isoformat()}"
        if h.state in ("stale", "failing"):
            _alert_if_due(session, h, rules.stale_after if h.state == "stale" else rules.alert_after, routes, now)
        session.add(h)
        stale.append(source)
    return stale


def health_hook(rules: HealthRules, routes: Sequence[Route], clock: Callable[[], datetime]) -> Hook:
    def hook(session: Session, result: PollResult) -> None:
        observe(session, result, rules, routes, clock())

    return hook


def problems(session: Session, sources: Sequence[str], stale_after: timedelta, now: datetime) -> list[str]:
    """Everything `tierdrift check` fails on, most urgent first, one line each."""
    from sqlalchemy import func, select
    from sqlmodel import col
    from sqlmodel import select as sqlmodel_select

    from alerts.db import ChannelState, Delivery
    from snapshots.history import source_status

    out: list[str] = []
    conn = session.connection()
    for source in sources:
        status = source_status(conn, source)
        if status.last_success_at is None:
            out.append(
                f"{source}: never polled successfully" + (f" ({status.last_error})" if status.last_error else "")
            )
        elif now - status.last_success_at > stale_after:
            minutes = int((now - status.last_success_at).total_seconds() // 60)
            out.append(
                f"{source}: stale, last successful poll {minutes} min ago ({status.last_success_at.isoformat()})"
            )
        if status.last_outcome == "quarantined":
            out.append(f"{source}: last poll quarantined: {status.last_error}")
    failed = session.execute(
        select(func.count()).select_from(Delivery).where(col(Delivery.status) == "failed")
    ).scalar_one()
    if failed:
        out.append(f"{failed} alert deliveries failed: see `tierdrift alerts list --status failed`")
    for state in session.exec(sqlmodel_select(ChannelState)):
        if state.disabled_at is not None:
            out.append(f"alert channel {state.name} is disabled: {state.disabled_reason}")
    return out
