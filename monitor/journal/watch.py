"""The watchlist, and which instruments count as traded.

Traded means: an open position, or one closed within `RECENT` (a trader who just closed still cares when
that table moves), or a watch. The set is computed on the monitor side and handed to the alerts layer at
enqueue time (digest marks, the `symbols = "traded"` channel filter), since `alerts` imports no database
of ours.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from monitor.store.models import Position, Watch
from snapshots.errors import TierdriftError

Key = tuple[str, str]  # (source, symbol)

#: A position closed this recently still counts as traded.
RECENT = timedelta(days=30)


class WatchError(TierdriftError):
    """A watch that cannot be added or removed, said in one line."""


def traded(session: Session, now: datetime, recent: timedelta = RECENT) -> frozenset[Key]:
    """The (source, symbol) of open positions, positions closed since `now - recent`, and every watch."""
    since = now - recent
    stmt = select(Position.source, Position.symbol).where(
        or_(col(Position.closed_at).is_(None), col(Position.closed_at) >= since)
    )
    found = {(s, y) for s, y in session.exec(stmt.distinct())}
    found.update((s, y) for s, y in session.exec(select(Watch.source, Watch.symbol)))
    return frozenset(found)


def watches(session: Session) -> list[Watch]:
    """Every watch, by source then symbol."""
    return list(session.exec(select(Watch).order_by(col(Watch.source), col(Watch.symbol))))


def add_watch(
    session: Session, source: str, symbol: str, *, size: float | None, note: str | None, now: datetime
) -> tuple[Watch, bool]:
    """Watch `symbol` (already resolved) on `source`; a second add updates its size and note. Returns the
    watch and whether it is new. Does not commit."""
    if size is not None and not size > 0:
        raise WatchError(f"--size must be a notional above 0, not {size:g}")
    found = session.exec(select(Watch).where(Watch.source == source, Watch.symbol == symbol)).first()
    if found is not None:
        found.size_notional, found.note = size, note
        session.add(found)
        return found, False
    watch = Watch(source=source, symbol=symbol, size_notional=size, added_at=now, note=note)
    session.add(watch)
    return watch, True


def remove_watch(session: Session, source: str, symbol: str) -> None:
    """Stop watching `symbol` on `source`, or WatchError when it is not watched. Does not commit."""
    found = session.exec(select(Watch).where(Watch.source == source, Watch.symbol == symbol)).first()
    if found is None:
        raise WatchError(f"{symbol} on {source} is not watched (see `tierdrift watch list`)")
    session.delete(found)


def sized_watches(session: Session, source: str, symbols: set[str]) -> list[Watch]:
    """The watches with a size on `symbols` of `source`: those get a what-if impact when their table moves."""
    stmt = select(Watch).where(
        Watch.source == source, col(Watch.symbol).in_(symbols), col(Watch.size_notional).is_not(None)
    )
    return list(session.exec(stmt.order_by(col(Watch.symbol))))
