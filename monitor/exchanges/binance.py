"""Binance USDⓈ-M and COIN-M tier tables (domain doc §7).

With a (read-only) key the official signed endpoints are used through ccxt's raw implicit methods:
`GET /fapi/v1/leverageBracket` and `GET /dapi/v2/leverageBracket`. They keep `cum` and the per-account
`notionalCoef` that ccxt's `fetch_leverage_tiers` loses. Without a key, the unofficial web endpoint is
called directly with httpx (ccxt does not cover it).

ccxt and httpx are loaded inside the functions that use them (ccxt one exchange class at a time, through
`monitor.exchanges.lightccxt`): `monitor.exchanges` must stay cheap to import for commands that only
read the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.config.settings import Settings
from monitor.exchanges.errors import (
    AuthFailed,
    EmptyResult,
    ExchangeUnavailable,
    FetchError,
    Malformed,
    RateLimited,
    from_ccxt,
    from_httpx,
    host_of,
    http_failure,
    read_body,
    read_ccxt,
    retry_after,
)
from monitor.exchanges.kept import Kept, ids_of, market_symbols
from monitor.exchanges.lightccxt import ccxt_package
from snapshots.model import Snapshot, TierTable
from snapshots.parse import parse_binance_brackets, parse_binance_web
from snapshots.symbols import canonical_symbol

REAL_FAPI = "https://fapi.binance.com"
REAL_DAPI = "https://dapi.binance.com"


@dataclass(frozen=True, slots=True)
class _Signed:
    exchange_class: str  # attribute of the ccxt module
    method: str  # ccxt raw implicit method of the bracket endpoint
    provenance: str


_SIGNED: dict[str, _Signed] = {
    "binance-usdm": _Signed("binanceusdm", "fapiPrivateGetLeverageBracket", "binance-fapi-signed"),
    # The COIN-M v1 endpoint is discouraged; v2 returns floors and caps in coin (domain doc §7).
    "binance-coinm": _Signed("binancecoinm", "dapiPrivateV2GetLeverageBracket", "binance-dapi-signed"),
}

#: The ccxt class of each signed source (what the daemon loads before it freezes start-up).
SIGNED_CLASSES: dict[str, str] = {source: spec.exchange_class for source, spec in _SIGNED.items()}

WEB_PATHS: dict[str, str] = {
    "binance-usdm": "/bapi/futures/v1/friendly/future/common/brackets",
    "binance-coinm": "/bapi/futures/v1/friendly/delivery/common/brackets",
}


def fetch_binance(
    source: str, settings: Settings, *, now: Callable[[], datetime], kept: Kept | None = None
) -> Snapshot:
    """Every tier table of `source` ("binance-usdm" or "binance-coinm"), signed when a key is configured.

    Raises `FetchError` naming the host for transport and exchange failures (`GeoBlocked` for HTTP 451,
    which rests the source), `PayloadError`/`InvalidTable` (naming the symbol) for a table that breaks
    domain doc §1. `taken_at` is `now()` when the fetch starts. With `kept` (the daemon's, see
    `monitor.exchanges.kept`), its client, markets and parse cache are used and updated.
    """
    if source not in _SIGNED:
        raise FetchError(f"unknown Binance source {source!r}")
    keyed = settings.binance.has_key
    host = host_of(signed_base(source, settings) if keyed else settings.endpoints.binance_web)
    once = Kept() if kept is None else None  # a one-off fetch closes its client when done
    use = kept or once or Kept()
    try:
        return _fetch_signed(source, settings, now, use) if keyed else _fetch_web(source, settings, now, use)
    except FetchError as exc:
        raise exc.at(host) from None
    finally:
        if once is not None:
            once.drop()


def signed_base(source: str, settings: Settings) -> str:
    """The base URL of `source`'s official API: fapi for USDⓈ-M, dapi for COIN-M."""
    return settings.endpoints.binance_fapi if source == "binance-usdm" else settings.endpoints.binance_dapi


# -- signed endpoints through ccxt -----------------------------------------------------------------


def rebased_urls(api: Mapping[str, Any], moves: Mapping[str, str]) -> dict[str, Any]:
    """`api` (ccxt's `urls['api']`) with each URL starting with a key of `moves` moved onto its value.

    Entries that are not strings or match no key are kept as they are.
    """
    out: dict[str, Any] = {}
    for name, url in api.items():
        out[name] = url
        if isinstance(url, str):
            for real, base in moves.items():
                if url.startswith(real):
                    out[name] = base.rstrip("/") + url[len(real) :]
                    break
    return out


def _credentials(settings: Settings) -> tuple[str, str]:
    key, secret = settings.binance.api_key, settings.binance.api_secret
    if key is None or secret is None:
        raise AuthFailed("the signed endpoints need binance.api_key and binance.api_secret")
    return key.get_secret_value(), secret.get_secret_value()


def _signed_exchange(spec: _Signed, settings: Settings) -> Any:
    ccxt = ccxt_package()  # lazily: see the module docstring

    key, secret = _credentials(settings)
    exchange = getattr(ccxt, spec.exchange_class)(
        {
            "apiKey": key,
            "secret": secret,
            "timeout": int(settings.http_timeout * 1000),  # ccxt wants milliseconds
            "enableRateLimit": True,
            # With keys set, load_markets would also call a wallet endpoint and fail with it (domain doc §7).
            "options": {"fetchCurrencies": False},
        }
    )
    moves = {REAL_FAPI: settings.endpoints.binance_fapi, REAL_DAPI: settings.endpoints.binance_dapi}
    exchange.urls["api"] = rebased_urls(exchange.urls["api"], moves)
    return exchange


