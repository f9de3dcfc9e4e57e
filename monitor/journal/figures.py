"""A position's journal record at a moment: its figures under the table then in force and the market then.

    record_at(session, position, at, settings, now=..., kind=..., fetch=...) -> PositionRecord   (not added)
    journal_line(record_dict) -> str

The table is the version of the position's symbol in force at `at` (`snapshots.history.table_at`). The
market is the cached current one (`market_data`, as fresh as `positions list` requires) when `at` is
within `mark_max_age_minutes` of now, else the past mark and ADR of `monitor.journal.history`. A cross
position is priced with the account's other open cross positions and the stored wallet balance, as
`positions list` prices it. Whatever cannot be had is None, with its reason in `unknown`.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from monitor.config.settings import Settings
from monitor.journal.history import CandleFetch, market_at
from monitor.journal.records import FIGURES
from monitor.risk.figures import Assessment, Key, Market, assess
from monitor.risk.impacts import freshness, load_market, wallets
from monitor.risk.liquidation import NEVER
from monitor.risk.positions import priced_with
from monitor.store.models import MarketData, Position, PositionRecord
from snapshots.errors import NotFound
from snapshots.history import VersionInfo, table_at, versions
from snapshots.model import TierTable
from snapshots.numbers import money, num, pct
from snapshots.tables import load_tables
from snapshots.timefmt import iso

#: The keys of a record's `unknown`: its figures, and the market inputs ("mark", "adr") behind them.
RECORD_REASONS = frozenset((*FIGURES, "mark", "adr", "table", "price", "pnl"))


@dataclass(slots=True)
class Memo:
    """Lookups shared by many records (a backfill of thousands): each symbol's versions, each version's
    table, each past market, read once."""

    versions: dict[Key, list[VersionInfo]] = field(default_factory=dict)
    tables: dict[int, TierTable] = field(default_factory=dict)
    markets: dict[tuple[Key, datetime], tuple[Market, int | None]] = field(default_factory=dict)
    wallets: dict[str, float] | None = None


def record_at(
    session: Session,
    position: Position,
    at: datetime,
    settings: Settings,
    *,
    now: datetime,
    kind: str = "entry",
    fetch: CandleFetch | None = None,
    memo: Memo | None = None,
) -> PositionRecord:
    """The `kind` record of `position` at `at` (not added to the session; fetched candles are).

    A cross position at a past moment is not priced: the wallet balance and the account's other positions
    of that time are not stored (only the current ones), and guessing them would be a guess."""
    recent = now - at <= timedelta(minutes=settings.mark_max_age_minutes)
    group = priced_with(session, position) if position.closed_at is None and recent else [position]
    tables: dict[Key, TierTable] = {}
    infos: dict[Key, VersionInfo] = {}
    table_reason = None
    for p in group:
        try:
            tables[(p.source, p.symbol)], infos[(p.source, p.symbol)] = _table(session, p.source, p.symbol, at, memo)
        except NotFound as exc:
            if p is position:
                table_reason = str(exc)
    market, days = _markets(session, {(p.source, p.symbol) for p in group}, at, settings, now, fetch, memo)
    assert position.id is not None
    key = (position.source, position.symbol)
    if position.mode == "cross" and not recent:
        m = market[key]
        adr = position.adr_override or m.adr
        why = f"cross margin at {iso(at)}: the wallet balance and the account's other positions then are not stored"
        a = Assessment(position.id, None, why, m.mark, adr, "override" if position.adr_override else None, m.reasons)
    else:
        if memo is None:
            money = wallets(session)
        else:
            money = memo.wallets = memo.wallets if memo.wallets is not None else wallets(session)
        a = assess(group, tables, market, money, threshold_adr=settings.violation_threshold_adr)[position.id]
    info = infos.get(key)
    rec = _record(position, a, kind, at, days.get(key))
    rec.table_version_id = info.id if info else None
    rec.table_valid_from = info.valid_from if info else None
    unknown = json.loads(rec.unknown)
    if table_reason:
        unknown["table"] = table_reason
    rec.unknown = json.dumps(unknown, sort_keys=True)
    return rec


def _table(
    session: Session, source: str, symbol: str, at: datetime, memo: Memo | None
) -> tuple[TierTable, VersionInfo]:
    """`snapshots.history.table_at`, through `memo` when there is one (its NotFound when none is in force)."""
    if memo is None:
        return table_at(session.connection(), source, symbol, at)
    found = memo.versions.get((source, symbol))
    if found is None:
        found = memo.versions[(source, symbol)] = versions(session.connection(), source, symbol)
    i = bisect_right([v.valid_from for v in found], at) - 1
    if i < 0 or (found[i].valid_to is not None and found[i].valid_to <= at):  # type: ignore[operator]
        return table_at(session.connection(), source, symbol, at)  # raises NotFound saying why
    info = found[i]
    if info.id not in memo.tables:
        memo.tables[info.id] = load_tables(session.connection(), [info.id])[info.id]
    return memo.tables[info.id], info


def _markets(
    session: Session,
    keys: set[Key],
    at: datetime,
    settings: Settings,
    now: datetime,
    fetch: CandleFetch | None,
    memo: Memo | None,
) -> tuple[dict[Key, Market], dict[Key, int | None]]:
    if memo is None or now - at <= timedelta(minutes=settings.mark_max_age_minutes):
        return market_for(session, keys, at, settings, now=now, fetch=fetch)
    market: dict[Key, Market] = {}
    days: dict[Key, int | None] = {}
    for k in keys:
        if (k, at) not in memo.markets:
            m, d = market_for(session, {k}, at, settings, now=now, fetch=fetch)
            memo.markets[(k, at)] = (m[k], d[k])
        market[k], days[k] = memo.markets[(k, at)]
    return market, days


def market_for(
    session: Session,
    keys: set[Key],
    at: datetime,
    settings: Settings,
    *,
    now: datetime,
    fetch: CandleFetch | None = None,
) -> tuple[dict[Key, Market], dict[Key, int | None]]:
    """The market of every (source, symbol) of `keys` at `at`, as a record takes it (see the module
    docstring), and the ADR's day count per symbol (None without an ADR)."""
    if now - at <= timedelta(minutes=settings.mark_max_age_minutes):
        market = load_market(session, keys, now, freshness(settings))
        days: dict[Key, int | None] = {}
        for k in keys:
            row = session.get(MarketData, k)
            days[k] = row.adr_days if row is not None and market[k].adr is not None else None
        return market, days
    out: dict[Key, Market] = {}
    days = {}
    for source, symbol in sorted(keys):
        past = market_at(session, source, symbol, at, settings, now=now, fetch=fetch)
        out[(source, symbol)] = Market(past.mark, past.adr, past.mark_at, past.mark_at, dict(past.reasons))
        days[(source, symbol)] = past.adr_days if past.adr is not None else None
    return out, days


