"""Liquidation engine: published examples, hand-computed cases and properties of the balance condition."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.risk.liquidation import (
    ALWAYS,
    NEVER,
    NO_ADR,
    NO_MARK,
    TOP_TIER,
    CrossAccount,
    PositionError,
    PositionSpec,
    RiskFigures,
    Side,
    cross_account,
    liquidation,
    maintenance_margin,
    unrealised_pnl,
)
from snapshots.errors import TierdriftError
from snapshots.model import Tier, TierTable, Unit

LEVERAGE = (125, 100, 50, 20, 10, 5, 4, 3, 2, 1)
TOP_CAP = 1e13


def make_table(
    rows: list[tuple[float, float, float]],
    unit: Unit = Unit.QUOTE,
    top_cap: float = TOP_CAP,
    symbol: str = "TEST",
) -> TierTable:
    """A table from (floor, r, A) rows: caps are the next floor, the top cap `top_cap`."""
    tiers = []
    for i, (floor, rate, amount) in enumerate(rows):
        cap = rows[i + 1][0] if i + 1 < len(rows) else top_cap
        tiers.append(Tier(i + 1, floor, cap, rate, amount, LEVERAGE[min(i, len(LEVERAGE) - 1)]))
    source = "binance-coinm" if unit is Unit.BASE else "binance-usdm"
    return TierTable(source, symbol, unit, tuple(tiers))


def derived(floors: list[float], rates: list[float]) -> list[tuple[float, float, float]]:
    """(floor, r, A) rows with A from the recurrence A_1 = 0, A_n = A_{n-1} + floor_n·(r_n − r_{n-1})."""
    rows = [(floors[0], rates[0], 0.0)]
    for floor, rate in zip(floors[1:], rates[1:], strict=True):
        prev = rows[-1]
        rows.append((floor, rate, prev[2] + floor * (rate - prev[1])))
    return rows


# Domain doc §3: the tables of the era of Binance's cross example.
BTC = make_table(
    [
        (0, 0.004, 0),
        (50e3, 0.005, 50),
        (250e3, 0.01, 1_300),
        (1e6, 0.025, 16_300),
        (5e6, 0.05, 141_300),
        (20e6, 0.10, 1_141_300),
        (50e6, 0.125, 2_391_300),
        (100e6, 0.15, 4_891_300),
        (200e6, 0.25, 24_891_300),
        (300e6, 0.50, 99_891_300),
    ],
    symbol="BTCUSDT",
)
ETH = make_table(
    [
        (0, 0.005, 0),
        (10e3, 0.0065, 15),
        (100e3, 0.01, 365),
        (500e3, 0.02, 5_365),
        (1e6, 0.05, 35_365),
        (2e6, 0.10, 135_365),
        (5e6, 0.125, 260_365),
        (10e6, 0.15, 510_365),
        (20e6, 0.25, 2_510_365),
    ],
    symbol="ETHUSDT",
)
# A coin-denominated table (COIN-M style, floors in BTC) with A from the recurrence.
BTCUSD = make_table(derived([0, 5, 10, 20], [0.004, 0.005, 0.01, 0.025]), unit=Unit.BASE, symbol="BTCUSD")


def risk(spec: PositionSpec, table: TierTable = BTC, **kw: object) -> RiskFigures:
    kw.setdefault("mark", None)
    kw.setdefault("adr", None)
    return liquidation(spec, table, **kw)  # type: ignore[arg-type]


def long_at_67k(notional: float) -> PositionSpec:
    return PositionSpec("long", 67_000, notional / 67_000, margin=6_700)


# --- published and corrected examples -----------------------------------------------------------------


WB = 1_535_443.01
BTC_POS = PositionSpec("long", 32_481.98, 109.488, margin_mode="cross")
ETH_POS = PositionSpec("long", 1_456.84, 3_683.979, margin_mode="cross")
BTC_MARK, ETH_MARK = 31_967.27, 1_335.18


def test_binance_cross_example_inputs_match_the_published_figures() -> None:
    assert maintenance_margin(BTC_POS, BTC, BTC_MARK) == pytest.approx(71_200.81144, abs=1e-5)
    assert maintenance_margin(ETH_POS, ETH, ETH_MARK) == pytest.approx(356_512.50812, abs=1e-5)
    assert round(unrealised_pnl(BTC_POS, BTC_MARK), 2) == -56_354.57
    assert round(unrealised_pnl(ETH_POS, ETH_MARK), 2) == -448_192.89


@pytest.mark.parametrize(
    ("spec", "table", "mark", "other", "expected", "rate", "amount"),
    [
        (BTC_POS, BTC, BTC_MARK, (ETH_POS, ETH_MARK, ETH), 26_316.89, 0.025, 16_300),
        (ETH_POS, ETH, ETH_MARK, (BTC_POS, BTC_MARK, BTC), 1_153.26, 0.10, 135_365),
    ],
    ids=["BTCUSDT", "ETHUSDT"],
)
def test_binance_published_cross_example_to_the_cent(
    spec: PositionSpec,
    table: TierTable,
    mark: float,
    other: tuple[PositionSpec, float, TierTable],
    expected: float,
    rate: float,
    amount: float,
) -> None:
    account = cross_account(WB, [other])
    fig = risk(spec, table, mark=mark, cross=account)
    assert fig.liquidation_price is not None
    assert round(fig.liquidation_price, 2) == expected
    assert (fig.maintenance_margin_rate, fig.maintenance_amount) == (rate, amount)
    assert fig.liquidated_at_mark is False


@pytest.mark.parametrize(
    ("notional", "expected", "tier", "below_entry", "digits"),
    [(40_000, 56_001.51, 1, "16.4%", 1), (500_000, 66_593.94, 3, "0.61%", 2)],
)
def test_brief_corrected_example(notional: float, expected: float, tier: int, below_entry: str, digits: int) -> None:
    fig = risk(long_at_67k(notional))
    assert fig.liquidation_price is not None
    assert round(fig.liquidation_price, 2) == expected
    assert fig.tier is not None and fig.tier.tier == tier
    assert f"{1 - fig.liquidation_price / 67_000:.{digits}%}" == below_entry
    assert fig.reference == "entry" and fig.reference_price == 67_000


# --- hand-computed inverse cases ----------------------------------------------------------------------


def inverse(side: str, contracts: float, margin: float, entry: float = 50_000) -> PositionSpec:
    return PositionSpec(side, entry, contracts, margin=margin, inverse=True, contract_size=100)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "expected", "tier"),
    [
        # 100 contracts × 100 USD = 10,000 USD = 0.2 BTC at 50,000, margin 0.02 BTC, tier 1 (r = 0.4%).
        (inverse("long", 100, 0.02), 10_000 * 1.004 / (0.02 + 0.2), 1),  # 45,636.36
        (inverse("short", 100, 0.02), 10_000 * 0.996 / (0.2 - 0.02), 1),  # 55,333.33
        # 2,400 contracts = 4.8 BTC at entry (tier 1), but 5.26 BTC at LP: tier 2 (r = 0.5%, A = 0.005).
        (inverse("long", 2_400, 0.48), 240_000 * 1.005 / (0.48 + 0.005 + 4.8), 2),  # 45,638.60
        # 3,000 contracts = 6 BTC at entry (tier 2), but 4.82 BTC at LP: tier 1.
        (inverse("short", 3_000, 1.2), 300_000 * 0.996 / (6 - 1.2), 1),  # 62,250
    ],
)
def test_inverse_against_hand_computed_values(spec: PositionSpec, expected: float, tier: int) -> None:
    fig = risk(spec, BTCUSD)
    assert fig.liquidation_price == pytest.approx(expected, rel=1e-12)
    assert fig.tier is not None and fig.tier.tier == tier


def test_inverse_short_whose_margin_covers_the_coin_notional_cannot_be_liquidated() -> None:
    fig = risk(inverse("short", 100, 0.25), BTCUSD, mark=60_000, adr=1_000)  # 0.2 BTC ≤ M + A
    assert fig.liquidation_price is None and fig.tier is None
    assert fig.reasons["liquidation_price"] == NEVER
    assert (fig.liquidated_at_mark, fig.violation) == (False, False)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"side": "sideways"}, "unknown side"),
        ({"margin_mode": "portfolio"}, "unknown margin mode"),
        ({"entry_price": 0.0}, "entry price must be > 0"),
        ({"entry_price": -1.0}, "entry price must be > 0"),
        ({"entry_price": math.nan}, "entry price must be a finite number"),
        ({"entry_price": math.inf}, "entry price must be a finite number"),
        ({"size": 0.0}, "size must be > 0"),
        ({"size": math.nan}, "size must be a finite number"),
        ({"margin": 0.0}, "isolated margin must be > 0"),
        ({"margin": -5.0}, "isolated margin must be > 0"),
        ({"margin": -math.inf}, "isolated margin must be a finite number"),
        ({"margin_mode": "cross", "margin": -1.0}, "margin must be ≥ 0"),
        ({"margin_mode": "cross", "inverse": True, "contract_size": 100.0}, "cross margin is supported"),
        ({"inverse": True, "contract_size": 0.0}, "contract size must be > 0"),
        ({"contract_size": 100.0}, "contract size applies to inverse"),
    ],
)
def test_invalid_positions_are_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"side": "long", "entry_price": 100.0, "size": 1.0, "margin": 10.0}
    with pytest.raises(PositionError, match=message) as info:
        PositionSpec(**{**base, **kwargs})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, TierdriftError)
    assert "\n" not in str(info.value)


def test_cross_position_with_zero_margin_is_valid() -> None:
    assert PositionSpec("short", 100, 1, margin_mode="cross").margin == 0


ISO = PositionSpec("long", 100, 1, margin=10)
CROSS = PositionSpec("long", 100, 1, margin_mode="cross")


@pytest.mark.parametrize(
    ("spec", "table", "kwargs", "message"),
    [
        (ISO, BTC, {"mark": 0.0}, "mark price must be > 0"),
        (ISO, BTC, {"mark": math.nan}, "mark price must be a finite number"),
        (ISO, BTC, {"adr": -1.0}, "ADR must be > 0"),
        (ISO, BTC, {"adr": math.inf}, "ADR must be a finite number"),
        (ISO, BTC, {"threshold_adr": 0.0}, "ADR threshold must be > 0"),
        (CROSS, BTC, {}, "needs its CrossAccount"),
        (ISO, BTC, {"cross": CrossAccount(1_000)}, "takes no CrossAccount"),
        (ISO, BTCUSD, {}, "linear position needs a table in quote units"),
        (inverse("long", 1, 0.1), BTC, {}, "inverse position needs a table in base units"),
        (ISO, make_table([(0, 1.0, 0)]), {}, "unusable maintenance rate"),
    ],
)
def test_invalid_inputs_to_liquidation_are_refused(
    spec: PositionSpec, table: TierTable, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(PositionError, match=message):
        risk(spec, table, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wallet_balance": -1.0}, "wallet balance must be ≥ 0"),
        ({"wallet_balance": 1.0, "other_maintenance": -1.0}, "TMM1"),
        ({"wallet_balance": 1.0, "other_unrealised_pnl": math.nan}, "UPNL1"),
    ],
)
def test_invalid_cross_accounts_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(PositionError, match=message):
        CrossAccount(**kwargs)


def test_cross_account_sums_only_cross_positions() -> None:
    with pytest.raises(PositionError, match="cross"):
        cross_account(1_000, [(ISO, 100.0, BTC)])
    with pytest.raises(PositionError, match="price must be > 0"):
        cross_account(1_000, [(CROSS, 0.0, BTC)])


# --- buffer, violation, unknowns, headroom ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mark", "adr", "threshold", "buffer", "violation"),
    [
        (60_000, 2_000, 2.0, 3_998.494 / 2_000, True),  # 1.999 ADR: just inside the 2-ADR rule
        (60_000, 1_500, 2.0, 3_998.494 / 1_500, False),
        (60_000, 1_500, 3.0, 3_998.494 / 1_500, True),  # the threshold is configurable
        (50_000, 1_000, 2.0, 6_001.506 / 1_000, True),  # mark past LP: liquidated, whatever the buffer
    ],
)
def test_buffer_and_violation(mark: float, adr: float, threshold: float, buffer: float, violation: bool) -> None:
    fig = risk(long_at_67k(40_000), mark=mark, adr=adr, threshold_adr=threshold)
    assert fig.distance_abs == pytest.approx(abs(mark - 56_001.506), abs=1e-3)
    assert fig.distance == pytest.approx(abs(mark - 56_001.506) / mark, abs=1e-7)
    assert fig.buffer_adr == pytest.approx(buffer, abs=1e-6)
    assert fig.violation is violation
    assert fig.liquidated_at_mark is (mark < 56_001.506)
    assert fig.reference == "mark" and dict(fig.reasons) == {}


@pytest.mark.parametrize(
    ("mark", "adr", "expected"),
    [
        (60_000.0, None, {"buffer_adr": NO_ADR, "violation": f"buffer unknown: {NO_ADR}"}),
        (
            None,
            1_000.0,
            {
                "distance": NO_MARK,
                "distance_abs": NO_MARK,
                "buffer_adr": NO_MARK,
                "violation": f"buffer unknown: {NO_MARK}",
                "liquidated_at_mark": NO_MARK,
            },
        ),
        (
            None,
            None,
            {
                "distance": NO_MARK,
                "distance_abs": NO_MARK,
                "buffer_adr": f"{NO_MARK}; {NO_ADR}",
                "violation": f"buffer unknown: {NO_MARK}; {NO_ADR}",
                "liquidated_at_mark": NO_MARK,
            },
        ),
    ],
)
def test_every_unknown_has_a_reason(mark: float | None, adr: float | None, expected: dict[str, str]) -> None:
    fig = risk(long_at_67k(40_000), mark=mark, adr=adr)
    assert dict(fig.reasons) == expected
    assert none_fields(fig) == set(expected)
    assert fig.liquidation_price is not None


def test_margin_equal_to_the_notional_is_not_an_lp_of_rounding_error() -> None:
    # 297 × (1/99) rounds to 3.0000000000000004: the raw root would be an "LP" of 1.5e-18.
    assert risk(PositionSpec("long", 1 / 99, 297, margin=3)).liquidation_price is None
    assert risk(PositionSpec("long", 1 / 99, 297, margin=2.999)).liquidation_price == pytest.approx(
        0.001 / (297 * 0.996)
    )


def test_unliquidatable_long_explains_its_missing_numbers() -> None:
    fig = risk(PositionSpec("long", 100, 1, margin=100), mark=90, adr=5)  # fully collateralised
    assert fig.liquidation_price is None
    assert {k: v for k, v in fig.reasons.items() if v == NEVER}.keys() == {
        "liquidation_price",
        "tier",
        "maintenance_margin_rate",
        "maintenance_amount",
        "distance",
        "distance_abs",
        "buffer_adr",
    }
    assert (fig.liquidated_at_mark, fig.violation) == (False, False)


@pytest.mark.parametrize(
    ("notional", "headroom", "headroom_lp", "reference"),
    [
        # 50,000 at 67,000 with 6,700 margin: tier 2 at entry, but the LP's notional is back in tier 1.
        (40_000, 10_000, 43_300 * 67_000 / (50_000 * 0.996), None),  # 58,255.02
        (500_000, 500_000, 977_000 * 67_000 / (1_000_000 * 0.975), None),  # 67,137.44: above entry
        # Measured at a 60,000 mark: Q' = 50,000/60,000, still entered at 67,000.
        (40_000, 50_000 - 40_000 * 60_000 / 67_000, (5 / 6 * 67_000 - 6_700) / (5 / 6 * 0.996), 60_000.0),
    ],
)
def test_headroom_to_the_next_tier(
    notional: float, headroom: float, headroom_lp: float, reference: float | None
) -> None:
    fig = risk(long_at_67k(notional), mark=reference)
    assert fig.headroom_notional == pytest.approx(headroom, rel=1e-12)
    assert fig.headroom_liquidation_price == pytest.approx(headroom_lp, rel=1e-12)


def test_no_headroom_in_the_top_tier_and_notional_beyond_the_last_cap_uses_the_top_tier() -> None:
    table = make_table(derived([0, 10_000], [0.01, 0.02]), top_cap=100_000)
    fig = risk(PositionSpec("short", 100, 5_000, margin=50_000), table)  # 500,000 > top cap 100,000
    assert fig.current_tier.tier == 2 and fig.tier is not None and fig.tier.tier == 2
    assert fig.liquidation_price == pytest.approx((500_000 + 50_000 + 100) / (5_000 * 1.02))
    assert fig.headroom_notional is None and fig.headroom_liquidation_price is None
    assert fig.reasons["headroom_notional"] == fig.reasons["headroom_liquidation_price"] == TOP_TIER


def test_maintenance_margin_is_taken_at_the_reference_price() -> None:
    at_entry = risk(long_at_67k(40_000))
    at_mark = risk(long_at_67k(40_000), mark=100_000)  # 59,701 notional: tier 2
    assert at_entry.maintenance_margin == pytest.approx(40_000 * 0.004)
    assert at_mark.current_tier.tier == 2
    assert at_mark.maintenance_margin == pytest.approx(40_000 / 67_000 * 100_000 * 0.005 - 50)
    assert at_mark.liquidation_price == pytest.approx(at_entry.liquidation_price)


# --- tier walk edge cases -----------------------------------------------------------------------------


def test_zero_width_tiers_are_skipped() -> None:
    plain = make_table(derived([0, 50_000, 250_000], [0.004, 0.005, 0.01]))
    empty = make_table(
        [(0, 0.004, 0), (50_000, 0.0045, 25), (50_000, 0.005, 50), (250_000, 0.01, 1_300)],
    )
    for margin, tier in ((6_700, 3), (15_000, 1)):  # with 15,000 the walk steps over the empty tier
        spec = PositionSpec("long", 67_000, 60_000 / 67_000, margin=margin)
        a, b = risk(spec, plain), risk(spec, empty)
        assert a.liquidation_price == b.liquidation_price
        assert b.tier is not None and b.tier.tier == tier
        assert b.current_tier.tier == 3
        assert b.headroom_notional == a.headroom_notional == 190_000


def test_an_empty_tiers_numbers_are_never_used() -> None:
    # The empty tier's A = 0 breaks the recurrence (1,000 expected); were it solved, its root 98,000/0.98
    # = 100,000 would sit on its cap and send the walk back up.
    table = make_table([(0, 0.01, 0), (100_000, 0.02, 0), (100_000, 0.02, 1_000)])
    fig = risk(PositionSpec("long", 110_000, 1, margin=12_000), table)
    assert fig.liquidation_price == pytest.approx(98_000 / 0.99, rel=1e-12)
    assert fig.tier is not None and fig.tier.tier == 1 and not fig.at_tier_boundary


# Tier 2's A breaks the recurrence (1,000 expected): maintenance margin drops by 1,000 at 100,000.
GAP_UP = make_table([(0, 0.01, 0), (100_000, 0.02, 2_000)])
# Tier 2's A breaks the recurrence the other way: maintenance margin jumps up by 1,000 at 100,000.
GAP_DOWN = make_table([(0, 0.01, 0), (100_000, 0.02, 0)])


@pytest.mark.parametrize(
    ("spec", "table", "tier"),
    [
        # Tier 2 root 97,500/0.98 < 100k, tier 1 root 99,500/0.99 ≥ 100k: at 100,000 the balance is
        # 500 > MM 0, at 99,999 it is 499 < MM 999.99.
        (PositionSpec("long", 110_000, 1, margin=10_500), GAP_UP, 1),
        # At 100,000 the balance 1,500 < MM 2,000; at 99,999 it is 1,501 > MM 999.99.
        (PositionSpec("short", 90_000, 1, margin=11_500), GAP_DOWN, 2),
    ],
)
def test_no_self_consistent_tier_liquidates_at_the_boundary(spec: PositionSpec, table: TierTable, tier: int) -> None:
    fig = risk(spec, table)
    assert fig.liquidation_price == 100_000
    assert fig.at_tier_boundary
    assert fig.tier is not None and fig.tier.tier == tier


@pytest.mark.parametrize(
    ("mark", "expected", "at_mark"),
    [
        (120_000, 98_500 / 0.98, False),  # safe in tier 2: tier 2's root is met first
        (99_800, 98_500 / 0.99, False),  # safe in tier 1, just below the jump: tier 1's root
        (100_200, 98_500 / 0.98, True),  # between the jump and tier 2's root: below maintenance now
    ],
)
def test_two_self_consistent_tiers_give_the_first_met_from_the_mark(
    mark: float, expected: float, at_mark: bool
) -> None:
    # GAP_DOWN, long 1 at 110,000 with 11,500: tier 1's root 99,494.95 and tier 2's root 100,510.20
    # both lie in their own tier; the balance is safe on (99,494.95, 100,000) and above 100,510.20.
    fig = risk(PositionSpec("long", 110_000, 1, margin=11_500), GAP_DOWN, mark=mark)
    assert fig.liquidation_price == pytest.approx(expected, rel=1e-12)
    assert fig.liquidated_at_mark is at_mark
    assert not fig.at_tier_boundary


def test_cross_short_with_negative_equity_is_liquidated_at_every_price() -> None:
    spec = PositionSpec("short", 100, 1, margin_mode="cross")
    fig = risk(spec, mark=100, adr=5, cross=CrossAccount(0, 500, -100))  # equity −600 < −Q·EP
    assert fig.liquidation_price is None and fig.reasons["liquidation_price"] == ALWAYS
    assert (fig.liquidated_at_mark, fig.violation) == (True, True)


# --- properties ---------------------------------------------------------------------------------------


@st.composite
def tables(draw: st.DrawFn, unit: Unit, scale: float) -> TierTable:
    """A well-formed table whose floors sit around `scale`, with some empty tiers and A by recurrence."""
    n = draw(st.integers(1, 7))
    floors = [0.0]
    for _ in range(n - 1):
        empty = draw(st.integers(0, 9)) == 0
        floors.append(floors[-1] + (0.0 if empty else scale * draw(st.floats(0.02, 1))))
    rates = [draw(st.floats(0.001, 0.05))]
    for _ in floors[1:]:
        rates.append(min(0.9, rates[-1] + draw(st.floats(0, 0.1))))
    top_cap = draw(st.sampled_from([TOP_CAP, floors[-1] + scale * draw(st.floats(0.02, 1))]))
    return make_table(derived(floors, rates), unit=unit, top_cap=top_cap)


@st.composite
def positions(draw: st.DrawFn, inverse: bool, cross: bool = False) -> tuple[PositionSpec, TierTable]:
    side: Side = draw(st.sampled_from(("long", "short")))
    entry = draw(st.floats(0.01, 1e6))
    n0 = draw(st.floats(1, 1e7))  # notional at entry, in the table's unit
    table = draw(tables(Unit.BASE if inverse else Unit.QUOTE, n0))
    margin = n0 * draw(st.floats(0.001, 3))
    if inverse:
        cs = draw(st.sampled_from([1.0, 10.0, 100.0]))
        spec = PositionSpec(side, entry, n0 * entry / cs, margin=margin, inverse=True, contract_size=cs)
    elif cross:
        spec = PositionSpec(side, entry, n0 / entry, margin_mode="cross")
    else:
        spec = PositionSpec(side, entry, n0 / entry, margin=margin)
    return spec, table


marks = st.one_of(st.none(), st.floats(0.3, 3))
accounts = st.tuples(st.floats(0, 3), st.floats(0, 1), st.floats(-1, 1))


def equity_of(spec: PositionSpec, cross: CrossAccount | None) -> float:
    return spec.margin if cross is None else cross.equity


def gap_at(spec: PositionSpec, equity: float, price: float, tier: Tier) -> tuple[float, float]:
    """(margin balance − maintenance margin, scale) at `price` in `tier`, written from the doc's conditions."""
    s = 1 if spec.side == "long" else -1
    r, a = tier.maintenance_margin_rate, tier.maintenance_amount
    if spec.inverse:  # §2, in coin: M + s·C·CS·(1/EP − 1/P) = C·CS·r/P − A
        face = spec.size * spec.contract_size
        diff = equity + s * face * (1 / spec.entry_price - 1 / price) - (face * r / price - a)
        return diff, max(abs(equity), face / spec.entry_price, face / price, a)
    q = spec.size  # §2/§3: M (or WB − TMM1 + UPNL1) + s·Q·(P − EP) = Q·P·r − A
    diff = equity + s * q * (price - spec.entry_price) - (q * price * r - a)
    return diff, max(abs(equity), q * spec.entry_price, q * price, a)


