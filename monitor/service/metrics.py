"""Prometheus metrics of the daemon (prometheus_client), on a registry of its own.

Counters and gauges are updated by the jobs as they run; the outbox gauges are read from the database at
scrape time, so they are right after a restart and whichever replica is asked.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from alerts.deliver import DeliveryReport
from snapshots.store import PollResult


class OutboxCollector(Collector):
    """`tierdrift_alerts{status=pending|failed|sent}` straight from the delivery table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlmodel import col

        from alerts.db import Delivery  # the ORM model; imported here to keep this module's import light

        family = GaugeMetricFamily("tierdrift_alerts", "Alert deliveries by status", labels=["status"])
        counts = {"pending": 0, "sent": 0, "failed": 0}
        try:
            with self.engine.connect() as conn:
                stmt = select(col(Delivery.status), func.count()).group_by(col(Delivery.status))
                counts.update({status: n for status, n in conn.execute(stmt)})
        except Exception:  # a scrape must not fail because the database is briefly locked
            return
        for status, n in counts.items():
            family.add_metric([status], n)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter("tierdrift_polls", "Polls by source and outcome", ["source", "outcome"], registry=r)
        self.poll_failures = Counter(
            "tierdrift_poll_failures", "Failed polls by source and reason", ["source", "reason"], registry=r
        )
        self.poll_duration = Gauge(
            "tierdrift_poll_duration_seconds", "Duration of the last poll", ["source"], registry=r
        )
        self.last_success = Gauge(
            "tierdrift_last_success_timestamp_seconds", "Start of the last successful poll", ["source"], registry=r
        )
        self.changes = Counter(
            "tierdrift_changes", "Detected changes by source and kind", ["source", "kind"], registry=r
        )
        self.alerts_sent = Counter("tierdrift_alert_deliveries_sent", "Alert deliveries sent", registry=r)
        self.alerts_failed = Counter("tierdrift_alert_deliveries_failed", "Alert deliveries given up", registry=r)
        self.violations = Gauge(
            "tierdrift_positions_in_violation", "Open positions whose buffer is below the threshold", registry=r
        )
        self.job_errors = Counter("tierdrift_job_errors", "Scheduler jobs that raised", registry=r)
        self.standby = Gauge("tierdrift_standby", "1 while this replica waits for the writer lock", registry=r)

    def watch_outbox(self, engine: Engine) -> None:
        self.registry.register(OutboxCollector(engine))

    def observe_poll(self, result: PollResult) -> None:
        self.polls.labels(result.source, result.outcome).inc()
        self.poll_duration.labels(result.source).set(result.duration_ms / 1000)
        if result.outcome == "ok":
            self.last_success.labels(result.source).set(result.started_at.timestamp())
            for change in result.changes:
                self.changes.labels(result.source, change.kind).inc()
        else:
            reason = result.error_kind or ("quarantined" if result.outcome == "quarantined" else "error")
            self.poll_failures.labels(result.source, reason).inc()

    def observe_delivery(self, report: DeliveryReport) -> None:
        self.alerts_sent.inc(report.sent)
        self.alerts_failed.inc(report.failed)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
