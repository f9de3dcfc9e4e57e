"""Commands for positions and their risk: `positions …`, `account set`, `impacts`, and the `liq` calculator.

Their heavy imports (SQLModel, the engine) are loaded inside the commands, so that registering these
commands costs nothing to read-only commands such as `tiers`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
from monitor.cli.journal import journal_for
from snapshots.model import is_inverse
from snapshots.numbers import num, pct
from snapshots.timefmt import iso, utcnow

if TYPE_CHECKING:
    from monitor.journal.records import JournalRecords
    from monitor.risk.figures import Assessment
    from monitor.risk.positions import PositionInput
    from monitor.store.models import Position

positions_app = typer.Typer(help="Log open positions and see their liquidation risk.", no_args_is_help=True)
account_app = typer.Typer(help="Cross-margin account settings.", no_args_is_help=True)

Side = Annotated[str, typer.Option("--side", help="long or short.")]
Entry = Annotated[float, typer.Option("--entry", help="Entry price.")]
Qty = Annotated[float | None, typer.Option("--qty", help="Size in base units (e.g. BTC).")]
Notional = Annotated[float | None, typer.Option("--notional", help="Size as quote notional (e.g. USDT, or USD).")]
Contracts = Annotated[float | None, typer.Option("--contracts", help="Size in contracts (inverse only).")]
ContractSize = Annotated[
    float | None, typer.Option("--contract-size", help="Face value of one inverse contract in USD.")
]
Adr = Annotated[float | None, typer.Option("--adr", help="Average daily range to use instead of the market's.")]


def _figures_json(a: Assessment | None) -> dict[str, Any]:
    f = a.figures if a else None
    return {
        "tier": f.tier.tier if f and f.tier else None,
        "current_tier": f.current_tier.tier if f else None,
        "maintenance_margin_rate": f.maintenance_margin_rate if f else None,
        "maintenance_amount": f.maintenance_amount if f else None,
        "maintenance_margin": f.maintenance_margin if f else None,
        "notional": f.notional if f else None,
        "reference_price": f.reference_price if f else None,
        "liquidation_price": f.liquidation_price if f else None,
        "liquidated_at_mark": f.liquidated_at_mark if f else None,
        "distance": f.distance if f else None,
        "buffer_adr": f.buffer_adr if f else None,
        "violation": f.violation if f else None,
        "headroom_notional": f.headroom_notional if f else None,
        "headroom_liquidation_price": f.headroom_liquidation_price if f else None,
        "not_computed": a.not_computed if a else "not assessed",
        "reasons": dict(a.reasons) if a else {},
    }


def _position_json(p: Position, a: Assessment | None, journal: JournalRecords | None = None) -> dict[str, Any]:
    from monitor.journal.shapes import journal_json

    return {
        "id": p.id,
        "source": p.source,
        "symbol": p.symbol,
        "side": p.side,
        "entry_price": p.entry_price,
        "size": p.size,
        "size_unit": "contracts" if is_inverse(p.source) else "base",
        "size_input": p.size_input,
        "contract_size": p.contract_size,
        "mode": p.mode,
        "margin": p.margin,
        "note": p.note,
        "opened_at": iso(p.opened_at),
        "closed_at": iso(p.closed_at),
        "mark_price": a.mark if a else None,
        "adr": a.adr if a else None,
        "adr_source": a.adr_source if a else None,
        **_figures_json(a),
        **journal_json(journal),
    }


def _assess(ctx: typer.Context, positions: list[Position]) -> dict[int, Assessment]:
    from sqlmodel import Session

    from monitor.risk.impacts import assess_now

    c = cli_context.get(ctx)
    with Session(c.read_engine) as session:
        return assess_now(session, positions, c.settings, utcnow())


def _print_positions(rows: list[dict[str, Any]]) -> None:
    table = output.new_table(
        "id", "source", "symbol", "side", "entry", "size", "mark", "tier", "liq. price", "distance",
        "buffer (ADR)", "flag",
        wrap=("symbol", "liq. price"),
    )  # fmt: skip
    for r in rows:
        flag = "VIOLATION" if r["violation"] else ("" if r["violation"] is not None else "unknown")
        liq = num(r["liquidation_price"]) if r["not_computed"] is None else r["not_computed"]
        if r["not_computed"] is None and r["liquidation_price"] is None:
            liq = "none"
        table.add_row(
            str(r["id"]), r["source"], output.safe(r["symbol"]), r["side"], num(r["entry_price"]),
            r["size_input"], num(r["mark_price"]), "" if r["tier"] is None else str(r["tier"]),
            output.safe(liq),
            pct(r["distance"]), num(r["buffer_adr"], 3), flag,
        )  # fmt: skip
    output.console().print(table)


@positions_app.command("add")
def add(
    ctx: typer.Context,
    source: cli_context.SourceOpt,
    symbol: Annotated[str, typer.Option("--symbol", help="e.g. BTC/USDT:USDT or BTCUSDT.")],
    side: Side,
    entry: Entry,
    qty: Qty = None,
    notional: Notional = None,
    contracts: Contracts = None,
    contract_size: ContractSize = None,
    mode: Annotated[
        str, typer.Option("--mode", help="isolated, or cross (binance-usdm; Bybit: kept, not computed).")
    ] = "isolated",
    margin: Annotated[float | None, typer.Option("--margin", help="Isolated margin (quote; coin for inverse).")] = None,
    adr: Adr = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    opened_at: Annotated[str | None, typer.Option("--opened-at", help="When it was opened (default now).")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse to log an entry that is a margin-risk violation (exit 1).")
    ] = False,
) -> None:
    """Log an open position and its entry record: the risk figures at entry, as the journal line."""
    from monitor.cli import journal
    from monitor.risk.positions import PositionInput, validate

    c = cli_context.get(ctx)
    item = PositionInput(
        source, symbol, side.lower(), entry, qty, notional, contracts, contract_size, mode.lower(), margin, adr, note,
        cli_context.opt_ts(opened_at),
    )  # fmt: skip
    with c.write_session() as session:
        position = validate(session.connection(), item, now=utcnow())
        entry_record = journal.log_entry(c, session, position, strict=strict)
        session.commit()
        session.refresh(position)
    output.console().print(
        f"position {position.id} logged: {position.side} {position.size_input} {output.safe(position.symbol)}"
    )
    journal.print_record("entry", entry_record, c.settings.violation_threshold_adr)


@positions_app.command("close")
def close(
    ctx: typer.Context,
    position_id: cli_context.IdArg,
    price: Annotated[float | None, typer.Option("--price", help="Exit price (without it, the PnL is unknown).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When it was closed (default now).")] = None,
) -> None:
    """Close a position and store its exit record: exit price, realised PnL, the figures at exit, and what
    changed while it was open. It stays in the log, without current risk figures."""
    from monitor.cli import journal
    from monitor.journal.records import record_dict

    c = cli_context.get(ctx)
    with c.write_session() as session:
        rec = record_dict(journal.exit_record(c, session, position_id, price, cli_context.opt_ts(at)))
        session.commit()
    output.console().print(f"position {position_id} closed")
    journal.print_record("exit", rec, c.settings.violation_threshold_adr)
    if price is None:
        output.console().print("exit price not given: PnL unknown (`positions close ID --price P` records it)")


@positions_app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include closed positions.")] = False,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Open positions with their current risk figures."""
    from sqlmodel import Session, col, select

    from monitor.store.models import Position

    with Session(cli_context.get(ctx).read_engine) as session:
        stmt = select(Position).order_by(col(Position.id))
        if not all_:
            stmt = stmt.where(col(Position.closed_at).is_(None))
        rows = list(session.exec(stmt))
    found = _assess(ctx, [p for p in rows if p.closed_at is None]) if rows else {}
    journals = journal_for(ctx, [p.id for p in rows if p.id is not None]) if as_json and rows else {}
    data = [_position_json(p, found.get(p.id or 0), journals.get(p.id or 0)) for p in rows]
    if as_json:
        output.emit_json(data)
    elif not data:
        output.console().print("no open positions; add one with `tierdrift positions add`")
    else:
        _print_positions(data)


