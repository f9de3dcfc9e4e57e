"""Liquidation price and risk figures of one position (domain doc §2–5): pure functions, no I/O.

Units follow the tier table (`TierTable.unit`, domain doc §1). For a linear position the notional is
N = Q·P in quote, and margin, maintenance amount and maintenance margin are in quote. For an inverse
position (COIN-M, Bybit inverse) the notional is N = C·CS/P in **coin**, because those tables' floors and
caps are coin quantities, and margin, maintenance amount and maintenance margin are in coin. Pairing a
position with a table of the other unit raises `PositionError`.

How the price is solved. With E the equity that stands behind the position (isolated: M; Binance cross:
WB − TMM1 + UPNL1, §3), margin balance minus maintenance margin in tier k is a line in N:

    f_k(N) = α + A_k + (σ − r_k)·N      linear:  α = E − s·Q·EP,     σ = s
                                        inverse: α = E + s·C·CS/EP,  σ = −s

Its root N_k = (α + A_k)/(r_k − σ) gives LP = N_k/Q (linear) or LP = C·CS/N_k (inverse). Written out,
this is each formula of §2–3; for inverse it comes from the coin balance M + s·C·CS·(1/EP − 1/P) =
C·CS·r/P − A. Since 0 ≤ r < 1, r − σ is never 0, so the cross denominator Q·r − s·Q is never 0 either.

Tier at LP (§2). Start in the tier that holds the notional at the mark (or at entry without a mark), solve,
and move one tier toward the root until a tier holds its own root. Zero-width tiers (floor = cap) are
skipped, the lowest tier also holds anything below its floor and the top tier anything above its cap.
When A follows the recurrence of §1, maintenance margin is continuous and f is monotone in N, so exactly one
tier holds its root and the walk never turns back. When a table's A breaks the recurrence (snapshots keep
the exchange's number with a warning), the walk can turn back. Then no tier holds its root, and the
balance crosses the maintenance margin *at the boundary itself*: LP is the boundary price, the tier is the
one on the liquidating side of it, and `at_tier_boundary` is set. If two tiers hold their roots, the walk
returns the first one met moving adversely from the mark, which is where the position would be liquidated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from snapshots.errors import TierdriftError
from snapshots.model import Tier, TierTable, Unit

Side = Literal["long", "short"]
MarginMode = Literal["isolated", "cross"]

NO_MARK = "no mark price: market data unavailable"
NO_ADR = "no ADR: market data unavailable"
NEVER = "the position cannot be liquidated by price: its margin covers any adverse move"
ALWAYS = "the margin balance is below the maintenance margin at every price: the position is liquidated now"
TOP_TIER = "the position is in the top tier: there is no next tier"


class PositionError(TierdriftError, ValueError):
    """A position, account, table or market input that cannot be priced. `str(err)` is one line."""


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise PositionError(f"{name} must be a finite number, got {value!r}")


def _positive(name: str, value: float) -> None:
    _finite(name, value)
    if value <= 0:
        raise PositionError(f"{name} must be > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    _finite(name, value)
    if value < 0:
        raise PositionError(f"{name} must be ≥ 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class PositionSpec:
    """One open position; construction validates it, so holding one means holding a priceable position.

    `size` is the base quantity Q (linear) or the number of contracts C (inverse). `contract_size` is the
    face value CS of one inverse contract in quote (e.g. 100 USD); it must stay 1 for linear. `margin` is
    the isolated margin M, in quote (linear) or coin (inverse), and must be > 0. A cross position is
    backed by its `CrossAccount` instead, so its `margin` is not used and may be 0. Cross is supported for
    linear (Binance USDⓈ-M) positions only (§3).
    """

    side: Side
    entry_price: float
    size: float
    margin: float = 0.0
    margin_mode: MarginMode = "isolated"
    inverse: bool = False
    contract_size: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in ("long", "short"):
            raise PositionError(f"unknown side {self.side!r}: expected 'long' or 'short'")
        if self.margin_mode not in ("isolated", "cross"):
            raise PositionError(f"unknown margin mode {self.margin_mode!r}: expected 'isolated' or 'cross'")
        _positive("entry price", self.entry_price)
        _positive("size", self.size)
        _positive("contract size", self.contract_size)
        if not self.inverse and self.contract_size != 1:
            raise PositionError("contract size applies to inverse contracts only; a linear size is in base units")
        if self.margin_mode == "isolated":
            _positive("isolated margin", self.margin)
        elif self.inverse:
            raise PositionError("cross margin is supported for linear (USDⓈ-M) positions only, not inverse")
        else:
            _non_negative("margin", self.margin)

    @property
    def sign(self) -> int:
        """s = +1 for a long, −1 for a short."""
        return 1 if self.side == "long" else -1


@dataclass(frozen=True, slots=True)
class CrossAccount:
    """A Binance USDⓈ-M cross account as seen from one of its positions (domain doc §3), in quote.

    `wallet_balance` is WB; `other_maintenance` is TMM1 and `other_unrealised_pnl` is UPNL1, the sums over
    the account's *other* cross positions at their marks (build them with `cross_account`).
    """

    wallet_balance: float
    other_maintenance: float = 0.0
    other_unrealised_pnl: float = 0.0

    def __post_init__(self) -> None:
        _non_negative("wallet balance", self.wallet_balance)
        _non_negative("other positions' maintenance margin (TMM1)", self.other_maintenance)
        _finite("other positions' unrealised PnL (UPNL1)", self.other_unrealised_pnl)

    @property
    def equity(self) -> float:
        """WB − TMM1 + UPNL1: what stands behind the position before its own PnL."""
        return self.wallet_balance - self.other_maintenance + self.other_unrealised_pnl


@dataclass(frozen=True, slots=True)
class RiskFigures:
    """Risk figures of one position. Every field that is None has its reason in `reasons[field]`.

    `tier`, `maintenance_margin_rate` and `maintenance_amount` are the tier holding the notional **at the
    liquidation price**: the r and A the formula used. `current_tier`, `notional`, `margin_balance` and
    `maintenance_margin` are taken at `reference_price`: the mark when given, else the entry price
    (`reference` says which). Amounts are in the table's unit: quote for linear, coin for inverse.
    `margin_balance` is the equity behind the position plus its own unrealised PnL (cross: WB − TMM1 +
    UPNL1 + own PnL). `liquidated_at_mark` is True when the margin balance at the mark is already at or
    below the maintenance margin; `distance` and `buffer_adr` then measure how far past the LP the mark is,
    and `violation` is True. `headroom_notional` is the notional the position can add before its
    notional at the reference price reaches the next tier's floor; `headroom_liquidation_price` is its LP
    if scaled to that floor at the same entry price and with the same margin (or cross account).
    """

    liquidation_price: float | None
    tier: Tier | None
    maintenance_margin_rate: float | None
    maintenance_amount: float | None
    at_tier_boundary: bool
    reference: Literal["mark", "entry"]
    reference_price: float
    current_tier: Tier
    notional: float
    margin_balance: float
    maintenance_margin: float
    liquidated_at_mark: bool | None
    distance: float | None
    distance_abs: float | None
    buffer_adr: float | None
    violation: bool | None
    headroom_notional: float | None
    headroom_liquidation_price: float | None
    reasons: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def notional(spec: PositionSpec, price: float) -> float:
    """Notional in the tier table's unit: Q·P in quote (linear) or C·CS/P in coin (inverse, §1)."""
    if spec.inverse:
        return spec.size * spec.contract_size / price
    return spec.size * price


