"""`tierdrift run`, `tierdrift check` and `tierdrift config show`."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
from snapshots.timefmt import utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from alerts.config import ChannelConfig
    from monitor.config.settings import Settings
    from monitor.service.daemon import Daemon
    from monitor.service.httpserver import HealthServer, Served
    from monitor.service.metrics import Metrics

config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one full cycle, then exit (1 if anything failed).")] = False,
) -> None:
    """Run the monitor: poll, recompute positions, refresh market data and deliver alerts, until stopped."""
    from monitor.exchanges.clients import Clients
    from monitor.service import logs
    from monitor.service.daemon import Daemon
    from monitor.service.lock import writer_lock
    from monitor.service.metrics import Metrics

    c = cli_context.get(ctx)
    settings = c.settings
    metrics = Metrics()
    # Start-up checks come first, each a one-line error and exit 1: the health and web ports are bound (the
    # web one refused off loopback without a token) and the database opened before anything is logged,
    # locked or polled. `--once` serves nothing.
    server = None if once else _bind_health(settings, metrics)
    web = None
    # One client per source, its markets and parse cache, kept across the polls; closed when we stop.
    clients = Clients(now=utcnow)
    try:
        web = None if once else _bind_web(settings)
        engine = c.engine
        logs.setup(settings.log_format, settings.log_level, settings.secrets())
        _log_start(settings, server.url if server else None, once, _web_address(settings, web))
        lock = writer_lock(engine)
        daemon = Daemon(settings, engine, clients, lock, utcnow, metrics=metrics)
        if once:
            _run_once(daemon)
            return
        for sig in (signal.SIGTERM, signal.SIGINT):  # before anything answers: a stop is never a kill
            signal.signal(sig, lambda *_: daemon.stop_event.set())
        daemon.metrics.watch_outbox(engine)
        if server is not None:
            server.ready = _readiness(daemon)
            server.start()
        if web is not None:
            web.start(_web_app(settings, engine, daemon))
        freeze_start_up(settings)
        daemon.run_forever()
    finally:
        clients.close()
        for served in (web, server):
            if served is not None:
                served.stop()


def web(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default: web_host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Port (default: web_port, 8470; 0: any free port).")
    ] = None,
) -> None:
    """Serve the dashboard and the read-only API over the database, without polling (no lock taken)."""
    import logging  # here, not at the top: the read-only commands start without it

    from monitor.service import logs
    from monitor.web.app import create_app
    from monitor.web.serve import address, bind

    c = cli_context.get(ctx)
    settings = c.settings if host is None else c.settings.model_copy(update={"web_host": host})
    if port is None and not settings.web_port:
        raise typer.BadParameter("web_port is 0 (off): pass --port", param_hint="--port")
    server = bind(settings, port=port, setting="--host" if host is not None else "web_host")
    assert server is not None
    try:
        engine = c.read_engine  # an existing database only: nothing is created, nothing written
        logs.setup(settings.log_format, settings.log_level, settings.secrets())
        token = "token required" if settings.web_token else "no token: this machine only"
        logging.getLogger("tierdrift").info(
            "dashboard: %s (read-only, no daemon; API under /api/v1; %s); Ctrl-C stops it",
            address(settings, server),
            token,
        )
        server.serve_forever(create_app(settings, engine=engine, read_only=True))
    finally:
        server.stop()


def freeze_start_up(settings: Settings) -> None:
    """Move what start-up built into the garbage collector's permanent generation (`gc.freeze`).

    The daemon's heap is mostly module objects (ccxt's exchange classes alone are some 400,000). CPython
    runs a full collection only when the objects promoted since the last one exceed a quarter of the
    long-lived ones it counted at the last full collection. The polls leave few objects in reference
    cycles, but these hold large buffers (answers, cursors): with a million long-lived objects counted,
    no full collection came for many minutes and RSS rose by about 500 MB an hour. Frozen, the start-up
    objects are neither walked nor counted (the collection after `freeze` counts the rest, nearly none),
    so full collections keep pace with the polls. The ccxt classes the tier-table fetches use are
    loaded here (only those: `monitor.exchanges.lightccxt`), so that they are frozen too rather than
    counted from the first poll on; market data loads its classes when there are positions to price.
    """
    import gc

    from monitor.exchanges.clients import tier_classes
    from monitor.exchanges.lightccxt import preload

    classes = tier_classes(settings)
    if classes:
        preload([*classes, "BaseError"])  # now, to be frozen: the first poll would load them anyway
    gc.collect()  # start-up's own garbage is freed, not frozen
    gc.freeze()
    gc.collect()  # counts the long-lived objects again: those outside the permanent generation


def _run_once(daemon: Daemon) -> None:
    from monitor.service.lock import LockHeld

    lock = daemon.lock
    if not lock.acquire():
        raise LockHeld(f"another tierdrift writer holds the {lock.describe()}{lock.held_by()}; stop it or wait")
    try:
        report = daemon.cycle(deliver=False)
    finally:
        lock.release()
    report.delivery = daemon.deliver()  # after the lock is released: deliveries are claimed one by one
    failed = [p for p in report.polls if p.outcome != "ok"]
    output.console().print(
        f"cycle: {len(report.polls) - len(failed)}/{len(report.polls)} polls ok, "
        f"{len(report.market_failures)} market data failures, alerts {report.delivery.sent} sent, "
        f"{report.delivery.retried} to retry, {report.delivery.failed} failed"
    )
    if not report.ok:
        raise typer.Exit(1)


def _bind_health(settings: Settings, metrics: Metrics) -> HealthServer | None:
    """The health server, bound but not serving yet (`HealthServerError` if it cannot listen), or None."""
    from monitor.service.httpserver import HealthServer

    address = settings.health_address
    if address is None:
        return None
    return HealthServer(*address, metrics.exposition, lambda: (False, "starting"))


def _bind_web(settings: Settings) -> Served | None:
    """The dashboard's server, bound but not serving yet (`WebServerError` if it must not or cannot listen)."""
    from monitor.web.serve import bind  # the web stack: only the commands that serve import it

    return bind(settings)


