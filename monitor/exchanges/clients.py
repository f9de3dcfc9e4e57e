"""Keyless ccxt clients for the public endpoints of each source, pointed at `settings.endpoints`.

    public_client(source, settings) -> ccxt exchange

| source          | ccxt class     | markets it loads                                  |
|-----------------|----------------|---------------------------------------------------|
| binance-usdm    | `binanceusdm`  | `GET /fapi/v1/exchangeInfo`                       |
| binance-coinm   | `binancecoinm` | `GET /dapi/v1/exchangeInfo`                       |
| bybit-linear    | `bybit`        | `GET /v5/market/instruments-info?category=linear` |
| bybit-inverse   | `bybit`        | `GET /v5/market/instruments-info?category=inverse`|

The clients never carry a key: public endpoints need none, and a client without one cannot leak it or
trip over the wallet call that ccxt adds to `load_markets` when a Binance key is set (domain doc §7).
The signed tier-table client stays in `monitor.exchanges.binance`.

ccxt is imported inside `public_client`: `import ccxt` costs 0.3 s and 78 MB, and `monitor.exchanges`
must stay cheap to import for commands that only read the database.
"""

from __future__ import annotations

from typing import Any

from monitor.exchanges.binance import REAL_DAPI, REAL_FAPI, rebased_urls
from monitor.exchanges.errors import FetchError
from monitor.settings import Settings

#: The ccxt class of each source, and the Bybit category whose markets it loads (None for Binance).
CLASSES: dict[str, tuple[str, str | None]] = {
    "binance-usdm": ("binanceusdm", None),
    "binance-coinm": ("binancecoinm", None),
    "bybit-linear": ("bybit", "linear"),
    "bybit-inverse": ("bybit", "inverse"),
}


def public_client(source: str, settings: Settings) -> Any:
    """A new keyless ccxt client for `source`, with `settings.http_timeout` and `settings.endpoints`.

    Markets are not loaded yet. Raises `FetchError` for an unknown source.
    """
    import ccxt  # lazily: see the module docstring

    if source not in CLASSES:
        raise FetchError(f"unknown source {source!r}")
    class_name, category = CLASSES[source]
    options: dict[str, Any] = (
        {"fetchCurrencies": False}  # no wallet call in load_markets, even if a key were ever added
        if category is None
        else {"fetchMarkets": {"types": [category]}}  # one category's instruments only
    )
    exchange = getattr(ccxt, class_name)(
        {
            "timeout": int(settings.http_timeout * 1000),  # ccxt wants milliseconds
            "enableRateLimit": True,
            "options": options,
        }
    )
    exchange.urls["api"] = _moved(exchange.urls["api"], source, settings)
    return exchange


def _moved(api: dict[str, Any], source: str, settings: Settings) -> dict[str, Any]:
    if source.startswith("bybit-"):
        # Every API family of Bybit lives on one host, so every entry moves.
        return dict.fromkeys(api, settings.endpoints.bybit.rstrip("/"))
    return rebased_urls(api, {REAL_FAPI: settings.endpoints.binance_fapi, REAL_DAPI: settings.endpoints.binance_dapi})
