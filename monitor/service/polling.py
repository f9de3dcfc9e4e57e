"""One poll of one source: fetch, then apply or record the failure, in one transaction.

Fetching happens outside the transaction (it is slow and may hang until its timeout); applying the
snapshot, and whatever `hooks` add for it (impacts, alerts), commit together or not at all.

A poll is total: it ends `ok`, `quarantined`, or `failed` with a one-line reason and a kind. Whatever the
fetch, the apply step or a hook raises (a `TierdriftError` or anything else: a bug, a database error)
rolls the poll's transaction back and is recorded as a failed poll, so the next poll starts clean and the
failure shows in `polls`, in `sources` and in the metrics. The hooks run for the failure too, in its own
transaction; if one of them raises as well, the failed poll is recorded without their effects and says
so. Only when not even that can be written (the database is gone) does `poll_source` raise:
`PollNotRecorded`, one line.

Resting: when the exchange asks clients to stay away (a fetch error with `rest_seconds`, such as Bybit's
HTTP 403 IP limit, which asks for at least 10 minutes; domain doc §8), the failed poll records until when
(`retry_at`), and the source's polls until then do not call the exchange: each records a failed poll of
kind "resting" carrying the same `retry_at`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.config.settings import Settings
from monitor.exchanges.errors import one_line
from monitor.store import storage
from snapshots.errors import TierdriftError
from snapshots.model import Snapshot
from snapshots.store import ApplyFailed, ApplyPolicy, PollResult, apply_snapshot, record_failure, requested_rest

Fetch = Callable[[str, Settings], Snapshot]
#: Called inside the poll's transaction with every result (ok, quarantined or failed), to add derived
#: records: impacts, alerts, source health. A hook that raises rolls the whole poll back.
Hook = Callable[[Session, PollResult], None]

#: The longest rest honoured, whatever an error asks: a week keeps a mistaken value from silencing a
#: source for years (or overflowing a datetime).
MAX_REST = timedelta(days=7)


class PollNotRecorded(TierdriftError):
    """Not even a failed poll could be written: the database is unreachable or refuses writes."""


@dataclass(frozen=True, slots=True)
class _Attempt:
    engine: Engine
    source: str
    started: datetime
    t0: float
    hooks: Sequence[Hook]

    @property
    def url(self) -> str:
        return str(self.engine.url)  # SQLAlchemy shows a password as ***

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000


def policy_from(settings: Settings, *, accept_removals: bool = False) -> ApplyPolicy:
    return ApplyPolicy(
        max_vanish_share=settings.quarantine_share,
        confirmations=settings.quarantine_confirmations,
        accept_removals=accept_removals,
    )


def poll_source(
    engine: Engine,
    settings: Settings,
    source: str,
    fetch: Fetch,
    *,
    clock: Callable[[], datetime],
    hooks: Sequence[Hook] = (),
    accept_removals: bool = False,
) -> PollResult:
    """Poll `source` once and record the outcome, whatever goes wrong.

    Raises only `PollNotRecorded`, when the outcome cannot be written to the database at all.
    """
    attempt = _Attempt(engine, source, clock(), time.perf_counter(), hooks)
    resting = _resting(attempt)
    if resting is not None:
        return _fail(attempt, resting[1], "resting", resting[0])
    try:
        snap = fetch(source, settings)
    except Exception as exc:  # a bug or an unmapped library error too: recorded, never swallowed
        until = rest_until(exc, attempt.started)
        reason = describe(exc, attempt.url) + (_rest_note(until) if until else "")
        return _fail(attempt, reason, _label(exc), until)
    try:
        return _apply(attempt, settings, snap, accept_removals)
    except Exception as exc:  # the transaction was rolled back as the session closed
        return _fail(attempt, describe(exc, attempt.url), _label(exc))


@runtime_checkable
class Preparing(Protocol):
    """A hook that can do its reading and computing before the poll's write transaction (the impacts)."""

    def prepare(self, engine: Engine, snap: Snapshot, started_at: datetime) -> None: ...


