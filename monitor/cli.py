"""The `tierdrift` command line.

This is the only place that turns an exception into a message and an exit code: every deliberate error
is a `TierdriftError` whose text is one line; it is printed as `error: …` with exit code 1. Usage errors
exit with 2 (Typer). Read-only commands never import ccxt (see `poll`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor import cli_alerts, cli_context, cli_daemon, cli_market, cli_positions, output
from snapshots.errors import TierdriftError
from snapshots.history import (
    StoredChange,
    check_source,
    list_changes,
    recent_polls,
    resolve_symbol,
    source_status,
    table_at,
    versions,
)
from snapshots.model import SOURCES
from snapshots.timefmt import iso, utcnow

if TYPE_CHECKING:
    from monitor.polling import Fetch, Hook
    from snapshots.store import PollResult


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="tierdrift",
        help="Watch Binance and Bybit leverage tier tables and what their changes do to your positions.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


app = _new_app()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML config file (default: $TIERDRIFT_CONFIG or ~/.config/tierdrift/config.toml).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL, overriding the settings (e.g. sqlite:///tiers.db)."),
    ] = None,
) -> None:
    ctx.obj = cli_context.Context(config=config, database_url=db)


# -- writing commands -------------------------------------------------------------------------------


@app.command()
def poll(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None, typer.Option("--source", "-s", help="Poll only this source (repeatable).")
    ] = None,
    accept_removals: Annotated[
        bool,
        typer.Option("--accept-removals", help="Apply a poll even if many symbols vanished (no quarantine)."),
    ] = False,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Poll the exchanges once now; print what changed and what failed. Exit 1 if any source failed."""
    # monitor.exchanges loads ccxt and httpx lazily: importing it only here keeps read-only commands fast.
    from monitor.exchanges import fetch_snapshot
    from monitor.lock import LockHeld, writer_lock

    c = cli_context.get(ctx)
    sources = [check_source(s) for s in source] if source else c.settings.sources
    lock = writer_lock(c.engine)
    if not lock.acquire():
        raise LockHeld(f"`tierdrift run` (or another poll) holds the {lock.describe()} and is already polling")
    try:
        results = [
            _poll_one(c, name, lambda src, st: fetch_snapshot(src, st, now=utcnow), accept_removals) for name in sources
        ]
        report = cli_alerts.deliver_all(c) if c.settings.all_channels() else None
    finally:
        lock.release()
    if as_json:
        output.emit_json([output.poll_json(r) for r in results])
    else:
        for r in results:
            _print_result(r)
        if report is not None:
            cli_alerts.print_report(report)
    if any(r.outcome != "ok" for r in results):
        raise typer.Exit(1)


def _poll_one(c: cli_context.Context, source: str, fetch: Fetch, accept_removals: bool) -> PollResult:
    from monitor.polling import poll_source  # write path: deepdiff and numpy, see `import_`

    return poll_source(
        c.engine,
        c.settings,
        source,
        fetch,
        clock=utcnow,
        hooks=_hooks(c),
        accept_removals=accept_removals,
    )


def _import_hooks(c: cli_context.Context, alert: bool) -> list[Hook]:
    if alert:
        return _hooks(c)
    from monitor.impacts import ImpactContext, freshness, make_hook

    return [make_hook(ImpactContext(c.settings.violation_threshold_adr, freshness=freshness(c.settings)))]


def _hooks(c: cli_context.Context) -> list[Hook]:
    """What a poll or an import does inside its transaction after storing changes: impacts, alerts, health."""
    from monitor.wiring import poll_hooks

    return poll_hooks(c.settings, utcnow)


