"""The money of a trade (monitor.journal.pnl), as properties: closing in parts realises what closing at once
does, and adding a lot at a price and closing the whole is the sum of the two lots' PnLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.journal.pnl import average_entry, margin_after_add, margin_after_reduce, realised
from monitor.risk.liquidation import PositionError, PositionSpec, notional, unrealised_pnl

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
sizes = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
sides = st.sampled_from(["long", "short"])
inverse = st.booleans()


def spec(side: str, entry: float, size: float, inv: bool, margin: float = 100.0) -> PositionSpec:
    return PositionSpec(side=side, entry_price=entry, size=size, margin=margin, inverse=inv,  # type: ignore[arg-type]
                        contract_size=100.0 if inv else 1.0)  # fmt: skip


@given(sides, prices, sizes, inverse, st.floats(0.01, 0.99), prices)
def test_closing_in_two_parts_realises_the_whole(
    side: str, entry: float, size: float, inv: bool, part: float, price: float
) -> None:
    s = spec(side, entry, size, inv)
    whole = realised(s, size, price)
    assert realised(s, size * part, price) + realised(s, size * (1 - part), price) == pytest.approx(
        whole, rel=1e-9, abs=1e-9
    )
    assert whole == pytest.approx(unrealised_pnl(s, price), rel=1e-12, abs=1e-12)


@given(sides, prices, sizes, inverse, sizes, prices, prices)
def test_adding_a_lot_is_the_sum_of_both_lots(
    side: str, entry: float, size: float, inv: bool, more: float, fill: float, exit_price: float
) -> None:
    s = spec(side, entry, size, inv)
    merged = spec(side, average_entry(s, more, fill), size + more, inv)
    lots = realised(s, size, exit_price) + realised(spec(side, fill, more, inv), more, exit_price)
    # Each PnL is a difference of terms this large: the rounding error scales with them, not with the PnL.
    if inv:
        terms = 100 * (size / entry + size / exit_price + more / fill + more / exit_price)
    else:
        terms = size * entry + size * exit_price + more * fill + more * exit_price
    assert realised(merged, size + more, exit_price) == pytest.approx(lots, rel=1e-9, abs=1e-9 * terms)
    assert min(entry, fill) * (1 - 1e-12) <= merged.entry_price <= max(entry, fill) * (1 + 1e-12)


@given(sides, prices, sizes, inverse, sizes, prices)
def test_added_margin_keeps_the_leverage(
    side: str, entry: float, size: float, inv: bool, more: float, fill: float
) -> None:
    s = spec(side, entry, size, inv, margin=notional(spec(side, entry, size, inv), entry) / 10)
    after = margin_after_add(s, more, fill)
    added = notional(spec(side, fill, more, inv), fill)
    assert after == pytest.approx(s.margin + added / 10, rel=1e-9)


@given(sides, prices, sizes, inverse, st.floats(0.01, 0.99))
def test_a_partial_close_releases_its_share_of_the_margin(
    side: str, entry: float, size: float, inv: bool, part: float
) -> None:
    s = spec(side, entry, size, inv, margin=500.0)
    assert margin_after_reduce(s, size * part) == pytest.approx(500.0 * (1 - part), rel=1e-9)


def test_the_seed_numbers() -> None:
    s = spec("long", 67000, 40000 / 67000, False)
    assert realised(s, s.size, 69500) == pytest.approx(40000 / 67000 * 2500)
    assert realised(spec("short", 67000, 1, False), 1, 69500) == pytest.approx(-2500)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: realised(s, 2, 100), "cannot close 2"),
        (lambda s: realised(s, 0, 100), "size must be a positive"),
        (lambda s: realised(s, 1, float("nan")), "price must be a positive"),
        (lambda s: margin_after_reduce(s, 1), "less than the size"),
    ],
)
def test_what_no_trade_has_is_refused(call: object, message: str) -> None:
    with pytest.raises(PositionError, match=message):
        call(spec("long", 100, 1, False))  # type: ignore[operator]