def table_notional(spec: PositionSpec, price: float) -> float:
    return spec.size * spec.contract_size / price if spec.inverse else spec.size * price


def none_fields(fig: RiskFigures) -> set[str]:
    return {f.name for f in fields(fig) if getattr(fig, f.name) is None}


def check_solution(spec: PositionSpec, table: TierTable, fig: RiskFigures, cross: CrossAccount | None) -> None:
    assert set(fig.reasons) == none_fields(fig)  # every None is explained, and nothing else is
    lp = fig.liquidation_price
    if lp is None:
        assert fig.tier is None and "liquidation_price" in fig.reasons
        return
    assert lp > 0 and math.isfinite(lp)
    tier = fig.tier
    assert tier is not None and tier in table.tiers and tier.floor < tier.cap
    # (1) at LP the margin balance equals the maintenance margin of the tier used.
    diff, scale = gap_at(spec, equity_of(spec, cross), lp, tier)
    assert abs(diff) <= 1e-9 * scale
    # (2) the tier used holds the notional at LP (the top tier also holds anything beyond its cap).
    n = table_notional(spec, lp)
    assert n >= tier.floor * (1 - 1e-9)
    assert tier is table.tiers[-1] or n <= tier.cap * (1 + 1e-9)


SETTINGS = settings(max_examples=250, deadline=None)


