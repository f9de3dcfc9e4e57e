"""Commands for positions and their risk: `positions …`, `account set`, `impacts`, and the `liq` calculator.

Their heavy imports (SQLModel, the engine) are loaded inside the commands, so that registering these
commands costs nothing to read-only commands such as `tiers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
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
#: Rows `positions list` shows as a table by default.
LIST_LIMIT = 100


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
) -> None:
    """Log an open position."""
    from monitor.risk.positions import PositionInput, validate

    c = cli_context.get(ctx)
    item = PositionInput(
        source, symbol, side.lower(), entry, qty, notional, contracts, contract_size, mode.lower(), margin, adr, note,
        cli_context.opt_ts(opened_at),
    )  # fmt: skip
    with c.write_session() as session:
        position = validate(session.connection(), item, now=utcnow())
        session.add(position)
        session.commit()
        session.refresh(position)
    output.console().print(
        f"position {position.id} logged: {position.side} {position.size_input} {output.safe(position.symbol)}"
    )


@positions_app.command("close")
def close(ctx: typer.Context, position_id: cli_context.IdArg) -> None:
    """Mark a position closed (it stays in the log, without risk figures)."""
    from monitor.risk import positions

    with cli_context.get(ctx).write_session() as session:
        positions.close(session, position_id, utcnow())
        session.commit()
    output.console().print(f"position {position_id} closed")


@positions_app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include closed positions.")] = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, max=cli_context.MAX_INT, help="Show at most this many rows (0: all); --json lists all."
        ),
    ] = LIST_LIMIT,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Open positions with their current risk figures (the first `--limit` as a table, with a count of the rest)."""
    from sqlmodel import Session

    c = cli_context.get(ctx)
    with Session(c.read_engine) as session:
        data = shapes.positions(session, c.settings, utcnow(), include_closed=all_)
    if as_json:
        output.emit_json(data)
    elif not data:
        output.console().print("no open positions; add one with `tierdrift positions add`")
    else:
        # A table of 10,000 rows takes Rich 20 s to lay out and nobody reads it: show the first rows,
        # then what the rest hold and how to see them.
        shown = data if limit == 0 else data[:limit]
        _print_positions(shown)
        if len(shown) < len(data):
            rest = data[len(shown) :]
            flagged = sum(1 for r in rest if r["violation"])
            output.console().print(
                f"… {len(rest):,} more ({flagged:,} of them violating the margin rule): "
                "--limit N to show more, --limit 0 for all, --json for every figure"
            )


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
        if key != "impacts":
            output.console().print(f"{key:>28}: {_shown(key, value)}")
    output.console().print(f"{'impacts':>28}: {len(data['impacts'])}")


def _shown(key: str, value: Any) -> str:
    """A `positions show` value for people: times to the second, outside text (symbol, note) as data."""
    if key.endswith("_at") and isinstance(value, str):
        return output.when_text(value)
    return output.safe(value)


@positions_app.command("import")
def import_csv(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="CSV with a header row.")]) -> None:
    """Import positions from CSV, all or nothing (columns: see README)."""
    from monitor.risk import positions

    with cli_context.get(ctx).write_session() as session:
        added = positions.import_csv(session, file, now=utcnow())
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
    margin: Annotated[float, typer.Option("--margin", help="Isolated margin (quote; coin for inverse).")],
    qty: Qty = None,
    notional: Notional = None,
    contracts: Contracts = None,
    contract_size: ContractSize = None,
    mark: Annotated[float | None, typer.Option("--mark", help="Mark price for distance and buffer.")] = None,
    adr: Adr = None,
    at: Annotated[str | None, typer.Option("--at", help="Use the tier table in force at this time.")] = None,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """What-if: liquidation price and risk figures of an isolated position, e.g. scaled to a new size."""
    from monitor.risk.positions import PositionInput

    c = cli_context.get(ctx)
    when = cli_context.opt_ts(at) or utcnow()
    item = PositionInput(
        source, symbol, side.lower(), entry, qty, notional, contracts, contract_size, "isolated", margin
    )
    with c.read_engine.connect() as conn:
        data = shapes.liq(conn, c.settings, item, when, mark=mark, adr=adr)
    if as_json:
        output.emit_json(data)
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
