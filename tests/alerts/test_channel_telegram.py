"""The Telegram channel against a fake Bot API on 127.0.0.1 (tests/alerts/loopback.py): the request, the
HTML text and its escaping, the 4096-character limit, each outcome, and the token kept out of every text."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from alerts.channels.base import Channel
from alerts.channels.telegram import TelegramChannel
from alerts.config import Filters, TelegramConfig
from alerts.db import ChannelState, Delivery
from alerts.deliver import deliver_due
from alerts.events import sample_alert
from alerts.model import Alert, Severity
from alerts.outbox import Route, enqueue
from alerts.render import TELEGRAM_LIMIT, render_telegram, telegram_length
from monitor.cli import app
from monitor.config.paths import ConfigError
from monitor.config.settings import Settings, load_settings
from monitor.service.alerting import make_channel
from tests.alerts.loopback import Reply, Server, serving

TOKEN = "7345612980:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"
SECRET_HALF = TOKEN.split(":", 1)[1]
NOW = datetime(2026, 3, 14, 9, 30, 5, tzinfo=UTC)
HOSTILE = Alert(
    id="alert_hostile",
    kind="position_impact",
    severity=Severity.CRITICAL,
    created_at=NOW,
    title="<b>x</b> & [/] \x1b[31m",
    source="binance-usdm",
    symbol="<a href='http://evil'>BTC</a>",
    lines=("note: <i>&amp; [link](http://x)", "esc \x1b]0;title\x07 end"),
    rows=(("liq <price>", "1 & 2", "3"),),
)
OK = Reply(200, {"ok": True, "result": {"message_id": 1}})


@pytest.fixture
def bot() -> Iterator[Server]:
    with serving() as server:
        server.default = OK
        yield server


def channel(server: Server, **kw: Any) -> TelegramChannel:
    return TelegramChannel(TelegramConfig(token=SecretStr(TOKEN), chat_id=-1001234567890, api_url=server.url, **kw))


def assert_no_token(*texts: str | None) -> None:
    for text in texts:
        assert text is not None
        assert TOKEN not in text and SECRET_HALF not in text, text


def test_posts_send_message_with_html_and_escapes_hostile_text(bot: Server) -> None:
    result = channel(bot).send(HOSTILE)
    assert result.ok
    (req,) = bot.requests
    assert req.path == f"/bot{TOKEN}/sendMessage"
    assert req.headers["content-type"] == "application/json"
    body = req.json()
    assert {k: v for k, v in body.items() if k != "text"} == {
        "chat_id": -1001234567890,
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    text = body["text"]
    assert text.startswith("<b>CRITICAL: &lt;b&gt;x&lt;/b&gt; &amp; [/] \\x1b[31m</b>\n")
    assert "\x1b" not in text and "\x07" not in text
    assert "&lt;a href=&#x27;http://evil&#x27;&gt;BTC&lt;/a&gt;" in text
    assert "note: &lt;i&gt;&amp;amp; [link](http://x)" in text
    assert "<code>liq &lt;price&gt;" in text
    # Only Telegram's subset, and every tag we opened is closed.
    tags = re.findall(r"</?([a-z]+)", text)
    assert set(tags) <= {"b", "i", "code"}
    assert all(text.count(f"<{t}>") == text.count(f"</{t}>") for t in set(tags))
    assert html.unescape(re.sub(r"</?(b|i|code)>", "", text)).count("<b>x</b>") == 1


def test_a_big_digest_is_one_message_cut_at_a_line_within_4096(bot: Server) -> None:
    lines = tuple(f"BTC{i}USDT tier {i % 9} rate 0.5% → 0.65% <&>" for i in range(600))
    data = {"source": "bybit-linear", "detected_at": "2026-03-14T09:30:05Z"}
    digest = Alert(
        "alert_big", "tier_changes", Severity.WARNING, NOW, "bybit-linear: 600 changes", lines=lines, data=data
    )
    assert channel(bot).send(digest).ok
    (req,) = bot.requests
    text = req.json()["text"]
    assert telegram_length(text) <= TELEGRAM_LIMIT
    shown = [line for line in text.split("\n") if line.startswith("BTC")]
    assert shown and all(line.endswith("&lt;&amp;&gt;") for line in shown)  # whole lines only
    more = f"… {600 - len(shown)} more lines (tierdrift changes --source bybit-linear --since 2026-03-14T09:30:05Z)"
    assert more in text
    assert text.rstrip().endswith("</i>")  # the footer survives the cut
    assert render_telegram(digest) == text  # pure: a resend is the same message


@pytest.mark.parametrize(
    ("reply", "retryable", "gone", "retry_after", "words"),
    [
        (Reply(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 17",
                     "parameters": {"retry_after": 17}}), True, False, 17.0, "Too Many Requests"),
        (Reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
         False, True, None, "chat not found"),
        (Reply(403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
         False, True, None, "bot was blocked by the user"),
        (Reply(403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked from the group chat"}),
         False, True, None, "bot was kicked"),
        (Reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities"}),
         False, False, None, "can't parse entities"),
        (Reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded",
                     "parameters": {"migrate_to_chat_id": -100777}}), False, False, None, "set chat_id = -100777"),
        (Reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}), False, False, None, "token"),
        (Reply(502, b"<html>Bad Gateway</html>"), True, False, None, "HTTP 502"),
        (Reply(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"},
               {"retry-after": "30"}), True, False, 30.0, "Internal Server Error"),
    ],
)  # fmt: skip
def test_outcomes(
    bot: Server, reply: Reply, retryable: bool, gone: bool, retry_after: float | None, words: str
) -> None:
    bot.script(reply)
    ch = channel(bot)
    result = ch.send(HOSTILE)
    assert not result.ok
    assert (result.retryable, result.gone, result.retry_after) == (retryable, gone, retry_after)
    assert result.error is not None and words in result.error and "\n" not in result.error
    assert f"127.0.0.1:{bot.server_address[1]}/…" in result.error
    assert_no_token(result.error, ch.describe(), repr(ch._config), str(ch._config))


def test_a_timeout_and_a_closed_port_are_retryable(bot: Server) -> None:
    bot.script(Reply(200, {"ok": True}, delay=1.5))
    result = channel(bot, timeout=0.3).send(HOSTILE)
    assert not result.ok and result.retryable and result.error is not None and "timed out" in result.error
    closed = TelegramChannel(TelegramConfig(token=SecretStr(TOKEN), chat_id=1, api_url="http://127.0.0.1:9", timeout=1))
    result = closed.send(HOSTILE)
    assert not result.ok and result.retryable
    assert_no_token(result.error)


def test_the_deadline_bounds_a_slow_answer(bot: Server) -> None:
    bot.script(Reply(200, {"ok": True}, delay=3))
    result = channel(bot, timeout=5, deadline=0.5).send(HOSTILE)
    assert not result.ok and result.retryable and result.error is not None
    assert "no complete answer within 0.5 s" in result.error


def test_a_server_echoing_the_token_has_it_scrubbed(bot: Server) -> None:
    bot.script(Reply(400, {"ok": False, "error_code": 400, "description": f"bad path /bot{TOKEN}/x {SECRET_HALF}"}))
    result = channel(bot).send(HOSTILE)
    assert not result.ok and not result.retryable
    assert_no_token(result.error)


@pytest.mark.parametrize("description", ["Bad Request: chat not found", "Forbidden: bot was blocked by the user"])
def test_a_gone_chat_disables_the_channel_with_its_reason(bot: Server, engine: Engine, description: str) -> None:
    code = 400 if "chat" in description else 403
    bot.script(Reply(code, {"ok": False, "error_code": code, "description": description}))
    alerts = [sample_alert(NOW), sample_alert(NOW)]
    with Session(engine) as s:
        enqueue(s, alerts, [Route("telegram", Filters())], NOW)
        s.commit()
    report = deliver_due(engine, {"telegram": channel(bot)}, clock=lambda: NOW)
    assert report.failed == 1 and len(bot.requests) == 1  # the second is failed with it, never sent
    with Session(engine) as s:
        assert [d.status for d in s.exec(select(Delivery))] == ["failed", "failed"]
        state = s.get(ChannelState, "telegram")
        assert state is not None and state.disabled_at is not None
        assert description in (state.disabled_reason or "")
        rows = [repr(r) for model in (Delivery, ChannelState) for r in s.exec(select(model))]
    assert_no_token(*rows, *report.errors)


def test_describe_and_protocol() -> None:
    ch = TelegramChannel(TelegramConfig(token=SecretStr(TOKEN), chat_id="@tierdrift_ops"))
    assert ch.describe() == "Telegram sendMessage via https://api.telegram.org/… to chat @tierdrift_ops"
    assert isinstance(make_channel(ch._config), TelegramChannel)
    _: Channel = ch
    ch.close()


# --- configuration ------------------------------------------------------------------------------------


def write(tmp_path: Path, table: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[channels]]\ntype = "telegram"\n{table}\n')
    return cfg


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TIERDRIFT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("chat_id = 1", ["missing key 'token'"]),
        (f'token = "{TOKEN}"', ["missing key 'chat_id'"]),
        (f'token = "{TOKEN}"\nchat_id = 1\napi_url = "ftp://api.telegram.org"', ["api_url", "http://"]),
        (f'token = "{TOKEN}"\nchat_id = 1\nchatid = 2', ["unknown key 'chatid'"]),
        ('token = "12345:short"\nchat_id = 1', ["token", "BotFather"]),
        (f'token = "{TOKEN}"\nchat_id = "my group"', ["chat_id", "@channelname"]),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(tmp_path: Path, table: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, table))
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert_no_token(message)
    assert "short" not in message


def test_env_shortcut_builds_a_channel_and_half_of_it_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERDRIFT_TELEGRAM_TOKEN", TOKEN)
    half = load_settings()
    assert [c.name for c in half.all_channels()] == []
    assert any("TIERDRIFT_TELEGRAM_CHAT_ID" in w and "is not" in w for w in half.warnings())
    monkeypatch.setenv("TIERDRIFT_TELEGRAM_CHAT_ID", "-1001234567890")
    settings = load_settings()
    (config,) = settings.all_channels()
    assert isinstance(config, TelegramConfig) and config.chat_id == -1001234567890
    assert TOKEN in settings.secrets() and SECRET_HALF in settings.secrets()
    assert_no_token(repr(settings), str(settings.redacted()), str(settings.warnings()))


def test_config_show_and_repr_hide_a_file_channel_token(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, f'name = "phone"\ntoken = "{TOKEN}"\nchat_id = 42'))
    assert settings.redacted()["channels"][0]["token"] == "***"
    assert TOKEN in settings.secrets()
    assert_no_token(repr(settings), repr(settings.channels), str(settings.redacted()))
    assert isinstance(settings, Settings)
    from monitor.cli.daemon import describe_channel, startup_summary

    assert describe_channel(settings.channels[0]) == "telegram 'phone' → https://api.telegram.org/… chat 42"
    assert_no_token(*startup_summary(settings, None, True, NOW))


def test_alerts_test_through_the_cli(bot: Server, tmp_path: Path, db_url: str) -> None:
    cfg = write(tmp_path, f'name = "phone"\ntoken = "{TOKEN}"\nchat_id = "@tierdrift_ops"\napi_url = "{bot.url}"')
    result = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert f"phone (Telegram sendMessage via {bot.url}/… to chat @tierdrift_ops): ok" in result.output
    (req,) = bot.requests
    assert req.json()["chat_id"] == "@tierdrift_ops" and req.json()["parse_mode"] == "HTML"
    bot.script(Reply(403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}))
    failed = CliRunner().invoke(app, ["--config", str(cfg), "--db", db_url, "alerts", "test"])
    assert failed.exit_code == 1 and "bot was blocked by the user" in failed.output
    assert_no_token(result.output, failed.output)


def test_a_position_alert_links_its_dashboard_page_and_the_link_survives_a_cut(bot: Server) -> None:
    lines = tuple(f"line {i} <&>" for i in range(800))
    alert = Alert("alert_l", "position_impact", Severity.WARNING, NOW, "BTC long #9", "binance-usdm",
                  "BTC/USDT:USDT", lines=lines, data={"position": {"id": 9}})  # fmt: skip
    config = TelegramConfig(token=SecretStr(TOKEN), chat_id=-1001234567890, api_url=bot.url)
    assert TelegramChannel(config, public_url='https://td.example.com/"><b>').send(alert).ok
    text = bot.requests[0].json()["text"]
    assert telegram_length(text) <= TELEGRAM_LIMIT and "more lines" in text
    assert text.endswith('<a href="https://td.example.com/%22%3E%3Cb%3E/positions/9">open in tierdrift</a>')
    assert channel(bot).send(alert).ok
    assert "<a " not in bot.requests[1].json()["text"]