@positions_app.command("show")
def show(
    ctx: typer.Context,
    position_id: cli_context.IdArg,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """One position, its risk figures, the inputs behind them, and its impact history."""
    from sqlmodel import Session

    from monitor.risk.positions import priced_with
    from monitor.store.models import Position
    from snapshots.errors import NotFound

    with Session(cli_context.get(ctx).read_engine) as session:
        position = session.get(Position, position_id)
        if position is None:
            raise NotFound(f"no position with id {position_id}")
        # A cross position is priced with the rest of its account, exactly as `positions list` prices it.
        priced = priced_with(session, position)
        for p in priced:
            session.expunge(p)
    found = _assess(ctx, priced) if position.closed_at is None else {}
    data = _position_json(position, found.get(position_id), journal_for(ctx, [position_id])[position_id])
    data["impacts"] = _impacts(ctx, position_id=position_id)
    if as_json:
        output.emit_json(data)
        return
    for key, value in data.items():
        if key not in ("impacts", "entry", "exit", "events"):
            output.console().print(f"{key:>28}: {_shown(key, value)}")
    output.console().print(f"{'impacts':>28}: {len(data['impacts'])}")
    output.console().print(f"{'events':>28}: {len(data['events'])}")
    from monitor.cli.journal import print_record

    for kind in ("entry", "exit"):
        if data[kind] is not None:
            print_record(kind, data[kind], cli_context.get(ctx).settings.violation_threshold_adr)


def _shown(key: str, value: Any) -> str:
    """A `positions show` value for people: times to the second, outside text (symbol, note) as data."""
    if key.endswith("_at") and isinstance(value, str):
        return output.when_text(value)
    return output.safe(value)


@positions_app.command("import")
def import_csv(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="CSV with a header row.")]) -> None:
    """Import positions from CSV, all or nothing (columns: see README; `positions export` writes them)."""
    from monitor.journal.export import import_csv as import_journal

    c = cli_context.get(ctx)
    with c.write_session() as session:
        added = import_journal(session, file, c.settings, now=utcnow())
        session.commit()
    output.console().print(f"imported {len(added)} position(s) from {output.safe(file.name)}")


