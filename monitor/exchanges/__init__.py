"""Fetch the current tier tables of one source from its exchange.

    fetch_snapshot(source, settings, now=...) -> Snapshot

| source          | with a Binance key          | without                   |
|-----------------|-----------------------------|---------------------------|
| binance-usdm    | `binance-fapi-signed`       | `binance-web`             |
| binance-coinm   | `binance-dapi-signed`       | `binance-web`             |
| bybit-linear    | `bybit-v5`                  | `bybit-v5`                |
| bybit-inverse   | `bybit-v5`                  | `bybit-v5`                |

(the `Snapshot.provenance` of each path). Failures raise `FetchError` (see `monitor.exchanges.errors`) or,
for a table that breaks domain doc §1, `snapshots.errors.PayloadError`.

Importing this package loads neither ccxt nor httpx: they are imported by the functions that use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from monitor.config.settings import Settings
from monitor.exchanges.binance import fetch_binance
from monitor.exchanges.bybit import fetch_bybit
from monitor.exchanges.errors import FetchError
from monitor.exchanges.kept import Kept
from snapshots.model import Snapshot

__all__ = ["FetchError", "fetch_snapshot"]


def fetch_snapshot(
    source: str,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
    kept: Kept | None = None,
) -> Snapshot:
    """Every tier table of `source` as the exchange serves it now.

    `taken_at` is `now()` when the fetch starts (the project's clocks return aware UTC). `sleep` is how
    Bybit's page retries wait; tests pass a recorder. `kept` is the source's client, markets and parse
    cache to reuse (`monitor.exchanges.clients.Clients` keeps one per source for the daemon).
    """
    if source.startswith("binance-"):
        return fetch_binance(source, settings, now=now, kept=kept)
    if source.startswith("bybit-"):
        return fetch_bybit(source, settings, now=now, sleep=sleep, kept=kept)
    raise FetchError(f"unknown source {source!r}")
