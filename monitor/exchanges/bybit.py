"""Bybit v5 risk limits (domain doc §7), paginated here rather than by ccxt.

ccxt's own pagination of `/v5/market/risk-limit` stops silently after 200 pages, writes `nextPageCursor`
into the rows and retries page errors immediately. So this module calls the raw implicit method page by
page, fails loudly on a repeated cursor or too many pages, and backs off exponentially (or as long as
`Retry-After` says) on throttling, 5xx and timeouts.

Exchange ids are named through ccxt's loaded markets (`load_markets`, one category only) rather than by
their shape alone: Bybit ids such as `BTCPERP` (a USDC perpetual) or `BTCUSDH26` (a dated inverse
future) cannot be read from their shape, and positions are looked up by ccxt's unified symbol. A failing
market list fails the poll, retried like a page: falling back to id shapes for one poll would rename
symbols back and forth between polls.

ccxt is imported inside the functions that use it: `import ccxt` costs 0.3 s and 78 MB, and
`monitor.exchanges` must stay cheap to import for commands that only read the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from monitor.exchanges.binance import MarketSymbols
from monitor.exchanges.errors import (
    EmptyResult,
    FetchError,
    Malformed,
    RateLimited,
    Truncated,
    from_ccxt,
)
from monitor.settings import Settings
from snapshots.model import Snapshot
from snapshots.parse import parse_bybit_risk_limits

CATEGORIES: dict[str, str] = {"bybit-linear": "linear", "bybit-inverse": "inverse"}
#: retCodes that mean "too many requests" (10006: per-endpoint, 10018: per-IP limit).
RATE_LIMIT_CODES = frozenset({"10006", "10018"})
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
) -> Snapshot:
    """Every tier table of `source` ("bybit-linear" or "bybit-inverse").

    Raises `FetchError` (after `settings.bybit_page_retries` retries of a retryable failure, waiting with
    `sleep`) or `PayloadError`/`InvalidTable` naming the symbol. `taken_at` is `now()` when the fetch starts.
    """
    category = CATEGORIES.get(source)
    if category is None:
        raise FetchError(f"unknown Bybit source {source!r}")
    taken_at = now()
    exchange = _exchange(settings, category)

    def retrying(call: Callable[[], T]) -> T:
        return call_with_retries(call, exchange=exchange, settings=settings, sleep=sleep)

    retrying(exchange.load_markets)

    def fetch_page(cursor: str, page: int) -> tuple[list[Any], str]:
        params = {"category": category, **({"cursor": cursor} if cursor else {})}
        return retrying(lambda: page_rows(exchange.publicGetV5MarketRiskLimit(params), page))

    rows = collect_pages(fetch_page, settings.bybit_max_pages)
    symbol_of = MarketSymbols(source, exchange.markets_by_id)
    tables = parse_bybit_risk_limits(source, rows, symbol_of)
    return Snapshot(
        source=source, taken_at=taken_at, provenance="bybit-v5", tables=tables, warnings=symbol_of.warnings()
    )


def _exchange(settings: Settings, category: str) -> Any:
    import ccxt  # lazily: see the module docstring

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

    Raises `RateLimited` for a throttling retCode, `FetchError` for any other non-zero retCode, and
    `Malformed` for a body that is not JSON or has no `result.list`.
    """
    if isinstance(body, str | bytes):  # ccxt returns the text when it cannot decode JSON
        raise Malformed(f"malformed JSON on page {page}")
    if not isinstance(body, Mapping):
        raise Malformed(f"malformed page {page}: expected an object, got {type(body).__name__}")
    code = str(body.get("retCode", "0"))
    if code in RATE_LIMIT_CODES:
        raise RateLimited(f"rate limited (retCode {code})")
    if code != "0":
        raise FetchError(f"exchange error on page {page}: retCode {code} {body.get('retMsg', '')}".rstrip())
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


def call_with_retries(call: Callable[[], T], *, exchange: Any, settings: Settings, sleep: Sleep) -> T:
    """`call()`, retried up to `settings.bybit_page_retries` times on a retryable `FetchError`.

    ccxt exceptions are translated first. Each wait honours a `Retry-After` header of the failed answer,
    otherwise it is `BACKOFF_BASE` doubled per retry; both are capped at `BACKOFF_MAX`.
    """
    import ccxt  # lazily: see the module docstring

    retries = settings.bybit_page_retries
    for attempt in range(retries + 1):
        # ccxt keeps the headers of the last answer; a timeout has none, so clear stale ones first.
        exchange.last_response_headers = None
        try:
            return call()
        except ccxt.BaseError as exc:
            err = from_ccxt(exc, timeout=settings.http_timeout)
        except FetchError as exc:
            err = exc
        if not err.retryable:
            raise err from None
        if attempt == retries:
            raise (err.again(retries) if retries else err) from None
        sleep(backoff(attempt, retry_after(exchange.last_response_headers)))
    raise AssertionError("unreachable: the loop returns or raises")


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header, if present and sane (HTTP dates are ignored)."""
    for name, value in (headers or {}).items():
        if str(name).lower() == "retry-after":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return seconds if seconds >= 0 else None
    return None


def backoff(attempt: int, after: float | None) -> float:
    """The wait before retry number `attempt + 1`."""
    wait = after if after is not None else BACKOFF_BASE * 2**attempt
    return min(wait, BACKOFF_MAX)
