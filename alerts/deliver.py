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

Quiet hours and the digest interval (alerts.schedule, one `Schedule` per channel): a due delivery that its
channel's schedule holds back is postponed (`next_attempt_at` = the end of the hold, `hold` = why) without
counting an attempt. When held deliveries come due, all of them in the round go as **one grouped message**
(`alerts.schedule.group_alert`): they are claimed together under a new group id, written on them in the
claim's transaction, and marked sent (or retried) together in one transaction. A retry or a resend after a
crash claims them again by that id, so the group is the same message with the same id.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from alerts.model import Severity
from alerts.outbox import from_record
from alerts.schedule import Schedule, group_alert
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
    held: int = 0  # due, but held back by their channel's quiet hours or digest interval
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.retried + self.failed

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.held += other.held
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
    starts no more workers: make a new one to deliver again. `schedules` holds each channel's quiet hours
    and digest interval (none: everything goes when due).
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
        schedules: Mapping[str, Schedule] | None = None,
    ) -> None:
        self._engine = engine
        self._channels = channels
        self._schedules = dict(schedules or {})
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
        """Send one batch of `name`'s due deliveries in order; True if there may be more to send now.

        With a schedule, each is first asked whether it must wait (then it is postponed), and those that
        were held and are due now go together as one grouped message after the others."""
        now = self._clock()
        schedule = self._schedules.get(name)
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
            last_digest = _last_digest(session, name) if schedule and schedule.digest_interval else None
        singles, released = self._sort_out(name, due, now, last_digest, report)
        groups: set[str] = set()
        if len(released) == 1:
            singles.insert(0, released.pop())  # one held alert alone is just itself
        for delivery, record in singles:
            if self.stopped:
                return False
            if delivery.group_id is not None:  # a group tried before: again whole, under its id
                if delivery.group_id not in groups:
                    groups.add(delivery.group_id)
                    state, rest = self._send_group(name, channel, delivery.group_id, None, report, state)
                    if rest:
                        return False
                continue
            state, rest = self._send_one(delivery, record, channel, report, state)
            if rest:
                return False
        if released and not self.stopped:
            group_id = f"group_{uuid.uuid4().hex}"
            self._send_group(name, channel, group_id, [d for d, _ in released], report, state)
        return bool(due)

    def _sort_out(
        self, name: str, due: list[tuple[Delivery, AlertRecord]], now: datetime, last_digest: datetime | None,
        report: DeliveryReport,
    ) -> tuple[list[tuple[Delivery, AlertRecord]], list[tuple[Delivery, AlertRecord]]]:  # fmt: skip
        """Postpone what `name`'s schedule holds back now; (what goes on its own, in order, and the held
        deliveries that are due, for one grouped message)."""
        schedule = self._schedules.get(name)
        if schedule is None:
            return due, []
        singles: list[tuple[Delivery, AlertRecord]] = []
        released: list[tuple[Delivery, AlertRecord]] = []
        stored_digest = last_digest
        for delivery, record in due:
            if delivery.group_id is not None:
                # A group being retried waits out quiet hours too (its digest interval has been served).
                hold = schedule.hold(record.kind, Severity(record.severity), now, None)
                if hold is not None:
                    self._hold(delivery, *hold)
                    report.held += 1
                else:
                    singles.append((delivery, record))
                continue
            # Held ones that come due go together, whatever the others of the round; a new digest waits
            # for the interval from any digest that goes in this round.
            was_held = delivery.hold is not None
            since = stored_digest if was_held else last_digest
            hold = schedule.hold(record.kind, Severity(record.severity), now, since)
            if hold is not None:
                self._hold(delivery, *hold)
                report.held += 1
                continue
            (released if was_held else singles).append((delivery, record))
            if record.kind == "tier_changes":
                last_digest = now
        return singles, released

    def _send_one(
        self, delivery: Delivery, record: AlertRecord, channel: Channel, report: DeliveryReport,
        state: ChannelState | None,
    ) -> tuple[ChannelState | None, bool]:  # fmt: skip
        """Claim, send and mark one delivery; (the channel's state, whether to stop the round)."""
        token = self._claim(delivery, channel)
        if token is None:  # another process took it between the query and now
            report.skipped += 1
            return state, False
        result = channel.send(from_record(record))
        if self.stopped and not result.ok:
            self._release([delivery.id], token)  # abandoned, not failed: no attempt is counted
            return state, True
        marked = _mark(self._engine, delivery, token, result, self._clock(), self._policy, self._rng, report, state)
        state = marked or state
        return state, marked is not None and _resting(marked, self._clock())

    def _send_group(
        self, name: str, channel: Channel, group_id: str, members: list[Delivery] | None, report: DeliveryReport,
        state: ChannelState | None,
    ) -> tuple[ChannelState | None, bool]:  # fmt: skip
        """Claim `members` into the group `group_id` (None: the group's pending deliveries, a retry), send
        them as one message and mark them together; (the channel's state, whether to stop the round)."""
        token = self._claim_group(name, group_id, members, channel)
        if token is None:
            report.skipped += len(members or ())
            return state, False
        with Session(self._engine) as session:
            rows = list(
                session.exec(
                    select(Delivery, AlertRecord)
                    .join(AlertRecord, col(AlertRecord.id) == col(Delivery.alert_id))
                    .where(col(Delivery.group_id) == group_id, col(Delivery.claimed_until) == token)
                )
            )
        if not rows:
            return state, False
        alert = group_alert(group_id, [from_record(r) for _, r in rows], [d.hold for d, _ in rows])
        result = channel.send(alert)
        ids = [d.id for d, _ in rows if d.id is not None]
        if self.stopped and not result.ok:
            self._release(ids, token)
            return state, True
        marked = _mark_group(self._engine, name, ids, token, result, self._clock(), self._policy, self._rng, report)
        state = marked or state
        return state, marked is not None and _resting(marked, self._clock())

    def _claim_group(
        self, name: str, group_id: str, members: list[Delivery] | None, channel: Channel
    ) -> datetime | None:
        """Claim the members into the group in one transaction, all or none; the claim token or None."""
        now = self._clock()
        token = now + timedelta(seconds=self._policy.claim_seconds(channel))
        pending = (col(Delivery.channel) == name, col(Delivery.status) == "pending", _unclaimed(now))
        with self._engine.connect() as conn, conn.begin() as tx:
            if members is None:
                conn.execute(update(Delivery).where(col(Delivery.group_id) == group_id, *pending)
                             .values(claimed_until=token))  # fmt: skip
                return token
            ids = [d.id for d in members]
            claimed = conn.execute(
                update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.group_id).is_(None), *pending)
                .values(claimed_until=token, group_id=group_id)
            ).rowcount
            if claimed != len(ids):  # another process took some: leave them all to the next round
                tx.rollback()
                return None
        return token

    def _hold(self, delivery: Delivery, until: datetime, reason: str) -> None:
        """Postpone a delivery its schedule holds back (no attempt counted; only if still pending, unclaimed)."""
        now = self._clock()
        with self._engine.begin() as conn:
            conn.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery.id, col(Delivery.status) == "pending", _unclaimed(now))
                .values(next_attempt_at=until, hold=reason)
            )

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

    def _release(self, ids: Sequence[int | None], token: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.claimed_until) == token)
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
    schedules: Mapping[str, Schedule] | None = None,
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

    dispatcher = Dispatcher(engine, channels, clock=clock, policy=policy, rng=rng, on_done=done, schedules=schedules)
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
            row.status, row.last_error = "failed", _disable(session, state, result, now, report)
            report.failed += 1
        else:
            _retry_or_fail(row, state, result, now, policy, rng, report)
        session.add(row)
        session.add(state)
        session.commit()
        session.refresh(state)
        session.expunge(state)
    return state


