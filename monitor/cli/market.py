"""Commands for the cached market data behind risk buffers: `market refresh` and `market show`.

`refresh` is the only command here that talks to an exchange. Heavy imports (SQLModel, and ccxt, which
`monitor.risk.marketdata` loads when it fetches) happen inside the commands, so registering them costs
nothing to read-only commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
from monitor.service import shapes
from snapshots.history import check_source
from snapshots.model import SOURCES
from snapshots.numbers import num
from snapshots.timefmt import utcnow

if TYPE_CHECKING:
    from monitor.risk.marketdata import RefreshResult

market_app = typer.Typer(help="Mark prices and ADRs of the symbols with open positions.", no_args_is_help=True)


@market_app.command("refresh")
def refresh(
    ctx: typer.Context,
    source: Annotated[
        str | None, typer.Option("--source", "-s", help=f"Only this source, one of: {', '.join(SOURCES)}.")
    ] = None,
) -> None:
    """Fetch the mark price (and the ADR, when a day old) of every symbol with an open position, then
    queue a `position_risk` alert for each position that entered, worsened or left a risk episode.

    Exit 1 if any symbol failed; its previous values are kept and the reason is stored.
    """
    from sqlmodel import Session

    from monitor.risk.marketdata import refresh_market, symbols_with_open_positions
    from monitor.service.alerting import watch_risk

    c = cli_context.get(ctx)
    only = check_source(source) if source is not None else None
    now = utcnow()
    results: list[RefreshResult] = []
    with Session(c.engine) as session:
        for name, symbols in sorted(symbols_with_open_positions(session).items()):
            if only in (None, name):
                results += refresh_market(session, name, symbols, c.settings, now=now)
        session.commit()
    events = watch_risk(c.engine, c.settings, utcnow)[0] if results else []
    _print_outcomes(results)
    for e in events:
        what = {"entered": "entered", "escalated": "worsened to", "recovered": "recovered from"}[e.event]
        level = e.worst if e.event == "recovered" else e.level
        output.console().print(
            f"position #{e.position.id} {output.safe(e.position.symbol)}: {what} {level}: position_risk alert queued"
        )
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _print_outcomes(results: list[RefreshResult]) -> None:
    if not results:
        output.console().print("no open positions: nothing to refresh")
    for r in results:
        if r.ok:
            what = "mark and ADR" if r.adr_refreshed else "mark (ADR still fresh)"
            output.console().print(f"{r.source} {output.safe(r.symbol)}: ok, {what} refreshed")
        else:
            kept = "mark refreshed, " if r.mark_refreshed else ""
            output.console().print(f"{r.source} {output.safe(r.symbol)}: FAILED: {kept}{output.safe(r.reason)}")


@market_app.command("show")
def show(ctx: typer.Context, as_json: cli_context.JsonOpt = False) -> None:
    """Cached mark prices and ADRs with their timestamps, and the last error of each symbol."""
    from sqlmodel import Session, col, select

    from monitor.store.models import MarketData

    stmt = select(MarketData).order_by(col(MarketData.source), col(MarketData.symbol))
    with Session(cli_context.get(ctx).read_engine) as session:
        data = [shapes.market_json(r) for r in session.exec(stmt)]
    if as_json:
        output.emit_json(data)
    elif not data:
        output.console().print("no market data yet; fetch it with `tierdrift market refresh`")
    else:
        _print_rows(data)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    table = output.new_table(
        "source", "symbol", "mark", "mark at", "ADR", "days", "ADR at", "error",
        wrap=("symbol", "mark at", "ADR at", "error"),
    )  # fmt: skip
    for r in rows:
        error = f"{output.safe(r['error'])} ({output.when_text(r['error_at'])})" if r["error"] else ""
        table.add_row(
            r["source"], output.safe(r["symbol"]), num(r["mark_price"]), output.when_text(r["mark_at"]),
            num(r["adr"]), "" if r["adr_days"] is None else str(r["adr_days"]), output.when_text(r["adr_at"]),
            error,
        )  # fmt: skip
    output.console().print(table)
