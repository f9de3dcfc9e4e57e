"""What the dashboard shows of positions: open ones by risk, one with its history, and the what-if.

Figures come from the same engine as `positions list` and `liq` (`monitor.risk`, `monitor.service.shapes`);
only which tier tables are loaded differs (`assess_now`: the few a page needs, not whole snapshots).
Reads only; an unknown position raises `NotFound`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from monitor.config.settings import Settings
from monitor.risk.figures import Assessment, Key, assess
from monitor.risk.impacts import freshness, load_market, wallets
from monitor.risk.liquidation import RiskFigures
from monitor.risk.positions import PositionInput, priced_with
from monitor.service import shapes
from monitor.store.models import Impact, Position
from monitor.web.charts import Figure, HistoryPoint, history_chart
from snapshots.errors import NotFound
from snapshots.history import table_at, tables_at
from snapshots.model import TierTable
from snapshots.reader import as_utc


@dataclass(frozen=True, slots=True)
class PositionRow:
    position: Position
    assessment: Assessment | None

    @property
    def figures(self) -> RiskFigures | None:
        return self.assessment.figures if self.assessment else None

    @property
    def violation(self) -> bool:
        return bool(self.figures and self.figures.violation)


def open_positions(
    session: Session, settings: Settings, now: datetime, *, source: str | None = None, symbol: str | None = None
) -> list[PositionRow]:
    """Open positions with their current figures, violations first, then the smallest buffer first."""
    stmt = select(Position).where(col(Position.closed_at).is_(None)).order_by(col(Position.id))
    if source:
        stmt = stmt.where(Position.source == source)
    rows = list(session.exec(stmt))
    wanted = [p for p in rows if symbol is None or p.symbol == symbol]
    if not wanted:
        return []
    # Cross positions are priced with their whole account, as `positions list` prices them.
    found = assess_now(session, rows if symbol is None else _with_accounts(session, wanted), settings, now)
    out = [PositionRow(p, found.get(p.id or 0)) for p in wanted]
    return sorted(out, key=_risk_order)


#: Up to this many symbols, a page loads their tables one by one; beyond, each source's whole snapshot at once.
FEW_SYMBOLS = 20


def assess_now(
    session: Session, positions: Sequence[Position], settings: Settings, now: datetime
) -> dict[int, Assessment]:
    """`monitor.risk.impacts.assess_now`, loading only the tables the positions need: a page showing three
    positions should not rebuild a 700-symbol snapshot (that is what made the position page cost 200 ms)."""
    keys = {(p.source, p.symbol) for p in positions}
    tables: dict[Key, TierTable] = {}
    conn = session.connection()
    if len(keys) <= FEW_SYMBOLS:
        for source, symbol in keys:
            try:
                tables[(source, symbol)] = table_at(conn, source, symbol, now)[0]
            except NotFound:
                continue  # delisted: `assess` gives the position its reason
    else:
        for source in {s for s, _ in keys}:
            tables.update({(source, sym): t for sym, t in tables_at(conn, source, now).items()})
    market = load_market(session, keys, now, freshness(settings))
    return assess(positions, tables, market, wallets(session), threshold_adr=settings.violation_threshold_adr)


def _with_accounts(session: Session, positions: Sequence[Position]) -> list[Position]:
    seen: dict[int | None, Position] = {}
    for p in positions:
        for q in priced_with(session, p):
            seen.setdefault(q.id, q)
    return list(seen.values())


def _risk_order(row: PositionRow) -> tuple[int, float, int]:
    buffer = row.figures.buffer_adr if row.figures else None
    return (0 if row.violation else 1, math.inf if buffer is None else buffer, row.position.id or 0)


# -- position ---------------------------------------------------------------------------------------


@dataclass
class PositionView:
    position: Position
    assessment: Assessment | None
    impacts: list[dict[str, Any]]
    chart: Figure | None
    threshold_adr: float


def position_view(session: Session, settings: Settings, position_id: int, now: datetime) -> PositionView:
    """A position, its current figures (closed: none), its impact records oldest first and their chart."""
    position = session.get(Position, position_id)
    if position is None:
        raise NotFound(f"no position with id {position_id}")
    found = assess_now(session, priced_with(session, position), settings, now) if position.closed_at is None else {}
    assessment = found.get(position_id)
    stmt = select(Impact).where(Impact.position_id == position_id).order_by(col(Impact.detected_at), col(Impact.id))
    impacts = [_impact(r) for r in session.exec(stmt)]
    points = _history(position, impacts, assessment, now)
    chart = history_chart(points) if impacts else None
    return PositionView(position, assessment, impacts, chart, settings.violation_threshold_adr)


def _impact(r: Impact) -> dict[str, Any]:
    return {
        **{k: getattr(r, k) for k in type(r).model_fields},
        "detected_at": as_utc(r.detected_at),
        "changes": json.loads(r.changes),
        "reasons": json.loads(r.reasons) if r.reasons else {},
    }


def _history(
    position: Position, impacts: Sequence[Mapping[str, Any]], now_figures: Assessment | None, now: datetime
) -> list[HistoryPoint]:
    """Liquidation price and buffer from before the first tier change, after each one, and now."""
    if not impacts:
        return []
    first = impacts[0]
    opened = as_utc(position.opened_at) or first["detected_at"]
    start = min(opened, first["detected_at"])
    points = [HistoryPoint(start, first["old_liquidation_price"], first["old_buffer_adr"], "before the first change")]
    for r in impacts:
        label = f"tier {r['old_tier']} → {r['new_tier']}" if r["crosses_tier"] else "table changed"
        points.append(HistoryPoint(r["detected_at"], r["new_liquidation_price"], r["new_buffer_adr"], label))
    f = now_figures.figures if now_figures else None
    if f is not None:
        points.append(HistoryPoint(now, f.liquidation_price, f.buffer_adr, "now"))
    return points


# -- what-if ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WhatIfInput:
    """The `liq` calculator's inputs, as the what-if form sends them (parsed; not yet checked)."""

    side: str
    entry: float
    margin: float
    qty: float | None = None
    notional: float | None = None
    contracts: float | None = None
    contract_size: float | None = None
    mark: float | None = None
    adr: float | None = None
    at: datetime | None = None


def what_if(
    session: Session, settings: Settings, source: str, symbol: str, w: WhatIfInput, now: datetime
) -> dict[str, Any]:
    """`tierdrift liq --json` for the page, computed by the same function (`monitor.service.shapes.liq`):
    an isolated position's figures under the table in force at `w.at` (default now). Raises the CLI's
    one-line errors (`PositionError`, `NotFound`) for an input it cannot price."""
    item = PositionInput(
        source, symbol, w.side, w.entry, w.qty, w.notional, w.contracts, w.contract_size, "isolated", w.margin
    )
    data = shapes.liq(session.connection(), settings, item, w.at or now, mark=w.mark, adr=w.adr)
    # The calculator's reasons name its options; on the page they are the form's fields.
    fields = {"(--mark)": "(fill in the mark price)", "(--adr)": "(fill in the ADR)"}
    for key, why in data["reasons"].items():
        for option, field_name in fields.items():
            why = why.replace(option, field_name)
        data["reasons"][key] = why
    return data
