"""Canonical ccxt-style symbols for every key shape a source or an archive uses.

Live polls map exchange ids through the loaded ccxt markets first; this module is the fallback and
the translator for archived files, whose keys changed shape over the years (`../shared/data/README.md`):
`BTC/USDT` before 2023-01-13, raw ids such as `BTCUSDT_220624`, and today's `BTC/USDT:USDT`.
Without it, the switch of key format would look like every symbol delisted and relisted at once.
"""

from __future__ import annotations

import re

# Longest first, so that "FDUSD" is not read as "...FD" + "USD". Inverse contracts are quoted in USD
# only: "BNBUSD_PERP" is BNB/USD, not "BN" quoted in BUSD.
_LINEAR_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD")
_INVERSE_QUOTES = ("USD",)
_DATED = re.compile(r"^(?P<id>[A-Z0-9]+)_(?P<date>\d{6})$")
_PERP = re.compile(r"^(?P<id>[A-Z0-9]+)_PERP$")


def _split(exchange_id: str, quotes: tuple[str, ...]) -> tuple[str, str] | None:
    for quote in quotes:
        if exchange_id.endswith(quote) and len(exchange_id) > len(quote):
            return exchange_id[: -len(quote)], quote
    return None


def canonical_symbol(source: str, key: str) -> str:
    """Map any known key shape to `BASE/QUOTE:SETTLE[-YYMMDD]`; unknown shapes are kept as given."""
    key = key.strip()
    inverse = source in ("binance-coinm", "bybit-inverse")
    if "/" in key:
        if ":" in key:
            return key
        base, quote = key.split("/", 1)
        return f"{base}/{quote}:{base if inverse else quote}"
    suffix = ""
    ident = key
    if m := _DATED.match(key):
        ident, suffix = m["id"], "-" + m["date"]
    elif m := _PERP.match(key):
        ident = m["id"]
    parts = _split(ident, _INVERSE_QUOTES if inverse else _LINEAR_QUOTES)
    if parts is None:
        return key
    base, quote = parts
    settle = base if inverse else quote
    return f"{base}/{quote}:{settle}{suffix}"
