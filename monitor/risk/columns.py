"""The column path of the liquidation engine: many positions priced from plain rows, same numbers.

`monitor.risk.liquidation.liquidation` prices one `PositionSpec` and validates everything on every call:
the spec, the table's tiers, the mark. Pricing 100,000 logged positions twice (old and new table) that
way spends most of its time building and re-checking the same things. Here a table is checked once
(`Ladder`: its live tiers as plain tuples) and a position is a plain row; `figures` then does the same
float operations, in the same order, as the engine, so its `RiskFigures` are equal to the engine's, bit
for bit (a hypothesis property in `tests/risk/test_columns.py` holds it to that).

Anything the fast path does not cover (an input the engine would refuse, a degenerate scaled headroom)
is handed to the engine itself, so its error message and its numbers stay the only ones.
Pure: no database, no network, like `liquidation`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType
from typing import NamedTuple

from monitor.risk.liquidation import (
    ALWAYS,
    NEVER,
    NO_ADR,
    NO_MARK,
    TOP_TIER,
    CrossAccount,
    PositionSpec,
    RiskFigures,
    liquidation,
)
from snapshots.model import Tier, TierTable, Unit

INF = math.inf


class PositionRow(NamedTuple):
    """One open position as read from the `position` table's columns (meets `figures.LoggedPosition`)."""

    id: int | None
    source: str
    symbol: str
    side: str
    entry_price: float
    size: float
    contract_size: float
    mode: str
    margin: float | None
    adr_override: float | None


#: The `position` columns a `PositionRow` is read from, in its field order.
POSITION_COLUMNS = PositionRow._fields


@dataclass(frozen=True, slots=True)
class Ladder:
    """The live tiers of one table as plain tuples, checked once; `usable` False leaves it to the engine."""

    table: TierTable
    tiers: tuple[Tier, ...]
    floors: tuple[float, ...]
    caps: tuple[float, ...]
    rates: tuple[float, ...]
    amounts: tuple[float, ...]
    usable: bool


def ladder(table: TierTable) -> Ladder:
    """The `Ladder` of `table`: the tiers `liquidation` would price with (zero-width tiers dropped)."""
    tiers = tuple(t for t in table.tiers if t.cap > t.floor)
    # Caps that do not ascend never come out of validation; the engine walks such a table its own way.
    usable = (
        bool(tiers)
        and all(0 <= t.maintenance_margin_rate < 1 and math.isfinite(t.maintenance_amount) for t in tiers)
        and all(a.cap < b.cap for a, b in pairwise(tiers))
    )
    return Ladder(
        table,
        tiers,
        tuple(t.floor for t in tiers),
        tuple(t.cap for t in tiers),
        tuple(t.maintenance_margin_rate for t in tiers),
        tuple(t.maintenance_amount for t in tiers),
        usable,
    )


class _Engine(Exception):
    """This input is the engine's to handle (it may refuse it with its own message)."""


def _index(caps: tuple[float, ...], n: float) -> int:
    """`liquidation._index`: the first tier whose cap is above `n`, else the top tier (caps ascend, see
    `ladder`, so the first cap above `n` is found by bisection)."""
    return min(bisect_right(caps, n), len(caps) - 1)


def _fast_spec(spec: PositionSpec, lad: Ladder) -> bool:
    """True when the engine would accept `spec` with `lad` (the spec validated itself when built)."""
    return lad.usable and lad.table.unit is (Unit.BASE if spec.inverse else Unit.QUOTE)


def figures(
    spec: PositionSpec,
    lad: Ladder,
    *,
    mark: float | None,
    adr: float | None,
    threshold_adr: float = 2.0,
    cross: CrossAccount | None = None,
) -> RiskFigures:
    """`liquidation(spec, lad.table, ...)`, equal in every field, computed from the prepared ladder."""
    if (
        not _fast_spec(spec, lad)
        or (mark is not None and not 0 < mark < INF)
        or (adr is not None and not 0 < adr < INF)
        or not 0 < threshold_adr < INF
        or (cross is None) != (spec.margin_mode != "cross")
    ):
        return liquidation(spec, lad.table, mark=mark, adr=adr, threshold_adr=threshold_adr, cross=cross)
    try:
        return _figures(spec, lad, mark, adr, threshold_adr, spec.margin if cross is None else cross.equity)
    except _Engine:
        return liquidation(spec, lad.table, mark=mark, adr=adr, threshold_adr=threshold_adr, cross=cross)


def maintenance_margin(spec: PositionSpec, lad: Ladder, price: float) -> float | None:
    """N·r − A at `price` as `liquidation.maintenance_margin` computes it, or None: ask the engine."""
    if not _fast_spec(spec, lad) or not 0 < price < INF:
        return None
    n = spec.size * spec.contract_size / price if spec.inverse else spec.size * price
    i = _index(lad.caps, n)
    return n * lad.rates[i] - lad.amounts[i]


