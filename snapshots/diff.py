"""Semantic change records between two versions of one symbol's table.

Only symbols whose content hash changed reach this module, so deepdiff runs on a handful of small
tables per poll instead of on the whole snapshot. Both sides are canonical `Tier` values (floats, fixed
field set), so formatting differences in the payloads cannot show up here.

The diff is total: any two valid tables give their change records. deepdiff finds where the two shapes
differ, but how coarsely it reports that is its own business (deepdiff 9's `threshold_to_diff_deeper`
reports a tier, or the whole table, as one changed value once enough of it differs: a restructure such
as one tier split into many). So each reported spot is expanded here, by comparing the two sides under
it, into tier-level records; the records never depend on the granularity of the report.

deepdiff is given each tier as one leaf, its fields' canonical text (`repr` of each float, as in the
content hash): it then finds the tiers that were added, removed or changed with one comparison per tier
instead of walking every field (a sixth of the time), and `_expand` compares the fields of each.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any

from snapshots.model import TIER_FIELDS, Change, Tier, TierTable

#: Libraries deepdiff imports at its own import when they are installed, to compare their arrays and
#: frames. The leaves diffed here are strings, so deepdiff never needs them, and once imported they stay
#: resident in the daemon (numpy alone is 12 MB, pandas several times that): deepdiff is imported with
#: them absent (`_deep_diff`), unless something imported them already.
DEEPDIFF_OPTIONAL = ("numpy", "pandas", "polars")
_import_lock = threading.Lock()

Shape = dict[int, Tier]
Leaves = dict[str, str]
#: (kind, tier, field) → (old, new): the records of one symbol, deduplicated.
Found = dict[tuple[str, int, str | None], tuple[float | None, float | None]]


_FIELDS = attrgetter(*TIER_FIELDS)


def _shape(tiers: tuple[Tier, ...]) -> Shape:
    return {t.tier: t for t in tiers}


def _leaves(shape: Shape) -> Leaves:
    """One text per tier, different whenever one of its fields is (repr round-trips a float). Texts that
    differ for equal fields (-0.0 and 0.0) only make `_expand` compare, and find nothing to record.

    Keyed by the tier number as text: deepdiff names an int key by `repr` and parses it back (`ast`) to
    check it, a str key costs it nothing. Each text is interned, so a tier the same on both sides is the
    same object, which deepdiff passes over before building the path of its level."""
    return {str(n): sys.intern(",".join([repr(float(v)) for v in _FIELDS(t)])) for n, t in shape.items()}


def diff_tables(old: TierTable | None, new: TierTable | None) -> list[Change]:
    """Changes from `old` to `new`; None on one side means the symbol was listed or delisted.

    For two tables: `tier_removed` for every tier index only in `old`, `tier_added` for every one only in
    `new`, and `tier_changed` for every field that differs in a tier both have, with its old and new value.
    """
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [Change(new.source, new.symbol, "symbol_listed")]
    if new is None:
        return [Change(old.source, old.symbol, "symbol_delisted")]
    if old.hash == new.hash:
        return []
    return list(_changes(new.source, new.symbol, old.tiers, new.tiers))


@lru_cache(maxsize=2048)
def _changes(source: str, symbol: str, old: tuple[Tier, ...], new: tuple[Tier, ...]) -> tuple[Change, ...]:
    """The records of one pair of tier tuples, remembered: a poll prices its impacts before its write
    transaction and stores its versions in it, and both need the same diffs (the second time is free,
    which keeps the write transaction short). Keyed by the tiers themselves, so nothing is ever guessed."""
    DeepDiff = _deep_diff()
    before, after = _shape(old), _shape(new)
    found: Found = {}
    tree = DeepDiff(_leaves(before), _leaves(after), ignore_order=False, view="tree")
    for report in tree.values():
        for level in report:
            _expand(before, after, level.path(output_format="list"), found)
    field_order = {f: i for i, f in enumerate(TIER_FIELDS)}
    out = [
        Change(source, symbol, kind, tier=tier, field=field, old=o, new=n)
        for (kind, tier, field), (o, n) in found.items()
    ]
    out.sort(key=lambda c: (c.tier or 0, c.kind, field_order.get(c.field or "", -1)))
    return tuple(out)


def _deep_diff() -> Any:
    """deepdiff's `DeepDiff`, its package imported on first use without `DEEPDIFF_OPTIONAL`.

    Imported here: deepdiff costs 0.1 s, and commands that only price positions (`positions list`)
    import this module without ever diffing. A library of `DEEPDIFF_OPTIONAL` that is installed but not
    imported yet is marked absent (`sys.modules[name] = None`, which makes its import raise ImportError,
    the case deepdiff handles) for the time of deepdiff's import only; its own later import is untouched
    (another thread importing it in that moment would be refused: nothing in tierdrift imports them).
    """
    with _import_lock:
        if "deepdiff" not in sys.modules:
            absent = [name for name in DEEPDIFF_OPTIONAL if name not in sys.modules]
            for name in absent:
                sys.modules[name] = None  # type: ignore[assignment]  # None: "not importable", as the docs say
            try:
                import deepdiff  # noqa: F401  (the package: what its import loads is decided here)
            finally:
                for name in absent:
                    if name in sys.modules and sys.modules[name] is None:
                        del sys.modules[name]
    from deepdiff import DeepDiff

    return DeepDiff


def _expand(before: Shape, after: Shape, path: Sequence[Any], found: Found) -> None:
    """Add the records for everything under `path` (`[]`: the table, `[n]`: tier n, `[n, f]`: a field)."""
    if not path:
        for tier in sorted(before.keys() | after.keys()):
            _expand(before, after, [tier], found)
        return
    tier = int(path[0])  # the leaves' keys are the tier numbers as text
    if tier not in after:
        found[("tier_removed", tier, None)] = (None, None)
        return
    if tier not in before:
        found[("tier_added", tier, None)] = (None, None)
        return
    fields = [path[1]] if len(path) > 1 and path[1] in TIER_FIELDS else TIER_FIELDS
    for name in fields:
        o, n = float(getattr(before[tier], name)), float(getattr(after[tier], name))
        if o != n:
            found[("tier_changed", tier, name)] = (o, n)
