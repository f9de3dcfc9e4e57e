"""When a channel takes its alerts: quiet hours, and a minimum interval between tier-change digests.

Pure functions of the clock. A channel's `Schedule` says, for one due delivery, whether it goes now or is
*held* until a time; `alerts.deliver` postpones held deliveries and, when they come due, sends all of a
channel's held ones as **one grouped message** (`group_alert`).

- Quiet hours (`quiet_hours = "22:00-07:00"`, `quiet_tz = "Europe/Berlin"`): within the window (wall-clock
  time in that zone; a window may run across midnight) only `critical` alerts go out; the others wait for
  its end. The end is found in local time each day, so it stays 07:00 on the days the clocks change.
- Digest interval (`digest_min_interval_minutes = 60`): a `tier_changes` digest sent less than that long
  after the channel's last one waits until the interval has passed, with any others that arrive meanwhile.

`alerts test` (kind `test`) is never held.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.model import Alert, Severity

_WINDOW = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])\s*-\s*([01]?[0-9]|2[0-3]):([0-5][0-9])")
#: Why a delivery is held, as stored in `Delivery.hold` and shown by `alerts list`.
HOLD_WORDS = {"quiet": "quiet hours", "digest": "digest interval"}
#: Members of a grouped message listed one by one; the rest are counted.
GROUP_LINES = 60


def parse_window(text: str) -> tuple[time, time]:
    """`"HH:MM-HH:MM"` as (start, end); `ValueError` (one line, quoting the text) otherwise."""
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a window like 22:00-07:00 (HH:MM-HH:MM, 24-hour clock)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise ValueError(f"{text!r} starts and ends at the same time: give a window such as 22:00-07:00")
    return start, end


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. Europe/Berlin, UTC); `ValueError` (one line) for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name[:60]!r} is not an IANA time zone such as Europe/Berlin or UTC") from None


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, window: str, tz: str) -> QuietHours:
        start, end = parse_window(window)
        return cls(start, end, zone(tz))

    def contains(self, now: datetime) -> bool:
        """Whether `now` (aware) falls in the window, by the wall clock of the zone."""
        t = now.astimezone(self.tz).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # across midnight

    def ends_after(self, now: datetime) -> datetime:
        """The first end of the window after `now`, in UTC: `end` o'clock local time on the right day
        (a local time that a clock change skips is taken at the offset before the change)."""
        day = now.astimezone(self.tz).date()
        for offset in range(-1, 3):
            end = datetime.combine(day + timedelta(days=offset), self.end, tzinfo=self.tz).astimezone(UTC)
            if end > now:
                return end
        raise AssertionError("a window ends within two days")  # pragma: no cover - a day has 24 h ± 1


@dataclass(frozen=True, slots=True)
class Schedule:
    """A channel's quiet hours and digest interval (either may be absent)."""

    quiet: QuietHours | None = None
    digest_interval: timedelta | None = None

    def hold(
        self, kind: str, severity: Severity, now: datetime, last_digest: datetime | None
    ) -> tuple[datetime, str] | None:
        """(until, reason) if an alert of `kind` and `severity`, due at `now`, must wait; else None.
        `last_digest` is when the channel last sent a `tier_changes` digest."""
        if kind == "test":
            return None
        holds: list[tuple[datetime, str]] = []
        if self.quiet is not None and severity < Severity.CRITICAL and self.quiet.contains(now):
            holds.append((self.quiet.ends_after(now), "quiet"))
        if self.digest_interval is not None and kind == "tier_changes" and last_digest is not None:
            ready = last_digest + self.digest_interval
            if ready > now:
                holds.append((ready, "digest"))
        return max(holds) if holds else None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def group_alert(group_id: str, members: Sequence[Alert], reasons: Sequence[str | None]) -> Alert:
    """One message for several held alerts of a channel: a line per member (its severity, time and title),
    the highest severity, and every member's payload in `data["alerts"]`. Pure: the same members and id give
    the same message, so a resend of the group is the same message with the same id."""
    members = sorted(members, key=lambda a: (a.created_at, a.id))
    severity = max(a.severity for a in members)
    held = sorted({HOLD_WORDS.get(r or "", "") for r in reasons} - {""})
    why = f" (held: {', '.join(held)})" if held else ""
    digests = all(a.kind == "tier_changes" for a in members)
    title = f"{len(members)} tier-change digests{why}" if digests else f"{len(members)} alerts{why}"
    lines: list[str] = []
    for a in members[:GROUP_LINES]:
        lines.append(f"{a.severity.label.upper()} {_iso(a.created_at)} {a.title}")
        if a.kind == "tier_changes":
            lines.extend(f"  {line}" for line in a.lines[1:3])  # the counts and what tightened, not the window
    if len(members) > GROUP_LINES:
        lines.append(f"… and {len(members) - GROUP_LINES} more: tierdrift alerts list")
    sources = {a.source for a in members}
    symbols = {a.symbol for a in members}
    data = {
        "alerts": [
            {"id": a.id, "kind": a.kind, "severity": a.severity.label, "created_at": _iso(a.created_at),
             "title": a.title, "source": a.source, "symbol": a.symbol, "summary": list(a.lines), "data": a.data}
            for a in members
        ],
        "held": held,
    }  # fmt: skip
    return Alert(
        id=group_id,
        kind="group",
        severity=severity,
        created_at=members[-1].created_at,
        title=title,
        source=sources.pop() if len(sources) == 1 else None,
        symbol=symbols.pop() if len(symbols) == 1 else None,
        lines=tuple(lines),
        data=data,
    )
