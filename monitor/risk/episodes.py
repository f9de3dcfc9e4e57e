"""Risk episodes: a position whose margin buffer shrinks because the market moved is alerted once per episode.

After each market refresh every open position is assessed (`monitor.risk.impacts.assess_now`) and put at a
*level* by its buffer (ADRs between the mark and the liquidation price, `monitor.risk.figures`):

| level       | when                                                      | alert severity |
|-------------|-----------------------------------------------------------|----------------|
| `ok`        | buffer ≥ `violation_threshold_adr`, or never liquidated   | (recovery: info) |
| `violation` | buffer below `violation_threshold_adr` (margin-risk rule) | warning        |
| `near`      | buffer below `risk_near_liquidation_adr`                  | critical       |
| `beyond`    | the mark is at or beyond the liquidation price            | critical       |

An *episode* runs from leaving `ok` until coming back to it. Entering it is an alert, so is every
escalation (`violation` → `near` → `beyond`), and so is the recovery; a de-escalation within the episode is
silent. Hysteresis (`risk_hysteresis_adr`): a level is left only when the buffer is at least its bound plus
the hysteresis (`beyond` is left once the mark is that many ADRs back on the safe side), so a buffer
hovering at 2.0 alerts once, not at every refresh. A position whose figures are unknown (no fresh mark or
ADR, no table) keeps its level: a stale price never makes or ends an episode.

`step` is the pure state machine; `track_risk` runs it over the open positions, writes each position's
level and figures (`RiskEpisode`) and hands the events to the sinks, all in the caller's transaction: the
outbox alert exists if and only if the level change that caused it was recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, insert
from sqlmodel import Session, select

from monitor.config.settings import Settings
from monitor.risk.figures import Assessment
from monitor.risk.impacts import assess_now
from monitor.risk.positions import open_positions
from monitor.store.models import Position, RiskEpisode
from snapshots.reader import as_utc

Level = Literal["ok", "violation", "near", "beyond"]
Event = Literal["entered", "escalated", "recovered"]
LEVELS: tuple[Level, ...] = ("ok", "violation", "near", "beyond")
RANK: dict[str, int] = {level: n for n, level in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class Bands:
    """The bounds of the levels, in ADRs of buffer: 0 < `near` < `threshold`; `hysteresis` ≥ 0."""

    threshold: float
    near: float
    hysteresis: float

    @classmethod
    def of(cls, settings: Settings) -> Bands:
        return cls(settings.violation_threshold_adr, settings.risk_near_liquidation_adr, settings.risk_hysteresis_adr)

    def bound(self, level: Level) -> float:
        """The buffer below which `level` (or worse) begins; `beyond` begins at 0 (the mark at the LP)."""
        return {"violation": self.threshold, "near": self.near, "beyond": 0.0}.get(level, float("inf"))


def raw_level(buffer: float, bands: Bands) -> Level:
    """The level of a signed buffer (≤ 0: the mark is at or beyond the liquidation price), without hysteresis."""
    if buffer <= 0:
        return "beyond"
    if buffer < bands.near:
        return "near"
    return "violation" if buffer < bands.threshold else "ok"


def step(previous: Level, buffer: float | None, bands: Bands) -> tuple[Level, Event | None]:
    """The new level after observing the signed `buffer` (None: unknown, nothing changes), and the event.

    The new level is the raw one, or the highest level not above `previous` that the buffer has not yet
    left by its bound plus the hysteresis, whichever is higher."""
    if buffer is None:
        return previous, None
    level = raw_level(buffer, bands)
    for held in LEVELS[RANK[previous] : RANK[level] : -1]:  # from `previous` down to just above the raw level
        if held != "ok" and buffer < bands.bound(held) + bands.hysteresis:
            level = held
            break
    if previous == "ok" and level != "ok":
        return level, "entered"
    if previous != "ok" and level == "ok":
        return level, "recovered"
    if RANK[level] > RANK[previous]:
        return level, "escalated"
    return level, None


def signed_buffer(a: Assessment) -> float | None:
    """ADRs from the mark to the liquidation price: > 0 on the safe side, ≤ 0 once the mark is at or beyond
    it (0 when the ADR is unknown then: beyond is beyond), infinite for a position price cannot liquidate,
    None when unknown."""
    f = a.figures
    if f is None or f.liquidated_at_mark is None:
        return None
    if f.liquidated_at_mark:
        return -(f.buffer_adr or 0.0)
    if f.liquidation_price is None:
        return float("inf")
    return f.buffer_adr


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """One position changing level: what it was at the previous check (`before`) and now (`after`), each a
    dict of `mark_price`, `adr`, `liquidation_price`, `distance`, `buffer_adr` (signed) and `tier`."""

    position: Position
    event: Event
    level: Level
    previous: Level
    worst: Level
    since: datetime | None
    checked_at: datetime
    before: dict[str, Any]
    after: dict[str, Any]


#: Called with a refresh's events, inside the same transaction (the alerts layer adds its outbox here).
RiskSink = Callable[[Session, Sequence[RiskEvent]], None]

_FIGURES = ("mark_price", "adr", "liquidation_price", "distance", "buffer_adr", "tier")


def _figures(a: Assessment, buffer: float | None) -> dict[str, Any]:
    f = a.figures
    tier = f.tier.tier if f is not None and f.tier is not None else None
    return {
        "mark_price": a.mark,
        "adr": a.adr,
        "liquidation_price": f.liquidation_price if f else None,
        "distance": f.distance if f else None,
        "buffer_adr": buffer if buffer is None or buffer != float("inf") else None,
        "tier": tier,
    }


def track_risk(
    session: Session, settings: Settings, now: datetime, sinks: Sequence[RiskSink] = ()
) -> tuple[list[RiskEvent], dict[int, Assessment]]:
    """Step every open position's level at `now`, store it, and hand the events to `sinks`; never commits.

    Returns the events and the assessments (for the daemon's metrics). The levels are written with two
    executemany statements (new rows, updated rows), not an ORM object per position."""
    positions = open_positions(session)
    found = assess_now(session, positions, settings, now)
    columns = ("position_id", "level", "since", "worst", *_FIGURES)
    # Every stored row (one per position ever checked): no IN list of thousands of ids.
    stored = {r[0]: dict(zip(columns, r, strict=True)) for r in session.execute(
        select(*(getattr(RiskEpisode, c) for c in columns)))}  # fmt: skip
    bands = Bands.of(settings)
    events: list[RiskEvent] = []
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for p in positions:
        assert p.id is not None
        buffer = signed_buffer(found[p.id])
        if buffer is None:
            continue  # unknown now: the level and the figures of the last known check stay
        old = stored.get(p.id)
        previous: Level = old["level"] if old and old["level"] in RANK else "ok"
        level, event = step(previous, buffer, bands)
        since, worst = (old["since"], old["worst"]) if old else (None, None)
        if event == "entered":
            since, worst = now, level
        elif level != "ok" and RANK[level] > RANK.get(worst or "ok", 0):
            worst = level
        after = _figures(found[p.id], buffer)
        if event is not None:
            before = {k: old[k] for k in _FIGURES} if old else dict.fromkeys(_FIGURES)
            episode_worst: Level = worst if worst in RANK else level
            events.append(RiskEvent(p, event, level, previous, episode_worst, as_utc(since), now, before, after))
        if level == "ok":
            since, worst = None, None
        row = {"position_id": p.id, "level": level, "since": since, "worst": worst, "checked_at": now, **after}
        (updates if old else inserts).append(row)
    # Core executemany on the table: the ORM's bulk path costs twice as much for 10,000 rows.
    table = RiskEpisode.__table__  # type: ignore[attr-defined]
    if inserts:
        session.execute(insert(table), inserts)
    if updates:
        by_id = table.update().where(table.c.position_id == bindparam("pid"))
        session.execute(by_id, [{"pid": r.pop("position_id"), **r} for r in updates])
    for sink in sinks:
        sink(session, events)
    return events, found
