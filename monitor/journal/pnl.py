"""The money of a trade, pure: realised PnL of a (partial) close, the average entry after adding size, and the
isolated margin that goes with a size change. Amounts in quote for linear contracts, coin for inverse.

    realised(spec, qty, price)         s·q·(P − EP)              linear
                                       s·q·CS·(1/EP − 1/P)       inverse (q in contracts)
    average_entry(spec, qty, price)    (Q·EP + q·P)/(Q + q)      linear: the size-weighted mean
                                       (C + q)/(C/EP + q/P)      inverse: the contract-weighted harmonic mean
    margin_after_add(spec, qty, price) M + (notional of q at P)/L, at the position's leverage L at entry
    margin_after_reduce(spec, qty)     M·(Q − q)/Q: the closed part's share of the margin is released

These are the exchanges' rules for one-way isolated positions (Binance and Bybit alike): a partial close
realises the price move of the closed part and releases its share of the isolated margin; adding to a
position moves its entry price to the weighted average and adds margin at the leverage it runs at.
"""

from __future__ import annotations

from dataclasses import replace

from monitor.risk.liquidation import PositionError, PositionSpec, notional, unrealised_pnl


def realised(spec: PositionSpec, qty: float, price: float) -> float:
    """The PnL realised by closing `qty` of `spec` at `price`."""
    _check(spec, qty, price)
    if qty > spec.size * (1 + 1e-12):
        raise PositionError(f"cannot close {qty:g} of a position of {spec.size:g}")
    return unrealised_pnl(replace(spec, size=qty, margin=spec.margin or 1.0), price)


def average_entry(spec: PositionSpec, qty: float, price: float) -> float:
    """The entry price after adding `qty` at `price`."""
    _check(spec, qty, price)
    if spec.inverse:
        return (spec.size + qty) / (spec.size / spec.entry_price + qty / price)
    return (spec.size * spec.entry_price + qty * price) / (spec.size + qty)


def margin_after_add(spec: PositionSpec, qty: float, price: float) -> float:
    """The isolated margin after adding `qty` at `price`, at the leverage the position had."""
    _check(spec, qty, price)
    leverage = notional(spec, spec.entry_price) / spec.margin
    added = replace(spec, size=qty, entry_price=price)
    return spec.margin + notional(added, price) / leverage


def margin_after_reduce(spec: PositionSpec, qty: float) -> float:
    """The isolated margin left after closing `qty` of it."""
    if not 0 < qty < spec.size:
        raise PositionError(f"a partial close takes more than 0 and less than the size {spec.size:g}, not {qty:g}")
    return spec.margin * (spec.size - qty) / spec.size


def _check(spec: PositionSpec, qty: float, price: float) -> None:
    if not qty > 0 or qty == float("inf"):
        raise PositionError(f"size must be a positive number, got {qty!r}")
    if not price > 0 or price == float("inf"):
        raise PositionError(f"price must be a positive number, got {price!r}")
