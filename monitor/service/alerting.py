"""Wire events to the outbox and the outbox to channels, from the settings.

The hooks built here run inside a poll's (or an import's) transaction: a digest of the poll's changes
and an alert per position impact are enqueued together with the changes and impacts themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from alerts.channels.base import Channel
from alerts.channels.email import EmailChannel
from alerts.channels.ntfy import NtfyChannel
from alerts.channels.telegram import TelegramChannel
from alerts.channels.webhook import WebhookChannel
from alerts.config import AppriseConfig, ChannelConfig, EmailConfig, NtfyConfig, TelegramConfig
from alerts.deliver import DeliveryPolicy
from alerts.events import digest_alert, impact_alert, risk_alert, watch_impact_alert
from alerts.outbox import Route, enqueue
from alerts.schedule import Schedule
from monitor.config.settings import Settings
from monitor.journal.watch import traded
from monitor.journal.watch_impact import watch_impacts
from monitor.risk.episodes import RiskEvent, RiskSink, track_risk
from monitor.risk.figures import Assessment
from monitor.risk.impacts import Freshness, ImpactSink, assess_now
from monitor.risk.positions import open_positions
from monitor.service.polling import Hook
from monitor.store.models import Position
from snapshots.store import PollResult


def _traded(session: Session, settings: Settings, now: datetime) -> frozenset[tuple[str, str]]:
    """The traded and watched instruments now, for the digest's marks and the `symbols = "traded"` routes."""
    return traded(session, now, timedelta(days=settings.traded_recent_days))


def routes(settings: Settings) -> list[Route]:
    return [Route(c.name, c.filters) for c in settings.all_channels()]


def make_channel(config: ChannelConfig, public_url: str | None = None) -> Channel:
    """The channel of `config`; `public_url` (the `web_public_url` setting) links alerts to the dashboard."""
    if isinstance(config, EmailConfig):
        return EmailChannel(config)
    if isinstance(config, TelegramConfig):
        return TelegramChannel(config, public_url=public_url)
    if isinstance(config, NtfyConfig):
        return NtfyChannel(config, public_url=public_url)
    if isinstance(config, AppriseConfig):
        from alerts.channels.apprise_channel import AppriseChannel  # lazily: it imports the optional apprise

        return AppriseChannel(config, public_url=public_url)
    return WebhookChannel(config)


def build_channels(settings: Settings) -> dict[str, Channel]:
    return {c.name: make_channel(c, settings.web_public_url) for c in settings.all_channels()}


def schedules(settings: Settings) -> dict[str, Schedule]:
    """Each channel's quiet hours and digest interval, for the channels that have either."""
    return {c.name: c.schedule for c in settings.all_channels() if c.schedule is not None}


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(max_age=settings.alert_max_age_hours * 3600)


def _position_summary(p: Position) -> dict[str, Any]:
    return {
        "id": p.id,
        "side": p.side,
        "entry_price": p.entry_price,
        "size": p.size,
        "size_input": p.size_input,
        "mode": p.mode,
        "margin": p.margin,
        "note": p.note,
    }


def impact_sink(settings: Settings, clock: Callable[[], datetime]) -> ImpactSink:
    """Enqueue one alert per impact row, in the poll's transaction."""
    threshold, where = settings.violation_threshold_adr, routes(settings)

    def sink(session: Session, result: PollResult, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        ids = [r["position_id"] for r in rows]
        positions = {p.id: p for p in session.exec(select(Position).where(col(Position.id).in_(ids)))}
        now = clock()
        alerts = []
        for row in rows:
            impact = {**row, "changes": json.loads(row["changes"]), "reasons": json.loads(row["reasons"] or "{}")}
            impact["detected_at"] = row["detected_at"].isoformat().replace("+00:00", "Z")
            summary = _position_summary(positions[row["position_id"]])
            alerts.append(impact_alert(impact, summary, threshold_adr=threshold, now=now))
        enqueue(session, alerts, where, now, _traded(session, settings, now))

    return sink


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def risk_sink(settings: Settings, clock: Callable[[], datetime]) -> RiskSink:
    """Enqueue one `position_risk` alert per risk event, in the transaction that records the new level."""
    where = routes(settings)

    def sink(session: Session, events: Sequence[RiskEvent]) -> None:
        if not events:
            return
        now = clock()
        alerts = []
        for e in events:
            event = {
                "event": e.event,
                "level": e.level,
                "previous_level": e.previous,
                "worst": e.worst,
                "since": _iso(e.since),
                "checked_at": _iso(e.checked_at),
                "source": e.position.source,
                "symbol": e.position.symbol,
                "before": e.before,
                "after": e.after,
            }
            summary = _position_summary(e.position)
            threshold, near = settings.violation_threshold_adr, settings.risk_near_liquidation_adr
            alerts.append(risk_alert(event, summary, threshold_adr=threshold, near_adr=near, now=now))
        enqueue(session, alerts, where, now, _traded(session, settings, now))

    return sink


def watch_risk(
    engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> tuple[list[RiskEvent], dict[int, Assessment]]:
    """After a market refresh: step every open position's risk episode and enqueue the alerts it causes, in
    one transaction (nothing is tracked when `risk_alerts` is off); return the events and the positions'
    assessments."""
    with Session(engine, expire_on_commit=False) as session:  # the events' positions are read after it
        if settings.risk_alerts == "off":
            return [], assess_now(session, open_positions(session), settings, clock())
        events, found = track_risk(session, settings, clock(), [risk_sink(settings, clock)])
        session.commit()
    return events, found


def digest_hook(settings: Settings, clock: Callable[[], datetime]) -> Hook:
    """Enqueue one digest of all the changes of a poll of one source (none for a baseline), its traded and
    watched symbols marked (monitor.journal.watch.traded: the alerts layer cannot read positions)."""
    where = routes(settings)

    def hook(session: Session, result: PollResult) -> None:
        if result.outcome != "ok" or result.baseline or not result.changes:
            return
        now = clock()
        marked = _traded(session, settings, now)
        alert = digest_alert(
            result.source,
            result.changes,
            detected_at=result.started_at,
            previous_poll_at=result.previous_poll_at,
            now=now,
            marked={symbol for source, symbol in marked if source == result.source},
        )
        enqueue(session, [alert], where, now, marked)

    return hook


def watch_hook(settings: Settings, clock: Callable[[], datetime], fresh: Freshness | None = None) -> Hook:
    """Enqueue a `watch_impact` alert for each sized watch whose table the poll changed, in its transaction."""
    where, threshold = routes(settings), settings.violation_threshold_adr

    def hook(session: Session, result: PollResult) -> None:
        found = watch_impacts(session, result, threshold_adr=threshold, fresh=fresh)
        if not found:
            return
        now = clock()
        alerts = [watch_impact_alert(i, now=now) for i in found]
        enqueue(session, alerts, where, now, _traded(session, settings, now))

    return hook
