"""Commands for positions and their risk: `positions …`, `account set`, `impacts`, and the `liq` calculator.

Their heavy imports (SQLModel, the engine) are loaded inside the commands, so that registering these
commands costs nothing to read-only commands such as `tiers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.cli import context as cli_context
from monitor.cli import output, reads
from monitor.service import shapes
from snapshots.numbers import num, pct
from snapshots.timefmt import utcnow

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
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, max=cli_context.MAX_INT, help="Show at most this many rows (0: all); --json lists all."
        ),
    ] = reads.LIST_LIMIT,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Open positions with their current risk figures (the first `--limit` as a table, with a count of the rest)."""
    reads.positions_list(cli_context.get(ctx), all_, limit, as_json)


@positions_app.command("show")
def show(
    ctx: typer.Context,
    position_id: cli_context.IdArg,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """One position, its risk figures, the inputs behind them, and its impact history."""
    from sqlmodel import Session

    c = cli_context.get(ctx)
    with Session(c.read_engine) as session:
        data = shapes.position(session, c.settings, position_id, utcnow())
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


def _impacts(ctx: typer.Context, *, since: str | None = None) -> list[dict[str, Any]]:
    from sqlmodel import Session

    with Session(cli_context.get(ctx).read_engine) as session:
        return shapes.impacts(session, since=cli_context.opt_ts(since))


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
    from monitor.journal.whatif import check_mode
    from monitor.risk.positions import PositionInput

    c = cli_context.get(ctx)
    when = cli_context.opt_ts(at) or utcnow()
    shapes.check_liq_amounts(mark=mark, adr=adr, margin=margin, wallet_balance=wallet_balance)
    item = PositionInput(
        source, symbol, side.lower(), entry, qty, notional, contracts, contract_size, mode.lower(), margin
    )
    check_mode(item.mode, margin, source)
    with c.read_engine.connect() as conn:
        spec, table, info, warnings = shapes.whatif(conn, item, when)
    market = journal.whatif_market(c, source, table.symbol, when, mark, adr) if journal_line else None
    cross = journal.whatif_cross(c, spec, source, when, wallet_balance)
    data = shapes.liq_json(
        c.settings, item, spec, table, info, warnings, mark=mark, adr=adr, cross=cross, market=market
    )
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
        f"{output.safe(data['symbol'])} {data['side']}, entry {num(data['entry_price'])}, "
        f"notional {num(data['notional'])}, margin {num(data['margin'])}"
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
            f"before tier {data['current_tier'] + 1}"
            f" (liquidation price there: {num(data['headroom_liquidation_price'])})"
        )
    if data["violation"]:
        con.print(f"VIOLATION: buffer below {c.settings.violation_threshold_adr:g} ADR")
    for key, why in data["reasons"].items():
        con.print(f"{key}: {output.safe(why)}")
    for w in data["warnings"]:
        con.print(f"warning: {output.safe(w)}")