@SETTINGS
@given(positions(inverse=False), marks)
def test_linear_isolated_solution_balances_in_its_tier(case: tuple[PositionSpec, TierTable], m: float | None) -> None:
    spec, table = case
    check_solution(spec, table, risk(spec, table, mark=None if m is None else m * spec.entry_price), None)


@SETTINGS
@given(positions(inverse=True), marks)
def test_inverse_solution_balances_in_its_tier(case: tuple[PositionSpec, TierTable], m: float | None) -> None:
    spec, table = case
    check_solution(spec, table, risk(spec, table, mark=None if m is None else m * spec.entry_price), None)


@SETTINGS
@given(positions(inverse=False, cross=True), marks, accounts)
def test_cross_solution_balances_in_its_tier(
    case: tuple[PositionSpec, TierTable], m: float | None, acc: tuple[float, float, float]
) -> None:
    spec, table = case
    n0 = spec.size * spec.entry_price
    cross = CrossAccount(acc[0] * n0, acc[1] * n0, acc[2] * n0)
    fig = risk(spec, table, mark=None if m is None else m * spec.entry_price, cross=cross)
    check_solution(spec, table, fig, cross)
    if fig.liquidation_price is None:  # (4) with A_1 = 0: f(0) decides, see the module docstring
        if spec.side == "long":
            assert cross.equity >= n0 * (1 - 1e-12) and fig.liquidated_at_mark is False
        else:
            assert cross.equity + n0 <= 1e-9 * n0 and fig.liquidated_at_mark is True