def _record(p: Position, a: Assessment, kind: str, at: datetime, adr_days: int | None) -> PositionRecord:
    assert p.id is not None
    f = a.figures
    # Only the reasons of what a record holds (the engine also explains figures the record does not keep).
    unknown = {k: v for k, v in a.reasons.items() if k in RECORD_REASONS}
    if a.not_computed:
        unknown["liquidation_price"] = a.not_computed
    adr_source = a.adr_source
    if adr_source == "override":
        adr_days = None
    return PositionRecord(
        position_id=p.id,
        kind=kind,
        at=at,
        source=p.source,
        symbol=p.symbol,
        size=p.size,
        margin=p.margin,
        notional=f.notional if f else None,
        tier=f.tier.tier if f and f.tier else None,
        maintenance_margin_rate=f.maintenance_margin_rate if f else None,
        maintenance_amount=f.maintenance_amount if f else None,
        liquidation_price=f.liquidation_price if f else None,
        mark_price=a.mark,
        adr=a.adr,
        adr_days=adr_days,
        adr_source=adr_source,
        distance=f.distance if f else None,
        buffer_adr=f.buffer_adr if f else None,
        violation=f.violation if f else None,
        headroom_notional=f.headroom_notional if f else None,
        unknown=json.dumps(unknown, sort_keys=True),
        price=p.entry_price if kind == "entry" else None,  # an exit's price is the trader's, set by the caller
    )


def journal_line(r: dict[str, Any], *, threshold_adr: float) -> str:
    """The journal's risk column in one line: table, tier, rate and amount, LP, mark, ADR, buffer, headroom, flag.

    Prices and amounts read to the cent (`snapshots.numbers.money`), as a journal keeps them. `r` is a
    record dict (`monitor.journal.records.record_dict`) or the same keys from `liq --json`. An
    unknown figure reads "unknown"; `r["unknown"]` says why (printed apart, by the caller).
    """

    def n(key: str) -> str:
        value = r.get(key)
        return "unknown" if value is None else money(value)

    flag = {True: f"VIOLATION (buffer below {threshold_adr:g} ADR)", False: "ok", None: "violation unknown"}
    adr = n("adr")
    if r.get("adr") is not None:
        adr += f" ({r['adr_days']}d)" if r.get("adr_days") else ""
        adr += f" [{r['adr_source']}]" if r.get("adr_source") else ""
    lp = n("liquidation_price")
    why = (r.get("unknown") or {}).get("liquidation_price")
    if r.get("liquidation_price") is None and (why is None or why == NEVER):
        lp = "none"  # the margin covers any adverse move: no price liquidates it
    parts = [
        f"table {r.get('table_valid_from') or 'unknown'}",
        f"tier {r['tier'] if r.get('tier') is not None else 'unknown'}",
        f"MMR {pct(r['maintenance_margin_rate']) if r.get('maintenance_margin_rate') is not None else 'unknown'}",
        f"amount {n('maintenance_amount')}",
        f"LP {lp}",
        f"mark {n('mark_price')}",
        f"ADR {adr}",
        f"distance {pct(r['distance']) if r.get('distance') is not None else 'unknown'}",
        f"buffer {num(r['buffer_adr'], 3) if r.get('buffer_adr') is not None else 'unknown'} ADR",
        f"headroom {n('headroom_notional')}",
        flag[r.get("violation")],
    ]
    return " | ".join(parts)
