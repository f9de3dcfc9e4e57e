"""The inputs of a what-if (`liq`) taken as a journal entry would take them: the market at a time, and the
cross account of a cross position.

    whatif_market(session, source, symbol, at, settings, now=..., mark=..., adr=..., fetch=...) -> dict
    whatif_cross(session, spec, source, at, settings, now=..., wallet_balance=...) -> CrossAccount | None
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitor.config.settings import Settings
from monitor.journal.figures import market_for
from monitor.journal.history import CandleFetch
from monitor.risk.figures import ACCOUNT_LEVEL, CROSS_COMPUTED, spec_of
from monitor.risk.impacts import freshness, load_market
from monitor.risk.liquidation import CrossAccount, PositionError, PositionSpec, cross_account
from monitor.risk.positions import open_positions
from monitor.store.models import Account
from snapshots.history import tables_at


def check_mode(mode: str, margin: float | None, source: str) -> None:
    """A what-if's margin fits its mode: isolated needs a margin, cross has none of its own."""
    if mode not in ("isolated", "cross"):
        raise PositionError(f"mode must be isolated or cross, got {mode!r}")
    if mode == "isolated" and margin is None:
        raise PositionError("an isolated position needs --margin")
    if mode == "cross" and margin is not None:
        raise PositionError("a cross position has no margin of its own: give --wallet-balance (or `account set`)")
    if mode == "cross" and source not in CROSS_COMPUTED:
        raise PositionError(f"cross margin on {source}: {ACCOUNT_LEVEL}")


def whatif_market(
    session: Session,
    source: str,
    symbol: str,
    at: datetime,
    settings: Settings,
    *,
    now: datetime,
    mark: float | None = None,
    adr: float | None = None,
    fetch: CandleFetch | None = None,
) -> dict[str, Any]:
    """`mark_price`, `adr`, `adr_days`, `adr_source` and `unknown` as an entry at `at` would take them;
    a given `mark` or `adr` wins (its source then reads "input")."""
    market, days = market_for(session, {(source, symbol)}, at, settings, now=now, fetch=fetch)
    m = market[(source, symbol)]
    unknown = {k: v for k, v in m.reasons.items() if not (k == "mark" and mark) and not (k == "adr" and adr)}
    return {
        "mark_price": mark if mark is not None else m.mark,
        "adr": adr if adr is not None else m.adr,
        "adr_days": None if adr is not None else days[(source, symbol)],
        "adr_source": "input" if adr is not None else ("market" if m.adr is not None else None),
        "unknown": unknown,
    }


def whatif_cross(
    session: Session,
    spec: PositionSpec,
    source: str,
    at: datetime,
    settings: Settings,
    *,
    now: datetime,
    wallet_balance: float | None = None,
) -> CrossAccount | None:
    """The cross account behind a what-if cross position (None for isolated): the wallet balance (given, or
    the stored one) and the account's open cross positions at their cached marks, under the tables at `at`."""
    if spec.margin_mode != "cross":
        return None
    if wallet_balance is None:
        account = session.get(Account, source)
        if account is None:
            raise PositionError(f"no cross wallet balance for {source}: give --wallet-balance or run `account set`")
        wallet_balance = account.wallet_balance
    others = [p for p in open_positions(session, source) if p.mode == "cross"]
    tables = tables_at(session.connection(), source, at) if others else {}
    market = load_market(session, {(p.source, p.symbol) for p in others}, now, freshness(settings))
    priced = []
    for p in others:
        mark = market[(p.source, p.symbol)].mark
        if mark is None or p.symbol not in tables:
            what = "mark price" if mark is None else "tier table"
            raise PositionError(
                f"{what} of cross position #{p.id} ({p.symbol}) unknown, so the account's margin is: "
                "run `tierdrift market refresh`"
            )
        priced.append((spec_of(p), mark, tables[p.symbol]))
    return cross_account(wallet_balance, priced)