def _apply(attempt: _Attempt, settings: Settings, snap: Snapshot, accept_removals: bool) -> PollResult:
    # Before the write transaction, so that other writers are not held out while hooks compute.
    for hook in attempt.hooks:
        if isinstance(hook, Preparing):
            hook.prepare(attempt.engine, snap, attempt.started)
    with Session(attempt.engine) as session:
        result = apply_snapshot(
            session,
            snap,
            started_at=attempt.started,
            duration_ms=attempt.elapsed_ms(),
            policy=policy_from(settings, accept_removals=accept_removals),
        )
        for hook in attempt.hooks:
            hook(session, result)
        session.commit()
    return result


def describe(exc: Exception, url: str | None = None) -> str:
    """The one-line reason a poll records for `exc`: the database's own sentence for a storage failure (full,
    read-only, locked…), "unexpected …" for anything else that is not a `TierdriftError`."""
    if isinstance(exc, TierdriftError):
        return " ".join(str(exc).split())
    known = storage.describe(exc, url)
    if known is not None:
        return known
    # SQLAlchemy's message appends the statement and its parameters; the driver's own says what went wrong.
    cause = getattr(exc, "orig", None)
    text = one_line(str(cause if isinstance(cause, BaseException) else exc))
    return f"unexpected {type(exc).__name__}: {text or '(no message)'}"


def _label(exc: Exception) -> str:
    """`FetchTimeout` → "fetch_timeout": a short, stable label of why a poll failed, for metrics."""
    if not isinstance(exc, TierdriftError) and storage.describe(exc, None) is not None:
        return "storage"
    if not isinstance(exc, TierdriftError) or isinstance(exc, ApplyFailed):
        return "unexpected"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def rest_until(exc: Exception, started: datetime) -> datetime | None:
    """When a poll that started at `started` and failed with `exc` may call the exchange again, if the
    exchange asked for a rest; rounded up to the second, as the reason shows it."""
    rest = getattr(exc, "rest_seconds", None)
    if not isinstance(rest, int | float) or not math.isfinite(rest) or rest <= 0:
        return None
    until = started + min(timedelta(seconds=rest), MAX_REST)
    return until.replace(microsecond=0) + (timedelta(seconds=1) if until.microsecond else timedelta())


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rest_note(until: datetime) -> str:
    return f"; resting until {_stamp(until)}, no request before then"


def resting_reason(now: datetime, until: datetime, reason: str, kind: str | None) -> str | None:
    """The reason of a poll at `now` that must not call the exchange, or None when the rest is over.

    `reason` and `kind` are those of the latest poll, which asked to rest until `until`.
    """
    if until <= now:
        return None
    if kind == "resting":
        return reason
    return f"resting until {_stamp(until)}, no request before then: {reason.removesuffix(_rest_note(until))}"


def _resting(attempt: _Attempt) -> tuple[datetime, str] | None:
    try:
        with Session(attempt.engine) as session:
            asked = requested_rest(session, attempt.source)
    except Exception as exc:  # without the history there is nothing to record the poll in either
        raise PollNotRecorded(f"{attempt.source}: cannot read the poll history: {describe(exc, attempt.url)}") from exc
    if asked is None:
        return None
    reason = resting_reason(attempt.started, asked.until, asked.reason, asked.kind)
    return None if reason is None else (asked.until, reason)


def _fail(attempt: _Attempt, reason: str, kind: str, retry_at: datetime | None = None) -> PollResult:
    """Record a failed poll and run the hooks for it; without them if they raise; raise if neither works."""
    try:
        return _record(attempt, reason, kind, retry_at, attempt.hooks)
    except Exception as exc:
        hook_error = describe(exc, attempt.url)
    try:
        return _record(attempt, f"{reason} (recording its effects failed too: {hook_error})", kind, retry_at, ())
    except Exception as exc:
        raise PollNotRecorded(
            f"{attempt.source}: the poll failed ({reason}) and could not be recorded: {describe(exc, attempt.url)}"
        ) from exc


def _record(attempt: _Attempt, reason: str, kind: str, retry_at: datetime | None, hooks: Sequence[Hook]) -> PollResult:
    with Session(attempt.engine) as session:
        result = record_failure(
            session,
            attempt.source,
            attempt.started,
            attempt.elapsed_ms(),
            reason,
            error_kind=kind,
            retry_at=retry_at,
        )
        for hook in hooks:
            hook(session, result)
        session.commit()
    return result
