"""Current risk figures of logged positions, read with plain SQL: `positions list` at 10,000 positions.

`positions list` is a whole process that must answer in under a second. Importing SQLAlchemy and
SQLModel alone costs a quarter of that, and ORM objects or SQLAlchemy rows cost more to build than the
figures. So this module reads what the figures need (the positions, the tables in force, the cached
market data, the wallets) as plain rows through a `snapshots.reader.Reader`: the standard library's
sqlite3 on an up-to-date SQLite file, SQLAlchemy where it must (PostgreSQL, an open session). It imports
no SQLAlchemy, SQLModel or pydantic itself; the positions are priced on the column path
(`monitor.risk.figures.assess`), with every table loaded once.

`monitor.risk.impacts.load_market` (the ORM one, for sessions with pending writes) builds its `Market`
values with `market_of` from here, so both read the same freshness rules.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from monitor.risk.figures import Assessment, Key, LoggedPosition, Market, assess
from snapshots.history import tables_at
from snapshots.model import TierTable
from snapshots.reader import Reader, placeholders, utc
from snapshots.timefmt import iso

if TYPE_CHECKING:
    from monitor.config.settings import Settings


@dataclass(frozen=True, slots=True)
class Freshness:
    """How old cached market data may be before it counts as unknown."""

    mark: timedelta = timedelta(minutes=15)
    adr: timedelta = timedelta(hours=48)


def freshness(settings: Settings) -> Freshness:
    return Freshness(
        mark=timedelta(minutes=settings.mark_max_age_minutes), adr=timedelta(hours=settings.adr_max_age_hours)
    )


class ListedPosition(NamedTuple):
    """One row of the `position` table, as `positions list` shows it (meets `figures.LoggedPosition`)."""

    id: int
    source: str
    symbol: str
    side: str
    entry_price: float
    size: float
    size_input: str
    contract_size: float
    mode: str
    margin: float | None
    adr_override: float | None
    note: str | None
    opened_at: datetime
    closed_at: datetime | None


_POSITION_SQL = f"SELECT {', '.join(ListedPosition._fields)} FROM position"


def read_positions(reader: Reader, *, include_closed: bool = False) -> list[ListedPosition]:
    """The logged positions in id order: the open ones, or all of them."""
    where = "" if include_closed else " WHERE closed_at IS NULL"
    out = []
    for r in reader.rows(_POSITION_SQL + where + " ORDER BY id"):
        v = tuple(r.values())  # the columns in `ListedPosition`'s order; the last two are the times
        out.append(ListedPosition._make((*v[:12], utc(v[12]), utc(v[13]))))
    return out


#: A `market_data` row as `market_of` reads it: source, symbol, mark_price, mark_at, adr, adr_at, error.
MarketRow = Sequence[Any]


def _fresh(
    value: float | None, at: datetime | None, max_age: timedelta, now: datetime, what: str, error: str | None
) -> tuple[float | None, str | None]:
    """The cached value if recent enough, else None with the reason (a stale price is never used)."""
    if value is None or at is None:
        return None, f"{what} unavailable: {error or 'not fetched yet'}"
    if now - at > max_age:
        why = f"; last refresh failed: {error}" if error else ""
        return None, f"{what} is stale (last at {iso(at)}){why}"
    return value, None


def market_of(rows: Iterable[MarketRow], keys: set[Key], now: datetime, freshness: Freshness) -> dict[Key, Market]:
    """The `Market` of each of `keys` from its cached row, with the reason for whatever is missing or stale."""
    out: dict[Key, Market] = {}
    for source, symbol, mark_price, mark_at, adr_value, adr_at, error in rows:
        key = (source, symbol)
        if key not in keys:
            continue
        mark_at, adr_at = utc(mark_at), utc(adr_at)
        mark, mark_why = _fresh(mark_price, mark_at, freshness.mark, now, "mark price", error)
        adr, adr_why = _fresh(adr_value, adr_at, freshness.adr, now, "ADR", error)
        reasons = {k: v for k, v in (("mark", mark_why), ("adr", adr_why)) if v}
        out[key] = Market(mark, adr, mark_at, adr_at, reasons)
    for key in keys - set(out):
        out[key] = Market(reasons={"mark": "no market data fetched yet", "adr": "no market data fetched yet"})
    return out


def read_market(reader: Reader, keys: set[Key], now: datetime, freshness: Freshness) -> dict[Key, Market]:
    """`market_of` the cached rows of `keys`' sources."""
    if not keys:
        return {}
    marks, params = placeholders("s", sorted({s for s, _ in keys}))
    rows = reader.rows(
        f"SELECT source, symbol, mark_price, mark_at, adr, adr_at, error FROM market_data WHERE source IN ({marks})",
        params,
    )
    fields = ("source", "symbol", "mark_price", "mark_at", "adr", "adr_at", "error")
    return market_of((tuple(r[f] for f in fields) for r in rows), keys, now, freshness)


def read_wallets(reader: Reader) -> dict[str, float]:
    return {r["source"]: r["wallet_balance"] for r in reader.rows("SELECT source, wallet_balance FROM account")}


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while pricing many positions: they allocate a few objects each
    and form no reference cycles, and the collector would walk the growing heap again and again (a third
    of the time at 100,000 positions). Whatever it would have found is collected afterwards."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def tables_now(reader: Reader, sources: Iterable[str], now: datetime) -> dict[Key, TierTable]:
    """Every table in force at `now` of each of `sources`, each loaded once."""
    return {
        (source, sym): table for source in sorted(set(sources)) for sym, table in tables_at(reader, source, now).items()
    }


def assess_current(
    reader: Reader, positions: Sequence[LoggedPosition], settings: Settings, now: datetime
) -> dict[int, Assessment]:
    """Current figures of `positions`: the tables in force now, the cached (fresh) market data, the wallets."""
    tables = tables_now(reader, (p.source for p in positions), now)
    market = read_market(reader, {(p.source, p.symbol) for p in positions}, now, freshness(settings))
    with bulk():
        return assess(positions, tables, market, read_wallets(reader), threshold_adr=settings.violation_threshold_adr)
