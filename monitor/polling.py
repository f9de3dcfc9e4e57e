"""One poll of one source: fetch, then apply or record the failure, in one transaction.

Fetching happens outside the transaction (it is slow and may hang until its timeout); applying the
snapshot, and whatever `hooks` add for it (impacts, alerts), commit together or not at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.settings import Settings
from snapshots.errors import TierdriftError
from snapshots.model import Snapshot
from snapshots.store import ApplyPolicy, PollResult, apply_snapshot, record_failure

Fetch = Callable[[str, Settings], Snapshot]
#: Called inside the poll's transaction with every result (ok, quarantined or failed), to add derived
#: records: impacts, alerts, source health. A hook that raises rolls the whole poll back.
Hook = Callable[[Session, PollResult], None]


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
    """Poll `source` once and record the outcome. Never raises for an exchange or payload failure."""
    started = clock()
    t0 = time.perf_counter()
    try:
        snap = fetch(source, settings)
    except TierdriftError as exc:
        return _fail(engine, source, started, t0, str(exc), hooks, _label(exc))
    except Exception as exc:  # a bug or an unmapped library error: recorded, never swallowed
        return _fail(engine, source, started, t0, f"unexpected {type(exc).__name__}: {exc}", hooks, "unexpected")
    with Session(engine) as session:
        try:
            result = apply_snapshot(
                session,
                snap,
                started_at=started,
                duration_ms=(time.perf_counter() - t0) * 1000,
                policy=policy_from(settings, accept_removals=accept_removals),
            )
        except TierdriftError as exc:
            session.rollback()
            return _fail(engine, source, started, t0, str(exc), hooks, _label(exc))
        for hook in hooks:
            hook(session, result)
        session.commit()
    return result


def _label(exc: Exception) -> str:
    """`FetchTimeout` → "fetch_timeout": a short, stable label of why a poll failed, for metrics."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _fail(
    engine: Engine, source: str, started: datetime, t0: float, reason: str, hooks: Sequence[Hook], kind: str
) -> PollResult:
    with Session(engine) as session:
        result = record_failure(session, source, started, (time.perf_counter() - t0) * 1000, reason)
        result = replace(result, error_kind=kind)
        for hook in hooks:
            hook(session, result)
        session.commit()
    return result