def unrealised_pnl(spec: PositionSpec, price: float) -> float:
    """s·Q·(P − EP) in quote (linear), or s·C·CS·(1/EP − 1/P) in coin (inverse) (§2)."""
    if spec.inverse:
        return spec.sign * spec.size * spec.contract_size * (1 / spec.entry_price - 1 / price)
    return spec.sign * spec.size * (price - spec.entry_price)


def maintenance_margin(spec: PositionSpec, table: TierTable, price: float) -> float:
    """N·r − A with the tier that holds the notional N at `price` (§1), in the table's unit."""
    _positive("price", price)
    tiers = _live_tiers(spec, table)
    n = notional(spec, price)
    tier = tiers[_index(tiers, n)]
    return n * tier.maintenance_margin_rate - tier.maintenance_amount


def cross_account(wallet_balance: float, others: Iterable[tuple[PositionSpec, float, TierTable]]) -> CrossAccount:
    """The `CrossAccount` of one position: WB, and TMM1/UPNL1 summed over (spec, mark, table) of the others.

    Each other position must be a cross position; its maintenance margin and PnL are taken at its mark.
    """
    tmm = upnl = 0.0
    for spec, mark, table in others:
        if spec.margin_mode != "cross":
            raise PositionError("TMM1 and UPNL1 sum the account's other *cross* positions only")
        tmm += maintenance_margin(spec, table, mark)
        upnl += unrealised_pnl(spec, mark)
    return CrossAccount(wallet_balance, tmm, upnl)


