"""`output.indented_json` and `stream_json` write exactly what `json.dumps(..., indent=2)` writes."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cli import output

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and ±Infinity included: both encoders write them alike
    | st.text(alphabet=st.characters(codec=None), max_size=8)
    | st.sampled_from(["}", "},\n    {", "[{", '"', "\\", "\u2028", "\x00"])  # boundaries the row trick edits
)
KEYS = st.text(max_size=6) | st.sampled_from(["}", "},", "{"])
ODD_KEYS = st.integers() | st.floats() | st.booleans() | st.none()  # json.dumps turns these into text
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(KEYS, inner, max_size=5)
        | st.dictionaries(KEYS | ODD_KEYS, inner, max_size=3)
    ),
    max_leaves=40,
)
ROWS = st.lists(st.dictionaries(KEYS, SCALARS | st.just({}) | st.just([]), min_size=1, max_size=6), max_size=6)


def dumped(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


@settings(max_examples=600)
@given(JSON)
def test_indented_json_is_json_dumps_indent_2(value: Any) -> None:
    assert output.indented_json(value) == dumped(value)


@settings(max_examples=300)
@given(ROWS, st.integers(min_value=0, max_value=3))
def test_rows_of_flat_dicts_take_one_call_and_keep_the_layout(rows: list[dict[str, Any]], depth: int) -> None:
    # At any depth: the text continues the lines of a value nested `depth` levels in.
    assert output.indented_json(rows, depth) == dumped(rows).replace("\n", "\n" + "  " * depth)
    assert output.indented_json({"rows": rows, "n": len(rows)}) == dumped({"rows": rows, "n": len(rows)})


@settings(max_examples=200)
@given(st.lists(JSON, max_size=6), st.integers(min_value=1, max_value=3))
def test_stream_json_writes_json_dumps_of_the_list(items: list[Any], flush_every: int) -> None:
    out = io.StringIO()
    output.stream_json(iter(items), out, flush_every=flush_every)
    assert out.getvalue() == dumped(items) + "\n"


def test_emit_json_prints_json_dumps(capsys: Any) -> None:
    data = [{"id": 1, "reasons": {}, "events": [], "entry": {"at": "x", "fills": [1.5, None]}}, {"id": 2}]
    output.emit_json(data)
    assert capsys.readouterr().out == dumped(data) + "\n"


class Text(str):
    pass


class Count(int):
    pass


class Map(dict[str, Any]):
    pass


#: Values of the types the walk tells apart by `type()`: subclasses take the per-value path, tuples are lists.
ODD = (
    st.builds(Text, st.text(max_size=4))
    | st.builds(Count, st.integers())
    | st.builds(Map, st.dictionaries(KEYS, SCALARS, max_size=3))
)
SMALL = st.lists(SCALARS, max_size=2)
WIDE = st.dictionaries(
    KEYS | st.text(min_size=7, max_size=9),
    SCALARS
    | st.sampled_from([{}, [], ()])
    | SMALL
    | SMALL.map(tuple)
    | st.dictionaries(KEYS, SCALARS, max_size=3)
    | ODD,
    max_size=30,
)


@settings(max_examples=300)
@given(st.lists(WIDE, max_size=5), st.integers(min_value=0, max_value=2))
def test_wide_rows_with_a_few_containers_of_each_kind(rows: list[dict[str, Any]], depth: int) -> None:
    # Rows like `positions list --json`'s: dozens of scalars, a few dicts and lists (empty or not) among them.
    assert output.indented_json(rows, depth) == dumped(rows).replace("\n", "\n" + "  " * depth)