def _figures(
    spec: PositionSpec, lad: Ladder, mark: float | None, adr: float | None, threshold: float, equity: float
) -> RiskFigures:
    inverse, size, cs, entry = spec.inverse, spec.size, spec.contract_size, spec.entry_price
    s = 1 if spec.side == "long" else -1
    ref = entry if mark is None else mark
    n_ref = size * cs / ref if inverse else size * ref
    i_ref = _index(lad.caps, n_ref)
    current = lad.tiers[i_ref]
    price, tier, boundary, always, why = _solve(lad, inverse, s, size, cs, entry, equity, n_ref)
    reasons: dict[str, str] = {}
    if price is None:
        for key in ("liquidation_price", "tier", "maintenance_margin_rate", "maintenance_amount"):
            reasons[key] = why
    pnl = s * size * cs * (1 / entry - 1 / ref) if inverse else s * size * (ref - entry)
    balance = equity + pnl
    mm = n_ref * current.maintenance_margin_rate - current.maintenance_amount
    # as liquidation._liquidated_at_mark
    at_mark: bool | None
    if always:
        at_mark = True
    elif price is None:
        at_mark = False
    elif mark is None:
        reasons["liquidated_at_mark"] = NO_MARK
        at_mark = None
    else:
        at_mark = balance <= mm
    # as liquidation._distances
    distance = distance_abs = buffer = None
    if mark is None or price is None:
        missing = [w for w, gone in ((NO_MARK, mark is None), (why, price is None)) if gone]
        reasons["distance"] = reasons["distance_abs"] = "; ".join(missing)
        reasons["buffer_adr"] = "; ".join([*missing, NO_ADR] if adr is None else missing)
    else:
        gap = abs(mark - price)
        distance, distance_abs = gap / mark, gap
        if adr is None:
            reasons["buffer_adr"] = NO_ADR
        else:
            buffer = gap / adr
    # as liquidation._violation
    violation: bool | None
    if always or at_mark:
        violation = True
    elif price is None:
        violation = False
    elif buffer is None:
        reasons["violation"] = f"buffer unknown: {reasons['buffer_adr']}"
        violation = None
    else:
        violation = buffer < threshold
    head, head_lp = _headroom(lad, inverse, s, size, cs, entry, equity, i_ref, n_ref, reasons)
    return RiskFigures(
        price,
        tier,
        None if tier is None else tier.maintenance_margin_rate,
        None if tier is None else tier.maintenance_amount,
        boundary,
        "entry" if mark is None else "mark",
        ref,
        current,
        n_ref,
        balance,
        mm,
        at_mark,
        distance,
        distance_abs,
        buffer,
        violation,
        head,
        head_lp,
        MappingProxyType(reasons),
    )


_Solution = tuple[float | None, Tier | None, bool, bool, str]  # price, tier, boundary, always, reason


def _solve(
    lad: Ladder, inverse: bool, s: int, size: float, cs: float, entry: float, equity: float, start: float
) -> _Solution:
    """`liquidation._solve` on plain values: the same walk, the same float operations."""
    if inverse:
        alpha, sigma = equity + s * size * cs / entry, -s
    else:
        alpha, sigma = equity - s * size * entry, s
    floors, caps, rates, amounts = lad.floors, lad.caps, lad.rates, lad.amounts
    top = len(caps) - 1
    idx, came = _index(caps, start), 0
    for _ in caps:
        n = (alpha + amounts[idx]) / (rates[idx] - sigma)
        step = -1 if n < floors[idx] and idx > 0 else 1 if n >= caps[idx] and idx < top else 0
        if step == 0:
            tiny = 1e-12 * (abs(equity) + (size * cs / entry if inverse else size * entry))
            n = n if n > tiny else 0.0
            if n > 0:
                return (size * cs / n if inverse else n / size), lad.tiers[idx], False, False, ""
            if sigma > 0:
                return None, None, False, False, NEVER
            return None, None, False, True, ALWAYS
        if step == -came:
            lower, upper = min(idx, idx + step), max(idx, idx + step)
            cap = caps[lower]
            at = size * cs / cap if inverse else cap / size
            return at, lad.tiers[lower if sigma > 0 else upper], True, False, ""
        came, idx = step, idx + step
    raise AssertionError("unreachable: a walk that never turns back ends within len(tiers) steps")


def _headroom(
    lad: Ladder,
    inverse: bool,
    s: int,
    size: float,
    cs: float,
    entry: float,
    equity: float,
    i_ref: int,
    n_ref: float,
    reasons: dict[str, str],
) -> tuple[float | None, float | None]:
    """`liquidation._headroom`: notional left before the next tier's floor, and the LP if scaled to it."""
    if i_ref == len(lad.caps) - 1:
        reasons.update(headroom_notional=TOP_TIER, headroom_liquidation_price=TOP_TIER)
        return None, None
    floor = lad.floors[i_ref + 1]
    scaled = size * floor / n_ref
    if not 0 < scaled < INF:
        raise _Engine  # the engine refuses such a scaled spec; let it say so
    price, _, _, _, why = _solve(lad, inverse, s, scaled, cs, entry, equity, floor)
    if price is None:
        reasons["headroom_liquidation_price"] = f"scaled to the next tier's floor, {why}"
    return floor - n_ref, price