def liquidation(
    spec: PositionSpec,
    table: TierTable,
    *,
    mark: float | None,
    adr: float | None,
    threshold_adr: float = 2.0,
    cross: CrossAccount | None = None,
) -> RiskFigures:
    """Liquidation price, buffer and tier headroom of `spec` under `table` (domain doc §2–5).

    `mark` is the current mark price P and `adr` the ADR(N) of §5, both None when market data is missing.
    `threshold_adr` is the margin-risk rule: a buffer below it is a violation. `cross` is required for a
    cross position and refused for an isolated one. Raises `PositionError` for an invalid input.
    """
    tiers = _live_tiers(spec, table)
    if mark is not None:
        _positive("mark price", mark)
    if adr is not None:
        _positive("ADR", adr)
    _positive("ADR threshold", threshold_adr)
    equity = _equity(spec, cross)
    ref = spec.entry_price if mark is None else mark
    n_ref = notional(spec, ref)
    i_ref = _index(tiers, n_ref)
    current = tiers[i_ref]
    solved = _solve(spec, tiers, equity, n_ref)
    reasons: dict[str, str] = {}
    if solved.price is None:
        for key in ("liquidation_price", "tier", "maintenance_margin_rate", "maintenance_amount"):
            reasons[key] = solved.reason
    balance = equity + unrealised_pnl(spec, ref)
    mm = n_ref * current.maintenance_margin_rate - current.maintenance_amount
    at_mark = _liquidated_at_mark(solved, mark, balance, mm, reasons)
    distance, distance_abs, buffer = _distances(solved, mark, adr, reasons)
    violation = _violation(solved, at_mark, buffer, threshold_adr, reasons)
    head, head_lp = _headroom(spec, tiers, i_ref, n_ref, equity, reasons)
    return RiskFigures(
        liquidation_price=solved.price,
        tier=solved.tier,
        maintenance_margin_rate=None if solved.tier is None else solved.tier.maintenance_margin_rate,
        maintenance_amount=None if solved.tier is None else solved.tier.maintenance_amount,
        at_tier_boundary=solved.boundary,
        reference="entry" if mark is None else "mark",
        reference_price=ref,
        current_tier=current,
        notional=n_ref,
        margin_balance=balance,
        maintenance_margin=mm,
        liquidated_at_mark=at_mark,
        distance=distance,
        distance_abs=distance_abs,
        buffer_adr=buffer,
        violation=violation,
        headroom_notional=head,
        headroom_liquidation_price=head_lp,
        reasons=MappingProxyType(reasons),
    )


# --- the solver -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Solved:
    price: float | None
    tier: Tier | None
    boundary: bool = False
    always: bool = False  # below maintenance at every price
    reason: str = ""


def _live_tiers(spec: PositionSpec, table: TierTable) -> tuple[Tier, ...]:
    """The tiers that can hold notional, after checking that the table fits the position."""
    want = Unit.BASE if spec.inverse else Unit.QUOTE
    if table.unit != want:
        kind = "an inverse" if spec.inverse else "a linear"
        raise PositionError(f"{table.symbol}: {kind} position needs a table in {want.value} units")
    # Zero-width tiers hold no notional at all (Binance DEXEUSDT, 2025-11-20; see snapshots.validate).
    tiers = tuple(t for t in table.tiers if t.cap > t.floor)
    if not tiers:
        raise PositionError(f"{table.symbol}: the tier table has no non-empty tier")
    for t in tiers:
        if not 0 <= t.maintenance_margin_rate < 1 or not math.isfinite(t.maintenance_amount):
            raise PositionError(f"{table.symbol}: tier {t.tier} has an unusable maintenance rate or amount")
    return tiers


def _index(tiers: tuple[Tier, ...], n: float) -> int:
    """Index of the tier whose [floor, cap) holds `n`; the top tier beyond the last cap."""
    for i, t in enumerate(tiers):
        if n < t.cap:
            return i
    return len(tiers) - 1


def _equity(spec: PositionSpec, cross: CrossAccount | None) -> float:
    if spec.margin_mode == "cross":
        if cross is None:
            raise PositionError("a cross-margin position needs its CrossAccount (WB, TMM1, UPNL1)")
        return cross.equity
    if cross is not None:
        raise PositionError("an isolated position takes no CrossAccount")
    return spec.margin


def _price(spec: PositionSpec, n: float) -> float:
    """The price at which the notional is `n` (inverse of `notional`)."""
    if spec.inverse:
        return spec.size * spec.contract_size / n
    return n / spec.size


