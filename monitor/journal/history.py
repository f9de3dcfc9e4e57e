"""The market data of a past moment: the mark and the ADR from daily mark-price candles, cached.

    market_at(session, source, symbol, at, settings, now=..., fetch=...) -> PastMarket

For an entry or exit at a past time (`--opened-at`, `--at`), the ADR(N) is the mean range of the N daily
mark candles completed by `at`, and the mark is the **opening mark of `at`'s UTC day** (the daily candle's
open: the finest mark the daily candles know; the record says `mark_at`). The candles come from the
`mark_candle` cache, else through ccxt (`fetch_ohlcv(symbol, "1d", since, params={"price": "mark",
"until": ...})`: Binance's `markPriceKlines` with `startTime`/`endTime`, Bybit's `mark-price-kline` with
`start`/`end`). Completed candles are cached for good (a finished day's mark range never changes). What
cannot be had is None with its reason, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from monitor.config.settings import Settings
from monitor.exchanges.errors import Malformed
from monitor.risk.marketdata import Candle, adr
from monitor.store.models import MarkCandle
from snapshots.errors import TierdriftError
from snapshots.reader import as_utc

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DayCandle:
    """One daily mark candle: `opened_at` is the start of its UTC day."""

    opened_at: datetime
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class PastMarket:
    """The mark and ADR at a past moment; a None figure has its reason in `reasons` ("mark", "adr")."""

    mark: float | None
    mark_at: datetime | None
    adr: float | None
    adr_days: int
    reasons: dict[str, str] = field(default_factory=dict)


#: How candles are fetched: (source, symbol, settings, since, until) -> daily candles opened in [since, until].
CandleFetch = Callable[[str, str, Settings, datetime, datetime], Sequence[DayCandle]]


def day_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def market_at(
    session: Session,
    source: str,
    symbol: str,
    at: datetime,
    settings: Settings,
    *,
    now: datetime,
    fetch: CandleFetch | None = None,
) -> PastMarket:
    """The mark and ADR(settings.adr_days) of `symbol` at `at` (see the module docstring).

    Fetched candles are added to `session` (the caller commits). `fetch` None: the cache only.
    """
    days = settings.adr_days
    first = day_of(at) - days * DAY
    candles = _cached(session, source, symbol, first, day_of(at))
    problem = None
    if len(candles) < days + 1 and fetch is not None:
        try:
            fetched = list(fetch(source, symbol, settings, first, at))
        except TierdriftError as exc:
            problem = f"daily mark candles unavailable: {exc}"
        else:
            _store(session, source, symbol, fetched, candles, now)
            candles.update({c.opened_at: c for c in fetched if first <= c.opened_at <= day_of(at)})
    elif len(candles) < days + 1:
        problem = "no daily mark candles cached for that time"
    return _figures(sorted(candles.values(), key=lambda c: c.opened_at), at, days, problem)


def _figures(candles: list[DayCandle], at: datetime, days: int, problem: str | None) -> PastMarket:
    reasons: dict[str, str] = {}
    today = [c for c in candles if c.opened_at == day_of(at)]
    mark = today[0].open if today else None
    if mark is None:
        reasons["mark"] = problem or f"no daily mark candle for {day_of(at).date()}"
    value: float | None = None
    try:
        value = adr([Candle(c.opened_at, c.high, c.low) for c in candles], days, day_of(at))
    except TierdriftError as exc:
        reasons["adr"] = problem or f"ADR({days}) at {day_of(at).date()}: {exc}"
    return PastMarket(mark, day_of(at) if mark is not None else None, value, days, reasons)


def _cached(session: Session, source: str, symbol: str, first: datetime, last: datetime) -> dict[datetime, DayCandle]:
    stmt = select(MarkCandle).where(
        MarkCandle.source == source,
        MarkCandle.symbol == symbol,
        col(MarkCandle.opened_at) >= first,
        col(MarkCandle.opened_at) <= last,
    )
    out = {}
    for r in session.exec(stmt):
        opened = as_utc(r.opened_at)
        assert opened is not None
        out[opened] = DayCandle(opened, r.open, r.high, r.low, r.close)
    return out


def _store(
    session: Session,
    source: str,
    symbol: str,
    fetched: Sequence[DayCandle],
    have: dict[datetime, DayCandle],
    now: datetime,
) -> None:
    # Only completed days: the open day's high and low still move.
    for c in fetched:
        if c.opened_at + DAY <= now and c.opened_at not in have:
            session.merge(
                MarkCandle(
                    source=source, symbol=symbol, opened_at=c.opened_at, open=c.open, high=c.high, low=c.low,
                    close=c.close, fetched_at=now,
                )
            )  # fmt: skip


def fetch_candles(source: str, symbol: str, settings: Settings, since: datetime, until: datetime) -> list[DayCandle]:
    """Daily mark candles of `symbol` opened in [since, until], through ccxt (public, keyless)."""
    from monitor.exchanges.clients import public_client  # lazily: ccxt is heavy
    from monitor.risk.marketdata import guarded

    client = public_client(source, settings)
    guarded(source, client, settings, since, client.load_markets)
    if symbol not in (client.markets or {}):
        raise Malformed(f"{symbol} is not in the market list of {source}")
    limit = int((until - since) / DAY) + 2
    params = {"price": "mark", "until": int(until.timestamp() * 1000)}
    rows = guarded(
        source,
        client,
        settings,
        since,
        lambda: client.fetch_ohlcv(symbol, "1d", since=int(since.timestamp() * 1000), limit=limit, params=params),
    )
    return day_candles(rows)


def day_candles(rows: Any) -> list[DayCandle]:
    """`DayCandle`s from ccxt OHLCV rows `[ms, open, high, low, close, volume]`; `Malformed` for others."""
    if not isinstance(rows, list):
        raise Malformed(f"malformed response: expected a list of candles, got {type(rows).__name__}")
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) >= 5 and isinstance(row[0], int)):
            raise Malformed("malformed response: a candle without an opening time")
        prices = [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else -1.0 for v in row[1:5]]
        if min(prices) <= 0 or prices[1] < prices[2]:
            raise Malformed(f"malformed response: candle prices {row[1:5]!r}")
        out.append(DayCandle(datetime.fromtimestamp(row[0] / 1000, UTC), *prices))
    return out
