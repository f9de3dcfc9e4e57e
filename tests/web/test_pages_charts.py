"""The charts' figures: a step line reads, at every notional, the tier the table applies there."""

from __future__ import annotations

import bisect
import json

from hypothesis import given
from hypothesis import strategies as st

from monitor.web.charts import HistoryPoint, PositionMark, data_block, history_chart, tier_chart
from snapshots.model import Tier, TierTable, Unit
from tests.conftest import ts


@st.composite
def tables(draw: st.DrawFn) -> TierTable:
    """A well-formed table: increasing caps from 0, rates rising, leverage falling."""
    caps = sorted(draw(st.sets(st.integers(1, 10**9), min_size=1, max_size=12)))
    rates = sorted(draw(st.lists(st.floats(0.001, 0.5), min_size=len(caps), max_size=len(caps))))
    tiers, floor = [], 0.0
    for i, (cap, rate) in enumerate(zip(caps, rates, strict=True)):
        tiers.append(Tier(i + 1, floor, float(cap), rate, 0.0, float(max(1, 125 - 10 * i))))
        floor = float(cap)
    return TierTable("binance-usdm", "BTC/USDT:USDT", Unit.QUOTE, tuple(tiers))


def _step_value(trace: dict[str, list[float]], x: float) -> float:
    """What a `line.shape = "hv"` line shows at `x`: the y of the last point at or before it."""
    i = bisect.bisect_right(trace["x"], x) - 1
    return trace["y"][max(i, 0)]


@given(table=tables(), where=st.floats(0, 1.0))
def test_step_lines_read_the_tier_in_force_at_every_notional(table: TierTable, where: float) -> None:
    figure = tier_chart(table, None, unit="USDT")
    rate, lev = figure["data"]
    assert rate["line"]["shape"] == lev["line"]["shape"] == "hv"
    notional = where * table.tiers[-1].cap * 0.999999
    start = rate["x"][0]
    if notional >= start:
        tier = table.tier_for(notional)
        assert _step_value(rate, notional) == tier.maintenance_margin_rate * 100
        assert _step_value(lev, notional) == tier.max_leverage
    assert rate["x"] == sorted(rate["x"]) and rate["x"][-1] == table.tiers[-1].cap


@given(old=tables(), new=tables())
def test_old_is_drawn_dashed_under_new_and_positions_on_the_new_rate(old: TierTable, new: TierTable) -> None:
    marks = [PositionMark(7, "long", new.tiers[0].cap / 2)]
    figure = tier_chart(new, old, marks, unit="USDT", new_label="v2", old_label="v1")
    names = [t["name"] for t in figure["data"]]
    assert names == ["maint. rate, v1", "max leverage, v1", "maint. rate, v2", "max leverage, v2", "positions"]
    assert [t["line"]["dash"] for t in figure["data"][:4]] == ["dash", "dash", "solid", "solid"]
    assert figure["data"][4]["y"] == [new.tiers[0].maintenance_margin_rate * 100]
    assert figure["data"][4]["x"][0] >= figure["data"][0]["x"][0]  # the axis starts below every position
    assert json.loads(str(data_block(figure))) == figure


def test_history_is_a_step_line_of_price_and_buffer() -> None:
    points = [HistoryPoint(ts("2026-01-01"), 50_000.0, 3.0, "before"), HistoryPoint(ts("2026-02-01"), None, None, "x")]
    lp, buffer = history_chart(points)["data"]
    assert lp["x"] == ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"] and lp["y"] == [50_000.0, None]
    assert buffer["yaxis"] == "y2" and buffer["y"] == [3.0, None] and lp["line"]["shape"] == "hv"