@account_app.command("set")
def account_set(
    ctx: typer.Context,
    source: cli_context.SourceOpt,
    wallet_balance: Annotated[float, typer.Option("--wallet-balance", help="Cross wallet balance (quote).")],
) -> None:
    """Set the cross wallet balance used for that source's cross positions."""
    from monitor.risk import positions

    with cli_context.get(ctx).write_session() as session:
        positions.set_wallet(session, source, wallet_balance, utcnow())
        session.commit()
    output.console().print(f"{source}: cross wallet balance set to {wallet_balance:,.2f}")


IMPACT_FIELDS = (
    "old_tier", "new_tier", "old_rate", "new_rate", "old_amount", "new_amount", "old_liquidation_price",
    "new_liquidation_price", "old_distance", "new_distance", "old_buffer_adr", "new_buffer_adr", "mark_price", "adr",
    "newly_violates", "crosses_tier", "violation",
)  # fmt: skip


def _impacts(ctx: typer.Context, *, since: str | None = None, position_id: int | None = None) -> list[dict[str, Any]]:
    from sqlmodel import Session, col, select

    from monitor.store.models import Impact

    stmt = select(Impact).order_by(col(Impact.detected_at), col(Impact.id))
    if since:
        stmt = stmt.where(col(Impact.detected_at) >= cli_context.opt_ts(since))
    if position_id is not None:
        stmt = stmt.where(Impact.position_id == position_id)
    with Session(cli_context.get(ctx).read_engine) as session:
        rows = list(session.exec(stmt))
    return [
        {
            "id": r.id,
            "position_id": r.position_id,
            "detected_at": iso(r.detected_at),
            "source": r.source,
            "symbol": r.symbol,
            "changes": json.loads(r.changes),
            **{k: getattr(r, k) for k in IMPACT_FIELDS},
            "reasons": json.loads(r.reasons) if r.reasons else {},
        }
        for r in rows
    ]


