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

This module imports neither ccxt nor httpx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

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

#: Bybit's messages for the retCodes the fetchers treat specially (v5 error-code page, ccxt's comments).
BYBIT_MESSAGES: dict[int, str] = {
    10002: "invalid request, please check your server timestamp or recv_window param",
    10006: "Too many visits!",
    10016: "System error. Please try again later.",
}
#: Binance's HTTP 451 body (recorded in shared/data/real-responses/komekome_bapi_error_envelopes.txt, whose
#: log cuts it after "received t"; the rest is the sentence Binance ends it with).
GEO_BLOCK_BODY = (
    '{\n  "code": 0,\n  "msg": "Service unavailable from a restricted location according to \'b. Eligibility\' in'
    " https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in"
    ' error."\n}'
)
#: The web endpoint's HTTP 400 body, byte for byte as recorded (same file).
BAPI_ILLEGAL_PARAMETER = (
    '{"code":"000002","message":"illegal parameter","messageDetail":null,"data":null,"success":false}'
)

_PERPETUAL_DELIVERY_MS = 4133404800000  # Binance's "no delivery" date (2100-12-25) for perpetuals
_LAUNCH_MS = 1569398400000
_DEFAULT_RECV_WINDOW_MS = 5000
_DAY = timedelta(days=1)
_DAY_MS = 86_400_000
_FUNDING_MS = 8 * 3_600_000


# -- scenario values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeTier:
    """One tier as the fake serves it; units follow the source (quote notional, or coin for inverse)."""

    floor: float
    cap: float
    rate: float
    amount: float
    max_leverage: float


@dataclass(frozen=True, slots=True)
class FakeTable:
    """The tiers of one symbol, keyed by exchange id (`BTCUSDT`, `BTCUSD_PERP`, `BTCUSD`, `BTCPERP`)."""

    tiers: tuple[FakeTier, ...]
    #: Binance's per-account multiplier, served by the signed endpoints only (domain doc §1).
    notional_coef: float | None = None
    #: False: served in tier tables but missing from the market list, like a brand-new listing.
    listed: bool = True


