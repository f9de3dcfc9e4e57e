"""A fake Binance and Bybit on 127.0.0.1: real HTTP, in-memory tier tables, injectable faults.

It backs the offline tests of `monitor.exchanges` (through the real ccxt and httpx stacks, domain doc §7)
and the offline demo. One server answers every endpoint the pollers use, so every base URL in
`Settings.endpoints` points at it (`FakeExchange.endpoints()`):

| endpoint                                                | serves                                        |
|---------------------------------------------------------|-----------------------------------------------|
| `GET /fapi/v1/exchangeInfo`, `GET /dapi/v1/exchangeInfo`| listed USDⓈ-M / COIN-M markets                |
| `GET /fapi/v1/leverageBracket`                          | USDⓈ-M brackets, HMAC-SHA256 signature checked|
| `GET /dapi/v2/leverageBracket`                          | COIN-M brackets (floors/caps in coin), signed |
| `POST` or `GET /bapi/futures/v1/friendly/{future,delivery}/common/brackets` | the keyless web tables |
| `GET /v5/market/instruments-info`                       | listed Bybit linear / inverse markets         |
| `GET /v5/market/risk-limit`                             | Bybit risk limits, `page_size` symbols a page |
| `GET /fapi/v1/premiumIndex`, `GET /dapi/v1/premiumIndex`| mark prices (COIN-M: always a list)           |
| `GET /fapi/v1/markPriceKlines`, `GET /dapi/v1/markPriceKlines` | daily mark-price candles, oldest first |
| `GET /v5/market/tickers`                                | Bybit tickers with `markPrice`                |
| `GET /v5/market/mark-price-kline`                       | Bybit daily mark-price candles, newest first  |

The scenario is mutable while the server runs: `set_tables` / `set_table` change what the next poll
sees, `set_market` sets a symbol's mark price and daily candles, and `inject` queues faults per path
(HTTP errors with `Retry-After`, delays, malformed JSON, an empty list, a repeated page cursor). Every
request is logged (`requests_to`) for assertions.

The answers follow the real ones recorded in `shared/data/real-responses` (keys, key order, envelopes),
and so do the failures (domain doc §8): `Fault.bybit_ip_limit` (HTTP 403 with `X-Bapi-*` headers),
`Fault.bybit_error` (retCode 10016, 10002, 10006, …), `Fault.geo_blocked` (Binance's HTTP 451 body),
`Fault.bapi_error` (the web endpoint's `"success":false` envelope) and `Fault.bot_challenge` (HTTP 202,
empty). `Shapes` picks between real variants: the COIN-M floor spelled `qtylFloor` or `qtyFloor`, Bybit
rows with or without `mmDeduction`, a last page with or without `nextPageCursor`.

Usage::

    with FakeExchange(tables={"bybit-linear": generate_tables("bybit-linear", 40)}) as fake:
        settings = Settings(endpoints=fake.endpoints())
        fake.inject(RISK_LIMIT, Fault.http(429, retry_after=2))
        ...
        assert len(fake.requests_to(RISK_LIMIT)) == 4

The package: `server` (`FakeExchange`: the scenario, the fault queues, the request log and the route of
each endpoint), `transport` (the HTTP server and the recorded requests), `payloads` (the answers, shaped
as the real ones), `signing` (Binance's checks of a signed request), `faults` (`Fault` and the exchanges'
own error texts), `scenarios` (the values served, and realistic tables) and `endpoints` (the paths). This
module re-exports what tests, benchmarks and `tierdrift demo` use. It imports neither ccxt nor httpx.
"""

from __future__ import annotations

from monitor.fake_exchange.endpoints import (
    DAPI_BRACKETS,
    DAPI_EXCHANGE_INFO,
    DAPI_MARK_KLINES,
    DAPI_PREMIUM_INDEX,
    FAPI_BRACKETS,
    FAPI_EXCHANGE_INFO,
    FAPI_MARK_KLINES,
    FAPI_PREMIUM_INDEX,
    INSTRUMENTS,
    MARK_KLINE,
    RISK_LIMIT,
    SOURCES,
    TICKERS,
    WEB_COINM,
    WEB_USDM,
)
from monitor.fake_exchange.faults import BAPI_ILLEGAL_PARAMETER, BYBIT_MESSAGES, GEO_BLOCK_BODY, Fault
from monitor.fake_exchange.payloads import Shapes
from monitor.fake_exchange.scenarios import (
    FakeCandle,
    FakeMarket,
    FakeTable,
    FakeTier,
    base_names,
    daily_candles,
    default_scenario,
    exchange_id,
    generate_tables,
    random_tiers,
)
from monitor.fake_exchange.server import FakeExchange
from monitor.fake_exchange.transport import RecordedRequest

__all__ = [
    "BAPI_ILLEGAL_PARAMETER",
    "BYBIT_MESSAGES",
    "DAPI_BRACKETS",
    "DAPI_EXCHANGE_INFO",
    "DAPI_MARK_KLINES",
    "DAPI_PREMIUM_INDEX",
    "FAPI_BRACKETS",
    "FAPI_EXCHANGE_INFO",
    "FAPI_MARK_KLINES",
    "FAPI_PREMIUM_INDEX",
    "GEO_BLOCK_BODY",
    "INSTRUMENTS",
    "MARK_KLINE",
    "RISK_LIMIT",
    "SOURCES",
    "TICKERS",
    "WEB_COINM",
    "WEB_USDM",
    "FakeCandle",
    "FakeExchange",
    "FakeMarket",
    "FakeTable",
    "FakeTier",
    "Fault",
    "RecordedRequest",
    "Shapes",
    "base_names",
    "daily_candles",
    "default_scenario",
    "exchange_id",
    "generate_tables",
    "random_tiers",
]
