"""The parse cache: an entry whose canonical form is the cached one's is reused, anything else parsed in full.

Both directions, as properties: noise (key order, 1 against 1.0 or "1", -0.0 against 0) is not a change and
is served from the cache; and whatever else differs, the cached parse is the full parse, error included.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapshots.errors import TierdriftError
from snapshots.model import TierTable
from snapshots.parse import ParseCache, parse_binance_brackets, parse_binance_web, parse_bybit_risk_limits

SRC = "binance-usdm"
SETTINGS = settings(max_examples=300, deadline=None)


def bracket_entry(symbol: str, n: int, rate0: float) -> dict[str, Any]:
    brackets, floor, cum, rate = [], 0, 0.0, rate0
    for i in range(n):
        cap = floor + 50_000 * (i + 1)
        if i:
            new_rate = rate * 2
            cum += floor * (new_rate - rate)
            rate = new_rate
        brackets.append({"bracket": i + 1, "initialLeverage": 50 // (i + 1), "notionalFloor": floor,
                         "notionalCap": cap, "maintMarginRatio": rate, "cum": cum})  # fmt: skip
        floor = cap
    return {"symbol": symbol, "brackets": brackets}


entries = st.builds(
    bracket_entry, st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.integers(1, 5), st.sampled_from([0.004, 0.005])
)


def same_table(a: TierTable, b: TierTable) -> bool:
    """Equal in everything but `raw` (a reused table keeps the text it was parsed from)."""
    return (a.symbol, a.unit, a.tiers, a.warnings, a.notional_coef, a.hash) == (
        b.symbol, b.unit, b.tiers, b.warnings, b.notional_coef, b.hash,
    )  # fmt: skip


def parsed(payload: Any, cache: ParseCache | None) -> Any:
    try:
        return parse_binance_brackets(SRC, payload, cache=cache)
    except TierdriftError as exc:
        return ("raised", type(exc), str(exc))


def noise(value: Any, rng: random.Random) -> Any:
    """The same meaning written differently: keys reordered, whole floats as ints and back, 0 as -0.0,
    numbers as numeric strings."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: noise(v, rng) for k, v in items}
    if isinstance(value, list):
        return [noise(v, rng) for v in value]
    if type(value) is float and value == 0 and rng.random() < 0.5:
        return -0.0
    if type(value) is float and value.is_integer() and abs(value) < 2**53 and rng.random() < 0.5:
        return int(value)
    if type(value) is int and rng.random() < 0.5:
        return float(value)
    if type(value) in (int, float) and rng.random() < 0.25:  # as a string, as some archives write numbers
        return f" {value!r}" if rng.random() < 0.5 else repr(value)
    return value


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


replacements = st.one_of(
    st.integers(-3, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([True, False, None, "", "1", "0.004", "1.0", -0.0, [], {}]),
)


@SETTINGS
@given(st.lists(entries, min_size=1, max_size=2, unique_by=lambda e: e["symbol"]), st.randoms())
def test_noise_is_served_from_the_cache_and_parses_the_same(payload: list[dict[str, Any]], rng: random.Random) -> None:
    cache = ParseCache()
    first = parsed(payload, cache)
    again = noise(copy.deepcopy(payload), rng)
    hits = cache.hits
    got = parsed(again, cache)
    assert cache.hits - hits == len(payload)  # nothing parsed again
    full = parsed(again, None)
    assert got.keys() == full.keys() == first.keys()
    # -0.0 hashes apart from 0.0 in the content hash, though the tiers are equal: that is the full parse's own.
    assert all(same_table(got[s], full[s]) or got[s].tiers == full[s].tiers for s in got)


@SETTINGS
@given(entries, st.data())
def test_any_other_difference_gives_the_full_parse_error_included(entry: dict[str, Any], data: st.DataObject) -> None:
    cache = ParseCache()
    parsed([entry], cache)
    changed = copy.deepcopy(entry)
    path = data.draw(st.sampled_from(paths(changed)[1:]))
    holder = changed
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = data.draw(replacements)
    got, full = parsed([changed], cache), parsed([changed], None)
    if isinstance(full, tuple):
        assert got == full  # validation ran: the bad value is refused as without the cache
    else:
        assert got.keys() == full.keys()
        assert all(same_table(got[s], full[s]) for s in got)


def test_a_boolean_in_place_of_a_number_is_refused_despite_equality() -> None:
    entry = bracket_entry("BTCUSDT", 2, 0.004)
    cache = ParseCache()
    parse_binance_brackets(SRC, [entry], cache=cache)
    bad = copy.deepcopy(entry)
    bad["brackets"][0]["bracket"] = True  # True == 1 in Python, but not a tier number
    with pytest.raises(TierdriftError, match="not a number"):
        parse_binance_brackets(SRC, [bad], cache=cache)


def test_a_symbol_mapped_elsewhere_is_parsed_again() -> None:
    entry = bracket_entry("BTCUSDT", 2, 0.004)
    cache = ParseCache()
    parse_binance_brackets(SRC, [entry], cache=cache)
    got = parse_binance_brackets(SRC, [entry], lambda key: "RENAMED/USDT:USDT", cache)
    assert list(got) == ["RENAMED/USDT:USDT"] and cache.hits == 0


def test_the_cache_forgets_delisted_ids() -> None:
    cache = ParseCache()
    parse_binance_brackets(SRC, [bracket_entry("BTCUSDT", 2, 0.004), bracket_entry("ETHUSDT", 2, 0.004)], cache=cache)
    parse_binance_brackets(SRC, [bracket_entry("BTCUSDT", 2, 0.004)], cache=cache)
    assert len(cache) == 1


def test_web_and_bybit_entries_are_cached_too() -> None:
    risk = [{"bracketSeq": 1, "bracketNotionalFloor": 0, "bracketNotionalCap": 5000,
             "bracketMaintenanceMarginRate": 0.01, "cumFastMaintenanceAmount": 0,
             "maxOpenPosLeverage": 50}]  # fmt: skip
    web = {"data": {"brackets": [{"symbol": "BTCUSD_PERP", "updateTime": 1, "riskBrackets": risk}]}}
    cache = ParseCache()
    first = parse_binance_web("binance-coinm", web, cache=cache)
    web2 = json.loads(json.dumps(web).replace('"updateTime": 1', '"updateTime": 2'))
    assert parse_binance_web("binance-coinm", web2, cache=cache) == first and cache.hits == 1
    risk2 = copy.deepcopy(web2)
    risk2["data"]["brackets"][0]["riskBrackets"][0]["bracketMaintenanceMarginRate"] = 0.015
    changed = parse_binance_web("binance-coinm", risk2, cache=cache)
    assert changed["BTC/USD:BTC"].tiers[0].maintenance_margin_rate == 0.015

    rows = [{"id": 1, "symbol": "BTCUSDT", "riskLimitValue": "200000", "maintenanceMargin": "0.005",
             "mmDeduction": "", "initialMargin": "0.01", "maxLeverage": "100"}]  # fmt: skip
    bybit = ParseCache()
    one = parse_bybit_risk_limits("bybit-linear", rows, cache=bybit)
    assert parse_bybit_risk_limits("bybit-linear", copy.deepcopy(rows), cache=bybit) == one and bybit.hits == 1
    rows[0]["maintenanceMargin"] = "0.006"
    assert (
        parse_bybit_risk_limits("bybit-linear", rows, cache=bybit)["BTC/USDT:USDT"].tiers[0].maintenance_margin_rate
        == 0.006
    )
