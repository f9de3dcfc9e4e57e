"""The outbox and the delivery loop: retries, back-off, giving up, 410, and transactional enqueueing.

A scripted channel (our own `Channel` protocol, answering from a list) gives precise control of outcomes
and of the clock; tests/alerts/test_channels.py drives the real channels end to end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from alerts.channels.base import SendResult
from alerts.config import Filters
from alerts.db import AlertRecord, ChannelState, Delivery
from alerts.deliver import DeliveryPolicy, deliver_due
from alerts.events import sample_alert
from alerts.model import Alert, Severity
from alerts.outbox import Route, enqueue

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Scripted:
    """A channel that answers from `script` (the last answer repeats) and records what it was sent."""

    name: str
    script: list[SendResult] = field(default_factory=lambda: [SendResult.success()])
    kind: str = "webhook"
    sent: list[str] = field(default_factory=list)

    def send(self, alert: Alert) -> SendResult:
        self.sent.append(alert.id)
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def describe(self) -> str:
        return f"scripted:{self.name}"

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock()


def put(engine: Engine, clock: Clock, n: int = 1, routes: tuple[str, ...] = ("hook",)) -> list[str]:
    alerts = [sample_alert(clock()) for _ in range(n)]
    with Session(engine) as s:
        enqueue(s, alerts, [Route(r, Filters()) for r in routes], clock())
        s.commit()
    return [a.id for a in alerts]


def statuses(engine: Engine) -> list[tuple[str, str, int]]:
    with Session(engine) as s:
        return [(d.channel, d.status, d.attempts) for d in s.exec(select(Delivery).order_by(Delivery.id))]  # type: ignore[arg-type]


POLICY = DeliveryPolicy(base_delay=10, max_delay=600, max_age=3600, jitter=0.0)


def run(engine: Engine, clock: Clock, *channels: Scripted, policy: DeliveryPolicy = POLICY) -> object:
    return deliver_due(engine, {c.name: c for c in channels}, clock=clock, policy=policy, rng=random.Random(1))


def test_a_sent_alert_is_sent_once(engine: Engine, clock: Clock) -> None:
    (alert_id,) = put(engine, clock)
    hook = Scripted("hook")
    run(engine, clock, hook)
    run(engine, clock, hook)
    assert hook.sent == [alert_id]
    assert statuses(engine) == [("hook", "sent", 1)]


def test_a_down_receiver_costs_one_attempt_per_backoff_step(engine: Engine, clock: Clock) -> None:
    put(engine, clock, n=50)
    hook = Scripted("hook", [SendResult(ok=False, error="connection refused")])
    for _ in range(20):  # a busy loop of delivery runs within the first back-off step
        run(engine, clock, hook)
        clock.advance(0.4)
    assert len(hook.sent) == 1  # not 50, not 20: the channel rests until its retry time
    clock.advance(10)
    run(engine, clock, hook)
    assert len(hook.sent) == 2
    with Session(engine) as s:
        state = s.get(ChannelState, "hook")
        assert state is not None and state.consecutive_failures == 2
        assert state.retry_at is not None and state.retry_at > clock()


def test_retry_after_is_honoured_then_delivered(engine: Engine, clock: Clock) -> None:
    (alert_id,) = put(engine, clock)
    hook = Scripted("hook", [SendResult(ok=False, error="HTTP 429", retry_after=120), SendResult.success()])
    run(engine, clock, hook)
    clock.advance(100)
    run(engine, clock, hook)
    assert hook.sent == [alert_id]  # still waiting: 120 s were asked for
    clock.advance(21)
    run(engine, clock, hook)
    assert hook.sent == [alert_id, alert_id]  # the retry carries the same id
    assert statuses(engine) == [("hook", "sent", 2)]


def test_backoff_grows_with_jitter_bounds() -> None:
    policy = DeliveryPolicy(base_delay=10, max_delay=300, jitter=0.2)
    rng = random.Random(3)
    delays = [policy.delay(n, None, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        nominal = min(300, 10 * 2 ** (n - 1))
        assert nominal * 0.8 <= d <= nominal * 1.2
    assert policy.delay(1, 45, rng) >= 45


def test_gives_up_after_max_age_and_shows_why(engine: Engine, clock: Clock) -> None:
    put(engine, clock)
    hook = Scripted("hook", [SendResult(ok=False, error="HTTP 503")])
    for _ in range(12):
        run(engine, clock, hook)
        clock.advance(700)
    assert statuses(engine)[0][1] == "failed"
    with Session(engine) as s:
        (d,) = s.exec(select(Delivery))
        assert d.last_error is not None and d.last_error.startswith("gave up after 1 h: HTTP 503")


def test_permanent_error_fails_at_once(engine: Engine, clock: Clock) -> None:
    put(engine, clock)
    run(engine, clock, Scripted("hook", [SendResult(ok=False, error="HTTP 400", retryable=False)]))
    assert statuses(engine) == [("hook", "failed", 1)]


def test_410_disables_the_channel_with_a_reason(engine: Engine, clock: Clock) -> None:
    put(engine, clock, n=3, routes=("gone", "mail"))
    gone = Scripted("gone", [SendResult(ok=False, error="HTTP 410", retryable=False, gone=True)])
    mail = Scripted("mail")
    run(engine, clock, gone, mail)
    assert len(gone.sent) == 1 and len(mail.sent) == 3
    assert sorted(s for c, s, _ in statuses(engine) if c == "gone") == ["failed"] * 3
    with Session(engine) as s:
        state = s.get(ChannelState, "gone")
        assert state is not None and state.disabled_at is not None
        assert "channel disabled; HTTP 410" in (state.disabled_reason or "")
    clock.advance(10_000)
    run(engine, clock, gone, mail)
    assert len(gone.sent) == 1  # a disabled channel is never tried again


def test_filters_route_alerts_to_channels(engine: Engine, clock: Clock) -> None:
    impact = Alert("a1", "position_impact", Severity.CRITICAL, clock(), "x", "binance-usdm", "BTC/USDT:USDT")
    digest = Alert("a2", "tier_changes", Severity.INFO, clock(), "y", "bybit-linear")
    routes = [
        Route("email", Filters(kinds=["position_impact"])),
        Route("hook", Filters()),
        Route("loud", Filters(min_severity="warning", sources=["binance-usdm"])),
    ]
    with Session(engine) as s:
        assert enqueue(s, [impact, digest], routes, clock()) == 4
        s.commit()
    with Session(engine) as s:
        pairs = sorted((d.alert_id, d.channel) for d in s.exec(select(Delivery)))
        assert pairs == [("a1", "email"), ("a1", "hook"), ("a1", "loud"), ("a2", "hook")]
        assert len(list(s.exec(select(AlertRecord)))) == 2