def _fetch_signed(source: str, settings: Settings, now: Callable[[], datetime], kept: Kept) -> Snapshot:
    ccxt = ccxt_package()  # lazily: see the module docstring

    spec = _SIGNED[source]
    secrets = _credentials(settings)
    taken_at = now()
    exchange = kept.client_for(settings, lambda: _signed_exchange(spec, settings))
    due = kept.markets_due(taken_at)
    try:
        symbols = market_symbols(exchange.fetch_markets()) if due else kept.symbols
        payload = getattr(exchange, spec.method)()
        entries = _bracket_list(payload)
        ids = ids_of(entries)
        if not due and kept.new_ids(ids):  # a new listing: name it as ccxt does
            symbols, due = market_symbols(exchange.fetch_markets()), True
    except ccxt.BaseError as exc:
        # `from None`: the ccxt message carries the signed URL, which must not reach a traceback.
        raise signed_failure(exc, exchange, settings, secrets) from None
    if due:
        kept.loaded(taken_at, symbols, ids)
    symbol_of = MarketSymbols(source, symbols)
    tables = parse_binance_brackets(source, entries, symbol_of, kept.cache)
    return _snapshot(source, taken_at, spec.provenance, tables, symbol_of.warnings())


def signed_failure(exc: Exception, exchange: Any, settings: Settings, secrets: Sequence[str]) -> FetchError:
    """The `FetchError` of a ccxt error from the signed client `exchange`.

    Binance answers HTTP 418 to an IP that kept calling after a 429, with `Retry-After`; the ban grows
    (2 minutes to 3 days) while the IP keeps calling, so the source rests that long instead.
    """
    err = from_ccxt(exc, timeout=settings.http_timeout, secrets=secrets)
    after = retry_after(getattr(exchange, "last_response_headers", None))
    if read_ccxt(exc).status == 418 and after:
        return RateLimited(str(err), rest_seconds=after)
    return err


def _bracket_list(payload: Any) -> list[Any]:
    """The signed endpoint's list of symbols, or the reason it is not one."""
    if isinstance(payload, str | bytes):  # ccxt returns the text when it cannot decode JSON
        raise Malformed("malformed JSON")
    if not isinstance(payload, list):
        raise Malformed(f"malformed response: expected a list of symbols, got {type(payload).__name__}")
    if not payload:
        raise EmptyResult("empty table list")
    return payload


class MarketSymbols:
    """Map exchange ids to ccxt unified symbols through the markets (`kept.market_symbols`), never dropping
    an id.

    An id missing from the markets (ccxt would silently drop it, domain doc §7) is named by
    `canonical_symbol` instead, and remembered so the snapshot can say so.
    """

    def __init__(self, source: str, symbols: Mapping[str, str] | None) -> None:
        self._source = source
        self._symbols = symbols or {}
        self.unmapped: list[str] = []

    def __call__(self, exchange_id: str) -> str:
        found = self._symbols.get(exchange_id)
        if found:
            return found
        self.unmapped.append(exchange_id)
        return canonical_symbol(self._source, exchange_id)

    def warnings(self) -> tuple[str, ...]:
        if not self.unmapped:
            return ()
        shown = ", ".join(self.unmapped[:5]) + (", …" if len(self.unmapped) > 5 else "")
        return (f"{len(self.unmapped)} ids not in the exchange's market list, named by their id's shape: {shown}",)


def _snapshot(
    source: str, taken_at: datetime, provenance: str, tables: dict[str, TierTable], warnings: tuple[str, ...]
) -> Snapshot:
    return Snapshot(source=source, taken_at=taken_at, provenance=provenance, tables=tables, warnings=warnings)


# -- keyless web endpoint through httpx --------------------------------------------------------------


def _fetch_web(source: str, settings: Settings, now: Callable[[], datetime], kept: Kept) -> Snapshot:
    import httpx  # lazily: see the module docstring

    url = settings.endpoints.binance_web.rstrip("/") + WEB_PATHS[source]
    taken_at = now()
    client = kept.client_for(settings, httpx.Client)  # keeps its connection between the daemon's polls
    try:
        response = client.post(url, json={}, timeout=settings.http_timeout)
    except httpx.HTTPError as exc:
        raise from_httpx(exc, timeout=settings.http_timeout, exchange="Binance") from None
    body = web_body(response.status_code, response.text)
    if _web_brackets_empty(body):
        raise EmptyResult("empty table list")
    # The web endpoint's ids are plain exchange ids; no ccxt here, so they are named by their shape.
    tables = parse_binance_web(source, body, lambda key: canonical_symbol(source, key), kept.cache)
    return _snapshot(source, taken_at, "binance-web", tables, ())


def web_body(status: int, text: str) -> Any:
    """The decoded answer of the web endpoint, or the `FetchError` its status and envelope say.

    Real failures (domain doc §8): HTTP 400 `{"code":"000002","message":"illegal parameter",…,
    "success":false}` keeps its message; HTTP 202 with an empty body is a bot challenge (transient: the
    next poll may pass); a 200 with `"success": false` is the exchange refusing, not an invalid table.
    """
    if status == 202 and not text.strip():
        raise ExchangeUnavailable("HTTP 202 Accepted with an empty body: a bot challenge, not the tables")
    if status >= 300:
        raise http_failure(read_body(text, status), exchange="Binance")
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise Malformed("malformed JSON") from None
    if isinstance(body, dict) and body.get("success") is False:
        raise FetchError(read_body(text).cause("exchange error"))
    return body


def _web_brackets_empty(body: Any) -> bool:
    data = body.get("data") if isinstance(body, dict) else None
    brackets = data.get("brackets") if isinstance(data, dict) else None
    return isinstance(brackets, list) and not brackets
