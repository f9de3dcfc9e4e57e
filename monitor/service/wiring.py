"""The poll and import hooks, in order: impacts (and their alerts), watched sizes' impacts, the change digest,
source health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from monitor.config.settings import Settings
from monitor.risk.impacts import ImpactContext, freshness, make_hook
from monitor.service.alerting import digest_hook, impact_sink, routes, watch_hook
from monitor.service.health import HealthRules, health_hook
from monitor.service.polling import Hook


def health_rules(settings: Settings) -> HealthRules:
    return HealthRules(
        alert_after=timedelta(minutes=settings.health_alert_after_minutes),
        stale_after=timedelta(minutes=settings.stale_after_minutes),
    )


def poll_hooks(settings: Settings, clock: Callable[[], datetime]) -> list[Hook]:
    impacts = ImpactContext(
        settings.violation_threshold_adr, sinks=(impact_sink(settings, clock),), freshness=freshness(settings)
    )
    return [
        make_hook(impacts),
        watch_hook(settings, clock, freshness(settings)),
        digest_hook(settings, clock),
        health_hook(health_rules(settings), routes(settings), clock),
    ]