def _print_result(r: PollResult, limit: int = 40) -> None:
    if r.outcome == "failed":
        output.console().print(f"{r.source}: FAILED: {r.error}")
        return
    if r.outcome == "quarantined":
        output.console().print(f"{r.source}: QUARANTINED: {r.error}")
        return
    if r.baseline:
        output.console().print(
            f"{r.source}: first snapshot stored ({r.symbols} symbols); changes are reported from now on"
        )
        return
    changes = r.changes
    symbols = len({c.symbol for c in changes})
    output.console().print(f"{r.source}: ok, {r.symbols} symbols, {symbols} changed, {len(changes)} changes")
    stored = [StoredChange(r.started_at, r.previous_poll_at, ch) for ch in changes]
    for sc in stored[:limit]:
        output.console().print("  " + output.describe_change(sc))
    if len(stored) > limit:
        output.console().print(
            f"  … {len(stored) - limit} more: tierdrift changes --source {r.source} --since {iso(r.started_at)}"
        )


@app.command("import")
def import_(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="ccxt fetch_leverage_tiers() JSON files (.json or .json.gz).")],
    source: cli_context.SourceOpt,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Snapshot time for a single file (default: the file name's leading date)."),
    ] = None,
    alert: Annotated[
        bool, typer.Option("--alert", help="Also enqueue alerts for what the files change, as a poll would.")
    ] = False,
) -> None:
    """Backfill history from archived tier files, oldest first.

    Impacts on open positions are recorded; alerts are not sent for history unless --alert is given.
    """
    # The write path pulls deepdiff and numpy (about 60 ms); loaded here so read-only commands start fast.
    from rich.progress import Progress

    from monitor.importer import import_files, plan

    c = cli_context.get(ctx)
    check_source(source)
    items = plan(files, cli_context.opt_ts(at))
    engine = c.engine
    with Progress(console=output.console(), transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("importing", total=len(items))
        results = import_files(
            engine, source, items, hooks=_import_hooks(c, alert), progress=lambda item, res: progress.advance(task)
        )
    changes = sum(len(r.changes) for r in results)
    output.console().print(f"imported {len(results)} file(s) into {source}: {changes} changes")


# -- read-only commands -----------------------------------------------------------------------------


@app.command()
def tiers(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT:USDT (BTCUSDT also works).")],
    source: cli_context.SourceOpt,
    at: Annotated[str | None, typer.Option("--at", help="Time (ISO 8601, UTC if no offset). Default: now.")] = None,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """The tier table of SYMBOL in force at a time."""
    c = cli_context.get(ctx)
    when = cli_context.opt_ts(at) or utcnow()
    with c.reader() as session:
        sym = resolve_symbol(session, source, symbol)
        table, info = table_at(session, source, sym, when)
    if as_json:
        output.emit_json([t.as_dict() for t in table.tiers])
        return
    unit = "coin" if table.unit.value == "base" else "quote"
    title = f"{sym} on {source} at {iso(when)} (in force since {iso(info.valid_from)}, {info.provenance})"
    output.console().print(output.tiers_table(title, table.tiers, unit))
    for w in info.warnings:
        output.console().print(f"warning: {w}")


@app.command()
def changes(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol (needs --source).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Detected at or after this time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Detected at or before this time.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many records.")] = None,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Tier changes detected between polls, oldest first."""
    c = cli_context.get(ctx)
    if symbol and not source:
        raise typer.BadParameter("--symbol needs --source", param_hint="--symbol")
    with c.reader() as session:
        if source:
            check_source(source)
        sym = resolve_symbol(session, source, symbol) if symbol and source else None
        rows = list_changes(
            session,
            source=source,
            symbol=sym,
            since=cli_context.opt_ts(since),
            until=cli_context.opt_ts(until),
            limit=limit,
        )
    if as_json:
        output.emit_json([output.change_json(r) for r in rows])
    elif not rows:
        output.console().print("no changes")
    else:
        output.console().print(output.changes_table(rows))


@app.command()
def history(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT:USDT.")],
    source: cli_context.SourceOpt,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """The versions of one symbol's table, with the time each was in force."""
    c = cli_context.get(ctx)
    with c.reader() as session:
        sym = resolve_symbol(session, source, symbol)
        rows = versions(session, source, sym)
    if as_json:
        output.emit_json([output.version_json(v) for v in rows])
        return
    table = output.new_table(title=f"{sym} on {source}", title_justify="left")
    for name in ("valid from", "valid to", "hash", "provenance", "warnings"):
        table.add_column(name)
    for v in rows:
        table.add_row(
            iso(v.valid_from),
            iso(v.valid_to) or "(current)",
            v.content_hash[:12],
            v.provenance,
            str(len(v.warnings)),
        )
    output.console().print(table)


@app.command()
def sources(ctx: typer.Context, as_json: cli_context.JsonOpt = False) -> None:
    """Each source's last poll, last success, last change and last error."""
    c = cli_context.get(ctx)
    with c.reader() as session:
        rows = [source_status(session, s) for s in SOURCES]
    if as_json:
        output.emit_json([output.status_json(s) for s in rows])
        return
    table = output.new_table()
    for name in ("source", "symbols", "last poll", "outcome", "last success", "last change", "last error"):
        table.add_column(name)
    for s in rows:
        error = f"{iso(s.last_error_at)}: {s.last_error}" if s.last_error_at else ""
        table.add_row(
            s.source,
            str(s.symbols),
            iso(s.last_poll_at) or "never",
            s.last_outcome or "",
            iso(s.last_success_at) or "never",
            iso(s.last_change_at) or "",
            error,
        )
    output.console().print(table)


@app.command()
def polls(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Recent polls and imports, newest first, with failures and quarantines and their reasons."""
    c = cli_context.get(ctx)
    with c.reader() as session:
        if source:
            check_source(source)
        rows = recent_polls(session, source, limit)
    if as_json:
        output.emit_json(
            [
                {
                    "id": p.id,
                    "source": p.source,
                    "kind": p.kind,
                    "started_at": iso(p.started_at),
                    "duration_ms": round(p.duration_ms, 1),
                    "outcome": p.outcome,
                    "provenance": p.provenance,
                    "symbols": p.symbols,
                    "symbols_changed": p.symbols_changed,
                    "changes": p.changes,
                    "error": p.error,
                }
                for p in rows
            ]
        )
        return
    table = output.new_table()
    for name in (
        "id",
        "source",
        "kind",
        "started",
        "ms",
        "outcome",
        "symbols",
        "changed",
        "changes",
        "error",
    ):
        table.add_column(name)
    for p in rows:
        table.add_row(
            str(p.id),
            p.source,
            p.kind,
            iso(p.started_at),
            f"{p.duration_ms:.0f}",
            p.outcome,
            str(p.symbols),
            str(p.symbols_changed),
            str(p.changes),
            p.error or "",
        )
    output.console().print(table)


app.add_typer(cli_positions.positions_app, name="positions")
app.add_typer(cli_positions.account_app, name="account")
app.command("impacts")(cli_positions.impacts)
app.command("liq")(cli_positions.liq)
app.add_typer(cli_alerts.alerts_app, name="alerts")
app.add_typer(cli_market.market_app, name="market")
app.command("run")(cli_daemon.run)
app.command("check")(cli_daemon.check)
app.command("demo")(cli_daemon.demo)
app.add_typer(cli_daemon.config_app, name="config")


#: Read-only commands that must start fast. Typer builds the click command of every registered command on
#: each run (about 2 ms each, 60 ms for the whole tree here); these get a tree of their own command only.
FAST_COMMANDS = ("tiers", "changes", "history", "sources", "polls")


def app_for(argv: list[str]) -> typer.Typer:
    """The full app, or a one-command app when `argv` runs a fast read-only command (same options, same help)."""
    words = [
        w for i, w in enumerate(argv) if not w.startswith("-") and (i == 0 or argv[i - 1] not in ("--db", "--config"))
    ]
    if not words or words[0] not in FAST_COMMANDS or "--help" in argv[: argv.index(words[0])]:
        return app
    fast = _new_app()
    fast.callback()(_root)
    fast.command(words[0])(globals()[words[0]])
    return fast


def main() -> None:
    try:
        app_for(sys.argv[1:])()
    except TierdriftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
