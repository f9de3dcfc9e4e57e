"""Mark prices and ADRs of the symbols with open positions, cached in the `market_data` table.

    refresh_market(session, source, symbols, settings, now=...) -> [RefreshResult]   (database)
     └─ fetch_quote(source, symbol, settings, ...) -> Quote                         (ccxt, public)
         └─ adr(candles, days, now) -> float                                         (pure)

ADR(N) is the mean of (high − low) over the last N completed daily mark-price candles (domain doc §5:
liquidation is triggered by the mark price, so its candles, not the last-trade ones). The calls per
source (domain doc §7), each after loading the markets through `monitor.exchanges.clients`:

| source        | mark price                                   | daily mark-price candles                    |
|---------------|----------------------------------------------|---------------------------------------------|
| binance-usdm  | `fetch_mark_price` → `/fapi/v1/premiumIndex` | `fetch_ohlcv` → `/fapi/v1/markPriceKlines`  |
| binance-coinm | `fetch_mark_price` → `/dapi/v1/premiumIndex` | `fetch_ohlcv` → `/dapi/v1/markPriceKlines`  |
| bybit-linear  | `fetch_ticker` → `/v5/market/tickers`        | `fetch_ohlcv` → `/v5/market/mark-price-kline` |
| bybit-inverse | the same, `category=inverse`                 | the same, `category=inverse`                |

Caching: the mark is refetched on every refresh, the ADR only when it is due (`adr_due`: none yet, older
than `ADR_MAX_AGE`, or computed over another N). Numbers are never invented: a failure stores its
one-line reason in `error`/`error_at` and leaves the previous values and their timestamps alone (the
reader judges staleness), and an ADR is never averaged over fewer than N candles.

Errors::

    TierdriftError                  (snapshots.errors)
     ├─ FetchError                  the exchange did not answer usably (monitor.exchanges.errors)
     └─ MarketDataError             the answer cannot give a mark or an ADR (unlisted, too few candles)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlmodel import Session, col, select

from monitor.config.settings import Settings
from monitor.exchanges.clients import client_failure, public_client
from monitor.exchanges.errors import Malformed, one_line
from monitor.store.models import MarketData, Position
from snapshots.errors import TierdriftError
from snapshots.reader import as_utc
from snapshots.store import requested_rest

#: An ADR older than this is fetched again (at most one candle request per symbol and day).
ADR_MAX_AGE = timedelta(hours=24)
DAY = timedelta(days=1)

T = TypeVar("T")


class MarketDataError(TierdriftError):
    """A mark price or an ADR cannot be had from what the exchange serves. `str()` is one line."""


@dataclass(frozen=True, slots=True)
class Candle:
    """One daily candle; `opened_at` is the start of its UTC day."""

    opened_at: datetime
    high: float
    low: float


@dataclass(frozen=True, slots=True)
class Quote:
    """What one fetch gave for a symbol. `adr` is None when it was not wanted or `adr_error` says why not."""

    mark: float
    adr: float | None = None
    adr_error: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """The outcome of refreshing one symbol. `reason` is None when everything wanted was stored."""

    source: str
    symbol: str
    reason: str | None
    mark_refreshed: bool = False
    adr_refreshed: bool = False

    @property
    def ok(self) -> bool:
        return self.reason is None


class Fetch(Protocol):
    """How `refresh_market` gets a quote (`fetch_quote`, or a stand-in in tests)."""

    def __call__(
        self, source: str, symbol: str, settings: Settings, /, *, now: datetime, days: int, want_adr: bool
    ) -> Quote: ...


# -- ADR (pure) ------------------------------------------------------------------------------------


def adr(candles: Sequence[Candle], days: int, now: datetime) -> float:
    """ADR(`days`): the mean of (high − low) over the last `days` daily candles completed by `now`.

    The candle of the still-open UTC day (and any later one) is left out, and the order of `candles`
    does not matter (Bybit lists newest first). Raises `MarketDataError` when fewer than `days`
    completed candles exist (a newly listed symbol), when two candles share a day, or when a candle's
    high is below its low; `ValueError` when `days` < 1.
    """
    if days < 1:
        raise ValueError("ADR needs at least one day")
    completed = sorted((c for c in candles if c.opened_at + DAY <= now), key=lambda c: c.opened_at)
    if len(completed) < days:
        raise MarketDataError(f"only {len(completed)} completed daily candles; ADR({days}) needs {days}")
    last = completed[-days:]
    _check_candles(last)
    return math.fsum(c.high - c.low for c in last) / days


def _check_candles(candles: Sequence[Candle]) -> None:
    days = [c.opened_at for c in candles]
    if len(set(days)) != len(days):
        raise MarketDataError("the exchange sent two candles for the same day")
    for c in candles:
        if not (math.isfinite(c.high) and math.isfinite(c.low) and c.high >= c.low):
            raise MarketDataError(f"candle of {c.opened_at.date()} has high {c.high} and low {c.low}")


def adr_due(row: MarketData, days: int, now: datetime) -> bool:
    """Whether `row`'s ADR must be fetched: none yet, older than `ADR_MAX_AGE`, or over another N."""
    adr_at = as_utc(row.adr_at)  # SQLite gives naive UTC back
    return row.adr is None or adr_at is None or row.adr_days != days or now - adr_at >= ADR_MAX_AGE


