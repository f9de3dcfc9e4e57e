"""Turn exchange payloads and archived ccxt files into validated tier tables (pure functions).

One parser per payload shape (domain doc §1 and §7):

- `parse_binance_brackets`: signed `GET /fapi/v1/leverageBracket` and `/dapi/v2/leverageBracket`;
- `parse_binance_web`: the keyless web endpoint `.../friendly/future/common/brackets`;
- `parse_bybit_risk_limits`: `GET /v5/market/risk-limit` rows, all pages joined;
- `parse_ccxt_tiers`: ccxt-unified `fetch_leverage_tiers()` output, as archived in JSON files.

Each returns `{symbol: TierTable}` or raises `PayloadError`/`InvalidTable` naming the first bad entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from snapshots.errors import PayloadError
from snapshots.model import TierTable, unit_for
from snapshots.symbols import canonical_symbol
from snapshots.validate import RowIn, build_table

SymbolMap = Callable[[str], str]


def number(value: Any, what: str, *, allow_blank: bool = False) -> float | None:
    """A finite float from a JSON number or numeric string; "" is None only when `allow_blank`."""
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{what} is {value!r}, not a number")
    if isinstance(value, str):
        text = value.strip()
        if text == "" and allow_blank:
            return None
        try:
            out = float(text)
        except ValueError:
            raise PayloadError(f"{what} is {value!r}, not a number") from None
    elif isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:  # a JSON integer beyond any float, e.g. 10**400
            raise PayloadError(f"{what} is a {len(str(value))}-digit integer, not a usable number") from None
    else:
        raise PayloadError(f"{what} is {type(value).__name__}, not a number")
    if not math.isfinite(out):
        raise PayloadError(f"{what} is {value!r}, not a finite number")
    return out


def _req(value: Any, what: str) -> float:
    out = number(value, what)
    assert out is not None  # number() returns None only with allow_blank
    return out


def _index(value: Any, what: str) -> int:
    """A tier number: a whole number (1.5 would otherwise be silently truncated to tier 1)."""
    out = _req(value, what)
    if not out.is_integer():
        raise PayloadError(f"{what} is {value!r}, not a whole tier number")
    return int(out)


def _field(record: Mapping[str, Any], names: tuple[str, ...], what: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    raise PayloadError(f"{what}: missing {' / '.join(names)}")


def _raw(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _mapping(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise PayloadError(f"{what} is {type(obj).__name__}, not an object")
    return obj


def _list(obj: Any, what: str) -> list[Any]:
    if not isinstance(obj, list):
        raise PayloadError(f"{what} is {type(obj).__name__}, not a list")
    return obj


def _identity_map(source: str) -> SymbolMap:
    return lambda key: canonical_symbol(source, key)


def _put(out: dict[str, TierTable], table: TierTable, what: str) -> None:
    if table.symbol in out:
        raise PayloadError(f"{what}: symbol {table.symbol} appears twice")
    out[table.symbol] = table


# -- Binance signed endpoints ----------------------------------------------------------------------


def parse_binance_brackets(source: str, payload: Any, symbol_of: SymbolMap | None = None) -> dict[str, TierTable]:
    """`[{symbol, notionalCoef?, brackets: [{bracket, initialLeverage, notionalFloor|qtyFloor, ...}]}]`."""
    symbol_of = symbol_of or _identity_map(source)
    unit = unit_for(source)
    out: dict[str, TierTable] = {}
    for i, entry in enumerate(_list(payload, "response")):
        entry = _mapping(entry, f"entry {i}")
        raw_id = entry.get("symbol")
        if not isinstance(raw_id, str) or not raw_id:
            raise PayloadError(f"entry {i}: missing symbol")
        symbol = symbol_of(raw_id)
        coef = entry.get("notionalCoef")
        rows = []
        for b in _list(entry.get("brackets"), f"{raw_id} brackets"):
            b = _mapping(b, f"{raw_id} bracket")
            where = f"{raw_id} bracket {b.get('bracket')}"
            rows.append(
                RowIn(
                    index=_index(b.get("bracket"), f"{where} bracket"),
                    floor=_req(_field(b, ("notionalFloor", "qtyFloor", "qtylFloor"), where), f"{where} floor"),
                    cap=_req(_field(b, ("notionalCap", "qtyCap"), where), f"{where} cap"),
                    rate=_req(b.get("maintMarginRatio"), f"{where} maintMarginRatio"),
                    amount=number(b.get("cum", ""), f"{where} cum", allow_blank=True),
                    max_leverage=_req(b.get("initialLeverage"), f"{where} initialLeverage"),
                )
            )
        _put(
            out,
            build_table(
                source,
                symbol,
                unit,
                rows,
                raw=_raw(entry),
                notional_coef=None if coef is None else number(coef, f"{raw_id} notionalCoef"),
            ),
            raw_id,
        )
    return out


# -- Binance keyless web endpoint -------------------------------------------------------------------


def parse_binance_web(source: str, payload: Any, symbol_of: SymbolMap | None = None) -> dict[str, TierTable]:
    """`{data: {brackets: [{symbol, riskBrackets: [{bracketSeq, bracketNotionalFloor, ...}]}]}}`."""
    symbol_of = symbol_of or _identity_map(source)
    unit = unit_for(source)
    body = _mapping(payload, "response")
    if body.get("success") is False:
        raise PayloadError(f"web endpoint answered success=false: {body.get('message') or body.get('code')}")
    data = _mapping(body.get("data"), "data")
    out: dict[str, TierTable] = {}
    for i, entry in enumerate(_list(data.get("brackets"), "data.brackets")):
        entry = _mapping(entry, f"data.brackets[{i}]")
        raw_id = entry.get("symbol")
        if not isinstance(raw_id, str) or not raw_id:
            raise PayloadError(f"data.brackets[{i}]: missing symbol")
        rows = []
        for b in _list(entry.get("riskBrackets"), f"{raw_id} riskBrackets"):
            b = _mapping(b, f"{raw_id} riskBracket")
            where = f"{raw_id} bracket {b.get('bracketSeq')}"
            rows.append(
                RowIn(
                    index=_index(b.get("bracketSeq"), f"{where} bracketSeq"),
                    floor=_req(b.get("bracketNotionalFloor"), f"{where} bracketNotionalFloor"),
                    cap=_req(b.get("bracketNotionalCap"), f"{where} bracketNotionalCap"),
                    rate=_req(b.get("bracketMaintenanceMarginRate"), f"{where} bracketMaintenanceMarginRate"),
                    amount=number(
                        b.get("cumFastMaintenanceAmount", ""),
                        f"{where} cumFastMaintenanceAmount",
                        allow_blank=True,
                    ),
                    max_leverage=_req(b.get("maxOpenPosLeverage"), f"{where} maxOpenPosLeverage"),
                )
            )
        _put(out, build_table(source, symbol_of(raw_id), unit, rows, raw=_raw(entry)), raw_id)
    return out


# -- Bybit v5 risk limits ---------------------------------------------------------------------------


def _bybit_scale(symbol: str, rows: list[Mapping[str, Any]]) -> float:
    """Resolve Bybit's percent-versus-fraction ambiguity explicitly (domain doc §7).

    `initialMargin` is 1/maxLeverage as a fraction, so im × maxLeverage is 1 for fractions and 100 for
    percent strings. A table where it is neither is rejected rather than guessed.
    """
    products = []
    for r in rows:
        im = number(r.get("initialMargin", ""), f"{symbol} initialMargin", allow_blank=True)
        lev = number(r.get("maxLeverage", ""), f"{symbol} maxLeverage", allow_blank=True)
        if im is not None and lev:
            products.append(im * lev)
    if products:
        if all(math.isclose(p, 1.0, rel_tol=0.02) for p in products):
            return 1.0
        if all(math.isclose(p, 100.0, rel_tol=0.02) for p in products):
            return 0.01
        raise PayloadError(f"{symbol}: initialMargin × maxLeverage is neither 1 nor 100; units unknown")
    # No initialMargin to tell: a maintenance rate of 1 or more can only be a percent.
    mm = [_req(r.get("maintenanceMargin"), f"{symbol} maintenanceMargin") for r in rows]
    if all(m < 1 for m in mm):
        return 1.0
    raise PayloadError(f"{symbol}: maintenanceMargin looks like a percent but initialMargin is missing")


def parse_bybit_risk_limits(source: str, rows: Any, symbol_of: SymbolMap | None = None) -> dict[str, TierTable]:
    """Rows of `result.list` from every page: `{id, symbol, riskLimitValue, maintenanceMargin, ...}`."""
    symbol_of = symbol_of or _identity_map(source)
    unit = unit_for(source)
    by_symbol: dict[str, list[Mapping[str, Any]]] = {}
    for i, row in enumerate(_list(rows, "result.list")):
        row = _mapping(row, f"row {i}")
        raw_id = row.get("symbol")
        if not isinstance(raw_id, str) or not raw_id:
            raise PayloadError(f"row {i}: missing symbol")
        by_symbol.setdefault(raw_id, []).append(row)
    out: dict[str, TierTable] = {}
    for raw_id, recs in by_symbol.items():
        scale = _bybit_scale(raw_id, recs)
        recs = sorted(recs, key=lambda r: _req(r.get("riskLimitValue"), f"{raw_id} riskLimitValue"))
        parsed = []
        floor = 0.0
        for r in recs:
            where = f"{raw_id} tier {r.get('id')}"
            cap = _req(r.get("riskLimitValue"), f"{where} riskLimitValue")
            im = number(r.get("initialMargin", ""), f"{where} initialMargin", allow_blank=True)
            parsed.append(
                RowIn(
                    index=_index(r.get("id"), f"{where} id"),
                    floor=floor,  # Bybit gives caps only: a tier starts where the previous one ends
                    cap=cap,
                    rate=_req(r.get("maintenanceMargin"), f"{where} maintenanceMargin") * scale,
                    amount=number(r.get("mmDeduction", ""), f"{where} mmDeduction", allow_blank=True),
                    max_leverage=_req(r.get("maxLeverage"), f"{where} maxLeverage"),
                    initial_margin_rate=None if im is None else im * scale,
                )
            )
            floor = cap
        _put(out, build_table(source, symbol_of(raw_id), unit, parsed, raw=_raw(recs)), raw_id)
    return out


# -- ccxt-unified archives --------------------------------------------------------------------------

_FLOOR = ("minNotional", "notionalFloor")
_CAP = ("maxNotional", "notionalCap")
_RATE = ("maintenanceMarginRate", "maintenanceMarginRatio")
_INFO_AMOUNT = ("cum", "mmDeduction", "cumFastMaintenanceAmount")


def parse_ccxt_tiers(source: str, payload: Any) -> dict[str, TierTable]:
    """`{symbol: [{tier, minNotional, maxNotional, maintenanceMarginRate, maxLeverage, info}]}`.

    Accepts the older key names of early archives and numbers or numeric strings anywhere. The
    maintenance amount comes from `info` (`cum` for Binance, `mmDeduction` for Bybit) and is derived
    when absent.
    """
    unit = unit_for(source)
    out: dict[str, TierTable] = {}
    for key, tiers in _mapping(payload, "file").items():
        symbol = canonical_symbol(source, str(key))
        rows = []
        for i, t in enumerate(_list(tiers, f"{key}")):
            t = _mapping(t, f"{key} tier {i + 1}")
            where = f"{key} tier {t.get('tier', i + 1)}"
            info: Mapping[str, Any] = t["info"] if isinstance(t.get("info"), Mapping) else {}
            amount = None
            for name in _INFO_AMOUNT:
                if name in info:
                    amount = number(info[name], f"{where} info.{name}", allow_blank=True)
                    break
            rows.append(
                RowIn(
                    index=_index(t.get("tier", i + 1), f"{where} tier"),
                    floor=_req(_field(t, _FLOOR, where), f"{where} minNotional"),
                    cap=_req(_field(t, _CAP, where), f"{where} maxNotional"),
                    rate=_req(_field(t, _RATE, where), f"{where} maintenanceMarginRate"),
                    amount=amount,
                    max_leverage=_req(t.get("maxLeverage"), f"{where} maxLeverage"),
                )
            )
        _put(out, build_table(source, symbol, unit, rows, raw=_raw(tiers)), str(key))
    return out
