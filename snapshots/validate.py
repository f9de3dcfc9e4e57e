"""Build a validated `TierTable` from normalised rows (domain doc §1).

A table is well formed when it has at least one tier, the first floor is 0, tiers are contiguous
(floor_{n+1} = cap_n), the maintenance rate is non-decreasing and the max leverage non-increasing.
Every number is finite and every tier index a whole number in 1..2**31 − 1 (what a database integer
holds on every backend). The maintenance rate is below the initial margin rate (rate × max
leverage < 1) and is at least 0.01 %: all 469,765 tiers of the 134 real Binance USDⓈ-M versions, the Bybit
files and the recorded COIN-M and inverse answers satisfy both with room to spare (largest rate ×
leverage 0.9, smallest rate 0.4 %; domain doc §8), so a table that breaks them is a unit mistake (a
percent read as a fraction: 0.4 for 0.4 % gives 0.4 × 125 = 50), not a tightening. At exactly 1 a position
opened at the tier's maximum leverage would be liquidated the moment it opened: no exchange publishes that.
The maintenance amount follows A_1 = 0, A_n = A_{n-1} + floor_n × (r_n − r_{n-1}): it is derived when the
source lacks it, and when the source's value disagrees, the source's value is kept and a warning is
recorded (the exchange computes margin with its own number, not ours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from snapshots.errors import InvalidTable
from snapshots.model import Tier, TierTable, Unit

#: The largest tier index stored: PostgreSQL's `integer` (SQLite's INTEGER overflows only at 2**63).
MAX_TIER_INDEX = 2**31 - 1
#: The smallest maintenance rate accepted: 40 times below the smallest real one (0.4 %), so a fraction
#: read as a percent (0.004 % for 0.4 %) is caught while any plausible real rate passes.
MIN_RATE = 0.0001


@dataclass(slots=True)
class RowIn:
    """One tier as read from a payload, before validation. `amount` None means "derive it"."""

    index: int
    floor: float
    cap: float
    rate: float
    amount: float | None
    max_leverage: float
    initial_margin_rate: float | None = None


def _close(a: float, b: float, scale: float) -> bool:
    # Exchanges publish decimal strings; products such as 1e6 × 0.0065 carry float error of order
    # 1e-10 × scale. A millionth of a unit is far below anything that moves a liquidation price.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(scale)) + 1e-6)


def build_table(
    source: str,
    symbol: str,
    unit: Unit,
    rows: list[RowIn],
    raw: str = "",
    notional_coef: float | None = None,
) -> TierTable:
    """Validate `rows` (in any order) and return the canonical table, or raise `InvalidTable`."""
    if not rows:
        raise InvalidTable(symbol, "no tiers")
    rows = sorted(rows, key=lambda r: (r.floor, r.index))
    warnings = _check_shape(symbol, rows)
    tiers: list[Tier] = []
    prev_amount = 0.0
    for n, row in enumerate(rows):
        expected = 0.0 if n == 0 else prev_amount + row.floor * (row.rate - rows[n - 1].rate)
        if row.amount is None:
            amount = expected
        else:
            amount = row.amount
            if not _close(amount, expected, row.floor):
                warnings.append(
                    f"tier {row.index}: maintenance amount {amount:g} differs from the recurrence's "
                    f"{expected:g}; kept the source's value"
                )
        prev_amount = amount
        # `+ 0.0` turns a "-0" from a payload into 0.0: equal numbers must give equal hashes (the hash
        # uses repr, and repr(-0.0) is "-0.0"), or a diff would see a change with no differing field.
        tiers.append(
            Tier(
                tier=row.index,
                floor=row.floor + 0.0,
                cap=row.cap + 0.0,
                maintenance_margin_rate=row.rate,
                maintenance_amount=amount + 0.0,
                max_leverage=row.max_leverage,
                initial_margin_rate=row.initial_margin_rate,
            )
        )
    return TierTable(
        source=source,
        symbol=symbol,
        unit=unit,
        tiers=tuple(tiers),
        raw=raw,
        warnings=tuple(warnings),
        notional_coef=notional_coef,
    )


def _check_shape(symbol: str, rows: list[RowIn]) -> list[str]:
    """Raise on a malformed table; return warnings for oddities that exchanges really publish."""
    warnings: list[str] = []
    for row in rows:
        _check_numbers(symbol, row)
    if rows[0].floor != 0:
        raise InvalidTable(symbol, f"first floor is {rows[0].floor:g}, not 0")
    seen: set[int] = set()
    for n, row in enumerate(rows):
        if row.index in seen:
            raise InvalidTable(symbol, f"tier {row.index} appears twice")
        seen.add(row.index)
        if row.cap < row.floor:
            raise InvalidTable(symbol, f"tier {row.index}: cap {row.cap:g} is below floor {row.floor:g}")
        if row.cap == row.floor:
            # Binance has published such tiers (DEXEUSDT, 2025-11-20): they hold no notional at all.
            warnings.append(f"tier {row.index} is empty (floor = cap = {row.cap:g})")
        if not 0 < row.rate < 1:
            raise InvalidTable(symbol, f"tier {row.index}: maintenance rate {row.rate:g} is not in (0, 1)")
        if not row.max_leverage >= 1:
            raise InvalidTable(symbol, f"tier {row.index}: max leverage {row.max_leverage:g} is below 1")
        _check_margin_rates(symbol, row)
        if row.amount is not None and row.amount < 0:
            raise InvalidTable(symbol, f"tier {row.index}: negative maintenance amount {row.amount:g}")
        if n == 0:
            continue
        prev = rows[n - 1]
        if row.index <= prev.index:
            raise InvalidTable(symbol, f"tier {row.index} has a higher floor than tier {prev.index}")
        if not math.isclose(row.floor, prev.cap, rel_tol=1e-12, abs_tol=1e-12):
            raise InvalidTable(
                symbol,
                f"tiers not contiguous: tier {row.index} starts at {row.floor:g} "
                f"but tier {prev.index} ends at {prev.cap:g}",
            )
        if row.rate < prev.rate:
            raise InvalidTable(symbol, f"maintenance rate falls from {prev.rate:g} to {row.rate:g} at tier {row.index}")
        if row.max_leverage > prev.max_leverage:
            raise InvalidTable(
                symbol,
                f"max leverage rises from {prev.max_leverage:g} to {row.max_leverage:g} at tier {row.index}",
            )
    if rows[-1].cap == rows[-1].floor:
        raise InvalidTable(symbol, f"top tier {rows[-1].index} is empty")
    return warnings


def _check_numbers(symbol: str, row: RowIn) -> None:
    """Finite numbers and a storable whole tier index, before any comparison can be fooled by a NaN."""
    if not 1 <= row.index <= MAX_TIER_INDEX:
        raise InvalidTable(symbol, f"tier index {row.index} is outside 1..{MAX_TIER_INDEX}; not a tier number")
    for name in ("floor", "cap", "rate", "amount", "max_leverage", "initial_margin_rate"):
        value = getattr(row, name)
        if value is not None and not math.isfinite(value):
            raise InvalidTable(symbol, f"tier {row.index}: {name.replace('_', ' ')} is {value}, not a finite number")


def _check_margin_rates(symbol: str, row: RowIn) -> None:
    """Maintenance below initial margin, and not implausibly small: both hold in every real table."""
    product = row.rate * row.max_leverage
    if product >= 1 - 1e-9:  # the tolerance: 0.02 × 50 is 1.0000000000000002, and 1 itself is refused
        raise InvalidTable(
            symbol,
            f"tier {row.index}: maintenance rate {row.rate:g} × max leverage {row.max_leverage:g} = {product:g} "
            "is not below 1 (maintenance margin not below initial margin); looks like a percent read as a fraction",
        )
    if row.initial_margin_rate is not None and row.rate >= row.initial_margin_rate:
        raise InvalidTable(
            symbol,
            f"tier {row.index}: maintenance rate {row.rate:g} is not below the initial margin rate "
            f"{row.initial_margin_rate:g}; looks like a percent read as a fraction",
        )
    if row.rate < MIN_RATE:
        raise InvalidTable(
            symbol,
            f"tier {row.index}: maintenance rate {row.rate:g} is below {MIN_RATE:.2%}, far under any real table; "
            "looks like a fraction read as a percent",
        )
