"""The whole `tierdrift` command line as a Typer app; monitor.cli.run runs it (its error boundary).

A plain invocation of a read-only command does not come here (monitor.cli.fast); `app_for` gives the
others a one-command app when they run one of those commands (with --help, or arguments the fast path
leaves to Typer). Read-only commands never import ccxt (see `poll`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli import alerts as cli_alerts
from monitor.cli import context as cli_context
from monitor.cli import daemon as cli_daemon
from monitor.cli import journal as cli_journal
from monitor.cli import market as cli_market
from monitor.cli import output, reads
from monitor.cli import positions as cli_positions
from monitor.cli import review as cli_review
from snapshots.history import (
    StoredChange,
    check_source,
)
from snapshots.timefmt import utcnow

if TYPE_CHECKING:
    from monitor.service.polling import Fetch, Hook
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
            help="TOML config file (default: $TIERDRIFT_CONFIG, or ~/.config/tierdrift/config.toml on Linux).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL, overriding the settings (e.g. sqlite:///tiers.db)."),
    ] = None,
) -> None:
    # `run` hands in the Context, so that its error boundary can name the database a failure concerns.
    c = ctx.ensure_object(cli_context.Context)
    c.config, c.database_url = config, db


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
    from monitor.service.lock import LockHeld, writer_lock

    c = cli_context.get(ctx)
    sources = [check_source(s) for s in source] if source else c.settings.sources
    cli_context.warn(c.settings)  # no channel: the changes are stored, and nobody hears of them
    lock = writer_lock(c.engine)
    if not lock.acquire():
        raise LockHeld(
            f"`tierdrift run` (or another poll) holds the {lock.describe()}{lock.held_by()} and is already polling"
        )
    try:
        results = [
            _poll_one(c, name, lambda src, st: fetch_snapshot(src, st, now=utcnow), accept_removals) for name in sources
        ]
    finally:
        lock.release()
    # After the lock is released: a slow receiver must not keep the daemon from writing. Deliveries are
    # claimed one by one (alerts.deliver), so delivering alongside the daemon sends nothing twice.
    report = cli_alerts.deliver_all(c) if c.settings.all_channels() else None
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
    from monitor.service.polling import poll_source  # write path: SQLModel, deepdiff, see `import_`

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
    from monitor.risk.impacts import ImpactContext, freshness, make_hook

    return [make_hook(ImpactContext(c.settings.violation_threshold_adr, freshness=freshness(c.settings)))]


def _hooks(c: cli_context.Context) -> list[Hook]:
    """What a poll or an import does inside its transaction after storing changes: impacts, alerts, health."""
    from monitor.service.wiring import poll_hooks

    return poll_hooks(c.settings, utcnow)


def _print_result(r: PollResult, limit: int = 40) -> None:
    if r.outcome == "failed":
        output.console().print(f"{r.source}: FAILED: {output.safe(r.error)}")
        return
    if r.outcome == "quarantined":
        output.console().print(f"{r.source}: QUARANTINED: {output.safe(r.error)}")
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
        since = output.when(r.started_at, sep="T")
        output.console().print(f"  … {len(stored) - limit} more: tierdrift changes --source {r.source} --since {since}")


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
    # The write path pulls SQLModel, the store and deepdiff; loaded here so read-only commands start fast.
    from rich.progress import Progress

    from monitor.service.importer import import_files, plan

    c = cli_context.get(ctx)
    check_source(source)
    items = plan(files, cli_context.opt_ts(at), now=utcnow())
    engine = c.engine
    with Progress(console=output.console(), transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("importing", total=len(items))
        results = import_files(
            engine, source, items, hooks=_import_hooks(c, alert), progress=lambda item, res: progress.advance(task)
        )
    changes = sum(len(r.changes) for r in results)
    output.console().print(f"imported {len(results)} file(s) into {source}: {changes} changes")


# -- read-only commands (their bodies: monitor.cli.reads, which the fast path calls without Typer) -------


@app.command()
def tiers(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT:USDT (BTCUSDT also works).")],
    source: cli_context.SourceOpt,
    at: Annotated[str | None, typer.Option("--at", help="Time (ISO 8601, UTC if no offset). Default: now.")] = None,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """The tier table of SYMBOL in force at a time."""
    reads.tiers(cli_context.get(ctx), symbol, source, at, as_json)


@app.command()
def changes(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol (needs --source).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Detected at or after this time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Detected at or before this time.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=cli_context.MAX_INT, help="At most this many records.")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Every record (human output stops at {reads.CHANGES_SHOWN} without it).")
    ] = False,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Tier changes detected between polls, oldest first.

    Human output shows the first records and how many more there are; a table on a terminal, plain lines when
    piped or long. --json writes every record (or --limit), streamed as it is read."""
    c = cli_context.get(ctx)
    if symbol and not source:
        raise typer.BadParameter("--symbol needs --source", param_hint="--symbol")
    reads.changes(c, source, symbol, since, until, limit, show_all, as_json)


@app.command()
def history(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT:USDT.")],
    source: cli_context.SourceOpt,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """The versions of one symbol's table, with the time each was in force."""
    reads.history(cli_context.get(ctx), symbol, source, as_json)


@app.command()
def sources(ctx: typer.Context, as_json: cli_context.JsonOpt = False) -> None:
    """Each source's last poll, last success, last change and last error."""
    reads.sources(cli_context.get(ctx), as_json)


@app.command()
def polls(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=cli_context.MAX_INT)] = 20,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Recent polls and imports, newest first, with failures and quarantines and their reasons.

    Polls in a row that changed nothing, or failed alike, are one line: how many, from the first to the last."""
    reads.polls(cli_context.get(ctx), source, limit, as_json)


cli_journal.register(cli_positions.positions_app)  # positions edit, positions export
app.add_typer(cli_positions.positions_app, name="positions")
app.add_typer(cli_positions.account_app, name="account")
app.command("impacts")(cli_positions.impacts)
app.command("liq")(cli_positions.liq)
app.add_typer(cli_alerts.alerts_app, name="alerts")
app.add_typer(cli_market.market_app, name="market")
app.command("run")(cli_daemon.run)
app.command("web")(cli_daemon.web)
app.command("check")(cli_daemon.check)
app.command("demo")(cli_daemon.demo)
app.add_typer(cli_daemon.config_app, name="config")
app.add_typer(cli_review.watch_app, name="watch")
app.command("review")(cli_review.review)


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