# -- fetching through ccxt -------------------------------------------------------------------------


def fetch_quote(
    source: str,
    symbol: str,
    settings: Settings,
    *,
    now: datetime,
    days: int,
    want_adr: bool,
    exchange: Any = None,
) -> Quote:
    """The mark price of `symbol` (a ccxt unified symbol) and, if `want_adr`, its ADR(`days`) at `now`.

    Only public endpoints are called, without a key. `exchange` is a client from `public_client` to
    share between symbols (its markets then load once); by default a new one is made. Raises
    `FetchError` or `MarketDataError` when the mark cannot be had; an ADR that cannot be had is
    returned as `adr_error` beside the good mark. Every request is bounded by `settings.http_timeout`.
    """
    client = exchange if exchange is not None else public_client(source, settings)
    guarded(source, client, settings, now, client.load_markets)
    if symbol not in (client.markets or {}):
        raise MarketDataError(f"{symbol} is not in the market list of {source}")
    mark = _mark(client, source, symbol, settings, now)
    if not want_adr:
        return Quote(mark)
    try:
        return Quote(mark, _fetch_adr(client, source, symbol, settings, now=now, days=days))
    except TierdriftError as exc:
        return Quote(mark, adr_error=str(exc))


def _mark(client: Any, source: str, symbol: str, settings: Settings, now: datetime) -> float:
    # Binance's premiumIndex is the mark price itself; Bybit's ticker carries `markPrice` beside the last
    # trade. Both come back as a ccxt ticker with a unified `markPrice`.
    fetch = client.fetch_mark_price if source.startswith("binance-") else client.fetch_ticker
    ticker = guarded(source, client, settings, now, lambda: fetch(symbol))
    if not isinstance(ticker, Mapping) or ticker.get("symbol") != symbol:
        raise Malformed(f"malformed response: no ticker for {symbol}")
    return _price(ticker.get("markPrice"), "mark price")


def _fetch_adr(client: Any, source: str, symbol: str, settings: Settings, *, now: datetime, days: int) -> float:
    # N completed days, the open one, and one spare for an exchange whose day has not rolled over yet.
    rows = guarded(
        source,
        client,
        settings,
        now,
        lambda: client.fetch_ohlcv(symbol, "1d", limit=days + 2, params={"price": "mark"}),
    )
    return adr(candles_from_ccxt(rows), days, now)


def candles_from_ccxt(rows: Any) -> list[Candle]:
    """`Candle`s from ccxt OHLCV rows `[ms, open, high, low, close, volume]`; `Malformed` for others."""
    if not isinstance(rows, list):
        raise Malformed(f"malformed response: expected a list of candles, got {type(rows).__name__}")
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) >= 4 and isinstance(row[0], int)):
            raise Malformed("malformed response: a candle without an opening time")
        opened = datetime.fromtimestamp(row[0] / 1000, UTC)
        out.append(Candle(opened, _price(row[2], "candle high"), _price(row[3], "candle low")))
    return out