def _disable(session: Session, state: ChannelState, result: SendResult, now: datetime, report: DeliveryReport) -> str:
    """Disable the channel of `state` for good, failing its other pending deliveries; the reason."""
    # 410 Gone from a webhook, a Telegram chat that is gone or has blocked the bot: the error says which.
    reason = f"endpoint gone for good at {now.isoformat()}: channel disabled; {result.error or ''}".strip()
    state.disabled_at, state.disabled_reason = now, reason
    session.execute(
        update(Delivery)
        .where(col(Delivery.channel) == state.name, col(Delivery.status) == "pending")
        .values(status="failed", last_error=f"channel disabled: {reason}", claimed_until=None)
    )
    report.errors.append(f"{state.name}: {reason}")
    return reason


def _last_digest(session: Session, channel: str) -> datetime | None:
    """When `channel` last sent a tier-change digest (alone or in a group)."""
    sent = session.exec(
        select(func.max(Delivery.sent_at))
        .join(AlertRecord, col(AlertRecord.id) == col(Delivery.alert_id))
        .where(Delivery.channel == channel, Delivery.status == "sent", AlertRecord.kind == "tier_changes")
    ).first()
    return as_utc(sent)


def _mark_group(
    engine: Engine,
    channel: str,
    ids: list[int],
    token: datetime,
    result: SendResult,
    now: datetime,
    policy: DeliveryPolicy,
    rng: random.Random,
    report: DeliveryReport,
) -> ChannelState | None:
    """Record one attempt of a grouped message on all its members and the channel's state, in one
    transaction: sent together, retried together (one retry time for all, so they stay one group) or failed
    together. None, recording nothing, if the claim is no longer ours (as `_mark`)."""
    with Session(engine) as session:
        ours = (
            session.connection()
            .execute(
                update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.claimed_until) == token)
                .values(claimed_until=None)
            )
            .rowcount
        )
        if ours != len(ids):
            session.rollback()
            return None
        rows = list(session.exec(select(Delivery).where(col(Delivery.id).in_(ids))))
        state = session.get(ChannelState, channel) or ChannelState(name=channel)
        for row in rows:
            row.attempts += 1
            row.last_attempt_at = now
        error = result.error or "delivery failed"
        oldest = min(as_utc(r.created_at) or now for r in rows)
        too_old = (now - oldest).total_seconds() >= policy.max_age
        if result.ok:
            for row in rows:
                row.status, row.sent_at, row.last_error = "sent", now, None
            state.consecutive_failures, state.retry_at = 0, None
            report.sent += len(rows)
        elif result.gone:
            reason = _disable(session, state, result, now, report)
            for row in rows:
                row.status, row.last_error = "failed", reason
            report.failed += len(rows)
        elif not result.retryable or too_old:
            last = error if not too_old else f"gave up after {policy.max_age / 3600:g} h: {error}"
            for row in rows:
                row.status, row.last_error = "failed", last
            report.failed += len(rows)
            report.errors.append(f"{channel}: grouped message of {len(rows)}: {last}")
        else:
            delay = policy.delay(max(r.attempts for r in rows), result.retry_after, rng)
            for row in rows:
                row.next_attempt_at, row.last_error = now + timedelta(seconds=delay), error
            state.consecutive_failures += 1
            state.retry_at = now + timedelta(seconds=policy.delay(state.consecutive_failures, result.retry_after, rng))
            report.retried += len(rows)
            report.errors.append(f"{channel}: grouped message of {len(rows)}: {error} (retry in {delay:.0f}s)")
        session.add_all([*rows, state])
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