def impacts(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="Detected at or after this time.")] = None,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """What tier changes did to open positions: old and new liquidation price, distance and buffer."""
    rows = _impacts(ctx, since=since)
    if as_json:
        output.emit_json(rows)
        return
    if not rows:
        output.console().print("no impacts")
        return
    table = output.new_table(
        "detected", "position", "symbol", "tier", "rate", "liq. price", "buffer (ADR)", "flag",
        wrap=("detected", "symbol", "tier", "rate", "liq. price", "buffer (ADR)", "flag"),
    )  # fmt: skip
    for r in rows:
        flag = "NEW VIOLATION" if r["newly_violates"] else ("violation" if r["violation"] else "")
        if r["crosses_tier"]:
            flag = (flag + " tier crossed").strip()
        table.add_row(
            output.when_text(r["detected_at"]), str(r["position_id"]), output.safe(r["symbol"]),
            f"{r['old_tier']} → {r['new_tier']}",
            f"{pct(r['old_rate'])} → {pct(r['new_rate'])}",
            f"{num(r['old_liquidation_price'])} → {num(r['new_liquidation_price'])}",
            f"{num(r['old_buffer_adr'], 3)} → {num(r['new_buffer_adr'], 3)}", flag,
        )  # fmt: skip
    output.console().print(table)


def liq(
    ctx: typer.Context,
    source: cli_context.SourceOpt,
    symbol: Annotated[str, typer.Option("--symbol", help="e.g. BTC/USDT:USDT or BTCUSDT.")],
    side: Side,
    entry: Entry,
    margin: Annotated[
        float | None, typer.Option("--margin", help="Isolated margin (quote; coin for inverse); not with cross.")
    ] = None,
    qty: Qty = None,
    notional: Notional = None,
    contracts: Contracts = None,
    contract_size: ContractSize = None,
    mark: Annotated[float | None, typer.Option("--mark", help="Mark price for distance and buffer.")] = None,
    adr: Adr = None,
    at: Annotated[str | None, typer.Option("--at", help="Use the tier table in force at this time.")] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="isolated, or cross (binance-usdm: with the account's other positions).")
    ] = "isolated",
    wallet_balance: Annotated[
        float | None, typer.Option("--wallet-balance", help="Cross wallet balance (default: the stored one).")
    ] = None,
    journal_line: Annotated[
        bool,
        typer.Option(
            "--journal", help="Print the journal line an entry would store (market data as `positions add` takes it)."
        ),
    ] = False,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """What-if: liquidation price and risk figures of a position, e.g. scaled to a new size. Writes nothing."""
    from monitor.cli import journal
    from monitor.risk.liquidation import liquidation
    from monitor.risk.positions import PositionInput, check_amount

    c = cli_context.get(ctx)
    when = cli_context.opt_ts(at) or utcnow()
    for name, value in (("mark price", mark), ("ADR", adr), ("margin", margin), ("wallet balance", wallet_balance)):
        if value is not None:
            check_amount(name, value, zero_ok=name == "wallet balance")
    item = PositionInput(
        source, symbol, side.lower(), entry, qty, notional, contracts, contract_size, mode.lower(), margin
    )
    from monitor.journal.whatif import check_mode

    check_mode(item.mode, margin, source)
    spec, table, info, warnings = _whatif(c, item, when)
    market = journal.whatif_market(c, source, table.symbol, when, mark, adr) if journal_line else None
    if market is not None:
        mark, adr = market["mark_price"], market["adr"]
    cross = journal.whatif_cross(c, spec, source, when, wallet_balance)
    figures = liquidation(
        spec, table, mark=mark, adr=adr, threshold_adr=c.settings.violation_threshold_adr, cross=cross
    )
    from monitor.risk.figures import Assessment

    data = {
        "source": source,
        "symbol": table.symbol,
        "side": spec.side,
        "entry_price": spec.entry_price,
        "size": spec.size,
        "margin": spec.margin,
        "mode": spec.margin_mode,
        "mark_price": mark,
        "adr": adr,
        "table_valid_from": iso(info.valid_from),
        "threshold_adr": c.settings.violation_threshold_adr,
        **_figures_json(Assessment(0, figures, None, mark, adr, "input" if adr else None, _liq_reasons(figures))),
        "warnings": warnings,
    }
    del data["not_computed"]
    if market is not None:
        data["adr_days"], data["adr_source"] = market["adr_days"], market["adr_source"]
        data["reasons"] = {**market["unknown"], **data["reasons"]}
    if as_json:
        output.emit_json(data)
        return
    if journal_line:
        journal.print_record("journal", {**data, "unknown": data["reasons"]}, c.settings.violation_threshold_adr)
        for w in warnings:
            output.console().print(f"warning: {output.safe(w)}")
        return
    con = output.console()
    lp = "none (cannot be liquidated by price)" if data["liquidation_price"] is None else num(data["liquidation_price"])
    con.print(
        f"{output.safe(table.symbol)} {spec.side}, entry {num(spec.entry_price)}, "
        f"notional {num(figures.notional)}, margin {num(spec.margin)}"
    )
    con.print(
        f"tier at liquidation: {data['tier']} (rate {pct(data['maintenance_margin_rate'])}, "
        f"amount {num(data['maintenance_amount'])})"
    )
    con.print(f"liquidation price: {lp}")
    if mark is not None:
        con.print(f"distance from mark: {pct(data['distance'])}; buffer: {num(data['buffer_adr'], 3)} ADR")
    if data["headroom_notional"] is not None:
        con.print(
            f"headroom: {num(data['headroom_notional'])} more notional "
            f"before tier {figures.current_tier.tier + 1}"
            f" (liquidation price there: {num(data['headroom_liquidation_price'])})"
        )
    if data["violation"]:
        con.print(f"VIOLATION: buffer below {c.settings.violation_threshold_adr:g} ADR")
    for key, why in data["reasons"].items():
        con.print(f"{key}: {output.safe(why)}")
    for w in warnings:
        con.print(f"warning: {output.safe(w)}")


