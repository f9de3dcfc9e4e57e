"""What one source's fetch keeps between polls: its client, the symbols of its markets, its parse cache.

A poll that builds a new ccxt client loads the markets again: for Bybit one more request and 0.2–0.7 s
before the first page. A `Kept` lets the daemon's polls reuse the client and its markets, and parse only
the entries that differ from the previous poll (`snapshots.parse.ParseCache`). The markets are loaded
again when they are a day old, or when the payload names an id they lack (a new listing): once per new
id, so that an id the exchange's market list never has does not reload them on every poll.

Of the markets only what the tier tables use is kept: each id's unified symbol (`market_symbols`). The
markets come from ccxt's `fetch_markets`, not `load_markets`, so the client never holds ccxt's full
market structures (about 8 kB a market with its raw `info`, indexed twice, and the currencies derived
from them): the tier-table calls are raw implicit methods that need no loaded markets.

`monitor.exchanges.clients.Clients` holds one per source and drops the client after a failed poll.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from snapshots.parse import ParseCache

#: Markets older than this are loaded again before the next poll.
MARKETS_MAX_AGE = timedelta(days=1)


def market_symbols(markets: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Exchange id → ccxt unified symbol of a `fetch_markets()` list. An id shared by several markets gets
    the one ccxt's `set_markets` puts first in `markets_by_id` (spot markets first, then in list order)."""
    out: dict[str, str] = {}
    for market in sorted(markets, key=lambda m: not m.get("spot")):  # stable: list order within each kind
        out.setdefault(str(market["id"]), str(market["symbol"]))
    return out


@dataclass
class Kept:
    """One source's reusable state. `client` is a ccxt exchange (or an `httpx.Client` for Binance's web
    endpoint); `owner` is the `Settings` it was built from (another settings object builds another)."""

    client: Any = None
    owner: object = None
    markets_at: datetime | None = None
    symbols: dict[str, str] = field(default_factory=dict)  # exchange id → unified symbol, from the markets
    unknown_ids: frozenset[str] = frozenset()  # ids the markets lacked when last loaded
    cache: ParseCache = field(default_factory=ParseCache)
    max_age: timedelta = MARKETS_MAX_AGE
    builds: int = 0  # clients built, for the tests and the benchmark
    market_loads: int = 0

    def client_for(self, owner: object, build: Any) -> Any:
        """The kept client if it was built for `owner`, else a new one from `build()`."""
        if self.client is None or self.owner is not owner:
            self.drop()
            self.client, self.owner = build(), owner
            self.builds += 1
        return self.client

    def markets_due(self, now: datetime) -> bool:
        return self.markets_at is None or now - self.markets_at >= self.max_age

    def loaded(self, now: datetime, symbols: dict[str, str], ids: Iterable[str]) -> None:
        """Markets were just loaded at `now` (`symbols`: `market_symbols` of them); `ids` are those of the
        payload they must name."""
        self.symbols = symbols
        self.markets_at = now
        self.market_loads += 1
        self.unknown_ids = frozenset(i for i in ids if i not in symbols)

    def new_ids(self, ids: Iterable[str]) -> bool:
        """True when the payload names an id the markets lack that was not already missing at their load."""
        return any(i not in self.symbols and i not in self.unknown_ids for i in ids)

    def drop(self) -> None:
        """Close and forget the client and its markets (the parse cache is plain data and stays)."""
        client, self.client, self.owner, self.markets_at = self.client, None, None, None
        self.symbols = {}
        if client is not None:
            # Closing a client that already failed may fail too; it is gone either way.
            with contextlib.suppress(Exception):
                client.close()


def ids_of(rows: Iterable[Any]) -> list[str]:
    """The exchange ids a payload's rows name (rows without a string `symbol` are the parser's to refuse)."""
    return [r["symbol"] for r in rows if isinstance(r, Mapping) and isinstance(r.get("symbol"), str)]
