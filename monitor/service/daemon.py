"""`tierdrift run`: poll every source, refresh market data, watch health and deliver alerts, unattended.

APScheduler 3 runs the jobs in a thread pool: one poll job per source on its own interval (with
jitter), the outbox delivery every few seconds, the mark-price/ADR refresh, and a health check. Every
job is coalesced, runs one instance at a time, and has an explicit misfire grace; every network call
has a timeout (the exchanges' and the channels'), so a hung exchange cannot stall the other jobs.

Only the holder of the writer lock runs jobs (monitor.service.lock). A replica that cannot take it waits as a hot
standby and retries every `standby_retry_seconds`; if the holder loses its lock (its PostgreSQL session
died) it stops its jobs and becomes a standby itself.

Alerts are delivered by an `alerts.deliver.Dispatcher`: the deliver job only starts a worker for each
channel that has something due and none running, so a receiver that hangs until its deadline delays its
own channel and nothing else, not even the next deliver job.

Stopping (SIGTERM/SIGINT) first cuts the sends in flight off (they stay pending, unclaimed, and go out on
the next start), then waits for running jobs: a poll commits whole or not at all, and a delivery is
marked right after its send, so a restart neither loses nor doubles anything (a send whose mark was cut
off is resent with the same alert id).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine
from sqlmodel import Session

from alerts.channels.base import Channel
from alerts.deliver import DeliveryReport, Dispatcher, deliver_due
from monitor.config.settings import Settings
from monitor.exchanges.clients import public_client
from monitor.exchanges.kept import Kept
from monitor.risk.marketdata import Fetch as QuoteFetch
from monitor.risk.marketdata import fetch_quote, refresh_market, symbols_with_open_positions
from monitor.service.alerting import build_channels, delivery_policy, routes, schedules, watch_risk
from monitor.service.health import check_stale
from monitor.service.lock import WriterLock
from monitor.service.metrics import Metrics
from monitor.service.polling import Fetch, PollNotRecorded, poll_source
from monitor.service.wiring import health_rules, poll_hooks
from snapshots.store import PollResult

log = logging.getLogger("tierdrift")


@dataclass
class CycleReport:
    polls: list[PollResult] = field(default_factory=list)
    market_failures: list[str] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)

    @property
    def ok(self) -> bool:
        polls_ok = all(p.outcome == "ok" for p in self.polls)
        return polls_ok and not self.market_failures and self.delivery.failed == 0


@dataclass
class Daemon:
    settings: Settings
    engine: Engine
    fetch: Fetch
    lock: WriterLock
    clock: Callable[[], datetime]
    metrics: Metrics = field(default_factory=Metrics)
    stop_event: threading.Event = field(default_factory=threading.Event)
    channels: dict[str, Channel] = field(default_factory=dict)
    _holding: bool = False
    _dispatcher: Dispatcher | None = None  # the scheduled deliveries' while this process runs its jobs
    _sched: BackgroundScheduler | None = None  # the jobs' scheduler while this process runs them
    #: The market job's keyless client per source, with its loaded markets, kept across refreshes.
    _market_clients: dict[str, Kept] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.channels:
            self.channels = build_channels(self.settings)

    # -- the jobs -----------------------------------------------------------------------------------

    def poll(self, source: str) -> PollResult:
        """Poll `source` once, count and log the outcome. A poll that could not even be recorded (the
        database is gone) is counted and logged as failed, kind "not_recorded", and returned with id 0."""
        started = self.clock()
        try:
            result = poll_source(
                self.engine,
                self.settings,
                source,
                self.fetch,
                clock=self.clock,
                hooks=poll_hooks(self.settings, self.clock),
            )
        except PollNotRecorded as exc:
            result = PollResult(0, source, "poll", "failed", started, error=str(exc), error_kind="not_recorded")
        self.metrics.observe_poll(result)
        # A poll leaves a few objects in reference cycles that hold large buffers (answers, cursors); the
        # collector's own schedule counts objects, not bytes, and let them pile up (RSS rose by 500 MB an
        # hour on the soak). Collected here, cheaply: start-up's objects are frozen (`freeze_start_up`).
        gc.collect()
        line = f"poll {source}: {result.outcome} in {result.duration_ms:.0f} ms"
        if result.outcome == "ok":
            changed = len({c.symbol for c in result.changes})
            log.info("%s, %d symbols, %d changed, %d changes", line, result.symbols, changed, len(result.changes))
        else:
            log.warning("%s: %s", line, result.error)
        return result

    def refresh_market(self) -> list[str]:
        """Refresh marks and ADRs of every symbol with an open position, then step the positions' risk
        episodes (monitor.risk.episodes: an alert when one enters, worsens or ends); return the failures."""
        failures: list[str] = []
        with Session(self.engine) as session:
            wanted = symbols_with_open_positions(session)
        for source, symbols in wanted.items():
            if source not in self.settings.sources:
                continue
            with Session(self.engine) as session:
                results = refresh_market(session, source, symbols, self.settings, now=self.clock(),
                                         fetch=self._quotes(source))  # fmt: skip
                session.commit()
            if not all(r.ok for r in results):  # whatever failed, the next refresh starts from a new client
                self._market_clients[source].drop()
            failures.extend(f"{source} {r.symbol}: {r.reason}" for r in results if not r.ok)
        for line in failures:
            log.warning("market data %s", line)
        # Risk episodes (position_risk alerts) step on what was just stored, in one transaction of their own.
        events, found = watch_risk(self.engine, self.settings, self.clock)
        for e in events:
            log.info("risk: position #%s %s %s (%s)", e.position.id, e.position.symbol, e.event, e.level)
        self.metrics.violations.set(sum(1 for a in found.values() if a.figures and a.figures.violation))
        return failures

    def _quotes(self, source: str) -> QuoteFetch:
        """`fetch_quote` on the source's kept client: its markets load once, not on every refresh, and
        again once they are a day old (a new client)."""
        kept = self._market_clients.setdefault(source, Kept())
        now = self.clock()
        if kept.client is not None and kept.markets_due(now):
            kept.drop()
        fresh = kept.client is None
        client = kept.client_for(self.settings, lambda: public_client(source, self.settings))
        if fresh:
            kept.markets_at = now
        return partial(fetch_quote, exchange=client)

    def close_clients(self) -> None:
        for kept in self._market_clients.values():
            kept.drop()

    def check_health(self) -> list[str]:
        with Session(self.engine) as session:
            stale = check_stale(
                session, self.settings.sources, health_rules(self.settings), routes(self.settings), self.clock()
            )
            session.commit()
        return stale

    def deliver(self) -> DeliveryReport:
        """Deliver everything due now and wait for it (`run --once`, the demo); a stop cuts it short."""
        total = deliver_due(
            self.engine,
            self.channels,
            clock=self.clock,
            policy=delivery_policy(self.settings),
            should_stop=self.stop_event.is_set,
            schedules=schedules(self.settings),
        )
        self._observe_delivery(total)
        return total

    def dispatch_deliveries(self) -> None:
        """The scheduled deliver job: start the channel workers that are due, without waiting for them (each
        logs its own outcome when it ends)."""
        dispatcher = self._dispatcher  # read once: a stop may clear it meanwhile
        if dispatcher is not None:
            dispatcher.dispatch()

    def _observe_delivery(self, report: DeliveryReport) -> None:
        self.metrics.observe_delivery(report)
        if report.attempted:
            log.info("alerts: %d sent, %d to retry, %d failed", report.sent, report.retried, report.failed)
        for line in report.errors:
            log.warning("alert delivery %s", line)

    # -- one cycle, or forever ------------------------------------------------------------------------

    def cycle(self, *, deliver: bool = True) -> CycleReport:
        """Everything once, in order (`tierdrift run --once`). `deliver=False` leaves the delivery to the
        caller, which can then release the writer lock first: no lock is held while a receiver is waited on."""
        report = CycleReport()
        self.backfill_journal()
        for source in self.settings.sources:
            report.polls.append(self.poll(source))
        report.market_failures = self.refresh_market()
        self.check_health()
        if deliver:
            report.delivery = self.deliver()
        return report

    def backfill_journal(self) -> int:
        """Entry records, marked `recomputed`, for the positions logged before the journal existed (an
        upgraded database): the writer adds them once it holds the lock, so that `positions list --json`
        shows them without waiting for the next journal command. A failure is logged with its reason and
        leaves them for the next start (or the next `positions add/edit/close`)."""
        from monitor.journal.log import backfill
        from monitor.store.storage import describe

        try:
            with Session(self.engine) as session:
                added = backfill(session, self.settings, now=self.clock())
                session.commit()
        except Exception as exc:
            why = describe(exc, self.settings.database_url) or f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning("journal: entry records of earlier positions not computed: %s", " ".join(why.split()))
            return 0
        if added:
            log.info("journal: %d earlier position(s) got an entry record recomputed from history", added)
        return added

    def _guarded(self, job: Callable[[], object]) -> Callable[[], None]:
        """Run `job` only while this process holds the writer lock; never let an exception escape."""

        def run() -> None:
            if self.stop_event.is_set():
                return
            if not self.lock.still_held():
                log.error("lost the writer lock (%s): stopping jobs, back to standby", self.lock.describe())
                self._holding = False
                return
            try:
                job()
            except Exception as exc:  # recorded, never swallowed silently: the next run tries again
                log.exception("job failed: %s", type(exc).__name__)
                self.metrics.job_errors.inc()

        return run

    def _scheduler(self) -> BackgroundScheduler:
        s = self.settings
        grace = int(s.misfire_grace_seconds)
        sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(s.sources) + 3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone="UTC",
        )
        now = self.clock()
        for n, source in enumerate(s.sources):
            sched.add_job(
                self._guarded(lambda source=source: self.poll(source)),  # type: ignore[misc]
                IntervalTrigger(seconds=s.interval_for(source), jitter=s.poll_jitter_seconds),
                id=f"poll:{source}",
                next_run_time=now + timedelta(seconds=n),  # first polls at once, a second apart
            )
        sched.add_job(
            self._guarded(self.dispatch_deliveries), IntervalTrigger(seconds=s.deliver_interval_seconds), id="deliver"
        )
        sched.add_job(
            self._guarded(self.refresh_market),
            IntervalTrigger(seconds=s.market_interval_seconds),
            id="market",
            next_run_time=now + timedelta(seconds=len(s.sources) + 1),
        )
        sched.add_job(self._guarded(self.check_health), IntervalTrigger(seconds=60), id="health")
        return sched

    def run_forever(self) -> None:
        """Stand by until the writer lock is ours, run the jobs until stopped or the lock is lost, repeat."""
        try:
            while not self.stop_event.is_set():
                if not self.lock.acquire():
                    self.metrics.standby.set(1)
                    log.info("standby: %s is held by another writer%s", self.lock.describe(), self.lock.held_by())
                    self.stop_event.wait(self.settings.standby_retry_seconds)
                    continue
                self._holding = True
                self.metrics.standby.set(0)
                log.info("writer lock taken (%s): running", self.lock.describe())
                self.backfill_journal()
                self._dispatcher = Dispatcher(
                    self.engine,
                    self.channels,
                    clock=self.clock,
                    policy=delivery_policy(self.settings),
                    on_done=self._observe_delivery,
                    schedules=schedules(self.settings),
                )
                sched = self._scheduler()
                sched.start()
                self._sched = sched
                while not self.stop_event.wait(1.0) and self._holding:
                    pass
                log.info("stopping: waiting for running jobs")
                self._stop_deliveries()
                sched.shutdown(wait=True)
                self._sched = None
                self._holding = False
        finally:
            self.lock.release()
            self.close_clients()
            for channel in self.channels.values():
                channel.close()
            log.info("stopped")

    def _stop_deliveries(self) -> None:
        """Cut the sends in flight off, so that stopping (or losing the lock) never waits on a receiver."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None and not dispatcher.stop():
            log.warning("alert delivery: a send did not come back after being cut off; it stays pending")

    @property
    def holding(self) -> bool:
        return self._holding

    def next_polls(self) -> dict[str, datetime | None]:
        """When each source's next poll is due (None: paused); empty while this process runs no jobs."""
        sched = self._sched
        if sched is None:
            return {}
        jobs = {source: sched.get_job(f"poll:{source}") for source in self.settings.sources}
        return {source: job.next_run_time if job else None for source, job in jobs.items()}
