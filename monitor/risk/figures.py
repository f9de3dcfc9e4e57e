"""Risk figures of logged positions: the bridge between the positions log and the pure engine.

`assess` prices many positions at once. Cross positions of one Binance USDⓈ-M account need the other
positions' maintenance margin and PnL (TMM1, UPNL1); these are summed once per account and each
position's own share is subtracted, so 10,000 positions cost O(n), not O(n²). Each table is prepared
once (`columns.Ladder`) and every position priced on the column path, whose figures equal the engine's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from monitor.risk import columns
from monitor.risk.columns import Ladder
from monitor.risk.liquidation import (
    CrossAccount,
    PositionError,
    PositionSpec,
    RiskFigures,
    maintenance_margin,
    unrealised_pnl,
)
from snapshots.model import TierTable, is_inverse

Key = tuple[str, str]  # (source, symbol)

#: Sources whose cross margin has a per-position formula (domain doc §3).
CROSS_COMPUTED = ("binance-usdm",)
#: Sources where cross margin is account-level: positions are kept, their liquidation price is not computed.
CROSS_ACCOUNT_LEVEL = ("bybit-linear", "bybit-inverse")

ACCOUNT_LEVEL = "account-level (Bybit Unified Trading Account cross margin), not computed"


class LoggedPosition(Protocol):
    """What the figures read of one logged position (`monitor.store.models.Position` has it): this module
    stays pure, with no database behind its types."""

    @property
    def id(self) -> int | None: ...
    @property
    def source(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def entry_price(self) -> float: ...
    @property
    def size(self) -> float: ...
    @property
    def contract_size(self) -> float: ...
    @property
    def mode(self) -> str: ...
    @property
    def margin(self) -> float | None: ...
    @property
    def adr_override(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Market:
    """Market data for one symbol; a None value has its reason in `reasons`."""

    mark: float | None = None
    adr: float | None = None
    mark_at: datetime | None = None
    adr_at: datetime | None = None
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assessment:
    """One position's figures, or the reason there are none, with the inputs that produced them."""

    position_id: int
    figures: RiskFigures | None
    not_computed: str | None
    mark: float | None
    adr: float | None
    adr_source: str | None  # "override" | "market" | None
    reasons: Mapping[str, str]


def spec_of(p: LoggedPosition) -> PositionSpec:
    return PositionSpec(
        side=p.side,  # type: ignore[arg-type]
        entry_price=p.entry_price,
        size=p.size,
        margin=p.margin or 0.0,
        margin_mode=p.mode,  # type: ignore[arg-type]
        inverse=is_inverse(p.source),
        contract_size=p.contract_size,
    )


class _Ladders(dict[Key, Ladder | None]):
    """The `Ladder` of each table, prepared on first use (None: no table for that key)."""

    def __init__(self, tables: Mapping[Key, TierTable]) -> None:
        super().__init__()
        self.tables = tables

    def __missing__(self, key: Key) -> Ladder | None:
        table = self.tables.get(key)
        lad = self[key] = None if table is None else columns.ladder(table)
        return lad


def _cross_parts(
    positions: Iterable[LoggedPosition], ladders: _Ladders, market: Mapping[Key, Market]
) -> tuple[dict[str, tuple[float, float]], dict[int, tuple[float, float]], dict[str, str]]:
    """Per source: (ΣMM, ΣPnL) of its cross positions; per position its own share; and blocked sources."""
    totals: dict[str, tuple[float, float]] = {}
    own: dict[int, tuple[float, float]] = {}
    blocked: dict[str, str] = {}
    for p in positions:
        if p.mode != "cross" or p.source in CROSS_ACCOUNT_LEVEL:
            continue
        key = (p.source, p.symbol)
        mark = market.get(key, Market()).mark
        lad = ladders[key]
        if mark is None or lad is None:
            what = "mark price" if mark is None else "tier table"
            blocked.setdefault(p.source, f"{what} of cross position #{p.id} ({p.symbol}) unknown")
            continue
        spec = spec_of(p)
        fast = columns.maintenance_margin(spec, lad, mark)
        share = (maintenance_margin(spec, lad.table, mark) if fast is None else fast, unrealised_pnl(spec, mark))
        assert p.id is not None
        own[p.id] = share
        mm, pnl = totals.get(p.source, (0.0, 0.0))
        totals[p.source] = (mm + share[0], pnl + share[1])
    return totals, own, blocked