def _price(value: Any, what: str) -> float:
    """A finite, positive price, or `Malformed`: a missing number is never replaced by a guess."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise Malformed(f"malformed response: {what} is {value!r}")
    return float(value)


def guarded(source: str, client: Any, settings: Settings, now: datetime, call: Callable[[], T]) -> T:
    """`call()`, with ccxt errors turned into one-line, secret-free `FetchError`s naming the host.

    The mapping is the tier tables' (`client_failure`): Binance's 451 is `GeoBlocked`, Bybit's 403 asks
    to rest, Bybit's transient retCodes are `ExchangeUnavailable`.
    """
    from monitor.exchanges.lightccxt import ccxt_package  # lazily: read-only commands must not load ccxt

    ccxt = ccxt_package()

    try:
        return call()
    except ccxt.BaseError as exc:
        # `from None`: a ccxt message can carry a URL, which must not reach a traceback.
        raise client_failure(source, exc, client, settings, now=now, secrets=_secrets(settings)) from None


def _secrets(settings: Settings) -> list[str]:
    # The clients are keyless, but a configured key is still hidden should any message echo it.
    return [s.get_secret_value() for s in (settings.binance.api_key, settings.binance.api_secret) if s]


# -- the cache -------------------------------------------------------------------------------------


def refresh_market(
    session: Session,
    source: str,
    symbols: Iterable[str],
    settings: Settings,
    *,
    now: datetime,
    fetch: Fetch | None = None,
) -> list[RefreshResult]:
    """Refresh the `MarketData` rows of `symbols` on `source`: the mark always, the ADR when due.

    Rows are created as needed and added to `session`, never committed (the caller owns the
    transaction). Each symbol is fetched on its own: a failure (`TierdriftError`) is stored as that
    row's `error`, keeping its earlier values, and the next symbol goes on. Results are sorted by symbol.
    `fetch` defaults to `fetch_quote` with one keyless client for all the symbols, so that the
    exchange's market list loads once per call.
    """
    asked = requested_rest(session, source)
    resting: str | None = None
    if asked is not None and asked.until > now:
        # The source's last poll was told to stay away (e.g. Bybit's 403 IP limit): the market endpoints
        # share its host and its ban, so they rest too.
        resting = f"not asked: {asked.reason}"
    elif fetch is None:
        fetch = partial(fetch_quote, exchange=public_client(source, settings))
    results: list[RefreshResult] = []
    for symbol in sorted(set(symbols)):
        if resting is not None:
            # The exchange asked us to stay away (Bybit's 403 IP limit, Binance's 451): asking again for
            # each remaining symbol would only lengthen the ban (domain doc §8).
            results.append(_skip_one(session, source, symbol, now, resting))
            continue
        assert fetch is not None
        result, rest = _refresh_one(session, source, symbol, settings, now, fetch)
        if rest:
            resting = f"not asked: {result.reason}"
        results.append(result)
    return results


def _skip_one(session: Session, source: str, symbol: str, now: datetime, reason: str) -> RefreshResult:
    row = session.get(MarketData, (source, symbol)) or MarketData(source=source, symbol=symbol)
    session.add(row)
    row.error, row.error_at = reason, now  # the earlier values and their timestamps stay
    return RefreshResult(source, symbol, reason)


def _refresh_one(
    session: Session, source: str, symbol: str, settings: Settings, now: datetime, fetch: Fetch
) -> tuple[RefreshResult, bool]:
    """One symbol's refresh, and whether the exchange asked us to stop calling it for a while."""
    row = session.get(MarketData, (source, symbol)) or MarketData(source=source, symbol=symbol)
    session.add(row)
    days = settings.adr_days
    want_adr = adr_due(row, days, now)
    try:
        quote = fetch(source, symbol, settings, now=now, days=days, want_adr=want_adr)
        mark = _price(quote.mark, "mark price")
    except TierdriftError as exc:
        failure = one_line(str(exc), _secrets(settings))
        row.error, row.error_at = failure, now  # the earlier values and their timestamps stay
        return RefreshResult(source, symbol, failure), bool(getattr(exc, "rest_seconds", None))
    row.mark_price, row.mark_at = mark, now
    adr_refreshed = want_adr and quote.adr is not None
    if adr_refreshed:
        row.adr, row.adr_days, row.adr_at = quote.adr, days, now
    reason = None
    if want_adr and not adr_refreshed:
        reason = one_line(f"ADR({days}) not refreshed: {quote.adr_error or 'no ADR fetched'}", _secrets(settings))
    row.error, row.error_at = reason, (now if reason else None)
    return RefreshResult(source, symbol, reason, mark_refreshed=True, adr_refreshed=adr_refreshed), False


def symbols_with_open_positions(session: Session) -> dict[str, set[str]]:
    """The symbols of open positions (`closed_at IS NULL`), by source."""
    stmt = select(Position.source, Position.symbol).where(col(Position.closed_at).is_(None)).distinct()
    out: dict[str, set[str]] = {}
    for source, symbol in session.exec(stmt):
        out.setdefault(source, set()).add(symbol)
    return out
