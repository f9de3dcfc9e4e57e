"""Time at the edges: every datetime inside tierdrift is timezone-aware UTC; JSON shows ISO 8601 with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from snapshots.errors import TierdriftError

#: How far ahead of our clock a time from outside may be (an imported snapshot's, a position's opening):
#: clocks of different machines disagree by seconds, and a trader's may run a little fast.
CLOCK_SKEW = timedelta(minutes=5)


class BadTimestamp(TierdriftError):
    pass


def utcnow() -> datetime:
    """The real clock, aware UTC. Core code receives a clock instead of calling this."""
    return datetime.now(UTC)


def parse_ts(text: str) -> datetime:
    """`2024-01-31`, `2024-01-31T12:00`, `…Z` or `…+02:00` → aware UTC. No offset means UTC."""
    raw = text.strip()
    shown = repr(text if len(text) <= 60 else text[:60] + "…")
    try:
        dt = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except ValueError:
        raise BadTimestamp(f"invalid timestamp {shown}; use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00Z") from None
    except OverflowError:  # 9999-12-31T23:00-05:00 is past the last datetime once in UTC
        raise BadTimestamp(f"timestamp {shown} is out of range once converted to UTC") from None


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`; None stays None."""
    if dt is None:
        return None
    text = dt.isoformat()
    if text.endswith("+00:00"):  # already UTC (every stored time): one call, for streams of thousands
        return text[:-6] + "Z"
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
