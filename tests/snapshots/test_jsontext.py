"""`split_object` and `parse_ccxt_text`: reading an archive without decoding the entries already known.

As properties: the split gives the members `json.loads` gives (order, duplicates, values) whatever the
formatting; a member is taken as known exactly when its text is the known one; any text the split refuses
is one `json.loads` refuses too or decodes to something else than an object; and the text parse of a
sequence of archives gives the tables (and the errors) of the decoded parse.
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
from snapshots.jsontext import SAME, NotSplit, decode_text, split_object
from snapshots.parse import ParseCache, parse_ccxt_text, parse_ccxt_tiers

SRC = "binance-usdm"
SETTINGS = settings(max_examples=300, deadline=None)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), st.text(max_size=5)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=6)


def dumps(obj: Any, style: int) -> str:
    """`obj` as JSON in one of the layouts archives use (compact, spaced, indented, tabs and CRLF)."""
    if style == 0:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if style == 1:
        return json.dumps(obj)
    if style == 2:
        return json.dumps(obj, indent=2)
    return "\r\n\t " + json.dumps(obj, indent="\t").replace("\n", "\r\n") + " \n"


@SETTINGS
@given(objects, objects, st.integers(0, 3), st.integers(0, 3))
def test_the_split_gives_what_json_loads_gives(before: dict[str, Any], after: dict[str, Any], s1: int, s2: int) -> None:
    after = {**{k: copy.deepcopy(v) for k, v in list(before.items())[:3]}, **after}  # some members repeat
    known = {k: m.text for k, m in split_object(dumps(before, s1), {}).items()}
    text = dumps(after, s2)
    members = split_object(text, known)
    assert list(members) == list(json.loads(text))
    for key, member in members.items():
        assert json.loads(member.text) == json.loads(text)[key]
        if member.value is SAME:
            assert member.text is known[key]
        else:
            assert member.value == json.loads(text)[key]
            assert not (key in known and member.text == known[key] and known[key][:1] in '[{"')


def test_duplicate_keys_keep_the_first_place_and_the_last_value() -> None:
    text = '{"a": [1], "b": [2], "a": [3]}'
    members = split_object(text, {"a": "[1]"})
    assert list(members) == list(json.loads(text)) == ["a", "b"]
    assert members["a"].text == "[3]" and members["a"].value == [3]


def test_a_known_text_is_taken_only_for_a_self_delimiting_value() -> None:
    members = split_object('{"n": 12, "s": "ab", "l": [1, 2]}', {"n": "1", "s": '"ab"', "l": "[1, 2]"})
    assert members["n"].value == 12 and members["n"].text == "12"  # "1" begins "12": a number is always read
    assert members["s"].value is SAME and members["l"].value is SAME


@pytest.mark.parametrize(
    "text",
    ['[{"a": 1}]', '"x"', "", "{", '{"a": 1,}', '{"a" 1}', '{"a": 1} x', '{"a": [1}', "{'a': 1}", '{"a": 01}',
     '{"a": "\x01"}', "{" * 100_000 + "}" * 100_000, '{"a": 1}{}'],
)  # fmt: skip
def test_what_the_split_refuses_json_loads_does_not_read_as_an_object(text: str) -> None:
    with pytest.raises(NotSplit):
        split_object(text, {})
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return
    assert not isinstance(decoded, dict)


@SETTINGS
@given(objects, st.integers(0, 3), st.randoms())
def test_a_corrupted_text_is_refused_or_split_exactly(obj: dict[str, Any], style: int, rng: random.Random) -> None:
    text = list(dumps(obj, style))
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(text))
        text[i : i + 1] = rng.choice(['"', ",", "}", "{", "[", "]", ":", " ", "1", "", "\\", "e"])
    corrupt = "".join(text)
    try:
        members = split_object(corrupt, {})
    except NotSplit:
        return
    decoded = json.loads(corrupt)  # the split accepted it: json.loads must, with the same members
    assert list(members) == list(decoded)
    assert all(json.dumps(m.value) == json.dumps(decoded[k]) for k, m in members.items())


def test_decode_text_detects_the_encodings_json_loads_does() -> None:
    obj = {"BTC/USDT:USDT": [{"tier": 1, "note": "é"}]}
    for data in (
        json.dumps(obj).encode(),
        b"\xef\xbb\xbf" + json.dumps(obj).encode(),
        json.dumps(obj).encode("utf-16"),
    ):
        assert json.loads(decode_text(data)) == json.loads(data) == obj


# -- the text parse ---------------------------------------------------------------------------------


def ccxt_entry(symbol: str, rates: list[float]) -> list[dict[str, Any]]:
    out, floor, cum = [], 0.0, 0.0
    for i, rate in enumerate(rates):
        cap = floor + 50_000.0 * (i + 1)
        if i:
            cum += floor * (rate - rates[i - 1])
        out.append({"tier": float(i + 1), "symbol": symbol, "minNotional": floor, "maxNotional": cap,
                    "maintenanceMarginRate": rate, "maxLeverage": float(int(0.5 / rate)),
                    "info": {"bracket": str(i + 1), "cum": str(cum)}})  # fmt: skip
        floor = cap
    return out


SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
rate_lists = st.lists(st.sampled_from([0.004, 0.005, 0.01, 0.02, 0.025]), min_size=1, max_size=4).map(sorted)
payloads = st.dictionaries(st.sampled_from(SYMBOLS), rate_lists, min_size=1).map(
    lambda d: {s: ccxt_entry(s, r) for s, r in d.items()}
)
edits = st.sampled_from(["none", "string", "bad", "rename", "reorder"])


def edited(payload: dict[str, Any], edit: str, rng: random.Random) -> dict[str, Any]:
    """A variant of `payload`: a number as a string, a bad value, a key naming another symbol, keys reordered."""
    out = copy.deepcopy(payload)
    key = rng.choice(sorted(out))
    tier = out[key][0]
    if edit == "string":
        tier["maintenanceMarginRate"] = str(tier["maintenanceMarginRate"])
    elif edit == "bad":
        tier["maxLeverage"] = rng.choice([None, True, "x", -1.0, float("inf")])
    elif edit == "rename":
        out["ETHUSDT" if key != "ETH/USDT:USDT" else "BTCUSDT"] = out.pop(key)
    elif edit == "reorder":
        out[key] = [dict(reversed(list(t.items()))) for t in out[key]]
    return out


def outcome(parse: Any, *args: Any) -> Any:
    try:
        return {s: (t.symbol, t.unit, t.tiers, t.hash, t.raw, t.warnings) for s, t in parse(*args).items()}
    except TierdriftError as exc:
        return ("raised", type(exc), str(exc))


@SETTINGS
@given(st.lists(st.tuples(payloads, edits, st.integers(0, 3)), min_size=1, max_size=6), st.randoms())
def test_the_text_parse_is_the_decoded_parse(steps: list[tuple[dict[str, Any], str, int]], rng: random.Random) -> None:
    cache = ParseCache()
    previous: dict[str, Any] | None = None
    for payload, edit, style in steps:
        if previous is not None and rng.random() < 0.5:
            payload = previous  # an archive repeating the last one, in its own layout
        payload = edited(payload, edit, rng)
        text = dumps(payload, style)
        assert outcome(parse_ccxt_text, SRC, text, cache) == outcome(parse_ccxt_tiers, SRC, json.loads(text))
        previous = payload


def test_an_unchanged_entry_is_not_decoded_again() -> None:
    cache = ParseCache()
    first = {s: ccxt_entry(s, [0.004, 0.01]) for s in SYMBOLS}
    one = parse_ccxt_text(SRC, json.dumps(first, indent=2), cache)
    second = {**first, "ETH/USDT:USDT": ccxt_entry("ETH/USDT:USDT", [0.005, 0.01])}
    hits = cache.hits
    two = parse_ccxt_text(SRC, json.dumps(second, indent=2), cache)
    assert cache.hits - hits == 2  # BTC and SOL by their text; ETH changed, parsed anew
    assert two["BTC/USDT:USDT"] is one["BTC/USDT:USDT"] and two["ETH/USDT:USDT"] is not one["ETH/USDT:USDT"]
    assert set(cache.texts) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"}
    parse_ccxt_text(SRC, json.dumps({"BTC/USDT:USDT": first["BTC/USDT:USDT"]}), cache)
    assert set(cache.texts) == {"BTC/USDT:USDT"}  # the ids the last archive did not list are forgotten
