"""`tierdrift alerts …`: deliver, test, list and retry alerts.

Heavy imports (SQLModel, httpx through the channels) are loaded inside the commands so that registering
these commands costs nothing to the fast read-only ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli import context as cli_context
from monitor.cli import output
from monitor.service import shapes
from snapshots.timefmt import utcnow

if TYPE_CHECKING:
    from alerts.deliver import DeliveryReport

#: `Delivery.hold` in words (as alerts.schedule.HOLD_WORDS, without importing it for the table).
_HELD = {"quiet": "quiet hours", "digest": "digest interval"}

alerts_app = typer.Typer(help="Deliver, test, list and retry alerts.", no_args_is_help=True)


def deliver_all(c: cli_context.Context) -> DeliveryReport:
    """Attempt every delivery that is due now, each channel in its own worker (a slow receiver delays only its
    own alerts); channels rest after a failure. Ctrl-C abandons the sends in flight: they stay pending."""
    from alerts.deliver import deliver_due
    from monitor.service.alerting import build_channels, delivery_policy, schedules

    channels = build_channels(c.settings)
    try:
        policy, held = delivery_policy(c.settings), schedules(c.settings)
        return deliver_due(c.engine, channels, clock=utcnow, policy=policy, schedules=held)
    finally:
        for channel in channels.values():
            channel.close()


def print_report(report: DeliveryReport) -> None:
    con = output.console()
    con.print(
        f"alerts: {report.sent} sent, {report.retried} to retry, {report.failed} failed"
        + (f", {report.skipped} waiting for their channel" if report.skipped else "")
        + (f", {report.held} held (quiet hours or digest interval)" if report.held else "")
    )
    for line in report.errors[:20]:
        con.print(f"  {output.safe(line)}")


@alerts_app.command("deliver")
def deliver(ctx: typer.Context) -> None:
    """Send the pending alerts that are due now. Exit 1 if any delivery failed for good."""
    report = deliver_all(cli_context.get(ctx))
    print_report(report)
    if report.failed:
        raise typer.Exit(1)


@alerts_app.command("test")
def send_test(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
) -> None:
    """Send a sample alert through each configured channel now and report the outcome (nothing is stored)."""
    from alerts.events import sample_alert
    from monitor.service.alerting import make_channel

    settings = cli_context.get(ctx).settings
    configs = settings.all_channels()
    if channel:
        configs = [c for c in configs if c.name == channel]
        if not configs:
            raise typer.BadParameter(f"no channel named {channel!r}", param_hint="--channel")
    if not configs:
        output.console().print(
            "no channels configured: set TIERDRIFT_WEBHOOK_URL, or TIERDRIFT_SMTP_URL and TIERDRIFT_EMAIL_TO,"
            " or TIERDRIFT_TELEGRAM_TOKEN and TIERDRIFT_TELEGRAM_CHAT_ID, or add [[channels]] to the config file"
        )
        raise typer.Exit(1)
    alert = sample_alert(utcnow())
    failed = 0
    for config in configs:
        ch = make_channel(config, settings.web_public_url)
        try:
            result = ch.send(alert)
        finally:
            ch.close()
        outcome = "ok" if result.ok else f"FAILED: {output.safe(result.error)}"
        failed += not result.ok
        output.console().print(f"{output.safe(config.name)} ({output.safe(ch.describe())}): {outcome}")
    if failed:
        raise typer.Exit(1)


@alerts_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="pending, sent or failed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=cli_context.MAX_INT)] = 100,
    as_json: cli_context.JsonOpt = False,
) -> None:
    """Alerts and their delivery on each channel, newest first (no secret is ever shown)."""
    from sqlmodel import Session, select

    from alerts.db import ChannelState

    if status is not None and status not in shapes.ALERT_STATUSES:
        raise typer.BadParameter("choose pending, sent or failed", param_hint="--status")
    with Session(cli_context.get(ctx).read_engine) as session:
        rows = shapes.alerts(session, status=status, limit=limit)
        disabled = [s for s in session.exec(select(ChannelState)) if s.disabled_at is not None]
    if as_json:
        output.emit_json(rows)
        return
    for s in disabled:
        output.console().print(f"channel {output.safe(s.name)} is DISABLED: {output.safe(s.disabled_reason)}")
    if not rows:
        output.console().print("no alerts")
        return
    table = output.new_table(
        "created", "alert", "kind", "severity", "channel", "status", "tries", "next / sent", "error",
        wrap=("created", "alert", "channel", "next / sent", "error"),
    )  # fmt: skip
    for r in rows:
        when = r["sent_at"] if r["status"] == "sent" else (r["next_attempt_at"] if r["status"] == "pending" else None)
        shown = output.when_text(when, "")
        if r["status"] == "pending" and r["held"]:
            shown = f"held ({_HELD.get(r['held'], r['held'])}) until {shown}"
        table.add_row(
            output.when_text(r["created_at"]), f"{r['alert_id']}\n{output.safe(r['title'])}", r["kind"],
            r["severity"], output.safe(r["channel"]), r["status"], str(r["attempts"]), shown,
            output.safe(r["last_error"] or ""),
        )  # fmt: skip
    output.console().print(table)


@alerts_app.command("retry")
def retry(
    ctx: typer.Context,
    alert_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="An alert id from `alerts list`.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed delivery.")] = False,
) -> None:
    """Put failed deliveries back in the queue (and re-enable a channel disabled by a 410), then deliver."""
    from sqlalchemy import update
    from sqlmodel import col, select

    from alerts.db import ChannelState, Delivery
    from snapshots.errors import NotFound

    if bool(alert_id) == failed:
        raise typer.BadParameter("give an alert ID or --failed (not both)")
    now = utcnow()
    with cli_context.get(ctx).write_session() as session:
        cond = col(Delivery.status) == "failed"
        stmt = select(Delivery).where(cond if failed else col(Delivery.alert_id) == alert_id)
        rows = [d for d in session.exec(stmt) if d.status == "failed"]
        if not rows:
            raise NotFound(f"no failed delivery for alert {alert_id}" if alert_id else "no failed deliveries")
        ids = [d.id for d in rows]
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(status="pending", next_attempt_at=now, created_at=now, last_error=None)
        )
        for name in {d.channel for d in rows}:
            state = session.get(ChannelState, name)
            if state is not None:
                state.disabled_at = state.disabled_reason = state.retry_at = None
                state.consecutive_failures = 0
                session.add(state)
        session.commit()
    output.console().print(f"{len(rows)} deliveries queued again")
    print_report(deliver_all(cli_context.get(ctx)))