def _liq_reasons(figures: Any) -> dict[str, str]:
    """The engine's reasons, worded for the calculator: there a missing mark or ADR is an option not given."""
    from monitor.risk.liquidation import NO_ADR, NO_MARK

    wording = {NO_MARK: "no mark price given (--mark)", NO_ADR: "no ADR given (--adr)"}
    out = {}
    for key, why in figures.reasons.items():
        for engine_text, ours in wording.items():
            why = why.replace(engine_text, ours)
        out[key] = why
    return out


def _whatif(c: cli_context.Context, item: PositionInput, when: Any) -> tuple[Any, Any, Any, list[str]]:
    """The engine's inputs for `liq`: the position, the table in force at `when`, and margin warnings."""
    from monitor.risk.liquidation import PositionSpec
    from monitor.risk.positions import size_of
    from snapshots.history import check_source, resolve_symbol, table_at
    from snapshots.model import is_inverse

    check_source(item.source)
    with c.read_engine.connect() as conn:
        symbol = resolve_symbol(conn, item.source, item.symbol)
        table, info = table_at(conn, item.source, symbol, when)
    size, _, cs = size_of(item, symbol)
    spec = PositionSpec(
        side=item.side,  # type: ignore[arg-type]
        entry_price=item.entry,
        size=size,
        margin=item.margin or 0.0,
        margin_mode=item.mode,  # type: ignore[arg-type]
        inverse=is_inverse(item.source),
        contract_size=cs,
    )
    notional = size * cs / item.entry if spec.inverse else size * item.entry
    tier = table.tier_for(notional)
    warnings = []
    if spec.margin_mode == "isolated" and spec.margin < notional / tier.max_leverage:
        warnings.append(
            f"leverage {notional / spec.margin:.1f}× exceeds tier {tier.tier}'s maximum of {tier.max_leverage:g}×: "
            "the exchange would not accept this position"
        )
    return spec, table, info, warnings
