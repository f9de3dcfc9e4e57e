"""Keyless ccxt clients for the public endpoints of each source, pointed at `settings.endpoints`.

    public_client(source, settings) -> ccxt exchange
    client_failure(source, exc, exchange, settings, now=...) -> FetchError   (named by `public_host`)
    Clients(now=...)(source, settings) -> Snapshot   (the daemon's fetch: clients and markets kept)

| source          | ccxt class     | markets it loads                                  |
|-----------------|----------------|---------------------------------------------------|
| binance-usdm    | `binanceusdm`  | `GET /fapi/v1/exchangeInfo`                       |
| binance-coinm   | `binancecoinm` | `GET /dapi/v1/exchangeInfo`                       |
| bybit-linear    | `bybit`        | `GET /v5/market/instruments-info?category=linear` |
| bybit-inverse   | `bybit`        | `GET /v5/market/instruments-info?category=inverse`|

The clients never carry a key: public endpoints need none, and a client without one cannot leak it or
trip over the wallet call that ccxt adds to `load_markets` when a Binance key is set (domain doc §7).
The signed tier-table client stays in `monitor.exchanges.binance`.

ccxt is loaded inside `public_client`, and only the class it builds (`monitor.exchanges.lightccxt`):
`monitor.exchanges` must stay cheap to import for commands that only read the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from monitor.config.settings import Settings
from monitor.exchanges.binance import REAL_DAPI, REAL_FAPI, SIGNED_CLASSES, rebased_urls, signed_base
from monitor.exchanges.bybit import bybit_failure
from monitor.exchanges.errors import FetchError, from_ccxt, host_of
from monitor.exchanges.kept import Kept
from monitor.exchanges.lightccxt import ccxt_package
from snapshots.model import Snapshot

#: The ccxt class of each source, and the Bybit category whose markets it loads (None for Binance).
CLASSES: dict[str, tuple[str, str | None]] = {
    "binance-usdm": ("binanceusdm", None),
    "binance-coinm": ("binancecoinm", None),
    "bybit-linear": ("bybit", "linear"),
    "bybit-inverse": ("bybit", "inverse"),
}


def tier_classes(settings: Settings) -> list[str]:
    """The ccxt classes the tier-table fetches of `settings.sources` use: `bybit` for Bybit, the signed
    client's for Binance with a key (without one Binance is read over httpx)."""
    keyed = settings.binance.has_key
    classes = {
        SIGNED_CLASSES[source] if source.startswith("binance-") else CLASSES[source][0]
        for source in settings.sources
        if source in CLASSES and (keyed or not source.startswith("binance-"))
    }
    return sorted(classes)


def public_client(source: str, settings: Settings) -> Any:
    """A new keyless ccxt client for `source`, with `settings.http_timeout` and `settings.endpoints`.

    Markets are not loaded yet. Raises `FetchError` for an unknown source.
    """
    ccxt = ccxt_package()  # lazily: see the module docstring

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


def public_host(source: str, settings: Settings) -> str:
    """The host the public client of `source` calls, as failures name it."""
    return host_of(settings.endpoints.bybit if source.startswith("bybit-") else signed_base(source, settings))


def client_failure(
    source: str, exc: Exception, exchange: Any, settings: Settings, *, now: datetime, secrets: Sequence[str] = ()
) -> FetchError:
    """The `FetchError` of a ccxt error from `exchange`, a client of `source`, named by its host.

    Bybit's own rules (HTTP 403 rests the source, transient retCodes) apply to its clients; every other
    error is `from_ccxt`'s. `now` dates Bybit's reset header.
    """
    if source.startswith("bybit-"):
        headers = getattr(exchange, "last_response_headers", None)
        err = bybit_failure(exc, headers, timeout=settings.http_timeout, now=now, secrets=secrets)
    else:
        err = from_ccxt(exc, timeout=settings.http_timeout, secrets=secrets)
    return err.at(public_host(source, settings))


class Clients:
    """The daemon's fetch: one `Kept` per source (client, loaded markets, parse cache) across its polls.

    A fetch that raises drops that source's client and markets, so that a client left in a bad state (a
    half-read connection, a session ccxt gave up on) is never used again: the next poll builds a new one.
    `close` closes every client; the daemon calls it when it stops. Polls of different sources may run
    at once (one thread each); one source's polls never overlap (the scheduler runs one at a time).
    """

    def __init__(self, *, now: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep) -> None:
        self.now = now
        self.sleep = sleep
        self.kept: dict[str, Kept] = {}
        self._lock = threading.Lock()

    def __call__(self, source: str, settings: Settings) -> Snapshot:
        from monitor.exchanges import fetch_snapshot

        with self._lock:
            kept = self.kept.setdefault(source, Kept())
        try:
            return fetch_snapshot(source, settings, now=self.now, sleep=self.sleep, kept=kept)
        except BaseException:
            kept.drop()
            raise

    def close(self) -> None:
        with self._lock:
            for kept in self.kept.values():
                kept.drop()