@SETTINGS
@given(st.one_of(positions(inverse=False), positions(inverse=True)))
def test_long_below_entry_below_short_when_margin_exceeds_maintenance(case: tuple[PositionSpec, TierTable]) -> None:
    # (3) Balance − maintenance at entry is M − MM(EP) for both sides; when it is positive, the root lies
    # on each side's adverse side of the entry.
    spec, table = case
    assume(spec.margin > 1.000001 * maintenance_margin(spec, table, spec.entry_price))
    long = risk(replace(spec, side="long"), table).liquidation_price
    short = risk(replace(spec, side="short"), table).liquidation_price
    assert long is None or long < spec.entry_price
    assert short is None or short > spec.entry_price
    if spec.inverse:
        assert long is not None  # an inverse long's coin loss is unbounded as P → 0


@SETTINGS
@given(positions(inverse=True))
def test_inverse_is_the_linear_opposite_side_in_reciprocal_price(case: tuple[PositionSpec, TierTable]) -> None:
    # With x = 1/P, the coin condition M + s·K·(1/EP − x) = K·r·x − A is the linear condition of the
    # opposite side with Q = K and entry 1/EP, and the coin notional K·x is that linear notional: so
    # LP_inverse(s) = 1 / LP_linear(−s), and "no LP" maps to "no LP".
    spec, table = case
    face = spec.size * spec.contract_size
    assume(abs(spec.margin - face / spec.entry_price) > 1e-6 * spec.margin)  # else α is rounding error
    mirror = PositionSpec("short" if spec.side == "long" else "long", 1 / spec.entry_price, face, margin=spec.margin)
    inv = risk(spec, table).liquidation_price
    lin = risk(mirror, replace(table, unit=Unit.QUOTE)).liquidation_price
    assert (inv is None) == (lin is None)
    if inv is not None and lin is not None:
        assert inv == pytest.approx(1 / lin, rel=1e-9)


