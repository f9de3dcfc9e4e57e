"""The answers, shaped as the real exchanges' (keys, key order, envelopes; domain doc §7–8)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from monitor.fake_exchange.scenarios import FakeCandle, FakeTable, FakeTier

_PERPETUAL_DELIVERY_MS = 4133404800000  # Binance's "no delivery" date (2100-12-25) for perpetuals
_LAUNCH_MS = 1569398400000
_DAY_MS = 86_400_000
_FUNDING_MS = 8 * 3_600_000


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
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Instrument:
    base: str
    quote: str
    settle: str
    expiry_ms: int | None = None


# -- answers ----------------------------------------------------------------------------------------


def json_answer(status: int, body: Any) -> Response:
    return Response(int(status), json.dumps(body, separators=(",", ":")).encode())


def text_answer(status: int, text: str) -> Response:
    return Response(int(status), text.encode(), content_type="text/plain")


def bybit_ok(result: Mapping[str, Any]) -> Response:
    return json_answer(
        HTTPStatus.OK, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms()}
    )


def bybit_error(code: int, message: str) -> Response:
    return json_answer(
        HTTPStatus.OK, {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": now_ms()}
    )


def binance_invalid_symbol() -> Response:
    return json_answer(HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})


def limit_param(text: str | None, *, default: int, most: int) -> int:
    """A `limit` parameter as the exchanges read it: the default when absent, at most `most`."""
    return min(int(text), most) if text and text.isdigit() and int(text) > 0 else default


def ms_param(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def candle_window(
    candles: Sequence[FakeCandle], start: int | None, end: int | None, limit: int, *, from_start: bool
) -> list[FakeCandle]:
    """The candles opened within [start, end], oldest first: the first `limit` from `start`, else the last."""

    def inside(c: FakeCandle) -> bool:
        opened = _ms(c.opened_at)
        return (start is None or opened >= start) and (end is None or opened <= end)

    found = sorted(filter(inside, candles), key=lambda c: c.opened_at)
    return found[:limit] if from_start else found[-limit:]


def cursor_offset(cursor: str) -> int | None:
    """Offset of the first symbol of a page; the cursor is opaque to clients (`c<offset>`)."""
    if not cursor:
        return 0
    digits = cursor[1:]
    return int(digits) if cursor.startswith("c") and digits.isdigit() else None


def now_ms() -> int:
    return int(time.time() * 1000)


def _num(x: float) -> int | float:
    """JSON number as Binance writes it: integers without a fraction."""
    return int(x) if float(x).is_integer() else x


def _dec(x: float) -> str:
    """Decimal string as Bybit writes it ("0.005", "2000000"), never in exponent form."""
    return format(Decimal(repr(float(x))).normalize(), "f")


def binance_entry(source: str, exchange_id: str, table: FakeTable, *, coinm_floor: str) -> dict[str, Any]:
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


def web_entry(exchange_id: str, table: FakeTable) -> dict[str, Any]:
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
    return {"symbol": exchange_id, "updateTime": now_ms(), "notionalLimit": 100, "riskBrackets": risk}


def _min_open_leverage(tiers: Sequence[FakeTier], i: int) -> float:
    """The lowest leverage that opens in tier `i`: one above the next tier's maximum, 1 in the last tier.

    This rule reproduces `minOpenPosLeverage` of every recorded entry.
    """
    if i + 1 >= len(tiers):
        return 1
    return min(tiers[i + 1].max_leverage + 1, tiers[i].max_leverage)


def bybit_rows(exchange_id: str, table: FakeTable, *, mm_deduction: bool) -> list[dict[str, Any]]:
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


def premium_entry(source: str, exchange_id: str, mark: float) -> dict[str, Any]:
    now = now_ms()
    entry: dict[str, Any] = {"symbol": exchange_id}
    if source == "binance-coinm":
        inst = instrument(source, exchange_id)
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


def binance_kline(c: FakeCandle) -> list[Any]:
    # Mark-price klines keep the kline row shape, with volumes "0" and a count of basic data at [8].
    opened = _ms(c.opened_at)
    return [opened, _dec(c.open), _dec(c.high), _dec(c.low), _dec(c.close), "0", opened + _DAY_MS - 1, "0", 1440,
            "0", "0", "0"]  # fmt: skip


def bybit_ticker(exchange_id: str, mark: float) -> dict[str, Any]:
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
        "nextFundingTime": str((now_ms() // _FUNDING_MS + 1) * _FUNDING_MS),
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "1",
        "bid1Price": price,
        "ask1Price": price,
        "bid1Size": "1",
    }


def bybit_kline(c: FakeCandle) -> list[str]:
    # Mark-price klines have no volume: [startTime, open, high, low, close], all strings.
    return [str(_ms(c.opened_at)), _dec(c.open), _dec(c.high), _dec(c.low), _dec(c.close)]


def binance_market(source: str, exchange_id: str) -> dict[str, Any]:
    inst = instrument(source, exchange_id)
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


def bybit_market(source: str, exchange_id: str) -> dict[str, Any]:
    inst = instrument(source, exchange_id)
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


def instrument(source: str, exchange_id: str) -> _Instrument:
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
