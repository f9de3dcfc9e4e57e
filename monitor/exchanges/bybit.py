"""Bybit v5 risk limits (domain doc §7), paginated here rather than by ccxt.

ccxt's own pagination of `/v5/market/risk-limit` stops silently after 200 pages, writes `nextPageCursor`
into the rows and retries page errors immediately. So this module calls the raw implicit method page by
page, fails loudly on a repeated cursor or too many pages, and backs off exponentially (or as long as
`Retry-After` says) on throttling, 5xx, timeouts and the transient retCodes 10016/10002.

How Bybit really fails (domain doc §8): HTTP 403 ("access too frequent") means the IP is over its limit
and must stop for at least 10 minutes. Bybit sends `X-Bapi-Limit-Reset-Timestamp` (ms), not
`Retry-After`, so the error asks the source to rest for max(10 min, reset − now) (`rest_seconds`) and
is never retried within the poll: retrying would only prolong the ban. ccxt raises retCode 10016
("System error") as a plain `ExchangeError` and 10002 (outside the receive window) as `InvalidNonce`;
both are transient, so the retCode is read from the answer and mapped here.

Exchange ids are named through ccxt's markets (`fetch_markets`, one category only, `monitor.exchanges.kept`)
rather than by their shape alone: Bybit ids such as `BTCPERP` (a USDC perpetual) or `BTCUSDH26` (a dated inverse
future) cannot be read from their shape, and positions are looked up by ccxt's unified symbol. A failing
market list fails the poll, retried like a page: falling back to id shapes for one poll would rename
symbols back and forth between polls.

ccxt is loaded inside the functions that use it, only the `bybit` class and the errors
(`monitor.exchanges.lightccxt`): `monitor.exchanges` must stay cheap to import for commands that only
read the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from monitor.config.settings import Settings
from monitor.exchanges.binance import MarketSymbols
from monitor.exchanges.errors import (
    EmptyResult,
    ExchangeUnavailable,
    FetchError,
    Malformed,
    RateLimited,
    Said,
    Truncated,
    from_ccxt,
    header,
    host_of,
    read_ccxt,
    retry_after,
)
from monitor.exchanges.kept import Kept, ids_of, market_symbols
from monitor.exchanges.lightccxt import ccxt_package
from snapshots.model import Snapshot
from snapshots.parse import parse_bybit_risk_limits

CATEGORIES: dict[str, str] = {"bybit-linear": "linear", "bybit-inverse": "inverse"}
#: retCodes that mean "too many requests" (10006: per-endpoint, 10018: per-IP limit).
RATE_LIMIT_CODES = frozenset({"10006", "10018"})
#: retCodes that mean "try again later" (10016: system error, 10002: outside the receive window).
TRANSIENT_CODES = frozenset({"10016", "10002"})
#: Bybit's v5 rate-limit page: an IP answered HTTP 403 must "wait for at least 10 minutes".
IP_BAN_REST_SECONDS = 600.0
#: Longest rest taken from `X-Bapi-Limit-Reset-Timestamp`: a clock far off must not silence a source for days.
IP_BAN_REST_MAX_SECONDS = 3600.0
#: First backoff in seconds without a Retry-After; it doubles with each retry.
BACKOFF_BASE = 0.5
#: Longest single wait, even if the server asks for more: a poll must end in bounded time.
BACKOFF_MAX = 60.0

T = TypeVar("T")
Sleep = Callable[[float], None]
#: Fetch one page: (cursor, page number) -> (rows, next cursor or "").
PageFetcher = Callable[[str, int], tuple[list[Any], str]]


def fetch_bybit(
    source: str,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    sleep: Sleep = time.sleep,
    kept: Kept | None = None,
) -> Snapshot:
    """Every tier table of `source` ("bybit-linear" or "bybit-inverse").

    Raises `FetchError` naming the host (after `settings.bybit_page_retries` retries of a retryable
    failure, waiting with `sleep`; never retried when Bybit asks to rest) or `PayloadError`/`InvalidTable`
    naming the symbol. `taken_at` is `now()` when the fetch starts; `now` also dates Bybit's reset header.
    With `kept` (the daemon's, see `monitor.exchanges.kept`), its client, markets and parse cache are used
    and updated; without, a new client loads the markets.
    """
    category = CATEGORIES.get(source)
    if category is None:
        raise FetchError(f"unknown Bybit source {source!r}")
    once = Kept() if kept is None else None  # a one-off fetch closes its client when done
    try:
        return _fetch(source, category, settings, now=now, sleep=sleep, kept=kept or once or Kept())
    except FetchError as exc:
        raise exc.at(host_of(settings.endpoints.bybit)) from None
    finally:
        if once is not None:
            once.drop()


def _fetch(
    source: str, category: str, settings: Settings, *, now: Callable[[], datetime], sleep: Sleep, kept: Kept
) -> Snapshot:
    taken_at = now()
    exchange = kept.client_for(settings, lambda: _exchange(settings, category))

    def retrying(call: Callable[[], T]) -> T:
        return call_with_retries(call, exchange=exchange, settings=settings, sleep=sleep, now=now)

    def markets() -> dict[str, str]:
        return retrying(lambda: market_symbols(exchange.fetch_markets()))

    due = kept.markets_due(taken_at)
    symbols = markets() if due else kept.symbols

    def fetch_page(cursor: str, page: int) -> tuple[list[Any], str]:
        params = {"category": category, **({"cursor": cursor} if cursor else {})}
        return retrying(lambda: page_rows(exchange.publicGetV5MarketRiskLimit(params), page))

    rows = collect_pages(fetch_page, settings.bybit_max_pages)
    ids = ids_of(rows)
    if not due and kept.new_ids(ids):  # a new listing: name it as ccxt does
        symbols, due = markets(), True
    if due:
        kept.loaded(taken_at, symbols, ids)
    symbol_of = MarketSymbols(source, symbols)
    tables = parse_bybit_risk_limits(source, rows, symbol_of, kept.cache)
    return Snapshot(
        source=source, taken_at=taken_at, provenance="bybit-v5", tables=tables, warnings=symbol_of.warnings()
    )


def _exchange(settings: Settings, category: str) -> Any:
    ccxt = ccxt_package()  # lazily: see the module docstring

    exchange = ccxt.bybit(
        {
            "timeout": int(settings.http_timeout * 1000),  # ccxt wants milliseconds
            # ccxt's throttle paces risk-limit pages at 100 ms (cost 5 × 20 ms), far below the public
            # limit of 600 requests per 5 s; the backoff below handles the limit being hit anyway.
            "enableRateLimit": True,
            "options": {
                "fetchMarkets": {"types": [category]},  # only the polled category's instruments
                "maxRetriesOnFailure": 0,  # retries are ours, with backoff, and counted
            },
        }
    )
    # Every API family of Bybit lives on one host, so every entry moves (templates included).
    exchange.urls["api"] = dict.fromkeys(exchange.urls["api"], settings.endpoints.bybit.rstrip("/"))
    return exchange


# -- pages -----------------------------------------------------------------------------------------


def page_rows(body: Any, page: int) -> tuple[list[Any], str]:
    """The rows of one risk-limit answer, without `nextPageCursor` keys, and the next cursor ("" at the end).

    Raises what `code_failure` says for a non-zero retCode, and `Malformed` for a body that is not JSON
    or has no `result.list`. (ccxt raises for a non-zero retCode before the body gets here; this keeps
    the rule whole for any caller.)
    """
    if isinstance(body, str | bytes):  # ccxt returns the text when it cannot decode JSON
        raise Malformed(f"malformed JSON on page {page}")
    if not isinstance(body, Mapping):
        raise Malformed(f"malformed page {page}: expected an object, got {type(body).__name__}")
    code = str(body.get("retCode", "0"))
    if code != "0":
        message = body.get("retMsg")
        raise code_failure(Said(code=code, code_name="retCode", message=str(message or "")))
    result = body.get("result")
    rows = result.get("list") if isinstance(result, Mapping) else None
    if not isinstance(rows, list):
        raise Malformed(f"malformed page {page}: result.list missing")
    cursor = result.get("nextPageCursor") if isinstance(result, Mapping) else None
    if cursor is not None and not isinstance(cursor, str):
        raise Malformed(f"malformed page {page}: nextPageCursor is {type(cursor).__name__}")
    # ccxt's paginator writes the cursor into rows (domain doc §7): it is not part of a tier.
    clean = [{k: v for k, v in r.items() if k != "nextPageCursor"} if isinstance(r, Mapping) else r for r in rows]
    return clean, cursor or ""


def collect_pages(fetch_page: PageFetcher, max_pages: int) -> list[Any]:
    """All rows of a cursor chain, read until the cursor is empty.

    Raises `Truncated` when a cursor repeats or more than `max_pages` pages would be needed, and
    `EmptyResult` when the whole chain holds no row: a silent partial table would look like delistings.
    """
    rows: list[Any] = []
    seen: set[str] = set()
    cursor = ""
    for page in range(1, max_pages + 1):
        page_list, cursor = fetch_page(cursor, page)
        rows.extend(page_list)
        if not cursor:
            if not rows:
                raise EmptyResult("empty table list")
            return rows
        if cursor in seen:
            raise Truncated(f"truncated: page chain ended with a repeated cursor (page {page})")
        seen.add(cursor)
    raise Truncated(f"truncated: more than {max_pages} pages (bybit_max_pages)")


# -- retries ---------------------------------------------------------------------------------------


def call_with_retries(
    call: Callable[[], T], *, exchange: Any, settings: Settings, sleep: Sleep, now: Callable[[], datetime]
) -> T:
    """`call()`, retried up to `settings.bybit_page_retries` times on a retryable `FetchError`.

    ccxt exceptions are translated first (`bybit_failure`, dated by `now()`). An error that asks the source
    to rest (`rest_seconds`) is raised at once. Each wait honours a `Retry-After` header of the failed
    answer, otherwise it is `BACKOFF_BASE` doubled per retry; both are capped at `BACKOFF_MAX`.
    """
    ccxt = ccxt_package()  # lazily: see the module docstring

    retries = settings.bybit_page_retries
    for attempt in range(retries + 1):
        # ccxt keeps the headers of the last answer; a timeout has none, so clear stale ones first.
        exchange.last_response_headers = None
        try:
            return call()
        except ccxt.BaseError as exc:
            err = bybit_failure(exc, exchange.last_response_headers, timeout=settings.http_timeout, now=now())
        except FetchError as exc:
            err = exc
        if not err.retryable or err.rest_seconds is not None:
            raise err from None
        if attempt == retries:
            raise (err.again(retries) if retries else err) from None
        sleep(backoff(attempt, retry_after(exchange.last_response_headers)))
    raise AssertionError("unreachable: the loop returns or raises")


def backoff(attempt: int, after: float | None) -> float:
    """The wait before retry number `attempt + 1`."""
    wait = after if after is not None else BACKOFF_BASE * 2**attempt
    return min(wait, BACKOFF_MAX)


# -- how Bybit fails -------------------------------------------------------------------------------


def bybit_failure(
    exc: Exception, headers: Mapping[str, Any] | None, *, timeout: float, now: datetime, secrets: Sequence[str] = ()
) -> FetchError:
    """The `FetchError` of a ccxt error from Bybit, given the failed answer's `headers` and the time `now`.

    HTTP 403 is the IP limit (`ip_limited`); a retCode goes through `code_failure`; the rest is
    `from_ccxt`'s. Shared by the tier tables and the market data, which call the same host.
    """
    said = read_ccxt(exc, secrets)
    if said.status == 403:
        return ip_limited(said, headers, now)
    if said.status is None and said.code is not None:
        return code_failure(said)
    return from_ccxt(exc, timeout=timeout, secrets=secrets)


def code_failure(said: Said) -> FetchError:
    """The `FetchError` of a non-zero Bybit retCode (`said.code`), keeping Bybit's message."""
    code = said.code or ""
    if code in RATE_LIMIT_CODES:
        return RateLimited(said.cause("rate limited"))
    if code in TRANSIENT_CODES:
        return ExchangeUnavailable(said.cause("temporary exchange error"))
    return FetchError(said.cause("exchange error"))


def ip_limited(said: Said, headers: Mapping[str, Any] | None, now: datetime) -> RateLimited:
    """HTTP 403 from Bybit: rest max(10 min, reset − now), at most `IP_BAN_REST_MAX_SECONDS`.

    `X-Bapi-Limit-Reset-Timestamp` is in ms since the epoch; a missing or unreadable one gives 10 min.
    """
    rest = IP_BAN_REST_SECONDS
    reset = header(headers, "X-Bapi-Limit-Reset-Timestamp")
    if reset is not None and reset.strip().isdigit():
        rest = max(rest, int(reset) / 1000 - now.timestamp())
    rest = min(rest, IP_BAN_REST_MAX_SECONDS)
    words = f": {said.message}" if said.message else ""
    # The poll says until when the source rests (`rest_seconds`); the message says why.
    return RateLimited(
        f"HTTP 403 Forbidden{words}; Bybit says this IP is over its request limit and must pause at least 10 minutes",
        rest_seconds=rest,
    )
