"""The Apprise channel through real Apprise URLs (`json://`, `form://`) aimed at a receiver on 127.0.0.1
(tests/alerts/loopback.py): what arrives, each failure (5xx, timeout, the deadline, a stuck service) as a
retryable result, a retry that skips the URL that already took the alert, and no credential anywhere."""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from alerts.channels.apprise_channel import AppriseChannel
from alerts.channels.watchdog import Abort
from alerts.config import AppriseConfig, Filters
from alerts.db import Delivery
from alerts.deliver import deliver_due
from alerts.model import Alert, Severity
from alerts.outbox import Route, enqueue
from monitor.cli import app
from monitor.config.paths import ConfigError
from monitor.config.settings import load_settings
from monitor.service.alerting import make_channel
from tests.alerts.loopback import Reply, Server, serving

pytest.importorskip("apprise", reason="the apprise extra is not installed")

USER, PASSWORD, PATH = "alice", "s3cr3t-Pw_9f2c", "hooks/tk-8d1f7a2b9c"
NOW = datetime(2026, 3, 14, 9, 30, 5, tzinfo=UTC)
HOSTILE = Alert(
    id="alert_hostile",
    kind="position_risk",
    severity=Severity.CRITICAL,
    created_at=NOW,
    title="BTC <b>x</b> & \x1b[31m",
    source="binance-usdm",
    symbol="BTC/USDT:USDT",
    lines=("note: <i>&amp;", "esc \x1b]0;title\x07 end"),
    rows=(("liquidation price", "56,001.51", "58,002.00"),),
    data={"position": {"id": 3}},
)


@pytest.fixture
def receiver() -> Iterator[Server]:
    with serving() as server:
        server.default = Reply(200, b"ok")
        yield server


def url(server: Server, scheme: str = "json") -> str:
    return f"{scheme}://{USER}:{PASSWORD}@{server.url.removeprefix('http://')}/{PATH}"


def channel(*urls: str, public_url: str | None = None, **kw: Any) -> AppriseChannel:
    return AppriseChannel(AppriseConfig(urls=[SecretStr(u) for u in urls], **kw), public_url=public_url)


def assert_no_secret(*texts: str | None) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for text in texts:
        assert text is not None
        for secret in (PASSWORD, PATH, "tk-8d1f7a2b9c", basic):
            assert secret not in text, (secret, text)


