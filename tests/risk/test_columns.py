"""The column path (`monitor.risk.columns`, `figures.assess`) gives the per-position engine's figures exactly."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.risk import columns
from monitor.risk.columns import PositionRow
from monitor.risk.figures import Market, assess, assess_under
from monitor.risk.liquidation import (
    CrossAccount,
    PositionError,
    PositionSpec,
    liquidation,
    maintenance_margin,
)
from snapshots.model import Tier, TierTable, Unit
from tests.risk.test_liquidation import positions, tables

SETTINGS = settings(max_examples=300, deadline=None)


def outcome(call: Any) -> Any:
    """The value of `call()`, or the type and message of the `PositionError` it raises."""
    try:
        return call()
    except PositionError as exc:
        return ("raised", type(exc), str(exc))


@st.composite
def rough_tables(draw: st.DrawFn, unit: Unit, scale: float) -> TierTable:
    """Tables the validator lets through with a warning: A off the recurrence, empty and unusable tiers."""
    n = draw(st.integers(1, 6))
    floors = [0.0]
    for _ in range(n - 1):
        floors.append(floors[-1] + (0.0 if draw(st.integers(0, 5)) == 0 else scale * draw(st.floats(0.02, 1))))
    top = floors[-1] + scale * draw(st.floats(0.02, 1))
    tiers = []
    for i, floor in enumerate(floors):
        cap = floors[i + 1] if i + 1 < n else draw(st.sampled_from([top, 1e13]))
        rate = draw(st.one_of(st.floats(0.001, 0.9), st.sampled_from([0.0, 1.0])))
        amount = draw(st.floats(-scale * 0.05, scale * 0.2))
        tiers.append(Tier(i + 1, floor, cap, rate, amount, 10.0))
    return TierTable("binance-usdm", "ROUGH", unit, tuple(tiers))


@st.composite
def cases(draw: st.DrawFn) -> tuple[PositionSpec, TierTable, float | None, float | None, CrossAccount | None]:
    inverse = draw(st.booleans())
    cross = not inverse and draw(st.booleans())
    spec, table = draw(positions(inverse=inverse, cross=cross))
    n0 = spec.size * spec.contract_size / spec.entry_price if inverse else spec.size * spec.entry_price
    if draw(st.booleans()):
        table = draw(rough_tables(table.unit, n0))
    if draw(st.integers(0, 9)) == 0:  # a table of the other unit: the engine refuses it
        table = TierTable(table.source, table.symbol, Unit.QUOTE if inverse else Unit.BASE, table.tiers)
    mark = draw(st.one_of(st.none(), st.floats(0.3, 3).map(lambda k: k * spec.entry_price), st.sampled_from([0.0])))
    adr = draw(st.one_of(st.none(), st.floats(1e-6, 0.2).map(lambda k: k * spec.entry_price)))
    account = None
    if cross:
        wb, tmm, upnl = draw(st.tuples(st.floats(0, 3), st.floats(0, 1), st.floats(-1, 1)))
        account = CrossAccount(wb * n0, tmm * n0, upnl * n0)
    return spec, table, mark, adr, account


@SETTINGS
@given(cases(), st.floats(0.5, 4))
def test_column_figures_equal_the_engine_field_for_field(case: Any, threshold: float) -> None:
    spec, table, mark, adr, account = case
    lad = columns.ladder(table)
    engine = outcome(lambda: liquidation(spec, table, mark=mark, adr=adr, threshold_adr=threshold, cross=account))
    column = outcome(lambda: columns.figures(spec, lad, mark=mark, adr=adr, threshold_adr=threshold, cross=account))
    assert column == engine
    if not isinstance(engine, tuple):
        assert dict(column.reasons) == dict(engine.reasons)
        assert list(column.reasons) == list(engine.reasons)  # the order the impact rows' JSON is written in


@SETTINGS
@given(cases())
def test_column_maintenance_margin_is_the_engines_or_defers_to_it(case: Any) -> None:
    spec, table, mark, _, _ = case
    fast = columns.maintenance_margin(spec, columns.ladder(table), mark or spec.entry_price)
    engine = outcome(lambda: maintenance_margin(spec, table, mark or spec.entry_price))
    assert fast is None or fast == engine


def engine_assess(*args: Any, **kw: Any) -> Any:
    """`assess` with every figure taken from the per-position engine (`liquidation`, `maintenance_margin`)."""

    def by_engine(spec: PositionSpec, lad: columns.Ladder, **kw: Any) -> Any:
        return liquidation(spec, lad.table, **kw)

    with (
        patch.object(columns, "figures", by_engine),
        patch.object(columns, "maintenance_margin", lambda *a: None),
    ):
        return outcome(lambda: assess(*args, **kw))


@st.composite
def books(draw: st.DrawFn) -> tuple[list[PositionRow], dict[tuple[str, str], TierTable], float]:
    """Positions on one table (so that the cross sums are over one mark), some cross, some invalid."""
    n0 = draw(st.floats(10, 1e6))
    table = draw(st.one_of(tables(Unit.QUOTE, n0), rough_tables(Unit.QUOTE, n0)))
    rows = []
    for i in range(draw(st.integers(1, 8))):
        entry = draw(st.floats(1, 1e5))
        cross = draw(st.booleans())
        margin = None if cross else draw(st.one_of(st.floats(0.01, 3).map(lambda k: k * n0), st.just(0.0)))
        side = draw(st.sampled_from(["long", "short"]))
        size = n0 * draw(st.floats(0.01, 5)) / entry
        rows.append(PositionRow(i + 1, "binance-usdm", "X", side, entry, size, 1.0,
                                "cross" if cross else "isolated", margin, None))  # fmt: skip
    return rows, {("binance-usdm", "X"): table}, draw(st.floats(0, 3)) * n0


@SETTINGS
@given(books(), st.floats(0.5, 2))
def test_assess_on_rows_equals_the_engine_one_position_at_a_time(book: Any, k: float) -> None:
    rows, tabs, wb = book
    entry = rows[0].entry_price
    market = {("binance-usdm", "X"): Market(entry * k, entry * 0.03)}
    args = (rows, tabs, market, {"binance-usdm": wb})
    got = outcome(lambda: assess(*args, threshold_adr=2.0))
    assert got == engine_assess(*args, threshold_adr=2.0)


@SETTINGS
@given(books(), books())
def test_assess_under_two_table_sets_is_assess_under_each(book: Any, other: Any) -> None:
    rows, old, wb = book
    new = other[1]
    market = {("binance-usdm", "X"): Market(rows[0].entry_price, rows[0].entry_price * 0.03)}
    money = {"binance-usdm": wb}
    both = outcome(lambda: assess_under(rows, [old, new], market, money, threshold_adr=2.0))
    each = outcome(lambda: [assess(rows, t, market, money, threshold_adr=2.0) for t in (old, new)])
    assert both == each