@SETTINGS
@given(st.one_of(positions(inverse=False), positions(inverse=True)))
def test_no_liquidation_price_exactly_when_the_margin_covers_the_notional(
    case: tuple[PositionSpec, TierTable],
) -> None:
    # (4) linear long: LP ≤ 0 ⟺ M ≥ Q·EP; inverse short: no LP ⟺ M ≥ C·CS/EP (A_1 = 0, §2). The other
    # two always have one.
    spec, table = case
    cover = table_notional(spec, spec.entry_price)
    assume(abs(spec.margin - cover) > 1e-9 * cover)  # within 1e-12 both answers are right
    fig = risk(spec, table)
    if (spec.side == "long") != spec.inverse:
        assert (fig.liquidation_price is None) == (spec.margin > cover)
    else:
        assert fig.liquidation_price is not None


@SETTINGS
@given(st.one_of(positions(inverse=False), positions(inverse=True)), st.floats(1.001, 10))
def test_more_margin_moves_long_down_and_short_up(case: tuple[PositionSpec, TierTable], k: float) -> None:
    spec, table = case
    before = risk(spec, table).liquidation_price
    after = risk(replace(spec, margin=spec.margin * k), table).liquidation_price
    if before is None:
        assert after is None
    elif after is not None and spec.side == "long":
        assert after <= before * (1 + 1e-12)
    elif after is not None:
        assert after >= before * (1 - 1e-12)
    else:
        assert (spec.side == "long") != spec.inverse  # only a linear long or an inverse short loses its LP


@SETTINGS
@given(positions(inverse=False), st.floats(0.3, 3))
def test_liquidated_at_mark_agrees_with_the_price(case: tuple[PositionSpec, TierTable], m: float) -> None:
    spec, table = case
    mark = m * spec.entry_price
    fig = risk(spec, table, mark=mark)
    lp = fig.liquidation_price
    assume(lp is not None and abs(mark - lp) > 1e-9 * mark)
    assert lp is not None
    assert fig.liquidated_at_mark is (mark < lp if spec.side == "long" else mark > lp)