def _web_address(settings: Settings, web: Served | None) -> str | None:
    from monitor.web.serve import address

    return address(settings, web) if web is not None else None


def _web_app(settings: Settings, engine: Engine, daemon: Daemon) -> Any:
    """The dashboard and API over the daemon's engine; `/readyz` and the pages ask the daemon how it is."""
    from monitor.web.app import create_app
    from snapshots.timefmt import iso

    ready = _readiness(daemon)

    def status() -> dict[str, Any]:
        ok, reason = ready()
        return {"ready": ok, "reason": reason, "next_poll": {s: iso(t) for s, t in daemon.next_polls().items()}}

    return create_app(settings, engine=engine, status=status, metrics=daemon.metrics)


def _readiness(daemon: Daemon) -> Callable[[], tuple[bool, str]]:
    def ready() -> tuple[bool, str]:
        if not daemon.holding:
            return False, "standby: another replica holds the writer lock"
        return (True, "ready") if daemon.lock.still_held() else (False, "writer lock lost")

    return ready


def _log_start(settings: Settings, health_url: str | None, once: bool, web_url: str | None = None) -> None:
    """The start-up summary on the log (stderr), then every warning: a newcomer must learn here, not after
    the first tier change, that no alert will reach anyone."""
    import logging  # only `run` logs: the read-only commands that import this module need not load it

    log = logging.getLogger("tierdrift")
    for line in startup_summary(settings, health_url, once, utcnow(), web_url):
        log.info("%s", line)
    for line in settings.warnings():
        log.warning("%s", line)


def startup_summary(
    settings: Settings, health_url: str | None, once: bool, now: datetime, web_url: str | None = None
) -> list[str]:
    """What `tierdrift run` is about to do: database (password hidden), the config file, sources and their
    intervals, channels (no URL path or password), the health server, when the next poll starts, and where
    the dashboard is."""
    from monitor.config.paths import redact_url

    s = settings
    jitter = f", ±{s.poll_jitter_seconds:g} s jitter" if s.poll_jitter_seconds else ""
    sources = ", ".join(f"{src} every {s.interval_for(src):g} s" for src in s.sources)
    channels = [describe_channel(ch) for ch in s.all_channels()]
    if once:
        health, next_poll = "off (--once)", f"now ({_second(now)}), one cycle (--once)"
    else:
        health = f"{health_url}/healthz, /readyz, /metrics" if health_url else "off (set health_port to enable it)"
        next_poll = f"now ({_second(now)}) once this process holds the writer lock, then per the intervals above"
    config = [f"config file: {s.config_file}"] if s.config_file else []
    return [
        f"tierdrift starting: database {redact_url(s.database_url)}",
        *config,
        f"sources: {sources}{jitter}",
        f"channels: {'; '.join(channels) if channels else 'NONE'}",
        f"health server: {health}",
        f"next poll: {next_poll}",
        f"dashboard: {_dashboard(settings, web_url, once)}",
    ]


