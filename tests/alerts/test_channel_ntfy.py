"""The ntfy channel against a fake ntfy server on 127.0.0.1 (tests/alerts/loopback.py): the body and its
4096-byte limit, the headers (title encoding, priority, tags, auth), the outcomes, and no credential shown."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from alerts.channels.ntfy import NTFY_LIMIT, NtfyChannel, header_text
from alerts.config import NtfyConfig
from alerts.model import Alert, Severity
from monitor.cli import app
from monitor.config.paths import ConfigError
from monitor.config.settings import load_settings
from monitor.service.alerting import make_channel
from tests.alerts.loopback import Reply, Server, serving

TOPIC = "tierdrift-7f3a9c2e41b8"
TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
PASSWORD = "p@ss:w0rd/é"
NOW = datetime(2026, 3, 14, 9, 30, 5, tzinfo=UTC)
HOSTILE = Alert(
    id="alert_hostile",
    kind="position_impact",
    severity=Severity.CRITICAL,
    created_at=NOW,
    title="<b>x</b> & [/] \x1b[31m é\r\nInjected: yes",
    source="binance-usdm",
    symbol="ETH/USDT:USDT",
    lines=("note: <i>&amp;", "esc \x1b]0;title\x07 end"),
)


@pytest.fixture
def ntfy() -> Iterator[Server]:
    with serving() as server:
        server.default = Reply(200, {"id": "x", "event": "message"})
        yield server


def channel(server: Server, public_url: str | None = None, **kw: Any) -> NtfyChannel:
    return NtfyChannel(NtfyConfig(url=SecretStr(f"{server.url}/{TOPIC}"), **kw), public_url=public_url)


def assert_no_secret(*texts: str | None) -> None:
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    for text in texts:
        assert text is not None
        for secret in (TOPIC, TOKEN, PASSWORD, basic):
            assert secret not in text, (secret, text)


def test_publishes_plain_text_with_title_priority_and_tags(ntfy: Server) -> None:
    assert channel(ntfy, token=SecretStr(TOKEN)).send(HOSTILE).ok
    (req,) = ntfy.requests
    assert req.path == f"/{TOPIC}"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["priority"] == "5" and req.headers["tags"] == "rotating_light,tierdrift"
    title = req.headers["title"]
    assert title.startswith("=?UTF-8?B?") and "\r" not in title and "\n" not in title
    ((raw, charset),) = decode_header(title)
    assert isinstance(raw, bytes) and charset is not None
    assert raw.decode(charset) == "<b>x</b> & [/] \\x1b[31m é Injected: yes"
    body = req.body.decode("utf-8")
    assert body.startswith("<b>x</b> & [/] \\x1b[31m é")  # plain text: nothing to escape, control chars shown
    assert "\x1b" not in body and "\x07" not in body and "note: <i>&amp;" in body
    assert req.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("severity", "priority", "tag"),
    [(Severity.INFO, "3", "information_source"), (Severity.WARNING, "4", "warning")],
)
def test_priority_follows_severity(ntfy: Server, severity: Severity, priority: str, tag: str) -> None:
    alert = Alert("alert_1", "test", severity, NOW, "plain title")
    assert channel(ntfy).send(alert).ok
    (req,) = ntfy.requests
    assert (req.headers["priority"], req.headers["tags"].split(",")[0], req.headers["title"]) == (
        priority, tag, "plain title",
    )  # fmt: skip
    assert "authorization" not in req.headers


def test_basic_auth(ntfy: Server) -> None:
    ch = channel(ntfy, username="alice", password=SecretStr(PASSWORD))
    assert ch.send(HOSTILE).ok
    expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert ntfy.requests[0].headers["authorization"] == expected
    assert ch.describe() == f"ntfy topic at {ntfy.url}/…, user alice"
    assert_no_secret(ch.describe(), repr(ch._config))


def test_a_big_digest_is_cut_at_a_line_within_4096_bytes(ntfy: Server) -> None:
    lines = tuple(f"BTC{i}USDT tier {i % 9} rate 0.5% → 0.65% é" for i in range(600))
    data = {"source": "bybit-linear", "detected_at": "2026-03-14T09:30:05Z"}
    digest = Alert(
        "alert_big", "tier_changes", Severity.WARNING, NOW, "bybit-linear: 600 changes", lines=lines, data=data
    )
    assert channel(ntfy).send(digest).ok
    body = ntfy.requests[0].body
    assert len(body) <= NTFY_LIMIT
    text = body.decode("utf-8")
    shown = [line for line in text.split("\n") if line.startswith("BTC")]
    assert shown and all(line.endswith("é") for line in shown)
    assert f"… {600 - len(shown)} more lines (tierdrift changes --source bybit-linear" in text
    assert text.rstrip().endswith("created:  2026-03-14T09:30:05Z")


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "words"),
    [
        (Reply(429, {"code": 42901, "http": 429, "error": "limit reached"}, {"retry-after": "12"}), True, 12.0,
         "limit reached"),
        (Reply(401, {"code": 40101, "http": 401, "error": "unauthorized"}), False, None, "check the token"),
        (Reply(403, {"code": 40301, "http": 403, "error": "forbidden"}), False, None, "forbidden"),
        (Reply(413, {"code": 41301, "http": 413, "error": "too large"}), False, None, "too large"),
        (Reply(503, b"down for maintenance"), True, None, "HTTP 503"),
        (Reply(500, f"oops on /{TOPIC} with {TOKEN}".encode()), True, None, "oops on"),
    ],
)  # fmt: skip
def test_outcomes(ntfy: Server, reply: Reply, retryable: bool, retry_after: float | None, words: str) -> None:
    ntfy.script(reply)
    ch = channel(ntfy, token=SecretStr(TOKEN))
    result = ch.send(HOSTILE)
    assert not result.ok and not result.gone
    assert (result.retryable, result.retry_after) == (retryable, retry_after)
    assert result.error is not None and words in result.error and "\n" not in result.error
    assert_no_secret(result.error, ch.describe(), repr(ch._config))


def test_a_timeout_and_the_deadline_are_retryable(ntfy: Server) -> None:
    ntfy.script(Reply(200, delay=1.5))
    result = channel(ntfy, timeout=0.3).send(HOSTILE)
    assert not result.ok and result.retryable and result.error is not None and "timed out" in result.error
    ntfy.script(Reply(200, delay=3))
    result = channel(ntfy, timeout=5, deadline=0.5).send(HOSTILE)
    assert not result.ok and result.retryable and result.error is not None and "within 0.5 s" in result.error
    assert_no_secret(result.error)


def test_header_text_is_ascii_as_is_and_clipped() -> None:
    assert header_text("BTC: 3 changes") == "BTC: 3 changes"
    assert header_text("a\r\nb") == "a b"
    assert len(header_text("x" * 1000)) == 250


# --- configuration ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TIERDRIFT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))


def write(tmp_path: Path, table: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[channels]]\ntype = "ntfy"\n{table}\n')
    return cfg


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('token = "x"', ["missing key 'url'"]),
        (f'url = "ntfy.sh/{TOPIC}"', ["url", "http://"]),
        ('url = "https://ntfy.sh/"', ["url", "topic URL"]),
        (f'url = "https://ntfy.sh/{TOPIC}"\ntopic = "x"', ["unknown key 'topic'"]),
        (f'url = "https://ntfy.sh/{TOPIC}"\nusername = "alice"', ["password is missing"]),
        (f'url = "https://ntfy.sh/{TOPIC}"\ntoken = "{TOKEN}"\nusername = "a"\npassword = "b"', ["either token"]),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(tmp_path: Path, table: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, table))
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert_no_secret(message)


def test_config_show_secrets_and_startup_summary_hide_credentials(tmp_path: Path) -> None:
    from monitor.cli.daemon import describe_channel

    cfg = write(tmp_path, f'name = "push"\nurl = "https://ntfy.example.com/{TOPIC}"\ntoken = "{TOKEN}"')
    settings = load_settings(cfg)
    (config,) = settings.all_channels()
    assert settings.redacted()["channels"][0]["url"] == "***"
    assert settings.redacted()["channels"][0]["token"] == "***"
    assert {f"https://ntfy.example.com/{TOPIC}", TOKEN} <= set(settings.secrets())
    assert describe_channel(config) == "ntfy 'push' → https://ntfy.example.com/…"
    assert isinstance(make_channel(config), NtfyChannel)
    assert_no_secret(repr(settings), str(settings.redacted()))


def test_alerts_test_through_the_cli(ntfy: Server, tmp_path: Path, db_url: str) -> None:
    cfg = write(tmp_path, f'name = "push"\nurl = "{ntfy.url}/{TOPIC}"\nusername = "alice"\npassword = "{PASSWORD}"')
    result = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert f"push (ntfy topic at {ntfy.url}/…, user alice): ok" in result.output
    (req,) = ntfy.requests
    assert req.path == f"/{TOPIC}" and req.headers["authorization"].startswith("Basic ")
    ntfy.script(Reply(401, {"code": 40101, "http": 401, "error": "unauthorized"}))
    failed = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "test"])
    assert failed.exit_code == 1 and "HTTP 401" in failed.output
    assert_no_secret(result.output, failed.output)


# --- the Click link to the dashboard ------------------------------------------------------------------


def test_click_links_a_position_alert_to_its_page(ntfy: Server) -> None:
    alert = Alert("alert_p", "position_risk", Severity.CRITICAL, NOW, "t", "binance-usdm", "BTC/USDT:USDT",
                  data={"position": {"id": 42}})  # fmt: skip
    assert channel(ntfy, public_url="https://td.example.com/").send(alert).ok
    assert ntfy.requests[0].headers["click"] == "https://td.example.com/positions/42"


def test_click_links_a_symbol_alert_with_the_symbol_encoded_whole(ntfy: Server) -> None:
    alert = Alert("alert_s", "source_health", Severity.INFO, NOW, "t", "bybit-linear", "ÉTH/USDT:USDT?x=1#y")
    assert channel(ntfy, public_url="https://td.example.com/dash").send(alert).ok
    click = ntfy.requests[0].headers["click"]
    assert click == "https://td.example.com/dash/symbols/bybit-linear/%C3%89TH%2FUSDT%3AUSDT%3Fx%3D1%23y"


def test_no_click_without_a_public_url_or_for_a_digest(ntfy: Server) -> None:
    digest = Alert("alert_d", "tier_changes", Severity.INFO, NOW, "t", "bybit-linear", None)
    assert channel(ntfy, public_url="https://td.example.com").send(digest).ok
    assert channel(ntfy).send(HOSTILE).ok
    assert all("click" not in r.headers for r in ntfy.requests)


def test_make_channel_takes_the_public_url_from_the_settings(ntfy: Server) -> None:
    from monitor.config.settings import Settings
    from monitor.service.alerting import build_channels

    settings = Settings(
        web_public_url="https://td.example.com",
        channels=[NtfyConfig(name="push", url=SecretStr(f"{ntfy.url}/{TOPIC}"))],
    )
    (ch,) = build_channels(settings).values()
    assert ch.send(Alert("alert_x", "position_impact", Severity.INFO, NOW, "t", data={"position": {"id": 7}})).ok
    assert ntfy.requests[0].headers["click"] == "https://td.example.com/positions/7"
