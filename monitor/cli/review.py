"""The watchlist (`watch add|list|remove`) and the quarterly `review`.

Heavy imports (SQLModel, the journal) are loaded inside the commands, so that registering them costs
nothing to read-only commands such as `tiers`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
from snapshots.errors import TierdriftError
from snapshots.numbers import money
from snapshots.timefmt import iso, utcnow

watch_app = typer.Typer(help="Watch instruments you trade without an open position.", no_args_is_help=True)

SymbolArg = Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT:USDT (BTCUSDT also works).")]
FORMATS = ("text", "json", "csv", "html", "md")
_SINCE = re.compile(r"^(\d{1,5})([dw])$")


class ReviewError(TierdriftError):
    """A review that cannot be made as asked, in one line."""


@watch_app.command("add")
def add(
    ctx: typer.Context,
    symbol: SymbolArg,
    source: cli_context.SourceOpt,
    size: Annotated[
        float | None, typer.Option("--size", help="A notional (quote) to price when its table changes.")
    ] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Watch SYMBOL: it counts as traded (digest marks, `symbols = "traded"` channels, the review)."""
    from monitor.journal.watch import add_watch
    from snapshots.history import resolve_symbol

    with cli_context.get(ctx).write_session() as session:
        sym = resolve_symbol(session.connection(), source, symbol)
        _, new = add_watch(session, source, sym, size=size, note=note, now=utcnow())
        session.commit()
    sized = f" with size {money(size)}" if size else ""
    output.console().print(f"{'watching' if new else 'updated watch on'} {output.safe(sym)} on {source}{sized}")


@watch_app.command("list")
def list_(ctx: typer.Context, as_json: cli_context.JsonOpt = False) -> None:
    """Every watch."""
    from sqlmodel import Session

    from monitor.journal.watch import watches

    with Session(cli_context.get(ctx).read_engine) as session:
        rows = watches(session)
    if as_json:
        output.emit_json(
            [
                {
                    "source": w.source,
                    "symbol": w.symbol,
                    "size_notional": w.size_notional,
                    "added_at": iso(w.added_at),
                    "note": w.note,
                }
                for w in rows
            ]
        )
        return
    if not rows:
        output.console().print("no watches; add one with `tierdrift watch add SYMBOL --source S`")
        return
    table = output.new_table("source", "symbol", "size", "added", "note", title="watchlist", title_justify="left")
    for w in rows:
        table.add_row(
            w.source, output.safe(w.symbol), money(w.size_notional), output.when(w.added_at), output.safe(w.note or "")
        )
    output.console().print(table)


@watch_app.command("remove")
def remove(ctx: typer.Context, symbol: SymbolArg, source: cli_context.SourceOpt) -> None:
    """Stop watching SYMBOL."""
    from monitor.journal.watch import remove_watch
    from snapshots.history import resolve_symbol

    with cli_context.get(ctx).write_session() as session:
        sym = resolve_symbol(session.connection(), source, symbol)
        remove_watch(session, source, sym)
        session.commit()
    output.console().print(f"no longer watching {output.safe(sym)} on {source}")


def period_of(since: str | None, start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The review's period from `--since 90d` (days or weeks before now) or `--from`/`--to` (default: 90d)."""
    if since is not None and (start is not None or end is not None):
        raise ReviewError("give either --since or --from/--to, not both")
    stop = cli_context.opt_ts(end) or now
    if since is not None:
        m = _SINCE.match(since.strip())
        if m is None:
            raise ReviewError(f"--since {output.safe(since, limit=40)!r} is not a length like 90d or 13w")
        days = int(m[1]) * (7 if m[2] == "w" else 1)
        return now - timedelta(days=days), now
    begin = cli_context.opt_ts(start) or stop - timedelta(days=90)
    if begin > stop:
        raise ReviewError(f"--from {iso(begin)} is after --to {iso(stop)}")
    return begin, stop


def review(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="The last N days or weeks, e.g. 90d, 13w.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start of the period (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of the period (default now).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}.")] = "text",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """The quarterly review: tier changes, trades and scaling of every instrument traded or watched."""
    from sqlmodel import Session

    from monitor.journal import review_render as render
    from monitor.journal.review import Period
    from monitor.journal.review import review as build

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    c = cli_context.get(ctx)
    period = Period(*period_of(since, start, end, utcnow()))
    with Session(c.read_engine) as session:
        items = build(session, period, threshold_adr=c.settings.violation_threshold_adr)
    if fmt == "json":
        text = json.dumps(items, ensure_ascii=False, indent=2) + "\n"
    elif fmt == "csv":
        text = render.render_csv(items)
    elif fmt == "html":
        text = render.render_html(items, period)
    elif fmt == "md":
        text = render.render_md(items, period)
    else:
        text = render.render_text(items, period)
    if out is None:
        print(text, end="")
        return
    _write(out, text)
    print(f"review of {len(items)} instrument(s) written to {output.safe(out)}")


def _write(path: Path, text: str) -> None:
    """Write `text` to `path` whole: through a temporary file beside it, so nothing is left half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReviewError(f"cannot write {output.safe(path)}: {exc.strerror or exc}") from None
