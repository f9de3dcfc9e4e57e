"""Quiet hours and the digest interval: the window's arithmetic across midnight and the clock changes, the
settings' one-line errors, and the delivery path with a fixed clock against a webhook receiver on 127.0.0.1
(SQLite and PostgreSQL): held alerts go as one grouped message, marked together, resent with the same id,
never lost or doubled, and `alerts list` says when they will go."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from alerts.channels.webhook import WebhookChannel
from alerts.config import Filters, WebhookConfig
from alerts.db import Delivery
from alerts.deliver import DeliveryReport, deliver_due
from alerts.events import new_id
from alerts.model import Alert, Severity
from alerts.outbox import Route, enqueue
from alerts.schedule import QuietHours, Schedule, group_alert
from monitor.cli import app
from monitor.config.paths import ConfigError
from monitor.config.settings import load_settings
from tests.alerts.loopback import Reply, Server, serving

BERLIN = QuietHours.parse("22:00-07:00", "Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- the window ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "inside", "ends"),
    [
        ("2026-01-15T20:59:00", False, "2026-01-16T06:00:00"),  # 21:59 CET, before the window
        ("2026-01-15T21:00:00", True, "2026-01-16T06:00:00"),  # 22:00 CET
        ("2026-01-15T23:30:00", True, "2026-01-16T06:00:00"),  # after midnight local
        ("2026-01-16T05:59:59", True, "2026-01-16T06:00:00"),
        ("2026-01-16T06:00:00", False, "2026-01-17T06:00:00"),  # 07:00 CET: over
        ("2026-07-15T20:00:00", True, "2026-07-16T05:00:00"),  # summer: 22:00 CEST is 20:00 UTC
        # The night the clocks go forward (29 March 2026, 02:00 → 03:00): it still ends at 07:00 local (CEST).
        ("2026-03-28T22:00:00", True, "2026-03-29T05:00:00"),
        # The night they go back (25 October 2026, 03:00 → 02:00): 07:00 local is now CET.
        ("2026-10-24T21:00:00", True, "2026-10-25T06:00:00"),
        ("2026-10-25T01:30:00", True, "2026-10-25T06:00:00"),  # the repeated hour
    ],
)
def test_window_across_midnight_and_clock_changes(now: str, inside: bool, ends: str) -> None:
    assert BERLIN.contains(utc(now)) is inside
    assert BERLIN.ends_after(utc(now)) == utc(ends)


def test_a_daytime_window_and_utc() -> None:
    lunch = QuietHours.parse("12:00-13:30", "UTC")
    assert not lunch.contains(utc("2026-05-01T11:59:00")) and lunch.contains(utc("2026-05-01T13:29:00"))
    assert lunch.ends_after(utc("2026-05-01T12:10:00")) == utc("2026-05-01T13:30:00")


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)))
def test_the_end_is_the_next_local_seven_and_outside_the_window(now: datetime) -> None:
    end = BERLIN.ends_after(now)
    assert now < end <= now + timedelta(hours=25)
    local = end.astimezone(BERLIN.tz)
    assert (local.hour, local.minute) == (7, 0) and not BERLIN.contains(end)
    if BERLIN.contains(now):
        assert end - now <= timedelta(hours=10)  # a 9-hour window, one clock change at most


def test_hold_rules() -> None:
    s = Schedule(BERLIN, timedelta(minutes=60))
    night, day = utc("2026-01-15T23:00:00"), utc("2026-01-15T12:00:00")
    assert s.hold("position_risk", Severity.CRITICAL, night, None) is None  # critical always goes
    assert s.hold("position_risk", Severity.WARNING, night, None) == (utc("2026-01-16T06:00:00"), "quiet")
    assert s.hold("test", Severity.INFO, night, None) is None
    assert s.hold("tier_changes", Severity.INFO, day, None) is None  # the first digest goes
    assert s.hold("tier_changes", Severity.INFO, day, day - timedelta(minutes=10)) == (
        day + timedelta(minutes=50), "digest",
    )  # fmt: skip
    assert s.hold("position_impact", Severity.INFO, day, day - timedelta(minutes=10)) is None
    # both: the later of the two ends
    assert s.hold("tier_changes", Severity.INFO, utc("2026-01-16T05:30:00"), utc("2026-01-16T05:29:00")) == (
        utc("2026-01-16T06:29:00"), "digest",
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TIERDRIFT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('quiet_hours = "22-7"', "'22-7' is not a window like 22:00-07:00"),
        ('quiet_hours = "25:00-07:00"', "is not a window"),
        ('quiet_hours = "07:00-07:00"', "starts and ends at the same time"),
        ('quiet_hours = "22:00-07:00"\nquiet_tz = "Europe/Berlni"', "'Europe/Berlni' is not an IANA time zone"),
        ('quiet_tz = "../../etc/passwd"', "is not an IANA time zone"),
        ("digest_min_interval_minutes = 0", "digest_min_interval_minutes"),
        ("digest_min_interval_minutes = true", "digest_min_interval_minutes"),
    ],
)
def test_bad_schedule_settings_are_one_line(tmp_path: Path, table: str, words: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[channels]]\ntype = "webhook"\nurl = "https://hooks.example.com/x"\n{table}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)


# -- delivery --------------------------------------------------------------------------------------

#: 23:00 in Berlin (CET) on 15 January 2026: inside the quiet window, which ends at 06:00 UTC.
NIGHT = utc("2026-01-15T22:00:00")
MORNING = utc("2026-01-16T06:00:00")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Server]:
    with serving() as server:
        server.default = Reply(204)
        yield server


def hook(server: Server, **kw: Any) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(name="hook", url=SecretStr(f"{server.url}/in"), **kw))


def alert(kind: str, severity: Severity, at: datetime, title: str) -> Alert:
    return Alert(new_id(), kind, severity, at, title, "bybit-linear", lines=(f"detected at {at}", "2 tier_changed"))


def put(engine: Engine, *alerts: Alert) -> None:
    with Session(engine) as session:
        enqueue(session, alerts, [Route("hook", Filters())], alerts[0].created_at)
        session.commit()


def deliveries(engine: Engine) -> list[Delivery]:
    with Session(engine) as session:
        return list(session.exec(select(Delivery).order_by(col(Delivery.id))))


def run(engine: Engine, channel: WebhookChannel, clock: Clock, schedule: Schedule) -> DeliveryReport:
    return deliver_due(engine, {"hook": channel}, clock=clock, schedules={"hook": schedule})


def test_quiet_hours_hold_all_but_critical_and_send_them_as_one_message(engine: Engine, receiver: Server) -> None:
    quiet = Schedule(BERLIN)
    clock = Clock(NIGHT)
    info = alert("tier_changes", Severity.INFO, NIGHT, "bybit-linear: 2 tier change(s)")
    warn = alert("position_impact", Severity.WARNING, NIGHT, "ETH long #2: liquidation price up")
    crit = alert("position_risk", Severity.CRITICAL, NIGHT, "BTC long #1: MARK BEYOND LIQUIDATION PRICE")
    put(engine, info, warn, crit)

    report = run(engine, hook(receiver), clock, quiet)
    assert (report.sent, report.held) == (1, 2)
    assert [r.json()["id"] for r in receiver.requests] == [crit.id]
    held = [d for d in deliveries(engine) if d.status == "pending"]
    assert {d.alert_id for d in held} == {info.id, warn.id}
    assert all(d.hold == "quiet" and d.next_attempt_at.replace(tzinfo=UTC) == MORNING for d in held)
    assert all(d.attempts == 0 for d in held)  # holding is not an attempt

    clock.now = utc("2026-01-16T03:00:00")  # still night: nothing moves
    assert run(engine, hook(receiver), clock, quiet).attempted == 0
    clock.now = MORNING
    report = run(engine, hook(receiver), clock, quiet)
    assert report.sent == 2 and len(receiver.requests) == 2
    group = receiver.requests[1].json()
    assert group["kind"] == "group" and group["id"].startswith("group_") and group["severity"] == "warning"
    assert group["title"] == "2 alerts (held: quiet hours)"
    assert [a["id"] for a in group["data"]["alerts"]] == sorted([info.id, warn.id])  # by time, then id
    assert any(warn.title in line for line in group["summary"])
    rows = deliveries(engine)
    assert all(d.status == "sent" for d in rows)
    assert {d.group_id for d in rows if d.alert_id != crit.id} == {group["id"]}
    assert run(engine, hook(receiver), clock, quiet).attempted == 0 and len(receiver.requests) == 2  # no double


def test_a_failed_group_is_retried_whole_with_the_same_id(engine: Engine, receiver: Server) -> None:
    quiet = Schedule(BERLIN)
    clock = Clock(NIGHT)
    put(engine, *(alert("position_impact", Severity.INFO, NIGHT, f"#{n}") for n in range(3)))
    run(engine, hook(receiver), clock, quiet)
    receiver.script(Reply(503))
    clock.now = MORNING
    report = run(engine, hook(receiver), clock, quiet)
    assert (report.sent, report.retried) == (0, 3)
    rows = deliveries(engine)
    assert len({d.next_attempt_at for d in rows}) == 1 and all(d.attempts == 1 for d in rows)  # still one group
    clock.now = MORNING + timedelta(hours=1)
    put(engine, alert("position_impact", Severity.INFO, clock.now, "#late"))  # arrives after the group formed
    report = run(engine, hook(receiver), clock, quiet)
    assert report.sent == 4
    first, again, late = (r.json() for r in receiver.requests)
    assert again["id"] == first["id"] and again == first  # the same message, the same id
    assert late["title"] == "#late"  # not folded into the old group
    assert [d.status for d in deliveries(engine)] == ["sent"] * 4


def test_a_group_still_failing_at_night_waits_for_the_morning(engine: Engine, receiver: Server) -> None:
    quiet = Schedule(BERLIN)
    clock = Clock(NIGHT)
    put(engine, *(alert("position_impact", Severity.INFO, NIGHT, f"#{n}") for n in range(2)))
    run(engine, hook(receiver), clock, quiet)
    receiver.default = Reply(503)
    clock.now = MORNING
    assert run(engine, hook(receiver), clock, quiet).retried == 2
    clock.now = utc("2026-01-16T21:30:00")  # the retry comes due the next night
    report = run(engine, hook(receiver), clock, quiet)
    assert (report.attempted, report.held) == (0, 2) and len(receiver.requests) == 1
    rows = deliveries(engine)
    assert {d.next_attempt_at.replace(tzinfo=UTC) for d in rows} == {utc("2026-01-17T06:00:00")}
    assert len({d.group_id for d in rows}) == 1  # still the same group
    receiver.default = Reply(204)
    clock.now = utc("2026-01-17T06:00:00")
    assert run(engine, hook(receiver), clock, quiet).sent == 2
    assert receiver.requests[1].json()["id"] == receiver.requests[0].json()["id"]


def test_a_crash_between_send_and_mark_resends_the_group_with_its_id(
    engine: Engine, receiver: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = Schedule(BERLIN)
    clock = Clock(NIGHT)
    put(engine, *(alert("position_impact", Severity.WARNING, NIGHT, f"#{n}") for n in range(2)))
    run(engine, hook(receiver), clock, quiet)
    clock.now = MORNING

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed between send and mark")

    monkeypatch.setattr("alerts.deliver._mark_group", crash)
    report = run(engine, hook(receiver), clock, quiet)
    assert report.sent == 0 and any("killed" in e for e in report.errors)
    assert all(d.status == "pending" and d.claimed_until is not None for d in deliveries(engine))
    monkeypatch.undo()
    clock.now = MORNING + timedelta(minutes=5)  # the dead claim has expired
    assert run(engine, hook(receiver), clock, quiet).sent == 2
    first, resent = (r.json() for r in receiver.requests)
    assert resent["id"] == first["id"] and resent["data"] == first["data"]  # at worst a resend, same id
    assert [d.status for d in deliveries(engine)] == ["sent", "sent"]


def test_a_burst_of_digests_is_one_message_per_interval(engine: Engine, receiver: Server) -> None:
    hourly = Schedule(digest_interval=timedelta(minutes=60))
    t0 = utc("2026-02-02T10:00:00")
    clock = Clock(t0)
    put(engine, alert("tier_changes", Severity.INFO, t0, "bybit-linear: first"))
    assert run(engine, hook(receiver), clock, hourly).sent == 1
    for minutes in (5, 10, 20):
        clock.now = t0 + timedelta(minutes=minutes)
        put(engine, alert("tier_changes", Severity.WARNING, clock.now, f"bybit-linear: +{minutes}"))
        put(engine, alert("position_impact", Severity.INFO, clock.now, f"impact +{minutes}"))
        report = run(engine, hook(receiver), clock, hourly)
        assert (report.sent, report.held) == (1, 1)  # the impact goes, the digest waits
    held = [d for d in deliveries(engine) if d.status == "pending"]
    assert len(held) == 3 and {d.next_attempt_at.replace(tzinfo=UTC) for d in held} == {t0 + timedelta(hours=1)}
    clock.now = t0 + timedelta(hours=1)
    assert run(engine, hook(receiver), clock, hourly).sent == 3
    digests = [r.json() for r in receiver.requests if r.json()["kind"] in ("tier_changes", "group")]
    assert [d["title"] for d in digests] == ["bybit-linear: first", "3 tier-change digests (held: digest interval)"]
    # The group counts as the channel's last digest: the next one waits an hour from it.
    clock.now = t0 + timedelta(hours=1, minutes=1)
    put(engine, alert("tier_changes", Severity.INFO, clock.now, "bybit-linear: next"))
    assert run(engine, hook(receiver), clock, hourly).held == 1


def test_deliver_holds_and_alerts_list_says_until_when(tmp_path: Path, db_url: str, receiver: Server) -> None:
    from monitor.store.database import open_engine

    engine = open_engine(db_url)
    now = datetime.now(UTC)
    put(engine, alert("position_impact", Severity.INFO, now, "held one"))
    engine.dispose()
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=1)).strftime("%H:%M")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}/in"\n'
                   f'quiet_hours = "{start}-{end}"\nquiet_tz = "UTC"\n')  # fmt: skip
    delivered = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "deliver"])
    assert delivered.exit_code == 0, delivered.output
    assert "1 held (quiet hours or digest interval)" in delivered.output and receiver.requests == []
    listed = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "list"])
    assert listed.exit_code == 0, listed.output
    assert "held (quiet hours) until" in " ".join(listed.output.split())
    as_json = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "list", "--json"])
    (row,) = json.loads(as_json.stdout)
    assert row["held"] == "quiet" and row["status"] == "pending"
    assert row["next_attempt_at"] == (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:00Z")


def test_the_startup_summary_names_the_schedule(tmp_path: Path) -> None:
    from monitor.cli.daemon import describe_channel

    cfg = tmp_path / "config.toml"
    table = '[[channels]]\nname = "ops"\ntype = "webhook"\nurl = "https://hooks.example.com/x"\n'
    cfg.write_text(
        table + 'quiet_hours = "22:00-07:00"\nquiet_tz = "Europe/Berlin"\ndigest_min_interval_minutes = 60\n'
    )
    (config,) = load_settings(cfg).all_channels()
    assert describe_channel(config) == (
        "webhook 'ops' → https://hooks.example.com/… (json) (quiet 22:00-07:00 Europe/Berlin)"
        " (a digest every 60 min at most)"
    )


def test_group_alert_is_pure_and_counts_what_it_cannot_list() -> None:
    members = [alert("position_impact", Severity.INFO, NIGHT + timedelta(seconds=n), f"#{n}") for n in range(70)]
    one = group_alert("group_x", members, ["quiet"] * 70)
    assert one == group_alert("group_x", list(reversed(members)), ["quiet"] * 70)
    assert one.lines[-1] == "… and 10 more: tierdrift alerts list" and len(one.data["alerts"]) == 70