def _solve(spec: PositionSpec, tiers: tuple[Tier, ...], equity: float, start: float) -> _Solved:
    """Walk the tiers from the one holding `start` to the one holding its own root (module docstring)."""
    s = spec.sign
    if spec.inverse:
        alpha, sigma = equity + s * spec.size * spec.contract_size / spec.entry_price, -s
    else:
        alpha, sigma = equity - s * spec.size * spec.entry_price, s
    idx, came = _index(tiers, start), 0
    for _ in tiers:
        t = tiers[idx]
        n = (alpha + t.maintenance_amount) / (t.maintenance_margin_rate - sigma)
        step = -1 if n < t.floor and idx > 0 else 1 if n >= t.cap and idx < len(tiers) - 1 else 0
        if step == 0:
            # M ≈ Q·EP (or C·CS/EP) leaves only rounding error in α: a root this small is 0, not an LP
            # at a millionth of a millionth of the entry (or, inverse, a million million times it).
            tiny = 1e-12 * (abs(equity) + notional(spec, spec.entry_price))
            return _accept(spec, t, n if n > tiny else 0.0, sigma)
        if step == -came:
            # The walk turned back: maintenance margin jumps at this boundary (A breaks the recurrence)
            # and the balance crosses it there. σ > 0 is safe above the root: liquidation happens just
            # below the boundary, in the lower tier; σ < 0 liquidates from the boundary up.
            lower, upper = tiers[min(idx, idx + step)], tiers[max(idx, idx + step)]
            return _Solved(_price(spec, lower.cap), lower if sigma > 0 else upper, boundary=True)
        came, idx = step, idx + step
    raise AssertionError("unreachable: a walk that never turns back ends within len(tiers) steps")


def _accept(spec: PositionSpec, tier: Tier, n: float, sigma: int) -> _Solved:
    if n > 0:
        return _Solved(_price(spec, n), tier)
    # Only the lowest tier keeps a root n ≤ 0: no positive price solves the balance condition. If f
    # rises with N (σ > 0: linear long, inverse short) every price is safe (§2: "LP ≤ 0 ... none"; inverse
    # short with C·CS/EP ≤ M + A); otherwise every price is below maintenance.
    if sigma > 0:
        return _Solved(None, None, reason=NEVER)
    return _Solved(None, None, always=True, reason=ALWAYS)


# --- figures around the price -----------------------------------------------------------------------


def _liquidated_at_mark(
    solved: _Solved, mark: float | None, balance: float, mm: float, reasons: dict[str, str]
) -> bool | None:
    if solved.always:
        return True
    if solved.price is None:
        return False
    if mark is None:
        reasons["liquidated_at_mark"] = NO_MARK
        return None
    return balance <= mm


def _distances(
    solved: _Solved, mark: float | None, adr: float | None, reasons: dict[str, str]
) -> tuple[float | None, float | None, float | None]:
    """(|P − LP| / P, |P − LP|, |P − LP| / ADR) of §5, with the reasons of any None."""
    lp = solved.price
    if mark is None or lp is None:
        missing = [why for why, gone in ((NO_MARK, mark is None), (solved.reason, lp is None)) if gone]
        reasons["distance"] = reasons["distance_abs"] = "; ".join(missing)
        reasons["buffer_adr"] = "; ".join([*missing, NO_ADR] if adr is None else missing)
        return None, None, None
    gap = abs(mark - lp)
    if adr is None:
        reasons["buffer_adr"] = NO_ADR
        return gap / mark, gap, None
    return gap / mark, gap, gap / adr


def _violation(
    solved: _Solved, at_mark: bool | None, buffer: float | None, threshold: float, reasons: dict[str, str]
) -> bool | None:
    if solved.always or at_mark:
        return True
    if solved.price is None:
        return False
    if buffer is None:
        reasons["violation"] = f"buffer unknown: {reasons['buffer_adr']}"
        return None
    return buffer < threshold


def _headroom(
    spec: PositionSpec,
    tiers: tuple[Tier, ...],
    i_ref: int,
    n_ref: float,
    equity: float,
    reasons: dict[str, str],
) -> tuple[float | None, float | None]:
    """Notional left before the next tier's floor, and the LP if scaled to it (§5)."""
    if i_ref == len(tiers) - 1:
        reasons.update(headroom_notional=TOP_TIER, headroom_liquidation_price=TOP_TIER)
        return None, None
    floor = tiers[i_ref + 1].floor
    scaled = replace(spec, size=spec.size * floor / n_ref)
    solved = _solve(scaled, tiers, equity, floor)
    if solved.price is None:
        reasons["headroom_liquidation_price"] = f"scaled to the next tier's floor, {solved.reason}"
    return floor - n_ref, solved.price