@dataclass(frozen=True, slots=True)
class FakeCandle:
    """One daily mark-price candle; `opened_at` is the start of its UTC day."""

    opened_at: datetime
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class FakeMarket:
    """What the market-data endpoints serve for one symbol: its mark price and daily candles."""

    mark: float
    candles: tuple[FakeCandle, ...] = ()


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of (or before) a normal answer. Build one with the class methods."""

    kind: str  # http | slow | malformed | empty | repeat_cursor | raw
    status: int = 200
    body: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "text/plain"

    @classmethod
    def http(
        cls,
        status: int,
        *,
        retry_after: float | None = None,
        body: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "text/plain",
    ) -> Fault:
        """Answer `status` (e.g. 429, 503) with a short text body, an optional `Retry-After` and `headers`."""
        return cls(
            "http", status=status, body=body, retry_after=retry_after, headers=tuple(headers), content_type=content_type
        )

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait `seconds` before answering normally: longer than the client's timeout makes it time out."""
        return cls("slow", delay=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with JSON cut off in the middle."""
        return cls("malformed", body='{"retCode":0,"result":{"list":[{"symbol":')

    @classmethod
    def empty(cls) -> Fault:
        """Answer a well-formed response holding no symbol at all."""
        return cls("empty")

    @classmethod
    def repeat_cursor(cls) -> Fault:
        """Bybit pages: answer the requested page, but give the request's own cursor as the next one.

        A request without a cursor (the first page) is answered normally, so queue it with `after=1`
        (or `times=2`) to make the chain loop on its second page.
        """
        return cls("repeat_cursor")

    @classmethod
    def raw(cls, body: str, *, status: int = 200) -> Fault:
        """Answer exactly `body` as JSON with `status`, e.g. an error retCode or a body missing a field."""
        return cls("raw", status=status, body=body)

    # How the real endpoints fail (domain doc §8), as they answer.

    @classmethod
    def bybit_ip_limit(cls, *, reset_ms: int | None = None) -> Fault:
        """Bybit's IP over its limit: HTTP 403 "access too frequent" with its `X-Bapi-*` headers, no `Retry-After`.

        `X-Bapi-Limit-Reset-Timestamp` is `reset_ms` (ms since the epoch), by default the time the fault
        is made: Bybit sends the current time when no per-endpoint window is exceeded.
        """
        reset = reset_ms if reset_ms is not None else _now_ms()
        headers = (("X-Bapi-Limit", "600"), ("X-Bapi-Limit-Status", "0"), ("X-Bapi-Limit-Reset-Timestamp", str(reset)))
        return cls.http(403, body="access too frequent", headers=headers)

    @classmethod
    def bybit_error(cls, code: int, message: str | None = None) -> Fault:
        """A Bybit answer with a non-zero `retCode` (HTTP 200), with Bybit's message for the known codes."""
        words = message if message is not None else BYBIT_MESSAGES.get(code, "error")
        envelope = {"retCode": code, "retMsg": words, "result": {}, "retExtInfo": {}, "time": _now_ms()}
        return cls.raw(json.dumps(envelope, separators=(",", ":")))

    @classmethod
    def geo_blocked(cls) -> Fault:
        """Binance from a restricted location: HTTP 451 with its `{"code":0,"msg":…}` body."""
        return cls.http(451, body=GEO_BLOCK_BODY, content_type="application/json")

    @classmethod
    def bapi_error(cls, *, status: int = 400) -> Fault:
        """The web endpoint refusing a request: its recorded `"success":false` envelope, HTTP 400 (or `status`)."""
        return cls.raw(BAPI_ILLEGAL_PARAMETER, status=status)

    @classmethod
    def bot_challenge(cls) -> Fault:
        """www.binance.com's bot challenge: HTTP 202 with an empty body."""
        return cls.http(202, body="", content_type="text/html")


@dataclass(frozen=True, slots=True)
class Shapes:
    """Which of the real answers' variants the fake serves; the defaults follow the exchanges' API docs.

    `coinm_floor`: the COIN-M signed floor key, `qtylFloor` as Binance's docs spell it, or `qtyFloor`
    as in ccxt's sample (the parser accepts both). `bybit_mm_deduction`: False leaves `mmDeduction` out
    of Bybit rows, as in ccxt's sample. `bybit_last_cursor`: True puts `"nextPageCursor": ""` on the last
    risk-limit page; Bybit's docs example has no such key.
    """

    coinm_floor: str = "qtylFloor"
    bybit_mm_deduction: bool = True
    bybit_last_cursor: bool = False

    def __post_init__(self) -> None:
        if self.coinm_floor not in ("qtylFloor", "qtyFloor"):
            raise ValueError("coinm_floor is qtylFloor or qtyFloor")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: Mapping[str, str]  # decoded; the last value wins for a repeated name
    raw_query: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    fault: str | None = None  # the kind of fault applied to it, if any


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Queued:
    fault: Fault
    times: int
    after: int


@dataclass(frozen=True, slots=True)
class _Instrument:
    base: str
    quote: str
    settle: str
    expiry_ms: int | None = None


# -- the server -------------------------------------------------------------------------------------


class FakeExchange:
    """A threaded HTTP server on 127.0.0.1 posing as Binance fapi/dapi/web and Bybit v5.

    Thread-safe: the scenario may change while requests are served. Use it as a context manager, or
    call `start()` and `stop()`.
    """

    def __init__(
        self,
        *,
        api_key: str = "fake-api-key",
        api_secret: str = "fake-api-secret",  # noqa: S107 - a test double's well-known secret
        page_size: int = 15,
        tables: Mapping[str, Mapping[str, FakeTable]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        shapes: Shapes | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.api_key = api_key
        self.api_secret = api_secret
        self.page_size = page_size
        self.shapes = shapes or Shapes()
        self._address = (host, port)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._tables: dict[str, dict[str, FakeTable]] = {s: {} for s in SOURCES}
        self._markets: dict[str, dict[str, FakeMarket]] = {s: {} for s in SOURCES}
        self._faults: dict[str, list[_Queued]] = {}
        self._log: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for source, by_id in (tables or {}).items():
            self.set_tables(source, by_id)

    # lifecycle

    def start(self) -> Self:
        """Bind (port 0 picks a free one) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeExchange already started")
        self._stopping.clear()
        self._server = _Server(self._address, _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-exchange", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers still pending are cut short."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, once started."""
        if self._server is None:
            raise RuntimeError("FakeExchange not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def endpoints(self) -> dict[str, str]:
        """Values for `Settings.endpoints` that point every exchange at this server."""
        return {name: self.url for name in ("binance_fapi", "binance_dapi", "binance_web", "bybit")}

    # scenario

    def set_tables(self, source: str, tables: Mapping[str, FakeTable]) -> None:
        """Replace every table of `source`. Raises ValueError for an id shape the fake cannot list."""
        _check_source(source)
        for exchange_id in tables:
            _instrument(source, exchange_id)
        with self._lock:
            self._tables[source] = dict(tables)

    def set_table(self, source: str, exchange_id: str, table: FakeTable | None) -> None:
        """Add or replace one symbol's table; None delists it."""
        _check_source(source)
        with self._lock:
            if table is None:
                self._tables[source].pop(exchange_id, None)
            else:
                _instrument(source, exchange_id)
                self._tables[source][exchange_id] = table

    def set_shapes(self, shapes: Shapes) -> None:
        """Serve these variants of the real answers from the next request on."""
        with self._lock:
            self.shapes = shapes

    def tables(self, source: str) -> dict[str, FakeTable]:
        """A copy of the tables of `source`."""
        _check_source(source)
        with self._lock:
            return dict(self._tables[source])

    def set_market(
        self,
        source: str,
        exchange_id: str,
        *,
        mark: float,
        daily_ranges: Sequence[float] | None = None,
        candles: Sequence[FakeCandle] | None = None,
        today: date | None = None,
        open_range: float | None = None,
    ) -> None:
        """Serve `mark` and daily mark-price candles for one symbol, which the market lists from now on.

        Either `candles` exactly as given, or `daily_ranges`: one completed day per range (high − low),
        oldest first, ending the day before `today` (default: the UTC date now), plus the still-open day
        `today` with `open_range` (default three times the largest range, so that counting it shows).
        Neither gives a symbol without candles. A symbol without a market answers "invalid symbol".
        """
        _check_source(source)
        _instrument(source, exchange_id)
        if daily_ranges is not None and candles is not None:
            raise ValueError("give daily_ranges or candles, not both")
        if daily_ranges is not None:
            day = today or datetime.now(UTC).date()
            candles = daily_candles(mark, daily_ranges, today=day, open_range=open_range)
        with self._lock:
            self._markets[source][exchange_id] = FakeMarket(mark, tuple(candles or ()))

    def markets(self, source: str) -> dict[str, FakeMarket]:
        """A copy of the market data of `source`, by exchange id."""
        _check_source(source)
        with self._lock:
            return dict(self._markets[source])

    def inject(self, path: str, fault: Fault, *, times: int = 1, after: int = 0) -> None:
        """Apply `fault` to the next `times` requests for `path`, after letting `after` through.

        Faults queued for one path apply in order; the next one starts when the previous is used up.
        """
        if times < 1 or after < 0:
            raise ValueError("times must be at least 1 and after at least 0")
        with self._lock:
            self._faults.setdefault(path, []).append(_Queued(fault, times, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # request log

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._log if r.path == path]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # serving (called from handler threads)

    def _respond(self, request: RecordedRequest) -> _Response:
        """The answer to one request: record it, apply a due fault, else route it."""
        with self._lock:
            fault = self._next_fault(request.path)
            self._log.append(replace(request, fault=fault.kind if fault else None))
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down")
        if fault is not None and fault.kind in ("http", "malformed", "raw"):
            return _fault_response(fault)
        route = _ROUTES.get((request.method, request.path))
        if route is None:
            return _json(HTTPStatus.NOT_FOUND, {"code": -1, "msg": f"no route {request.method} {request.path}"})
        with self._lock:
            return route(self, request, fault.kind if fault else None)

    def _next_fault(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        head = queue[0]
        if head.after > 0:
            head.after -= 1
            return None
        head.times -= 1
        if head.times == 0:
            queue.pop(0)
        return head.fault

    # Binance

    def _listed(self, source: str) -> list[str]:
        """Ids in the market list: listed tables, and symbols with market data unless their table is unlisted."""
        tables = self._tables[source]
        ids = {i for i, t in tables.items() if t.listed}
        ids |= {i for i in self._markets[source] if i not in tables}
        return sorted(ids)

    def _exchange_info(self, source: str, fault: str | None) -> _Response:
        listed = [] if fault == "empty" else self._listed(source)
        symbols = [_binance_market(source, exchange_id) for exchange_id in listed]
        return _json(HTTPStatus.OK, {"timezone": "UTC", "serverTime": _now_ms(), "rateLimits": [], "symbols": symbols})

    def _signed_brackets(self, source: str, request: RecordedRequest, fault: str | None) -> _Response:
        rejected = self._check_signature(request)
        if rejected is not None:
            return rejected
        wanted = request.query.get("symbol")
        tables = {} if fault == "empty" else self._tables[source]
        body = [
            _binance_entry(source, exchange_id, table, coinm_floor=self.shapes.coinm_floor)
            for exchange_id, table in sorted(tables.items())
            if wanted is None or exchange_id == wanted
        ]
        return _json(HTTPStatus.OK, body)

    def _check_signature(self, request: RecordedRequest) -> _Response | None:
        """Binance's checks of a SIGNED request, with its error codes; None when it passes."""
        key = request.headers.get("x-mbx-apikey")
        if not key:
            return _json(HTTPStatus.UNAUTHORIZED, {"code": -2014, "msg": "API-key format invalid."})
        if not hmac.compare_digest(key, self.api_key):
            return _json(
                HTTPStatus.UNAUTHORIZED, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
            )
        stamp = request.query.get("timestamp", "")
        if not stamp.isdigit():
            msg = "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            return _json(HTTPStatus.BAD_REQUEST, {"code": -1102, "msg": msg})
        # The signature covers the query string exactly as sent, minus the signature parameter.
        parts = request.raw_query.split("&")
        payload = "&".join(p for p in parts if not p.startswith("signature="))
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.query.get("signature", ""), expected):
            return _json(HTTPStatus.BAD_REQUEST, {"code": -1022, "msg": "Signature for this request is not valid."})
        window_text = request.query.get("recvWindow", "")
        window = int(window_text) if window_text.isdigit() else _DEFAULT_RECV_WINDOW_MS
        server_ms = _now_ms()
        if int(stamp) > server_ms + 1000 or server_ms - int(stamp) > window:
            msg = "Timestamp for this request is outside of the recvWindow."
            return _json(HTTPStatus.BAD_REQUEST, {"code": -1021, "msg": msg})
        return None

    def _web_brackets(self, source: str, fault: str | None) -> _Response:
        tables = {} if fault == "empty" else self._tables[source]
        brackets = [_web_entry(exchange_id, table) for exchange_id, table in sorted(tables.items())]
        # The envelope of the recorded answer: `data` holds `brackets` only.
        data = {"brackets": brackets}
        body = {"code": "000000", "message": None, "messageDetail": None, "data": data, "success": True}
        return _json(HTTPStatus.OK, body)

    def _premium_index(self, source: str, request: RecordedRequest, fault: str | None) -> _Response:
        markets = self._markets[source]
        wanted = request.query.get("symbol")
        if wanted is not None and wanted not in markets:
            return _binance_invalid_symbol()
        ids = [] if fault == "empty" else [wanted] if wanted is not None else sorted(markets)
        body = [_premium_entry(source, i, markets[i].mark) for i in ids]
        # USDⓈ-M answers one object for one symbol; COIN-M always a list (several contracts share a pair).
        if wanted is not None and source == "binance-usdm":
            return _json(HTTPStatus.OK, body[0] if body else {})
        return _json(HTTPStatus.OK, body)

    def _binance_klines(self, source: str, request: RecordedRequest, fault: str | None) -> _Response:
        market = self._markets[source].get(request.query.get("symbol", ""))
        if market is None:
            return _binance_invalid_symbol()
        if request.query.get("interval") != "1d":
            return _json(HTTPStatus.BAD_REQUEST, {"code": -1120, "msg": "Invalid interval."})
        limit = _limit(request.query.get("limit"), default=500, most=1500)
        start, end = _ms_param(request.query.get("startTime")), _ms_param(request.query.get("endTime"))
        candles = [] if fault == "empty" else _window(market.candles, start, end, limit, from_start=start is not None)
        return _json(HTTPStatus.OK, [_binance_kline(c) for c in candles])

    # Bybit

    def _instruments(self, request: RecordedRequest, fault: str | None) -> _Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return _bybit_error(10001, "params error: category")
        pre_launch = request.query.get("status") == "PreLaunch"  # ccxt asks for these separately
        listed = [] if fault == "empty" or pre_launch else self._listed(source)
        rows = [_bybit_market(source, exchange_id) for exchange_id in listed]
        return _bybit_ok({"category": category, "list": rows, "nextPageCursor": ""})

    def _risk_limit(self, request: RecordedRequest, fault: str | None) -> _Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return _bybit_error(10001, "params error: category")
        ids = [] if fault == "empty" else sorted(self._tables[source])
        if symbol := request.query.get("symbol"):
            ids = [i for i in ids if i == symbol]
        cursor = request.query.get("cursor", "")
        start = _cursor_offset(cursor)
        if start is None or start > len(ids):
            return _bybit_error(10001, "params error: cursor")
        page = ids[start : start + self.page_size]
        mm_deduction = self.shapes.bybit_mm_deduction
        rows = [
            row
            for exchange_id in page
            for row in _bybit_rows(exchange_id, self._tables[source][exchange_id], mm_deduction=mm_deduction)
        ]
        end = start + self.page_size
        next_cursor = f"c{end}" if end < len(ids) else ""
        if fault == "repeat_cursor" and cursor:
            next_cursor = cursor
        result: dict[str, Any] = {"category": category, "list": rows}
        if next_cursor or self.shapes.bybit_last_cursor:
            result["nextPageCursor"] = next_cursor
        return _bybit_ok(result)

    def _tickers(self, request: RecordedRequest, fault: str | None) -> _Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return _bybit_error(10001, "params error: category")
        markets = self._markets[source]
        wanted = request.query.get("symbol")
        if wanted and wanted not in markets:
            return _bybit_error(10001, "Not supported symbols")
        ids = [] if fault == "empty" else ([wanted] if wanted else sorted(markets))
        return _bybit_ok({"category": category, "list": [_bybit_ticker(i, markets[i].mark) for i in ids]})

    def _mark_kline(self, request: RecordedRequest, fault: str | None) -> _Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return _bybit_error(10001, "params error: category")
        symbol = request.query.get("symbol", "")
        market = self._markets[source].get(symbol)
        if market is None:
            return _bybit_error(10001, "Not supported symbols")
        if request.query.get("interval") != "D":  # ccxt sends "D" for its "1d"
            return _bybit_error(10001, "params error: invalid interval")
        limit = _limit(request.query.get("limit"), default=200, most=1000)
        start, end = _ms_param(request.query.get("start")), _ms_param(request.query.get("end"))
        candles = [] if fault == "empty" else _window(market.candles, start, end, limit, from_start=False)
        # Bybit lists klines newest first (domain doc §7).
        rows = [_bybit_kline(c) for c in reversed(candles)]
        return _bybit_ok({"symbol": symbol, "category": category, "list": rows})


_Route = Callable[[FakeExchange, RecordedRequest, str | None], _Response]
_BYBIT_SOURCES = {"linear": "bybit-linear", "inverse": "bybit-inverse"}

_ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", FAPI_EXCHANGE_INFO): lambda fx, rq, f: fx._exchange_info("binance-usdm", f),
    ("GET", DAPI_EXCHANGE_INFO): lambda fx, rq, f: fx._exchange_info("binance-coinm", f),
    ("GET", FAPI_BRACKETS): lambda fx, rq, f: fx._signed_brackets("binance-usdm", rq, f),
    ("GET", DAPI_BRACKETS): lambda fx, rq, f: fx._signed_brackets("binance-coinm", rq, f),
    ("POST", WEB_USDM): lambda fx, rq, f: fx._web_brackets("binance-usdm", f),
    ("POST", WEB_COINM): lambda fx, rq, f: fx._web_brackets("binance-coinm", f),
    # The web endpoint answers a plain GET with the same tables (recorded; domain doc §8).
    ("GET", WEB_USDM): lambda fx, rq, f: fx._web_brackets("binance-usdm", f),
    ("GET", WEB_COINM): lambda fx, rq, f: fx._web_brackets("binance-coinm", f),
    ("GET", INSTRUMENTS): lambda fx, rq, f: fx._instruments(rq, f),
    ("GET", RISK_LIMIT): lambda fx, rq, f: fx._risk_limit(rq, f),
    ("GET", FAPI_PREMIUM_INDEX): lambda fx, rq, f: fx._premium_index("binance-usdm", rq, f),
    ("GET", DAPI_PREMIUM_INDEX): lambda fx, rq, f: fx._premium_index("binance-coinm", rq, f),
    ("GET", FAPI_MARK_KLINES): lambda fx, rq, f: fx._binance_klines("binance-usdm", rq, f),
    ("GET", DAPI_MARK_KLINES): lambda fx, rq, f: fx._binance_klines("binance-coinm", rq, f),
    ("GET", TICKERS): lambda fx, rq, f: fx._tickers(rq, f),
    ("GET", MARK_KLINE): lambda fx, rq, f: fx._mark_kline(rq, f),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeExchange) -> None:
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has closed its socket before a delayed answer: not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a silent client may hold a handler thread

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr chatter

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            raw_query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        response = self.server.fake._respond(request)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer


# -- answers ----------------------------------------------------------------------------------------


def _json(status: int, body: Any) -> _Response:
    return _Response(int(status), json.dumps(body, separators=(",", ":")).encode())


def _text(status: int, text: str) -> _Response:
    return _Response(int(status), text.encode(), content_type="text/plain")


def _fault_response(fault: Fault) -> _Response:
    if fault.kind == "http":
        reason = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else "Error"
        headers = fault.headers + (() if fault.retry_after is None else (("Retry-After", f"{fault.retry_after:g}"),))
        body = fault.body if fault.body is not None else f"{fault.status} {reason}"
        return _Response(fault.status, body.encode(), content_type=fault.content_type, headers=headers)
    return _Response(fault.status, (fault.body or "").encode())


def _bybit_ok(result: Mapping[str, Any]) -> _Response:
    return _json(HTTPStatus.OK, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": _now_ms()})


def _bybit_error(code: int, message: str) -> _Response:
    return _json(HTTPStatus.OK, {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": _now_ms()})


def _binance_invalid_symbol() -> _Response:
    return _json(HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})


def _limit(text: str | None, *, default: int, most: int) -> int:
    """A `limit` parameter as the exchanges read it: the default when absent, at most `most`."""
    return min(int(text), most) if text and text.isdigit() and int(text) > 0 else default


def _ms_param(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _window(
    candles: Sequence[FakeCandle], start: int | None, end: int | None, limit: int, *, from_start: bool
) -> list[FakeCandle]:
    """The candles opened within [start, end], oldest first: the first `limit` from `start`, else the last."""

    def inside(c: FakeCandle) -> bool:
        opened = _ms(c.opened_at)
        return (start is None or opened >= start) and (end is None or opened <= end)

    found = sorted(filter(inside, candles), key=lambda c: c.opened_at)
    return found[:limit] if from_start else found[-limit:]


def _cursor_offset(cursor: str) -> int | None:
    """Offset of the first symbol of a page; the cursor is opaque to clients (`c<offset>`)."""
    if not cursor:
        return 0
    digits = cursor[1:]
    return int(digits) if cursor.startswith("c") and digits.isdigit() else None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _num(x: float) -> int | float:
    """JSON number as Binance writes it: integers without a fraction."""
    return int(x) if float(x).is_integer() else x


def _dec(x: float) -> str:
    """Decimal string as Bybit writes it ("0.005", "2000000"), never in exponent form."""
    return format(Decimal(repr(float(x))).normalize(), "f")


def _binance_entry(source: str, exchange_id: str, table: FakeTable, *, coinm_floor: str) -> dict[str, Any]:
    floor_key, cap_key = (coinm_floor, "qtyCap") if source == "binance-coinm" else ("notionalFloor", "notionalCap")
    brackets = [
        {
            "bracket": n,
            "initialLeverage": _num(t.max_leverage),
            cap_key: _num(t.cap),
            floor_key: _num(t.floor),
            "maintMarginRatio": t.rate,
            "cum": _num(t.amount),
        }
        for n, t in enumerate(table.tiers, start=1)
    ]
    # Key order of Binance's docs examples: the coefficient, when served, comes before the brackets.
    coef = {} if table.notional_coef is None else {"notionalCoef": table.notional_coef}
    return {"symbol": exchange_id, **coef, "brackets": brackets}


def _web_entry(exchange_id: str, table: FakeTable) -> dict[str, Any]:
    # Keys and their order as recorded (komekome_binance_cm_web_brackets_excerpt.json).
    risk = [
        {
            "bracketSeq": n,
            "bracketNotionalFloor": _num(t.floor),
            "bracketNotionalCap": _num(t.cap),
            "bracketMaintenanceMarginRate": t.rate,
            "cumFastMaintenanceAmount": _num(t.amount),
            "minOpenPosLeverage": _num(_min_open_leverage(table.tiers, n - 1)),
            "maxOpenPosLeverage": _num(t.max_leverage),
        }
        for n, t in enumerate(table.tiers, start=1)
    ]
    # `notionalLimit` is 100 in every recorded entry, whatever the caps: it is not the top cap.
    return {"symbol": exchange_id, "updateTime": _now_ms(), "notionalLimit": 100, "riskBrackets": risk}


def _min_open_leverage(tiers: Sequence[FakeTier], i: int) -> float:
    """The lowest leverage that opens in tier `i`: one above the next tier's maximum, 1 in the last tier.

    This rule reproduces `minOpenPosLeverage` of every recorded entry.
    """
    if i + 1 >= len(tiers):
        return 1
    return min(tiers[i + 1].max_leverage + 1, tiers[i].max_leverage)


def _bybit_rows(exchange_id: str, table: FakeTable, *, mm_deduction: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n, t in enumerate(table.tiers, start=1):
        initial = f"{1 / t.max_leverage:.4f}".rstrip("0").rstrip(".") if t.max_leverage else ""
        rows.append(
            {
                "id": n,
                "symbol": exchange_id,
                "riskLimitValue": _dec(t.cap),
                "maintenanceMargin": _dec(t.rate),
                "initialMargin": initial,
                "isLowestRisk": 1 if n == 1 else 0,
                "maxLeverage": f"{t.max_leverage:.2f}",
                "mmDeduction": "" if n == 1 else _dec(t.amount),  # Bybit leaves the lowest tier's blank
            }
        )
        if not mm_deduction:  # as in ccxt's sample of the same endpoint
            del rows[-1]["mmDeduction"]
    return rows


def _premium_entry(source: str, exchange_id: str, mark: float) -> dict[str, Any]:
    now = _now_ms()
    entry: dict[str, Any] = {"symbol": exchange_id}
    if source == "binance-coinm":
        inst = _instrument(source, exchange_id)
        entry["pair"] = inst.base + inst.quote
    entry.update(
        {
            "markPrice": _dec(mark),
            "indexPrice": _dec(mark),
            "estimatedSettlePrice": _dec(mark),
            "lastFundingRate": "0.00010000",
            "interestRate": "0.00010000",
            "nextFundingTime": (now // _FUNDING_MS + 1) * _FUNDING_MS,
            "time": now,
        }
    )
    return entry


def _binance_kline(c: FakeCandle) -> list[Any]:
    # Mark-price klines keep the kline row shape, with volumes "0" and a count of basic data at [8].
    opened = _ms(c.opened_at)
    return [opened, _dec(c.open), _dec(c.high), _dec(c.low), _dec(c.close), "0", opened + _DAY_MS - 1, "0", 1440,
            "0", "0", "0"]  # fmt: skip


def _bybit_ticker(exchange_id: str, mark: float) -> dict[str, Any]:
    price = _dec(mark)
    return {
        "symbol": exchange_id,
        "lastPrice": price,
        "indexPrice": price,
        "markPrice": price,
        "prevPrice24h": price,
        "price24hPcnt": "0",
        "highPrice24h": price,
        "lowPrice24h": price,
        "prevPrice1h": price,
        "openInterest": "0",
        "openInterestValue": "0",
        "turnover24h": "0",
        "volume24h": "0",
        "fundingRate": "0.0001",
        "nextFundingTime": str((_now_ms() // _FUNDING_MS + 1) * _FUNDING_MS),
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "1",
        "bid1Price": price,
        "ask1Price": price,
        "bid1Size": "1",
    }


def _bybit_kline(c: FakeCandle) -> list[str]:
    # Mark-price klines have no volume: [startTime, open, high, low, close], all strings.
    return [str(_ms(c.opened_at)), _dec(c.open), _dec(c.high), _dec(c.low), _dec(c.close)]


def _binance_market(source: str, exchange_id: str) -> dict[str, Any]:
    inst = _instrument(source, exchange_id)
    perpetual = inst.expiry_ms is None
    market: dict[str, Any] = {
        "symbol": exchange_id,
        "pair": inst.base + inst.quote,
        "contractType": "PERPETUAL" if perpetual else "CURRENT_QUARTER",
        "deliveryDate": _PERPETUAL_DELIVERY_MS if perpetual else inst.expiry_ms,
        "onboardDate": _LAUNCH_MS,
        "baseAsset": inst.base,
        "quoteAsset": inst.quote,
        "marginAsset": inst.settle,
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "filters": [],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC"],
    }
    if source == "binance-coinm":
        market["contractStatus"] = "TRADING"
        market["contractSize"] = 100 if inst.base == "BTC" else 10
    else:
        market["status"] = "TRADING"
    return market


def _bybit_market(source: str, exchange_id: str) -> dict[str, Any]:
    inst = _instrument(source, exchange_id)
    inverse = source == "bybit-inverse"
    return {
        "symbol": exchange_id,
        "contractType": "InversePerpetual" if inverse else "LinearPerpetual",
        "status": "Trading",
        "baseCoin": inst.base,
        "quoteCoin": inst.quote,
        "settleCoin": inst.settle,
        "launchTime": str(_LAUNCH_MS),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.01", "maxPrice": "1999999.98", "tickSize": "0.01"},
        "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": "1", "qtyStep": "1", "minNotionalValue": "5"},
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
    }


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")


def _instrument(source: str, exchange_id: str) -> _Instrument:
    """Base, quote, settle (and expiry) of the id shapes the fake lists; ValueError for others."""
    ident, _, suffix = exchange_id.partition("_")
    if source == "bybit-linear" and exchange_id.endswith("PERP") and len(exchange_id) > 4:
        base = exchange_id[:-4]
        return _Instrument(base, "USDC", "USDC")  # Bybit's USDC perpetuals: BTCPERP is BTC/USDC:USDC
    for quote in ("USDT", "USDC", "USD"):
        if ident.endswith(quote) and len(ident) > len(quote):
            base = ident[: -len(quote)]
            break
    else:
        raise ValueError(f"{source}: cannot tell base and quote of {exchange_id!r}")
    inverse = source in ("binance-coinm", "bybit-inverse")
    if inverse != (quote == "USD"):
        raise ValueError(f"{source}: {exchange_id!r} has quote {quote}, which this source does not list")
    settle = base if inverse else quote
    if source == "binance-coinm" and suffix != "PERP":
        if not (len(suffix) == 6 and suffix.isdigit()):
            raise ValueError(f"{source}: {exchange_id!r} is neither BASEUSD_PERP nor BASEUSD_YYMMDD")
        expiry = datetime.strptime(suffix, "%y%m%d").replace(hour=8, tzinfo=UTC)
        return _Instrument(base, quote, settle, int(expiry.timestamp() * 1000))
    if source != "binance-coinm" and suffix:
        raise ValueError(f"{source}: {exchange_id!r} has a suffix the fake does not list")
    return _Instrument(base, quote, settle)


# -- realistic scenarios ----------------------------------------------------------------------------

_MAJORS = (
    "BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "TRX", "LINK", "AVAX", "DOT", "LTC", "BCH", "NEAR",
    "UNI", "ATOM", "ETC", "FIL", "APT", "ARB", "OP", "SUI", "INJ", "AAVE", "XLM", "XMR", "XTZ", "HBAR",
)  # fmt: skip
_FIRST_CAPS_QUOTE = (5_000, 10_000, 25_000, 50_000, 100_000, 250_000)
_FIRST_CAPS_COIN = (1, 5, 10, 25, 50, 100)
_FIRST_RATES = ("0.004", "0.005", "0.0065", "0.01", "0.015", "0.02", "0.025")
_CAP_STEPS = (2, Decimal("2.5"), 4, 5)
_RATE_STEPS = (Decimal("1.25"), Decimal("1.5"), 2)
_TOP_RATE = Decimal("0.5")


def base_names(n: int) -> list[str]:
    """`n` distinct base-coin names: real majors first, then synthetic ones (`ZAA`, `ZAB`, …)."""
    names = list(_MAJORS[:n])
    letters = string.ascii_uppercase
    width = 2
    while len(names) < n:
        for i in range(len(letters) ** width):
            if len(names) == n:
                break
            code, tag = i, ""
            for _ in range(width):
                code, r = divmod(code, len(letters))
                tag = letters[r] + tag
            name = "Z" + tag
            if "USD" not in name and name not in names:
                names.append(name)
        width += 1
    return names


def exchange_id(source: str, base: str) -> str:
    """The id of `base`'s perpetual on `source`: BTCUSDT, BTCUSD_PERP, BTCUSDT or BTCUSD."""
    _check_source(source)
    return {
        "binance-usdm": f"{base}USDT",
        "binance-coinm": f"{base}USD_PERP",
        "bybit-linear": f"{base}USDT",
        "bybit-inverse": f"{base}USD",
    }[source]


def random_tiers(rng: random.Random, *, coin: bool = False) -> tuple[FakeTier, ...]:
    """5–12 well-formed tiers (domain doc §1) shaped like real ones; amounts follow the recurrence.

    Floors start at 0 and caps grow 2–5× a tier; the maintenance rate grows 1.25–2× a tier up to 50 %;
    max leverage is 1/(2r), as on Binance (0.4 % → 125×). `coin` gives caps in coin (COIN-M, inverse).
    """
    count = rng.randint(5, 12)
    cap = Decimal(rng.choice(_FIRST_CAPS_COIN if coin else _FIRST_CAPS_QUOTE))
    rate = Decimal(rng.choice(_FIRST_RATES))
    floor = amount = Decimal(0)
    previous_rate = rate
    tiers = []
    for _ in range(count):
        # A_n = A_{n-1} + floor_n × (r_n − r_{n-1}) keeps maintenance margin continuous at each floor.
        amount += floor * (rate - previous_rate)
        leverage = max(1, int(1 / (2 * rate)))
        tiers.append(FakeTier(float(floor), float(cap), float(rate), float(amount), float(leverage)))
        previous_rate = rate
        floor, cap = cap, (cap * rng.choice(_CAP_STEPS)).to_integral_value()
        rate = min(_TOP_RATE, (rate * rng.choice(_RATE_STEPS)).quantize(Decimal("0.0001")))
    return tuple(tiers)


def generate_tables(source: str, n: int, *, seed: int = 0) -> dict[str, FakeTable]:
    """`n` symbols' tables for `source`, the same for the same arguments (each symbol has its own stream)."""
    coin = source in ("binance-coinm", "bybit-inverse")
    out = {}
    for base in base_names(n):
        ident = exchange_id(source, base)
        rng = random.Random(f"{seed}:{source}:{ident}")  # noqa: S311 - scenario data, not cryptography
        out[ident] = FakeTable(random_tiers(rng, coin=coin))
    return out


def daily_candles(
    mark: float, ranges: Sequence[float], *, today: date, open_range: float | None = None
) -> tuple[FakeCandle, ...]:
    """Completed days with the given ranges (oldest first, the last one the day before `today`), centred
    on `mark`, then the still-open day `today` with `open_range` (default three times the largest range)."""
    first = datetime(today.year, today.month, today.day, tzinfo=UTC) - len(ranges) * _DAY
    widths = [*ranges, open_range if open_range is not None else 3 * max(ranges, default=mark / 100)]
    return tuple(
        FakeCandle(first + n * _DAY, mark, mark + width / 2, mark - width / 2, mark) for n, width in enumerate(widths)
    )


def default_scenario(n_symbols: int = 700, *, seed: int = 0) -> dict[str, dict[str, FakeTable]]:
    """Tables for every source, sized like the real exchanges: `n_symbols` linear, a 20th as many inverse."""
    inverse = max(1, n_symbols // 20)
    sizes = {"binance-usdm": n_symbols, "binance-coinm": inverse, "bybit-linear": n_symbols, "bybit-inverse": inverse}
    return {source: generate_tables(source, size, seed=seed) for source, size in sizes.items()}


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
