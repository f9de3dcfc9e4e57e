"""The journal's commands and output: `positions edit`, `positions export`, the entry and exit lines that
`positions add`, `positions close` and `liq --journal` print, and the `entry`/`exit`/`events` of `--json`.

Registered on the `positions` group by `register` (called from monitor.cli). Heavy imports (SQLModel, the
engine) are inside the functions, so that registering costs read-only commands nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
from snapshots.errors import TierdriftError
from snapshots.timefmt import utcnow

if TYPE_CHECKING:
    from sqlmodel import Session

    from monitor.journal.records import JournalRecords
    from monitor.store.models import Position, PositionRecord


#: The unknowns that others follow from: the table, the market inputs, the LP, and an exit's price.
ROOTS = ("table", "mark", "adr", "liquidation_price", "price")


class ViolationRefused(TierdriftError):
    """`positions add --strict` of an entry that breaks the margin-risk rule: nothing was written."""


def journal_for(ctx: typer.Context, ids: list[int]) -> dict[int, JournalRecords]:
    """The journal of `ids` (for the `--json` shapes), read in a few queries."""
    from sqlmodel import Session

    from monitor.journal.records import records_for

    with Session(cli_context.get(ctx).read_engine) as session:
        return records_for(session, ids)


def print_record(label: str, rec: dict[str, Any], threshold_adr: float) -> None:
    """The journal line of `rec`, the reasons of its unknown figures, and a loud line for a violation."""
    from monitor.journal.figures import journal_line

    con = output.console()
    con.print(f"{label}: {output.safe(journal_line(rec, threshold_adr=threshold_adr), None)}")
    unknown = rec.get("unknown") or {}
    # The inputs' reasons say it all when there are any; the figures' own only repeat them.
    roots = {k: v for k, v in unknown.items() if k in ROOTS} or unknown
    for key, why in sorted(roots.items()):
        con.print(f"  {key} unknown: {output.safe(why)}")
    if rec.get("violation"):
        buffer = rec.get("buffer_adr")
        shown = "beyond its liquidation price" if buffer is not None and buffer < 0 else f"{buffer:.2f} ADR"
        con.print(f"MARGIN-RISK VIOLATION: buffer {shown}, below the {threshold_adr:g} ADR rule", style="bold red")


def log_entry(c: cli_context.Context, session: Session, position: Position, *, strict: bool) -> dict[str, Any]:
    """Store the entry record of the new `position` (in `session`, not committed) and return it as a dict;
    `ViolationRefused` under `strict` when it is a margin-risk violation."""
    from monitor.journal.history import fetch_candles
    from monitor.journal.log import backfill
    from monitor.journal.log import log_entry as store_entry
    from monitor.journal.records import record_dict

    now = utcnow()
    backfill(session, c.settings, now=now)  # positions logged before the journal; not this one: it has no id yet
    session.add(position)
    session.flush()
    rec = record_dict(store_entry(session, position, c.settings, now=now, fetch=fetch_candles))
    if strict and rec["violation"]:
        raise ViolationRefused(
            f"not logged (--strict): the entry is a margin-risk violation, buffer {rec['buffer_adr']:.2f} ADR "
            f"below {c.settings.violation_threshold_adr:g} ADR"
        )
    return rec


def edit(
    ctx: typer.Context,
    position_id: cli_context.IdArg,
    add_margin: Annotated[float | None, typer.Option("--add-margin", help="Isolated margin added.")] = None,
    remove_margin: Annotated[float | None, typer.Option("--remove-margin", help="Isolated margin removed.")] = None,
    add_size: Annotated[
        float | None, typer.Option("--add-size", help="Size added (base; contracts for inverse), with --price.")
    ] = None,
    reduce_size: Annotated[
        float | None, typer.Option("--reduce-size", help="Size closed (a partial close), with --price.")
    ] = None,
    price: Annotated[float | None, typer.Option("--price", help="Price of the fill for --add/--reduce-size.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="A new note (empty: remove it).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When it happened (default now).")] = None,
) -> None:
    """Record what you did to an open position: margin in or out, size added or partly closed, a note."""
    from monitor.journal.log import Change, backfill
    from monitor.journal.log import edit as apply_edit

    c = cli_context.get(ctx)
    now = utcnow()
    change = Change(add_margin, remove_margin, add_size, reduce_size, price, note)
    with c.write_session() as session:
        backfill(session, c.settings, now=now)
        events = apply_edit(session, position_id, change, at=cli_context.opt_ts(at) or now, now=now)
        session.commit()
        shown = [(e.kind, e.amount, e.price, e.pnl, e.size_after, e.margin_after, e.entry_price_after) for e in events]
    from snapshots.numbers import money, num

    for kind, amount, fill, pnl, size, margin, entry in shown:
        what = kind.replace("_", " ")
        if amount is not None:
            what += f" {num(amount)}" + (f" at {money(fill)}" if fill is not None else "")
        if pnl is not None:
            what += f", realised PnL {money(pnl)}"
        output.console().print(
            f"position {position_id}: {what}; now size {num(size)}, entry {money(entry)}, margin {money(margin)}"
        )


def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")] = None,
) -> None:
    """Every position with its entry and exit records and its events, for a journal spreadsheet
    (`positions import` reads the CSV back)."""
    from sqlmodel import Session

    from monitor.journal.export import export_rows, write_csv

    if fmt not in ("csv", "json"):
        raise typer.BadParameter(f"{fmt!r}: expected csv or json", param_hint="--format")
    with Session(cli_context.get(ctx).read_engine) as session:
        rows = export_rows(session)
    if fmt == "json":
        import json

        text = json.dumps(rows, indent=2, sort_keys=False) + "\n"
    else:
        text = write_csv(rows)
    if out is None:
        sys.stdout.write(text)
        return
    tmp = out.with_name(out.name + ".part")  # nothing half-written: the file appears whole or not at all
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{out}: cannot write: {exc.strerror or type(exc).__name__}") from None
    print(f"exported {len(rows)} position(s) to {output.safe(out)}", file=sys.stderr)


class ExportError(TierdriftError):
    """The export file cannot be written."""


def whatif_market(
    c: cli_context.Context, source: str, symbol: str, when: Any, mark: float | None, adr: float | None
) -> dict[str, Any]:
    """`liq --journal`: the market an entry at `when` would take (fetched candles are not kept)."""
    from sqlmodel import Session

    from monitor.journal.history import fetch_candles
    from monitor.journal.whatif import whatif_market as market

    with Session(c.read_engine) as session:  # never committed: `liq` writes nothing
        return market(session, source, symbol, when, c.settings, now=utcnow(), mark=mark, adr=adr, fetch=fetch_candles)


def whatif_cross(c: cli_context.Context, spec: Any, source: str, when: Any, wallet_balance: float | None) -> Any:
    """`liq --mode cross`: the account behind the what-if (None for isolated)."""
    if spec.margin_mode != "cross":
        return None
    from sqlmodel import Session

    from monitor.journal.whatif import whatif_cross as cross

    with Session(c.read_engine) as session:
        return cross(session, spec, source, when, c.settings, now=utcnow(), wallet_balance=wallet_balance)


def register(positions_app: typer.Typer) -> None:
    positions_app.command("edit")(edit)
    positions_app.command("export")(export)


def exit_record(
    c: cli_context.Context, session: Session, position_id: int, price: float | None, at: Any
) -> PositionRecord:
    """Close `position_id` and store its exit record (in `session`, not committed)."""
    from monitor.journal.history import fetch_candles
    from monitor.journal.log import backfill, close

    now = utcnow()
    backfill(session, c.settings, now=now)
    return close(session, position_id, price=price, at=at or now, settings=c.settings, now=now, fetch=fetch_candles)