def assess(
    positions: Sequence[LoggedPosition],
    tables: Mapping[Key, TierTable],
    market: Mapping[Key, Market],
    wallets: Mapping[str, float],
    *,
    threshold_adr: float,
) -> dict[int, Assessment]:
    """Figures for every position under `tables`; never raises for a position that cannot be priced."""
    return assess_under(positions, [tables], market, wallets, threshold_adr=threshold_adr)[0]


def assess_under(
    positions: Sequence[LoggedPosition],
    table_sets: Sequence[Mapping[Key, TierTable]],
    market: Mapping[Key, Market],
    wallets: Mapping[str, float],
    *,
    threshold_adr: float,
) -> list[dict[int, Assessment]]:
    """`assess` under each of `table_sets` (an impact's old and new tables): what does not depend on the
    tables (the spec, the market data, the ADR) is worked out once per position, not once per set."""
    no_market = Market(reasons={"mark": "no market data fetched yet"})
    inputs = []
    for p in positions:
        assert p.id is not None
        m = market.get((p.source, p.symbol), no_market)
        adr: float | None = p.adr_override or m.adr
        adr_source = "override" if p.adr_override else ("market" if m.adr else None)
        reasons = {k: v for k, v in m.reasons.items() if not (k == "adr" and p.adr_override)}
        spec: PositionSpec | PositionError
        try:
            spec = spec_of(p)
        except PositionError as exc:
            spec = exc
        inputs.append((p, p.id, m, adr, adr_source, reasons, spec))
    out: list[dict[int, Assessment]] = []
    for tables in table_sets:
        ladders = _Ladders(tables)
        totals, own, blocked = _cross_parts(positions, ladders, market)
        found: dict[int, Assessment] = {}
        for p, pid, m, adr, adr_source, base, spec in inputs:
            cross, why = _cross_for(p, totals, own, blocked, wallets)
            lad = ladders[(p.source, p.symbol)]
            figures = None
            if lad is None:
                why = f"no tier table for {p.symbol} on {p.source} (delisted?)"
            elif why is None and isinstance(spec, PositionError):
                why = str(spec)
            elif why is None and isinstance(spec, PositionSpec):
                try:
                    figures = columns.figures(spec, lad, mark=m.mark, adr=adr, threshold_adr=threshold_adr, cross=cross)
                except PositionError as exc:
                    why = str(exc)
            reasons = dict(base)
            if figures is not None:
                reasons.update(figures.reasons)
            found[pid] = Assessment(pid, figures, why, m.mark, adr, adr_source, reasons)
        out.append(found)
    return out


def _cross_for(
    p: LoggedPosition,
    totals: Mapping[str, tuple[float, float]],
    own: Mapping[int, tuple[float, float]],
    blocked: Mapping[str, str],
    wallets: Mapping[str, float],
) -> tuple[CrossAccount | None, str | None]:
    """The cross account behind `p` (None for isolated), or why it cannot be priced."""
    if p.mode != "cross":
        return None, None
    if p.source in CROSS_ACCOUNT_LEVEL:
        return None, ACCOUNT_LEVEL
    if p.source in blocked:
        return None, blocked[p.source]
    if p.source not in wallets:
        return None, f"no cross wallet balance for {p.source}: run `tierdrift account set`"
    assert p.id is not None
    mm, pnl = totals.get(p.source, (0.0, 0.0))
    mine = own.get(p.id, (0.0, 0.0))
    # TMM1 and UPNL1 are the account's sums less this position's own share (domain doc §3).
    return CrossAccount(wallets[p.source], max(mm - mine[0], 0.0), pnl - mine[1]), None
