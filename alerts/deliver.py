"""Send pending deliveries: at least once, with the same alert id on every attempt, and never in a tight loop.

Each channel is delivered by a worker thread of its own (`Dispatcher`), in order, so that a slow or hung
receiver delays only its own alerts; every attempt is bounded by its channel's deadline. No database
transaction is open while a receiver is waited on: a delivery is *claimed* in one short transaction
(`claimed_until` = now + the channel's deadline + a margin, only if unclaimed or expired), sent, and
marked in another, which clears the claim. Two processes delivering at once (the daemon and `alerts
deliver`) therefore never send the same delivery; a process killed between claim and mark leaves it
pending, and it is sent again, with the same id (receivers de-duplicate on it), once the claim expires, or
at once by the next process when no other is delivering (alerts.claims). Stopping (`Dispatcher.stop`)
cuts the attempts in flight off and releases their claims without counting an attempt.

Back-off is per delivery (exponential with jitter, at least the receiver's `Retry-After`) and per
channel: after a retryable failure the channel rests until its retry time, so a receiver that is down
costs at most one failed attempt per backoff step instead of one per pending alert. A delivery still
failing `max_age` after it was created is marked failed; an endpoint that is gone for good (a webhook's
410 Gone, a Telegram chat not found or that blocked the bot: `SendResult.gone`) disables its channel, with
the reason recorded.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from alerts.channels.base import Channel, SendResult
from alerts.channels.watchdog import Abort
from alerts.claims import ClaimGuard
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
    batch: int = 1000  # deliveries of one channel loaded at a time
    default_deadline: float = 60.0  # seconds an attempt may take, for a channel that does not say (`deadline`)
    claim_margin: float = 30.0  # a claim outlives its attempt's deadline by this much: time to record it
    stop_grace: float = 2.0  # seconds `Dispatcher.stop` waits for the attempts it cut off

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds until the next attempt after `attempts` failed ones."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** max(attempts - 1, 0))
        backoff *= 1 + rng.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_retry_after))
        return backoff

    def claim_seconds(self, channel: Channel) -> float:
        """How long a claim on a delivery of `channel` holds: its attempt deadline plus the margin."""
        deadline = getattr(channel, "deadline", None)
        return (deadline if isinstance(deadline, int | float) else self.default_deadline) + self.claim_margin


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # due, but their channel is resting, disabled or not configured, or another process has them
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.retried + self.failed

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.errors.extend(other.errors)


def _resting(state: ChannelState | None, now: datetime) -> bool:
    if state is None:
        return False
    retry_at = as_utc(state.retry_at)
    return state.disabled_at is not None or (retry_at is not None and retry_at > now)


def _unclaimed(now: datetime) -> ColumnElement[bool]:
    return or_(col(Delivery.claimed_until).is_(None), col(Delivery.claimed_until) <= now)


class Dispatcher:
    """Delivers what is due, each channel in a worker thread of its own (see the module docstring).

    `dispatch()` starts a worker for every configured channel that has none running and is not resting; a
    worker sends its channel's due deliveries in order until none is left, its channel rests, or `stop()`.
    `on_done` receives each worker's report when it ends (in the worker's thread). A stopped dispatcher
    starts no more workers: make a new one to deliver again.
    """

    def __init__(
        self,
        engine: Engine,
        channels: Mapping[str, Channel],
        *,
        clock: Callable[[], datetime],
        policy: DeliveryPolicy | None = None,
        rng: random.Random | None = None,
        on_done: Callable[[DeliveryReport], None] | None = None,
    ) -> None:
        self._engine = engine
        self._channels = channels
        self._clock = clock
        self._policy = policy or DeliveryPolicy()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._on_done = on_done
        self._abort = Abort()
        self._guard = ClaimGuard(engine)
        self._lock = threading.Lock()
        # Each worker's "ended" event, rather than Thread.is_alive: on Python 3.11 a join() interrupted by
        # Ctrl-C marks a thread that still runs as stopped, and stop() would not wait for it.
        self._ended: dict[str, threading.Event] = {}

    @property
    def stopped(self) -> bool:
        return self._abort.aborted

    def dispatch(self) -> DeliveryReport:
        """Start the workers that are due; return what is left waiting (`skipped`: resting, disabled or
        unconfigured channels)."""
        report = DeliveryReport()
        if self.stopped:
            return report
        now = self._clock()
        if self._any_claimed(now):
            self._guard.sweep(self._clear_claims)  # a dead process's claims, if no process is delivering
        with Session(self._engine) as session:
            states = {s.name: s for s in session.exec(select(ChannelState))}
            due = dict(
                session.exec(
                    select(Delivery.channel, func.count())
                    .where(Delivery.status == "pending", col(Delivery.next_attempt_at) <= now, _unclaimed(now))
                    .group_by(Delivery.channel)
                ).all()
            )
        for name, count in due.items():
            channel = self._channels.get(name)
            if channel is None or _resting(states.get(name), now):
                report.skipped += count
            else:
                self._start(name, channel)
        return report

    def _start(self, name: str, channel: Channel) -> None:
        with self._lock:
            running = self._ended.get(name)
            if self.stopped or (running is not None and not running.is_set()):
                return
            ended = self._ended[name] = threading.Event()
            worker = threading.Thread(
                target=self._work, args=(name, channel, ended), name=f"deliver:{name}", daemon=True
            )
            worker.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running workers, at most `timeout` seconds in all; True when none is left running."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            events = list(self._ended.values())
        for ended in events:
            ended.wait(None if end is None else max(0.0, end - time.monotonic()))
        return all(e.is_set() for e in events)

    def stop(self) -> bool:
        """Cut every attempt in flight off (their deliveries stay pending, unclaimed), start no more, and wait
        for the workers up to `policy.stop_grace`; True if they all ended."""
        self._abort.abort()
        return self.wait(self._policy.stop_grace)

    def _work(self, name: str, channel: Channel, ended: threading.Event) -> None:
        report = DeliveryReport()
        try:
            with self._abort.governing(), self._guard.delivering():
                while not self.stopped and self._round(name, channel, report):
                    pass
        except Exception as exc:  # the database failed us: what is claimed stays pending, the next run retries
            first = str(exc).splitlines()[0] if str(exc) else ""
            report.errors.append(f"{name}: delivery stopped by {type(exc).__name__}: {first}"[:300])
        finally:
            try:
                if self._on_done is not None:
                    self._on_done(report)
            finally:
                ended.set()

    def _round(self, name: str, channel: Channel, report: DeliveryReport) -> bool:
        """Send one batch of `name`'s due deliveries in order; True if there may be more to send now."""
        now = self._clock()
        with Session(self._engine) as session:
            state = session.get(ChannelState, name)
            if _resting(state, now):
                return False
            due = list(
                session.exec(
                    select(Delivery, AlertRecord)
                    .join(AlertRecord, col(AlertRecord.id) == col(Delivery.alert_id))
                    .where(
                        Delivery.channel == name,
                        Delivery.status == "pending",
                        col(Delivery.next_attempt_at) <= now,
                        _unclaimed(now),
                    )
                    .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
                    .limit(self._policy.batch)
                )
            )
        for delivery, record in due:
            if self.stopped:
                return False
            token = self._claim(delivery, channel)
            if token is None:  # another process took it between the query and now
                report.skipped += 1
                continue
            result = channel.send(from_record(record))
            if self.stopped and not result.ok:
                self._release(delivery, token)  # abandoned, not failed: no attempt is counted
                return False
            marked = _mark(self._engine, delivery, token, result, self._clock(), self._policy, self._rng, report, state)
            state = marked or state
            if marked is not None and _resting(marked, self._clock()):
                return False
        return bool(due)

    def _claim(self, delivery: Delivery, channel: Channel) -> datetime | None:
        now = self._clock()
        token = now + timedelta(seconds=self._policy.claim_seconds(channel))
        with self._engine.begin() as conn:
            claimed = conn.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery.id, col(Delivery.status) == "pending", _unclaimed(now))
                .values(claimed_until=token)
            ).rowcount
        return token if claimed == 1 else None

    def _release(self, delivery: Delivery, token: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery.id, col(Delivery.claimed_until) == token)
                .values(claimed_until=None)
            )

    def _any_claimed(self, now: datetime) -> bool:
        """Whether any pending delivery is claimed (read only: the sweep alone takes the write lock)."""
        with self._engine.connect() as conn:
            claimed = select(Delivery.id).where(Delivery.status == "pending", col(Delivery.claimed_until) > now)
            return conn.execute(claimed.limit(1)).first() is not None

    def _clear_claims(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(Delivery).where(col(Delivery.claimed_until).is_not(None)).values(claimed_until=None))


