"""Send pending deliveries: at least once, with the same alert id on every attempt, and never in a tight loop.

Each delivery is sent outside any transaction and marked in its own short transaction right after, so
a crash between the two leaves it pending: it is sent again later with the same id (receivers
de-duplicate on it), and nothing is lost.

Back-off is per delivery (exponential with jitter, at least the receiver's `Retry-After`) and per
channel: after a retryable failure the channel rests until its retry time, so a receiver that is down
costs at most one failed attempt per backoff step instead of one per pending alert. A delivery still
failing `max_age` after it was created is marked failed; an endpoint answering 410 Gone disables its
channel, with the reason recorded.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from alerts.channels.base import Channel, SendResult
from alerts.db import AlertRecord, ChannelState, Delivery
from alerts.outbox import from_record
from snapshots.reader import as_utc


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    base_delay: float = 10.0  # seconds before the first retry
    max_delay: float = 3600.0  # back-off ceiling
    max_age: float = 24 * 3600.0  # give up on a delivery this long after it was created
    max_retry_after: float = 3600.0  # ignore a receiver asking for more than this
    jitter: float = 0.2  # ± share of random spread, so that retries do not synchronise
    batch: int = 1000

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds until the next attempt after `attempts` failed ones."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** max(attempts - 1, 0))
        backoff *= 1 + rng.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_retry_after))
        return backoff


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # due, but their channel is resting, disabled or not configured
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.retried + self.failed


def _states(session: Session) -> dict[str, ChannelState]:
    return {s.name: s for s in session.exec(select(ChannelState))}


def _due(session: Session, now: datetime, limit: int, resting: set[str]) -> list[tuple[Delivery, AlertRecord]]:
    stmt = (
        select(Delivery, AlertRecord)
        .join(AlertRecord, col(AlertRecord.id) == col(Delivery.alert_id))
        .where(Delivery.status == "pending", col(Delivery.next_attempt_at) <= now)
        .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
        .limit(limit)
    )
    if resting:
        # A resting channel's deliveries are not even loaded: a down receiver costs one cheap query per run.
        stmt = stmt.where(col(Delivery.channel).not_in(resting))
    return list(session.exec(stmt))


def _resting(state: ChannelState | None, now: datetime) -> bool:
    if state is None:
        return False
    retry_at = as_utc(state.retry_at)
    return state.disabled_at is not None or (retry_at is not None and retry_at > now)


def deliver_due(
    engine: Engine,
    channels: Mapping[str, Channel],
    *,
    clock: Callable[[], datetime],
    policy: DeliveryPolicy | None = None,
    rng: random.Random | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Attempt every due delivery once (at most `policy.batch`); return what happened."""
    policy = policy or DeliveryPolicy()
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    report = DeliveryReport()
    now = clock()
    with Session(engine) as session:
        states = _states(session)
        resting = {name for name, state in states.items() if _resting(state, now)}
        due = _due(session, now, policy.batch, resting)
    for delivery, record in due:
        if should_stop():
            break
        channel = channels.get(delivery.channel)
        if channel is None or _resting(states.get(delivery.channel), clock()):
            report.skipped += 1
            continue
        result = channel.send(from_record(record))
        states[delivery.channel] = _mark(engine, delivery, result, clock(), policy, rng, report)
    return report


def _mark(
    engine: Engine,
    delivery: Delivery,
    result: SendResult,
    now: datetime,
    policy: DeliveryPolicy,
    rng: random.Random,
    report: DeliveryReport,
) -> ChannelState:
    """Record one attempt and its channel's state, in one transaction; return the new channel state."""
    with Session(engine) as session:
        row = session.get(Delivery, delivery.id)
        assert row is not None
        state = session.get(ChannelState, delivery.channel) or ChannelState(name=delivery.channel)
        row.attempts += 1
        row.last_attempt_at = now
        if result.ok:
            row.status, row.sent_at, row.last_error = "sent", now, None
            state.consecutive_failures, state.retry_at = 0, None
            report.sent += 1
        elif result.gone:
            reason = f"endpoint answered 410 Gone at {now.isoformat()}: channel disabled; {result.error or ''}".strip()
            row.status, row.last_error = "failed", reason
            state.disabled_at, state.disabled_reason = now, reason
            session.execute(
                update(Delivery)
                .where(col(Delivery.channel) == delivery.channel, col(Delivery.status) == "pending")
                .values(status="failed", last_error=f"channel disabled: {reason}")
            )
            report.failed += 1
            report.errors.append(f"{delivery.channel}: {reason}")
        else:
            _retry_or_fail(row, state, result, now, policy, rng, report)
        session.add(row)
        session.add(state)
        session.commit()
        session.refresh(state)
        session.expunge(state)
    return state


def _retry_or_fail(
    row: Delivery,
    state: ChannelState,
    result: SendResult,
    now: datetime,
    policy: DeliveryPolicy,
    rng: random.Random,
    report: DeliveryReport,
) -> None:
    error = result.error or "delivery failed"
    created = as_utc(row.created_at)
    assert created is not None
    too_old = (now - created).total_seconds() >= policy.max_age
    if not result.retryable or too_old:
        row.status = "failed"
        row.last_error = error if not too_old else f"gave up after {policy.max_age / 3600:g} h: {error}"
        report.failed += 1
        report.errors.append(f"{row.channel}: {row.last_error}")
        return
    delay = policy.delay(row.attempts, result.retry_after, rng)
    row.next_attempt_at = now + timedelta(seconds=delay)
    row.last_error = error
    state.consecutive_failures += 1
    # The channel rests too, backing off with its consecutive failures: deliveries to a receiver that is
    # down are not tried one after another, only one attempt per back-off step.
    rest = policy.delay(state.consecutive_failures, result.retry_after, rng)
    state.retry_at = now + timedelta(seconds=rest)
    report.retried += 1
    report.errors.append(f"{row.channel}: {error} (retry in {delay:.0f}s)")
