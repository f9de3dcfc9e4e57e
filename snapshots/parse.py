"""Turn exchange payloads and archived ccxt files into validated tier tables (pure functions).

One parser per payload shape (domain doc §1 and §7):

- `parse_binance_brackets`: signed `GET /fapi/v1/leverageBracket` and `/dapi/v2/leverageBracket`;
- `parse_binance_web`: the keyless web endpoint `.../friendly/future/common/brackets`;
- `parse_bybit_risk_limits`: `GET /v5/market/risk-limit` rows, all pages joined;
- `parse_ccxt_tiers`: ccxt-unified `fetch_leverage_tiers()` output, as archived in JSON files.

Each returns `{symbol: TierTable}` or raises `PayloadError`/`InvalidTable` naming the first bad entry.

Each also takes an optional `ParseCache`, held by whoever parses the same source again and again (the
daemon's fetchers, an import of many files). An entry whose canonical hash equals the one its symbol's
cached table was parsed from is that table again: it is reused instead of being parsed and validated
once more. Anything else, a new symbol or an entry differing in any value, goes through the full parse
and validation, and the stored-hash comparison of `snapshots.store` follows either way.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import math
from collections.abc import Callable, Mapping
from typing import Any

from snapshots.errors import PayloadError
from snapshots.jsontext import SAME, split_object
from snapshots.model import TierTable, Unit, unit_for
from snapshots.symbols import canonical_symbol
from snapshots.validate import RowIn, build_table

SymbolMap = Callable[[str], str]


def number(value: Any, what: str, *, allow_blank: bool = False) -> float | None:
    """A finite float from a JSON number or numeric string; "" is None only when `allow_blank`."""
    if type(value) is float and value - value == 0.0:  # the usual case, first: finite (inf - inf is nan)
        return value
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


def _canon(value: Any) -> Any:
    """`value` with the noise of its JSON text taken out: numbers as floats (1 and 1.0, -0.0 and 0, and a
    numeric string such as "0.010" as the float `number` reads from it), so that `_raw` of it is one text
    per meaning. Only what the parsers read the same way is merged: booleans, other strings, strings whose
    float is not finite and integers beyond a float's exact range are kept as they are. (A string the
    parsers read as text, the symbol, is checked by the cache apart: the table's symbol must match.)"""
    kind = type(value)
    if kind is float:
        return value + 0.0  # -0.0 + 0.0 is 0.0
    if kind is int:
        return float(value) if -(2**53) <= value <= 2**53 else value
    if kind is str:
        try:
            out = float(value)  # what `number` does with it: the same float, whitespace and all
        except ValueError:
            return value
        return out + 0.0 if math.isfinite(out) else value
    if kind is dict:
        return {k: _canon(v) for k, v in value.items()}
    if kind is list:
        return [_canon(v) for v in value]
    return value


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _exact(entry: Any) -> bytes:
    """A digest of `entry` exactly as decoded: types (1, 1.0, True), values and key order. marshal
    version 2 writes no back-references, so equal values give equal bytes; it is a faithful encoding, so
    different values never do (and it is five times faster than any text form)."""
    try:
        return hashlib.blake2b(marshal.dumps(entry, 2), digest_size=16).digest()
    except ValueError:  # nested too deep to marshal: never matches, so it is parsed (and refused) in full
        return b""