def test_a_json_url_receives_title_body_and_type(receiver: Server) -> None:
    ch = channel(url(receiver), public_url="https://td.example.com")
    assert ch.send(HOSTILE).ok
    (req,) = receiver.requests
    assert req.path == f"/{PATH}"
    assert req.headers["authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    got = req.json()
    assert got["type"] == "failure"  # critical
    assert got["title"] == "CRITICAL: BTC <b>x</b> & \\x1b[31m"  # control characters shown, never sent
    message = got["message"]
    assert "note: <i>&amp;" in message and "\x1b" not in message and "\x07" not in message
    assert "liquidation price  56,001.51  → 58,002.00" in message
    assert "open in tierdrift: https://td.example.com/positions/3" in message
    assert "alert:    alert_hostile" in message  # the id at least reaches a human reader
    assert_no_secret(ch.describe())
    assert ch.describe() == "Apprise, 1 URL(s): json://…"


def test_a_form_url_and_the_severity_as_notify_type(receiver: Server) -> None:
    alert = Alert("alert_w", "tier_changes", Severity.WARNING, NOW, "bybit-linear: 3 changes", lines=("a",))
    assert channel(url(receiver, "form")).send(alert).ok
    form = parse_qs(receiver.requests[0].body.decode())
    assert form["type"] == ["warning"] and form["title"] == ["WARNING: bybit-linear: 3 changes"]


@pytest.mark.parametrize(("status", "body"), [(503, b"down"), (500, f"oops at /{PATH} for {PASSWORD}".encode())])
def test_a_server_error_is_retryable_and_scrubbed(receiver: Server, status: int, body: bytes) -> None:
    receiver.script(Reply(status, body))
    ch = channel(url(receiver))
    result = ch.send(HOSTILE)
    assert not result.ok and result.retryable and not result.gone
    assert result.error is not None and "json://… (URL #1) failed" in result.error and "\n" not in result.error
    assert str(status) in result.error
    assert_no_secret(result.error)


def test_a_timeout_and_the_deadline_are_retryable(receiver: Server) -> None:
    receiver.script(Reply(200, delay=1.5))
    result = channel(url(receiver), timeout=0.3).send(HOSTILE)
    assert not result.ok and result.retryable and result.error is not None
    assert_no_secret(result.error)
    receiver.script(Reply(200, delay=3))
    started = time.monotonic()
    ch = channel(url(receiver), timeout=10, deadline=0.5)
    result = ch.send(HOSTILE)
    assert time.monotonic() - started < 2  # the caller was back at the deadline, the worker still waits
    assert not result.ok and result.retryable and result.error == "Apprise json://…: no answer within 0.5 s"
    busy = ch.send(HOSTILE)  # the stuck worker has not returned: no second one is started
    assert not busy.ok and busy.error is not None and "has not returned" in busy.error
    assert len(receiver.requests) == 2


def test_an_abort_cuts_the_wait_short(receiver: Server) -> None:
    receiver.script(Reply(200, delay=3))
    abort, out = Abort(), []
    ch = channel(url(receiver), timeout=10, deadline=20)

    def send() -> None:
        with abort.governing():
            out.append(ch.send(HOSTILE))

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(0.3)
    abort.abort()
    thread.join(2)
    assert out and not out[0].ok and out[0].error is not None and "aborted" in out[0].error


def test_a_retry_skips_the_url_that_took_the_alert(receiver: Server) -> None:
    with serving() as broken:
        broken.default = Reply(503, b"down")
        ch = channel(url(receiver), url(broken, "form"))
        first = ch.send(HOSTILE)
        assert not first.ok and first.error is not None and "form://… (URL #2) failed" in first.error
        broken.default = Reply(200, b"ok")
        assert ch.send(HOSTILE).ok
        assert len(receiver.requests) == 1 and len(broken.requests) == 2  # no second copy to the first URL


def test_apprise_logs_never_reach_ours(
    receiver: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.script(Reply(500, f"echo {PASSWORD} {PATH}".encode()))
    # As `tierdrift run` sets it (monitor.service.logs.setup): urllib3's request lines stay below WARNING.
    monkeypatch.setattr(logging.getLogger("urllib3"), "level", logging.WARNING)
    with caplog.at_level(logging.DEBUG):
        channel(url(receiver)).send(HOSTILE)
        with pytest.raises(ValueError):
            AppriseConfig(urls=[SecretStr(f"nosuchservice://{PASSWORD}")])
    assert_no_secret(caplog.text, *(r.getMessage() for r in caplog.records))


def test_outbox_delivery_retries_and_then_sends(receiver: Server, engine: Engine) -> None:
    receiver.script(Reply(502, b"bad gateway"))
    ch = channel(url(receiver))
    with Session(engine) as session:
        enqueue(session, [HOSTILE], [Route(ch.name, Filters())], NOW)
        session.commit()
    clock = [NOW]
    report = deliver_due(engine, {ch.name: ch}, clock=lambda: clock[0])
    assert (report.sent, report.retried) == (0, 1)
    assert_no_secret(*report.errors)
    clock[0] = NOW.replace(hour=11)
    report = deliver_due(engine, {ch.name: ch}, clock=lambda: clock[0])
    assert report.sent == 1
    with Session(engine) as session:
        (d,) = session.exec(select(Delivery))
        assert (d.status, d.attempts) == ("sent", 2)
        assert_no_secret(d.last_error or "")


# --- configuration ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TIERDRIFT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))


def write(tmp_path: Path, table: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[channels]]\ntype = "apprise"\n{table}\n')
    return cfg


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("", ["missing key 'urls'"]),
        ("urls = []", ["urls"]),
        (f'urls = ["nosuchservice://{PASSWORD}"]', ["URL #1 (nosuchservice://…) is not an Apprise URL"]),
        (f'urls = ["json://{USER}:{PASSWORD}@h/{PATH}", "tgram://"]', ["URL #2 (tgram://…)"]),
        ('urls = ["json://h/x"]\nurl = "x"', ["unknown key 'url'"]),
    ],
)
def test_bad_configuration_is_one_line_naming_no_secret(tmp_path: Path, table: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, table))
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert_no_secret(message)


def test_without_the_extra_the_config_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "apprise" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f'urls = ["json://{USER}:{PASSWORD}@h/{PATH}"]'))
    assert "pip install 'tierdrift[apprise]'" in str(info.value) and "\n" not in str(info.value)
    assert_no_secret(str(info.value))


def test_settings_hide_the_urls(tmp_path: Path) -> None:
    from monitor.cli.daemon import describe_channel

    secret_url = f"json://{USER}:{PASSWORD}@example.com/{PATH}"
    settings = load_settings(write(tmp_path, f'name = "many"\nurls = ["{secret_url}", "form://example.org/x"]'))
    (config,) = settings.all_channels()
    assert settings.redacted()["channels"][0]["urls"] == ["***", "***"]
    assert secret_url in settings.secrets()
    assert describe_channel(config) == "apprise 'many' → json://…, form://…"
    assert isinstance(make_channel(config), AppriseChannel)
    assert_no_secret(repr(settings), str(settings.redacted()), repr(config), describe_channel(config))


def test_alerts_test_and_list_through_the_cli(receiver: Server, tmp_path: Path, db_url: str) -> None:
    cfg = write(tmp_path, f'name = "many"\nurls = ["{url(receiver)}"]')
    result = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert "many (Apprise, 1 URL(s): json://…): ok" in result.output
    assert receiver.requests[0].json()["title"] == "tierdrift test alert: this channel works"
    receiver.script(Reply(503, f"no {PASSWORD}".encode()))
    failed = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "test"])
    assert failed.exit_code == 1 and "failed" in failed.output
    listed = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "list"])
    assert_no_secret(result.output, failed.output, listed.output)
