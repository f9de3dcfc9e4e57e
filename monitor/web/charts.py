"""The dashboard's charts as plotly figures: plain dicts of `data` and `layout`, drawn in the browser.

A page embeds a figure with `data_block` inside `<script type="application/json">` and the static
`charts.js` hands it to plotly.js (served from the installed `plotly` package). Nothing here imports
plotly: a figure is only JSON. Outside text (symbols, notes) never goes into a figure; its labels are
our own words and numbers, so plotly's own markup in labels cannot be fed anything from outside.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from snapshots.model import Tier, TierTable
from snapshots.timefmt import iso

Figure = dict[str, Any]

NEW, OLD, LEVERAGE, OLD_LEVERAGE, MARK = "#1f5fa8", "#c0392b", "#2e8b57", "#d68910", "#111111"


@dataclass(frozen=True, slots=True)
class PositionMark:
    """A logged position drawn on a tier chart at its notional (in the table's unit)."""

    position_id: int
    side: str
    notional: float


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """A position's liquidation price and buffer from `at` on (None: not known then)."""

    at: datetime
    liquidation_price: float | None
    buffer_adr: float | None
    label: str


def data_block(figure: Figure) -> Markup:
    """`figure` as JSON safe inside a `<script type="application/json">` element.

    The browser ends a script element at the first `</`, and `<!--` changes how it is parsed, so every
    `<`, `>` and `&` is written as a JSON escape: the text can hold no markup, and JSON.parse gives the
    same strings back."""
    text = json.dumps(figure, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped for a script element just above; HTML escaping would corrupt it


def _steps(tiers: Sequence[Tier], start: float, value: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    """x and y of a step line (`line.shape = "hv"`): each tier's value from its floor to the next, and the
    last one held to its cap. The lowest floor (0) is drawn from `start`, since a log axis has no 0."""
    xs = [max(t.floor, start) for t in tiers] + [max(tiers[-1].cap, start)]
    ys = [float(getattr(t, value)) * scale for t in tiers]
    return xs, [*ys, ys[-1]]


def _start(tables: Sequence[TierTable], marks: Sequence[PositionMark]) -> float:
    """Where the log axis begins: below the first cap and below every position shown."""
    caps = [t.tiers[0].cap for t in tables if t.tiers and t.tiers[0].cap > 0]
    lowest = min(caps) / 100 if caps else 1.0
    for m in marks:
        if m.notional > 0:
            lowest = min(lowest, m.notional / 2)
    return lowest


def tier_chart(
    new: TierTable,
    old: TierTable | None,
    marks: Sequence[PositionMark] = (),
    *,
    unit: str,
    new_label: str = "new",
    old_label: str = "old",
) -> Figure:
    """Maintenance rate (left axis, %) and max leverage (right axis) against notional, as step lines; `old`
    dashed under `new`, and each position marked at its notional on the rate of `new` there."""
    start = _start([t for t in (new, old) if t is not None], marks)
    data: list[dict[str, Any]] = []
    for table, label, rate_colour, lev_colour, dash in (
        (old, old_label, OLD, OLD_LEVERAGE, "dash"),
        (new, new_label, NEW, LEVERAGE, "solid"),
    ):
        if table is None or not table.tiers:
            continue
        x, y = _steps(table.tiers, start, "maintenance_margin_rate", 100.0)
        data.append(_line(f"maint. rate, {label}", x, y, rate_colour, dash, "y", "%{y:.4g}%"))
        x, y = _steps(table.tiers, start, "max_leverage")
        data.append(_line(f"max leverage, {label}", x, y, lev_colour, dash, "y2", "%{y:g}×"))
    if marks and new.tiers:
        data.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": "positions",
                "x": [m.notional for m in marks],
                "y": [new.tier_for(m.notional).maintenance_margin_rate * 100 for m in marks],
                "text": [f"#{m.position_id} {m.side}" for m in marks],
                "textposition": "top center",
                "marker": {"size": 11, "color": MARK, "symbol": "diamond"},
                "hovertemplate": "%{text}<br>notional %{x:,.6g}<extra></extra>",
            }
        )
    layout = {
        "margin": {"l": 56, "r": 56, "t": 16, "b": 48},
        "xaxis": {"type": "log", "title": {"text": f"notional ({unit}, log scale)"}},
        "yaxis": {"title": {"text": "maintenance rate (%)"}, "rangemode": "tozero"},
        "yaxis2": {
            "title": {"text": "max leverage (×)"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        },
        "legend": {"orientation": "h", "y": -0.22},
        "hovermode": "closest",
    }
    return {"data": data, "layout": layout}


def _line(name: str, x: list[Any], y: list[Any], colour: str, dash: str, axis: str, fmt: str) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": x,
        "y": y,
        "yaxis": axis,
        "line": {"shape": "hv", "color": colour, "dash": dash, "width": 2},
        "hovertemplate": f"{fmt}<br>from %{{x:,.6g}}<extra>{name}</extra>",
    }


def history_chart(points: Sequence[HistoryPoint]) -> Figure:
    """A position's liquidation price (left axis) and buffer in ADR (right axis) over time, as step lines:
    each value holds from its point until the next one."""
    at = [iso(p.at) for p in points]
    labels = [p.label for p in points]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "liquidation price",
            "x": at,
            "y": [p.liquidation_price for p in points],
            "text": labels,
            "line": {"shape": "hv", "color": NEW, "width": 2},
            "hovertemplate": "%{y:,.8g}<br>%{text}<extra>liquidation price</extra>",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "buffer (ADR)",
            "x": at,
            "y": [p.buffer_adr for p in points],
            "text": labels,
            "yaxis": "y2",
            "line": {"shape": "hv", "color": OLD_LEVERAGE, "width": 2, "dash": "dot"},
            "hovertemplate": "%{y:.3g} ADR<br>%{text}<extra>buffer</extra>",
        },
    ]
    layout = {
        "margin": {"l": 64, "r": 56, "t": 16, "b": 48},
        "xaxis": {"type": "date", "title": {"text": "time (UTC)"}},
        "yaxis": {"title": {"text": "liquidation price"}},
        "yaxis2": {"title": {"text": "buffer (ADR)"}, "overlaying": "y", "side": "right", "showgrid": False},
        "legend": {"orientation": "h", "y": -0.22},
        "hovermode": "closest",
    }
    return {"data": data, "layout": layout}