class ParseCache:
    """The last table parsed for each raw symbol id of one source, with the hashes of its entry.

    An entry is known when the hash of its exact decoded value (`_exact`: types, values, key order), or
    else of its canonical form (`_canon` then sorted keys: key order, number formatting, numbers written
    as strings and -0 do not count), equals that of the entry the table was parsed from (or, after a
    canonical match, of the entry that matched). The symbol the table carries must also be the one the
    entry maps to now. `sweep`, after each whole payload, drops the ids it no longer
    lists, so the cache holds one table per listed symbol at most.
    """

    def __init__(self) -> None:
        self._tables: dict[str, tuple[bytes, bytes, TierTable]] = {}
        self._seen: set[str] = set()
        self._last: tuple[str, bytes, bytes | None] = ("", b"", None)  # the entry `known` just missed
        #: raw id -> the exact JSON text of the entry its cached table came from, for the parsers that read
        #: text (`parse_ccxt_text`); set only beside that table, dropped whenever the table is replaced.
        self.texts: dict[str, str] = {}
        self.hits = self.misses = 0

    def known(self, raw_id: str, entry: Any, symbol: str) -> TierTable | None:
        """The cached table of `raw_id` if `entry` is the one it was parsed from, else None."""
        self._seen.add(raw_id)
        exact = _exact(entry)
        found = self._tables.get(raw_id)
        canonical = None
        if found is not None and found[2].symbol == symbol:
            if exact and exact == found[0]:
                self.hits += 1
                return found[2]
            canonical = _digest(_raw(_canon(entry)))
            if canonical == found[1]:
                self.hits += 1
                # The same meaning in a new format (numbers turned strings, say): remember this entry's exact
                # digest, so that the next payload in that format is known without its canonical form.
                self._tables[raw_id] = (exact, canonical, found[2])
                return found[2]
        self.misses += 1
        self._last = (raw_id, exact, canonical)
        return None

    def known_text(self, raw_id: str, symbol: str) -> TierTable | None:
        """The cached table of `raw_id` when the entry's text is `texts[raw_id]` (the caller found it so):
        that text is the one the table was parsed from or matched, so it is the table again."""
        self._seen.add(raw_id)
        found = self._tables.get(raw_id)
        if found is not None and raw_id in self.texts and found[2].symbol == symbol:
            self.hits += 1
            return found[2]
        return None

    def remember_text(self, raw_id: str, text: str, table: TierTable) -> TierTable:
        """Cache `table` as what the entry whose exact JSON is `text` parses to (call only after it parsed and
        validated). Such a table is known again by its text alone (`known_text`), never by `known`'s digests:
        a text differing in format only is parsed again, which costs less than a canonical form of every
        entry that changed (the store's content hash then finds it unchanged)."""
        self._seen.add(raw_id)
        self.misses += 1
        self._tables[raw_id] = (b"", b"", table)
        self.texts[raw_id] = text
        return table

    def remember(self, raw_id: str, entry: Any, table: TierTable) -> None:
        """Cache `table` as what `entry` parses to (call only after it parsed and validated)."""
        self._seen.add(raw_id)
        self.texts.pop(raw_id, None)
        last_id, exact, canonical = self._last
        if last_id != raw_id:
            exact, canonical = _exact(entry), None
        self._tables[raw_id] = (exact, canonical or _digest(_raw(_canon(entry))), table)

    def sweep(self) -> None:
        """After a whole payload parsed: forget the ids it did not list."""
        for gone in self._tables.keys() - self._seen:
            del self._tables[gone]
        for gone in self.texts.keys() - self._seen:
            del self.texts[gone]
        self._seen = set()

    def __len__(self) -> int:
        return len(self._tables)


def _known(cache: ParseCache | None, raw_id: str, entry: Any, symbol: str) -> TierTable | None:
    return None if cache is None else cache.known(raw_id, entry, symbol)


def _remember(cache: ParseCache | None, raw_id: str, entry: Any, table: TierTable) -> TierTable:
    if cache is not None:
        cache.remember(raw_id, entry, table)
    return table


def _sweep(cache: ParseCache | None) -> None:
    if cache is not None:
        cache.sweep()


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


def parse_binance_brackets(
    source: str, payload: Any, symbol_of: SymbolMap | None = None, cache: ParseCache | None = None
) -> dict[str, TierTable]:
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
        known = _known(cache, raw_id, entry, symbol)
        if known is not None:
            _put(out, known, raw_id)
            continue
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
        coef_value = None if coef is None else number(coef, f"{raw_id} notionalCoef")
        table = build_table(source, symbol, unit, rows, raw=_raw(entry), notional_coef=coef_value)
        _put(out, _remember(cache, raw_id, entry, table), raw_id)
    _sweep(cache)
    return out


# -- Binance keyless web endpoint -------------------------------------------------------------------