def deliver_due(
    engine: Engine,
    channels: Mapping[str, Channel],
    *,
    clock: Callable[[], datetime],
    policy: DeliveryPolicy | None = None,
    rng: random.Random | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Deliver everything that is due now, each channel in its own worker, and return what happened.

    Returns when every channel has nothing due left or rests. `should_stop` (polled a few times a second)
    and KeyboardInterrupt cut the attempts in flight off and leave their deliveries pending."""
    report = DeliveryReport()
    if should_stop():
        return report
    lock = threading.Lock()

    def done(worker: DeliveryReport) -> None:
        with lock:
            report.add(worker)

    dispatcher = Dispatcher(engine, channels, clock=clock, policy=policy, rng=rng, on_done=done)
    waiting = dispatcher.dispatch()
    try:
        while not dispatcher.wait(0.1):
            if should_stop():
                dispatcher.stop()
                break
    except BaseException:  # KeyboardInterrupt: abandon the sends in flight, keep their deliveries pending
        dispatcher.stop()
        raise
    with lock:
        report.add(waiting)
        return report


def _mark(
    engine: Engine,
    delivery: Delivery,
    token: datetime,
    result: SendResult,
    now: datetime,
    policy: DeliveryPolicy,
    rng: random.Random,
    report: DeliveryReport,
    known: ChannelState | None = None,
) -> ChannelState | None:
    """Record one attempt and its channel's state, and clear the claim `token`, in one transaction; return
    the new channel state. None, recording nothing, if the claim is no longer ours (it expired and another
    process claimed the delivery, or a sweep took us for dead): the other process records its own attempt.

    `known` is the channel's state as last read or written by this worker: a success on a channel known to
    be healthy changes nothing but the delivery, which is then one UPDATE (the common case, by far)."""
    if result.ok and _healthy(known):
        with engine.begin() as conn:
            ours = conn.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery.id, col(Delivery.claimed_until) == token)
                .values(
                    status="sent",
                    sent_at=now,
                    last_error=None,
                    attempts=col(Delivery.attempts) + 1,
                    last_attempt_at=now,
                    claimed_until=None,
                )
            ).rowcount
        if ours != 1:
            return None
        report.sent += 1
        return known
    with Session(engine) as session:
        ours = (
            session.connection()
            .execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery.id, col(Delivery.claimed_until) == token)
                .values(claimed_until=None)
            )
            .rowcount
        )
        if ours != 1:
            session.rollback()
            return None
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
            # 410 Gone from a webhook, a Telegram chat that is gone or has blocked the bot: the error says which.
            reason = f"endpoint gone for good at {now.isoformat()}: channel disabled; {result.error or ''}".strip()
            row.status, row.last_error = "failed", reason
            state.disabled_at, state.disabled_reason = now, reason
            session.execute(
                update(Delivery)
                .where(col(Delivery.channel) == delivery.channel, col(Delivery.status) == "pending")
                .values(status="failed", last_error=f"channel disabled: {reason}", claimed_until=None)
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


def _healthy(state: ChannelState | None) -> bool:
    """A channel state that a success leaves as it is: stored, with no failure, rest or disablement."""
    return (
        state is not None and state.consecutive_failures == 0 and state.retry_at is None and state.disabled_at is None
    )


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
