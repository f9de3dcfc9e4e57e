"""The diff is total: every pair of valid tables, of any shapes, gives exactly the right change records.

Tables are generated through the real validator (`build_table`), so every pair is a pair the store can
meet. The expected records are computed here without deepdiff, from the definition: removed tiers are the
old indexes the new table lacks, added tiers the reverse, and `tier_changed` records are exactly the
fields that differ in a tier both tables have.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapshots.diff import diff_tables
from snapshots.model import TIER_FIELDS, Change, TierTable, Unit
from snapshots.validate import RowIn, build_table

SRC, SYM = "binance-usdm", "X/USDT:USDT"
ROOT = Path(__file__).resolve().parents[2]

# Small pools, so that two generated tables often share tier indexes and field values: a field that is
# equal on both sides must yield no record, one that differs exactly one.
FLOOR_STEPS = (5_000.0, 10_000.0, 50_000.0, 250_000.0)
RATES = (0.004, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)


@st.composite
def tables(draw: st.DrawFn) -> TierTable:
    n = draw(st.integers(1, 8))
    indexes = sorted(draw(st.sets(st.integers(1, 12), min_size=n, max_size=n)))
    if draw(st.booleans()):
        indexes = list(range(1, n + 1))  # the usual shape: 1..n
    floors = [0.0]
    for _ in range(n - 1):
        floors.append(floors[-1] + draw(st.sampled_from(FLOOR_STEPS)))
    top = floors[-1] + draw(st.sampled_from(FLOOR_STEPS))
    rates = sorted(draw(st.lists(st.sampled_from(RATES), min_size=n, max_size=n)))
    rows, leverage = [], 150.0
    for i, (index, floor, rate) in enumerate(zip(indexes, floors, rates, strict=True)):
        # Max leverage is non-increasing and keeps rate × leverage < 1, as validation requires.
        leverage = min(leverage, float(draw(st.integers(1, max(1, math.ceil(1 / rate) - 1)))))
        cap = floors[i + 1] if i + 1 < n else top
        amount = draw(st.one_of(st.none(), st.sampled_from((0.0, 50.0, 1_300.0)))) if i else 0.0
        rows.append(RowIn(index, floor, cap, rate, amount, leverage))
    return build_table(SRC, SYM, Unit.QUOTE, rows)


def expected(old: TierTable, new: TierTable) -> set[tuple[str, int, str | None, float | None, float | None]]:
    before = {t.tier: t for t in old.tiers}
    after = {t.tier: t for t in new.tiers}
    out: set[tuple[str, int, str | None, float | None, float | None]] = set()
    out |= {("tier_removed", n, None, None, None) for n in before.keys() - after.keys()}
    out |= {("tier_added", n, None, None, None) for n in after.keys() - before.keys()}
    for n in before.keys() & after.keys():
        for f in TIER_FIELDS:
            o, v = getattr(before[n], f), getattr(after[n], f)
            if o != v:
                out.add(("tier_changed", n, f, o, v))
    return out


def records(changes: list[Change]) -> set[tuple[str, int, str | None, float | None, float | None]]:
    assert all(c.tier is not None for c in changes)
    return {(c.kind, c.tier or 0, c.field, c.old, c.new) for c in changes}


@settings(max_examples=400, deadline=None)
@given(tables(), tables())
def test_every_pair_of_valid_tables_gives_exactly_its_changes(old: TierTable, new: TierTable) -> None:
    changes = diff_tables(old, new)
    assert records(changes) == expected(old, new)
    assert len(changes) == len(records(changes))  # no record twice
    assert all((c.source, c.symbol) == (SRC, SYM) for c in changes)
    if old.hash != new.hash:
        assert changes, "a hash difference must always yield at least one record"
    else:
        assert changes == []


@settings(max_examples=100, deadline=None)
@given(tables())
def test_a_table_against_itself_or_nothing(table: TierTable) -> None:
    assert diff_tables(table, table) == []
    assert [c.kind for c in diff_tables(None, table)] == ["symbol_listed"]
    assert [c.kind for c in diff_tables(table, None)] == ["symbol_delisted"]


def table(*rows: tuple[float, float, float, float]) -> TierTable:
    """(floor, cap, rate, max leverage) rows, indexes 1..n, amounts derived."""
    return build_table(
        SRC, SYM, Unit.QUOTE, [RowIn(i + 1, f, c, r, None, lev) for i, (f, c, r, lev) in enumerate(rows)]
    )


ONE = table((0, 1e6, 0.01, 50))
TWO = table((0, 1e4, 0.01, 50), (1e4, 1e5, 0.02, 25))
FOUR = table((0, 5e4, 0.02, 25), (5e4, 2e5, 0.025, 20), (2e5, 1e6, 0.05, 10), (1e6, 5e6, 0.1, 5))


@pytest.mark.parametrize(
    ("old", "new"),
    [(ONE, TWO), (TWO, FOUR), (FOUR, ONE), (ONE, FOUR), (FOUR, TWO)],
    ids=["one-to-two", "all-fields-and-more-tiers", "many-to-one", "one-to-many", "four-to-two"],
)
def test_restructures_that_deepdiff_reports_coarsely(old: TierTable, new: TierTable) -> None:
    """deepdiff 9 reports these as one changed `root` or `root[n]`; the records must not care."""
    assert records(diff_tables(old, new)) == expected(old, new)


def test_a_tier_with_every_field_changed_names_each_field() -> None:
    new = table((0, 5e4, 0.02, 25), (5e4, 2e5, 0.025, 20))
    changes = [c for c in diff_tables(TWO, new) if c.tier == 2]
    assert [c.field for c in changes] == list(TIER_FIELDS)
    floor = changes[0]
    assert (floor.old, floor.new) == (1e4, 5e4)


def test_a_negative_zero_is_the_same_table() -> None:
    """ "-0" and "0" are equal numbers: the same hash, so no change with no differing field."""
    signed = build_table(SRC, SYM, Unit.QUOTE, [RowIn(1, -0.0, 1e6, 0.01, -0.0, 50)])
    assert signed.hash == ONE.hash and diff_tables(ONE, signed) == []


def test_deepdiff_is_imported_without_numpy_and_numpy_still_imports_later() -> None:
    """The daemon's first change must not leave numpy (12 MB) resident; a later `import numpy` is unharmed."""
    if importlib.util.find_spec("numpy") is None:
        pytest.skip("numpy is not installed here: nothing for deepdiff to load")
    code = (
        "import json, sys\n"
        "from tests.snapshots.test_diff_property import FOUR, TWO, records\n"
        "from snapshots.diff import diff_tables\n"
        "found = sorted(records(diff_tables(TWO, FOUR)))\n"
        "loaded = 'numpy' in sys.modules\n"
        "import deepdiff.helper, numpy\n"
        "print(json.dumps({'numpy_loaded': loaded, 'deepdiff_np': deepdiff.helper.np is not None,\n"
        "                  'numpy_later': numpy.__name__, 'found': found}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    got = json.loads(out.stdout)
    assert got["numpy_loaded"] is False and got["deepdiff_np"] is False
    assert got["numpy_later"] == "numpy"
    assert [tuple(r) for r in got["found"]] == sorted(expected(TWO, FOUR))
