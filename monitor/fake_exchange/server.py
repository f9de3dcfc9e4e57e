"""The fake exchange: its scenario, its fault queues, its request log, and the route of each endpoint."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from monitor.fake_exchange import payloads
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
    check_source,
)
from monitor.fake_exchange.faults import Fault, Queued, fault_response
from monitor.fake_exchange.scenarios import FakeCandle, FakeMarket, FakeTable, daily_candles
from monitor.fake_exchange.signing import check_signature
from monitor.fake_exchange.transport import Handler, RecordedRequest, Server

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
        shapes: payloads.Shapes | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.api_key = api_key
        self.api_secret = api_secret
        self.page_size = page_size
        self.shapes = shapes or payloads.Shapes()
        self._address = (host, port)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._tables: dict[str, dict[str, FakeTable]] = {s: {} for s in SOURCES}
        self._markets: dict[str, dict[str, FakeMarket]] = {s: {} for s in SOURCES}
        self._faults: dict[str, list[Queued]] = {}
        self._log: list[RecordedRequest] = []
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        for source, by_id in (tables or {}).items():
            self.set_tables(source, by_id)

    # lifecycle

    def start(self) -> Self:
        """Bind (port 0 picks a free one) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeExchange already started")
        self._stopping.clear()
        self._server = Server(self._address, Handler, self)
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
        check_source(source)
        for exchange_id in tables:
            payloads.instrument(source, exchange_id)
        with self._lock:
            self._tables[source] = dict(tables)

    def set_table(self, source: str, exchange_id: str, table: FakeTable | None) -> None:
        """Add or replace one symbol's table; None delists it."""
        check_source(source)
        with self._lock:
            if table is None:
                self._tables[source].pop(exchange_id, None)
            else:
                payloads.instrument(source, exchange_id)
                self._tables[source][exchange_id] = table

    def set_shapes(self, shapes: payloads.Shapes) -> None:
        """Serve these variants of the real answers from the next request on."""
        with self._lock:
            self.shapes = shapes

    def tables(self, source: str) -> dict[str, FakeTable]:
        """A copy of the tables of `source`."""
        check_source(source)
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
        check_source(source)
        payloads.instrument(source, exchange_id)
        if daily_ranges is not None and candles is not None:
            raise ValueError("give daily_ranges or candles, not both")
        if daily_ranges is not None:
            day = today or datetime.now(UTC).date()
            candles = daily_candles(mark, daily_ranges, today=day, open_range=open_range)
        with self._lock:
            self._markets[source][exchange_id] = FakeMarket(mark, tuple(candles or ()))

    def markets(self, source: str) -> dict[str, FakeMarket]:
        """A copy of the market data of `source`, by exchange id."""
        check_source(source)
        with self._lock:
            return dict(self._markets[source])

    def inject(self, path: str, fault: Fault, *, times: int = 1, after: int = 0) -> None:
        """Apply `fault` to the next `times` requests for `path`, after letting `after` through.

        Faults queued for one path apply in order; the next one starts when the previous is used up.
        """
        if times < 1 or after < 0:
            raise ValueError("times must be at least 1 and after at least 0")
        with self._lock:
            self._faults.setdefault(path, []).append(Queued(fault, times, after))

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

    def _respond(self, request: RecordedRequest) -> payloads.Response:
        """The answer to one request: record it, apply a due fault, else route it."""
        with self._lock:
            fault = self._next_fault(request.path)
            self._log.append(replace(request, fault=fault.kind if fault else None))
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            return payloads.text_answer(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down")
        if fault is not None and fault.kind in ("http", "malformed", "raw"):
            return fault_response(fault)
        route = _ROUTES.get((request.method, request.path))
        if route is None:
            return payloads.json_answer(
                HTTPStatus.NOT_FOUND, {"code": -1, "msg": f"no route {request.method} {request.path}"}
            )
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

    def _exchange_info(self, source: str, fault: str | None) -> payloads.Response:
        listed = [] if fault == "empty" else self._listed(source)
        symbols = [payloads.binance_market(source, exchange_id) for exchange_id in listed]
        return payloads.json_answer(
            HTTPStatus.OK, {"timezone": "UTC", "serverTime": payloads.now_ms(), "rateLimits": [], "symbols": symbols}
        )

    def _signed_brackets(self, source: str, request: RecordedRequest, fault: str | None) -> payloads.Response:
        rejected = check_signature(request, self.api_key, self.api_secret)
        if rejected is not None:
            return rejected
        wanted = request.query.get("symbol")
        tables = {} if fault == "empty" else self._tables[source]
        body = [
            payloads.binance_entry(source, exchange_id, table, coinm_floor=self.shapes.coinm_floor)
            for exchange_id, table in sorted(tables.items())
            if wanted is None or exchange_id == wanted
        ]
        return payloads.json_answer(HTTPStatus.OK, body)

    def _web_brackets(self, source: str, fault: str | None) -> payloads.Response:
        tables = {} if fault == "empty" else self._tables[source]
        brackets = [payloads.web_entry(exchange_id, table) for exchange_id, table in sorted(tables.items())]
        # The envelope of the recorded answer: `data` holds `brackets` only.
        data = {"brackets": brackets}
        body = {"code": "000000", "message": None, "messageDetail": None, "data": data, "success": True}
        return payloads.json_answer(HTTPStatus.OK, body)

    def _premium_index(self, source: str, request: RecordedRequest, fault: str | None) -> payloads.Response:
        markets = self._markets[source]
        wanted = request.query.get("symbol")
        if wanted is not None and wanted not in markets:
            return payloads.binance_invalid_symbol()
        ids = [] if fault == "empty" else [wanted] if wanted is not None else sorted(markets)
        body = [payloads.premium_entry(source, i, markets[i].mark) for i in ids]
        # USDⓈ-M answers one object for one symbol; COIN-M always a list (several contracts share a pair).
        if wanted is not None and source == "binance-usdm":
            return payloads.json_answer(HTTPStatus.OK, body[0] if body else {})
        return payloads.json_answer(HTTPStatus.OK, body)

    def _binance_klines(self, source: str, request: RecordedRequest, fault: str | None) -> payloads.Response:
        market = self._markets[source].get(request.query.get("symbol", ""))
        if market is None:
            return payloads.binance_invalid_symbol()
        if request.query.get("interval") != "1d":
            return payloads.json_answer(HTTPStatus.BAD_REQUEST, {"code": -1120, "msg": "Invalid interval."})
        limit = payloads.limit_param(request.query.get("limit"), default=500, most=1500)
        start, end = payloads.ms_param(request.query.get("startTime")), payloads.ms_param(request.query.get("endTime"))
        window = payloads.candle_window(market.candles, start, end, limit, from_start=start is not None)
        candles = [] if fault == "empty" else window
        return payloads.json_answer(HTTPStatus.OK, [payloads.binance_kline(c) for c in candles])

    # Bybit

    def _instruments(self, request: RecordedRequest, fault: str | None) -> payloads.Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return payloads.bybit_error(10001, "params error: category")
        pre_launch = request.query.get("status") == "PreLaunch"  # ccxt asks for these separately
        listed = [] if fault == "empty" or pre_launch else self._listed(source)
        rows = [payloads.bybit_market(source, exchange_id) for exchange_id in listed]
        return payloads.bybit_ok({"category": category, "list": rows, "nextPageCursor": ""})

    def _risk_limit(self, request: RecordedRequest, fault: str | None) -> payloads.Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return payloads.bybit_error(10001, "params error: category")
        ids = [] if fault == "empty" else sorted(self._tables[source])
        if symbol := request.query.get("symbol"):
            ids = [i for i in ids if i == symbol]
        cursor = request.query.get("cursor", "")
        start = payloads.cursor_offset(cursor)
        if start is None or start > len(ids):
            return payloads.bybit_error(10001, "params error: cursor")
        page = ids[start : start + self.page_size]
        mm_deduction = self.shapes.bybit_mm_deduction
        rows = [
            row
            for exchange_id in page
            for row in payloads.bybit_rows(exchange_id, self._tables[source][exchange_id], mm_deduction=mm_deduction)
        ]
        end = start + self.page_size
        next_cursor = f"c{end}" if end < len(ids) else ""
        if fault == "repeat_cursor" and cursor:
            next_cursor = cursor
        result: dict[str, Any] = {"category": category, "list": rows}
        if next_cursor or self.shapes.bybit_last_cursor:
            result["nextPageCursor"] = next_cursor
        return payloads.bybit_ok(result)

    def _tickers(self, request: RecordedRequest, fault: str | None) -> payloads.Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return payloads.bybit_error(10001, "params error: category")
        markets = self._markets[source]
        wanted = request.query.get("symbol")
        if wanted and wanted not in markets:
            return payloads.bybit_error(10001, "Not supported symbols")
        ids = [] if fault == "empty" else ([wanted] if wanted else sorted(markets))
        return payloads.bybit_ok(
            {"category": category, "list": [payloads.bybit_ticker(i, markets[i].mark) for i in ids]}
        )

    def _mark_kline(self, request: RecordedRequest, fault: str | None) -> payloads.Response:
        category = request.query.get("category", "")
        source = _BYBIT_SOURCES.get(category)
        if source is None:
            return payloads.bybit_error(10001, "params error: category")
        symbol = request.query.get("symbol", "")
        market = self._markets[source].get(symbol)
        if market is None:
            return payloads.bybit_error(10001, "Not supported symbols")
        if request.query.get("interval") != "D":  # ccxt sends "D" for its "1d"
            return payloads.bybit_error(10001, "params error: invalid interval")
        limit = payloads.limit_param(request.query.get("limit"), default=200, most=1000)
        start, end = payloads.ms_param(request.query.get("start")), payloads.ms_param(request.query.get("end"))
        window = payloads.candle_window(market.candles, start, end, limit, from_start=False)
        candles = [] if fault == "empty" else window
        # Bybit lists klines newest first (domain doc §7).
        rows = [payloads.bybit_kline(c) for c in reversed(candles)]
        return payloads.bybit_ok({"symbol": symbol, "category": category, "list": rows})


_Route = Callable[[FakeExchange, RecordedRequest, str | None], payloads.Response]
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