def parse_binance_web(
    source: str, payload: Any, symbol_of: SymbolMap | None = None, cache: ParseCache | None = None
) -> dict[str, TierTable]:
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
        symbol = symbol_of(raw_id)
        # `updateTime` says when Binance last touched the entry; it is no part of the table, so a new one
        # alone does not make the entry new.
        keyed = {k: v for k, v in entry.items() if k != "updateTime"}
        known = _known(cache, raw_id, keyed, symbol)
        if known is not None:
            _put(out, known, raw_id)
            continue
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
        table = build_table(source, symbol, unit, rows, raw=_raw(entry))
        _put(out, _remember(cache, raw_id, keyed, table), raw_id)
    _sweep(cache)
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


def parse_bybit_risk_limits(
    source: str, rows: Any, symbol_of: SymbolMap | None = None, cache: ParseCache | None = None
) -> dict[str, TierTable]:
    """Rows of `result.list` from every page: `{id, symbol, riskLimitValue, maintenanceMargin, ...}`.

    A symbol's rows, in the order given, are its entry for the cache."""
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
    for raw_id, group in by_symbol.items():
        symbol = symbol_of(raw_id)
        known = _known(cache, raw_id, group, symbol)
        if known is not None:
            _put(out, known, raw_id)
            continue
        scale = _bybit_scale(raw_id, group)
        recs = sorted(group, key=lambda r: _req(r.get("riskLimitValue"), f"{raw_id} riskLimitValue"))
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
        table = build_table(source, symbol, unit, parsed, raw=_raw(recs))
        _put(out, _remember(cache, raw_id, group, table), raw_id)
    _sweep(cache)
    return out


# -- ccxt-unified archives --------------------------------------------------------------------------

_FLOOR = ("minNotional", "notionalFloor")
_CAP = ("maxNotional", "notionalCap")
_RATE = ("maintenanceMarginRate", "maintenanceMarginRatio")
_INFO_AMOUNT = ("cum", "mmDeduction", "cumFastMaintenanceAmount")


def parse_ccxt_tiers(source: str, payload: Any, cache: ParseCache | None = None) -> dict[str, TierTable]:
    """`{symbol: [{tier, minNotional, maxNotional, maintenanceMarginRate, maxLeverage, info}]}`.

    Accepts the older key names of early archives and numbers or numeric strings anywhere. The
    maintenance amount comes from `info` (`cum` for Binance, `mmDeduction` for Bybit) and is derived
    when absent.
    """
    unit = unit_for(source)
    out: dict[str, TierTable] = {}
    for key, tiers in _mapping(payload, "file").items():
        _put(out, _ccxt_table(source, unit, str(key), tiers, cache), str(key))
    _sweep(cache)
    return out


def parse_ccxt_text(source: str, text: str, cache: ParseCache) -> dict[str, TierTable]:
    """`parse_ccxt_tiers(source, json.loads(text), cache)`, without decoding the entries whose JSON text is,
    byte for byte, the one `cache` last took that entry's table from (`snapshots.jsontext`): consecutive
    archives repeat most entries, and decoding them is most of the work of reading a file.

    Raises `jsontext.NotSplit` when `text` is not an object the split accepts (bad JSON among them): decode
    it with `json.loads` then, for the standard error or the payload.
    """
    members = split_object(text, cache.texts)
    unit = unit_for(source)
    out: dict[str, TierTable] = {}
    for key, member in members.items():
        table = cache.known_text(key, canonical_symbol(source, key)) if member.value is SAME else None
        if table is None:
            tiers = json.loads(member.text) if member.value is SAME else member.value
            table = cache.remember_text(key, member.text, _ccxt_table(source, unit, key, tiers, None))
        _put(out, table, key)
    _sweep(cache)
    return out


def _ccxt_table(source: str, unit: Unit, key: str, tiers: Any, cache: ParseCache | None) -> TierTable:
    """The table of one archive entry (`key`: the symbol as written in the file)."""
    symbol = canonical_symbol(source, key)
    known = _known(cache, key, tiers, symbol)
    if known is not None:
        return known
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
    table = build_table(source, symbol, unit, rows, raw=_raw(tiers))
    return _remember(cache, key, tiers, table)