def _dashboard(settings: Settings, web_url: str | None, once: bool) -> str:
    if once:
        return "off (--once)"
    if web_url is None:
        return "off (set web_port to serve it)"
    token = "token required" if settings.web_token else "no token: this machine only"
    return f"{web_url} (read-only API under {web_url}api/v1; {token})"


def describe_channel(channel: ChannelConfig) -> str:
    """`webhook 'ops' → https://hooks.example.com/… (json)`: the host only, as a webhook URL's path or query
    can be the credential (so can a Telegram bot's path and an ntfy topic); an e-mail channel's relay without
    its password, and its recipients."""
    from urllib.parse import urlsplit

    from alerts.config import AppriseConfig, NtfyConfig, TelegramConfig, WebhookConfig, apprise_scheme
    from alerts.smtpurl import parse_smtp_url

    def host_only(url: str) -> str:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        return f"{parts.scheme}://{host}{port}/…"

    filtered = " (filtered)" if channel.filters.model_dump() != type(channel.filters)().model_dump() else ""
    if channel.quiet_hours:
        filtered += f" (quiet {channel.quiet_hours} {channel.quiet_tz})"
    if channel.digest_min_interval_minutes:
        filtered += f" (a digest every {channel.digest_min_interval_minutes:g} min at most)"
    if isinstance(channel, WebhookConfig):
        return f"webhook {channel.name!r} → {host_only(channel.url.get_secret_value())} ({channel.format}){filtered}"
    if isinstance(channel, TelegramConfig):  # the bot token is in the URL path: the host only
        return f"telegram {channel.name!r} → {host_only(channel.api_url)} chat {channel.chat_id}{filtered}"
    if isinstance(channel, NtfyConfig):  # the topic name can be the credential: the host only
        return f"ntfy {channel.name!r} → {host_only(channel.url.get_secret_value())}{filtered}"
    if isinstance(channel, AppriseConfig):  # a token can be anywhere in an Apprise URL, its host too
        schemes = ", ".join(f"{apprise_scheme(u.get_secret_value())}://…" for u in channel.urls)
        return f"apprise {channel.name!r} → {schemes}{filtered}"
    relay = parse_smtp_url(channel.smtp_url.get_secret_value()).describe()
    return f"email {channel.name!r} → {relay} to {', '.join(channel.to)}{filtered}"


def _second(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check(ctx: typer.Context) -> None:
    """Exit 1 with a one-line reason if a source is stale, a poll is quarantined, or alerts have failed."""
    from datetime import timedelta

    from sqlmodel import Session

    from monitor.service.health import problems

    c = cli_context.get(ctx)
    cli_context.warn(c.settings)  # on stderr: the one line on stdout and the exit code stay what cron expects
    with Session(c.read_engine) as session:
        found = problems(session, c.settings.sources, timedelta(minutes=c.settings.stale_after_minutes), utcnow())
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        print(f"unhealthy: {output.safe(found[0])}{more}")
        raise typer.Exit(1)
    print(f"ok: {len(c.settings.sources)} source(s) fresh, no failed alerts")


@config_app.command("show")
def show(ctx: typer.Context, as_json: cli_context.JsonOpt = False) -> None:
    """The effective settings (file + environment + defaults), with every secret shown as ***."""
    settings = cli_context.get(ctx).settings
    cli_context.warn(settings)
    data: dict[str, Any] = settings.redacted()
    if as_json:
        output.emit_json(data)
        return
    for key, value in data.items():
        # JSON escapes C0 controls; `safe` also shows C1 and bidi characters a config value may hold.
        print(f"{key} = {output.safe(json.dumps(value, ensure_ascii=False), limit=None)}")


def demo(
    ctx: typer.Context,
    database: Annotated[
        str | None, typer.Option("--database", help="Run it on this database instead of a temporary one.")
    ] = None,
) -> None:
    """See the whole loop in about 30 seconds, offline: fake exchange, poll, change, impact, alerts."""
    import time

    from rich.panel import Panel
    from rich.text import Text

    from monitor.service.demo import run_demo

    con = output.console()
    started = time.monotonic()

    def show(title: str, body: str) -> None:
        # A Panel reads a str title as Rich markup, and the title quotes a delivered e-mail's Subject.
        con.print(Panel(body, title=Text(output.safe(title)), expand=False))

    ok = run_demo(con.print, show, database)
    con.print(f"demo {'complete' if ok else 'INCOMPLETE'} in {time.monotonic() - started:.1f} s")
    if not ok:
        raise typer.Exit(1)
