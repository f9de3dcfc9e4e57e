"""The paths the fake serves and the sources it knows."""

from __future__ import annotations

SOURCES: tuple[str, ...] = ("binance-usdm", "binance-coinm", "bybit-linear", "bybit-inverse")

FAPI_EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
DAPI_EXCHANGE_INFO = "/dapi/v1/exchangeInfo"
FAPI_BRACKETS = "/fapi/v1/leverageBracket"
DAPI_BRACKETS = "/dapi/v2/leverageBracket"
WEB_USDM = "/bapi/futures/v1/friendly/future/common/brackets"
WEB_COINM = "/bapi/futures/v1/friendly/delivery/common/brackets"
INSTRUMENTS = "/v5/market/instruments-info"
RISK_LIMIT = "/v5/market/risk-limit"
FAPI_PREMIUM_INDEX = "/fapi/v1/premiumIndex"
DAPI_PREMIUM_INDEX = "/dapi/v1/premiumIndex"
FAPI_MARK_KLINES = "/fapi/v1/markPriceKlines"
DAPI_MARK_KLINES = "/dapi/v1/markPriceKlines"
TICKERS = "/v5/market/tickers"
MARK_KLINE = "/v5/market/mark-price-kline"


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
