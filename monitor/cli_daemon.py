"""`tierdrift run`, `tierdrift check` and `tierdrift config show`."""

from __future__ import annotations

import json
import signal
from typing import Annotated, Any

import typer

from monitor import cli_context, output
from snapshots.timefmt import utcnow

config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one full cycle, then exit (1 if anything failed).")] = False,
) -> None:
    """Run the monitor: poll, recompute positions, refresh market data and deliver alerts, until stopped."""
    from monitor import logs
    from monitor.daemon import Daemon
    from monitor.exchanges import fetch_snapshot
    from monitor.httpserver import HealthServer
    from monitor.lock import LockHeld, writer_lock

    c = cli_context.get(ctx)
    settings = c.settings
    logs.setup(settings.log_format, settings.log_level, settings.secrets())
    lock = writer_lock(c.engine)
    daemon = Daemon(settings, c.engine, lambda src, st: fetch_snapshot(src, st, now=utcnow), lock, utcnow)
    if once:
        if not lock.acquire():
            raise LockHeld(f"another tierdrift writer holds the {lock.describe()}; stop it or wait")
        try:
            report = daemon.cycle()
        finally:
            lock.release()
        failed = [p for p in report.polls if p.outcome != "ok"]
        output.console().print(
            f"cycle: {len(report.polls) - len(failed)}/{len(report.polls)} polls ok, "
            f"{len(report.market_failures)} market data failures, alerts {report.delivery.sent} sent, "
            f"{report.delivery.retried} to retry, {report.delivery.failed} failed"
        )
        if not report.ok:
            raise typer.Exit(1)
        return
    daemon.metrics.watch_outbox(c.engine)
    server = None
    if settings.health_port is not None:

        def ready() -> tuple[bool, str]:
            if not daemon.holding:
                return False, "standby: another replica holds the writer lock"
            return (True, "ready") if lock.still_held() else (False, "writer lock lost")

        server = HealthServer(settings.health_host, settings.health_port, daemon.metrics.exposition, ready).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop_event.set())
    try:
        daemon.run_forever()
    finally:
        if server is not None:
            server.stop()


def check(ctx: typer.Context) -> None:
    """Exit 1 with a one-line reason if a source is stale, a poll is quarantined, or alerts have failed."""
    from datetime import timedelta

    from sqlmodel import Session

    from monitor.health import problems

    c = cli_context.get(ctx)
    with Session(c.engine) as session:
        found = problems(session, c.settings.sources, timedelta(minutes=c.settings.stale_after_minutes), utcnow())
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        print(f"unhealthy: {found[0]}{more}")
        raise typer.Exit(1)
    print(f"ok: {len(c.settings.sources)} source(s) fresh, no failed alerts")


@config_app.command("show")
def show(ctx: typer.Context, as_json: cli_context.JsonOpt = False) -> None:
    """The effective settings (file + environment + defaults), with every secret shown as ***."""
    data: dict[str, Any] = cli_context.get(ctx).settings.redacted()
    if as_json:
        output.emit_json(data)
        return
    for key, value in data.items():
        print(f"{key} = {json.dumps(value, ensure_ascii=False)}")


def demo(
    ctx: typer.Context,
    database: Annotated[
        str | None, typer.Option("--database", help="Run it on this database instead of a temporary one.")
    ] = None,
) -> None:
    """See the whole loop in about 30 seconds, offline: fake exchange, poll, change, impact, alerts."""
    import time

    from rich.panel import Panel

    from monitor.demo import run_demo

    con = output.console()
    started = time.monotonic()
    ok = run_demo(con.print, lambda title, body: con.print(Panel(body, title=title, expand=False)), database)
    con.print(f"demo {'complete' if ok else 'INCOMPLETE'} in {time.monotonic() - started:.1f} s")
    if not ok:
        raise typer.Exit(1)
