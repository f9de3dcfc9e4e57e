"""Semantic change records between two versions of one symbol's table.

Only symbols whose content hash changed reach this module, so deepdiff runs on a handful of small
tables per poll instead of on the whole snapshot. Both sides are canonical `Tier` values (floats, fixed
field set), so formatting differences in the payloads cannot show up here.
"""

from __future__ import annotations

import re

from deepdiff import DeepDiff

from snapshots.model import TIER_FIELDS, Change, TierTable

_PATH = re.compile(r"^root\[(\d+)\](?:\['(\w+)'\])?$")


def _shape(table: TierTable) -> dict[int, dict[str, float]]:
    return {t.tier: {f: float(getattr(t, f)) for f in TIER_FIELDS} for t in table.tiers}


def diff_tables(old: TierTable | None, new: TierTable | None) -> list[Change]:
    """Changes from `old` to `new`; None on one side means the symbol was listed or delisted."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [Change(new.source, new.symbol, "symbol_listed")]
    if new is None:
        return [Change(old.source, old.symbol, "symbol_delisted")]
    if old.hash == new.hash:
        return []
    src, sym = new.source, new.symbol
    before, after = _shape(old), _shape(new)
    dd = DeepDiff(before, after, ignore_order=False, verbose_level=2)
    out: list[Change] = []
    for path in dd.get("dictionary_item_added", {}):
        out.append(Change(src, sym, "tier_added", tier=_tier_of(path)))
    for path in dd.get("dictionary_item_removed", {}):
        out.append(Change(src, sym, "tier_removed", tier=_tier_of(path)))
    for path, value in dd.get("values_changed", {}).items():
        m = _PATH.match(path)
        if not m or not m.group(2):
            raise AssertionError(f"unexpected deepdiff path {path}")
        out.append(
            Change(
                src,
                sym,
                "tier_changed",
                tier=int(m.group(1)),
                field=m.group(2),
                old=float(value["old_value"]),
                new=float(value["new_value"]),
            )
        )
    field_order = {f: i for i, f in enumerate(TIER_FIELDS)}
    out.sort(key=lambda c: (c.tier or 0, c.kind, field_order.get(c.field or "", -1)))
    return out


def _tier_of(path: str) -> int:
    m = _PATH.match(path)
    if not m:
        raise AssertionError(f"unexpected deepdiff path {path}")
    return int(m.group(1))
