"""A hostile configuration: every bad key or value is one line at load, the first run says what it will
(and will not) do, database passwords never show, and the package builds without deprecated metadata."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from alerts.config import EmailConfig, WebhookConfig
from monitor.cli import main
from monitor.cli.daemon import startup_summary
from monitor.config.paths import ConfigError, redact_url
from monitor.config.settings import Settings, load_settings
from monitor.fake_exchange import FakeExchange, generate_tables
from monitor.service import logs
from monitor.service.httpserver import HealthServer, HealthServerError
from monitor.store.database import open_engine
from snapshots.errors import TierdriftError
from snapshots.timefmt import parse_ts
from tests.conftest import ROOT, point_at_fake

WEBHOOK_TOKEN = "T00-B00-hooktoken-9f8e"
SMTP_PASSWORD = "smtp-pass-7d6c"
PG_USER_PASSWORD = "pg-userinfo-5b4a"
PG_QUERY_PASSWORD = "pg-query-3c2d"
API_KEY = "binance-key-1e0f"
WHSEC = "whsec_ZGVtby1zZWNyZXQtZm9yLXRpZXJkcmlmdA=="
SECRETS = (WEBHOOK_TOKEN, SMTP_PASSWORD, PG_USER_PASSWORD, PG_QUERY_PASSWORD, API_KEY, "ZGVtby1zZWNyZXQ")
PG_URL = f"postgresql+psycopg://bob:{PG_USER_PASSWORD}@db.example.com:5432/td?password={PG_QUERY_PASSWORD}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config file, no database and no TIERDRIFT_* variable of the machine running the tests."""
    for name in list(os.environ):
        if name.upper().startswith("TIERDRIFT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def tierdrift(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """The console script `tierdrift`, in process: (exit code, stdout, stderr). An exception that escaped
    the CLI's boundary would fail the test here instead of printing a traceback."""
    monkeypatch.setattr(sys, "argv", ["tierdrift", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out = capsys.readouterr()
    code = done.value.code
    return code if isinstance(code, int) else 1, out.out, out.err


def assert_one_line(err: str, *expected: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    for secret in SECRETS:
        assert secret not in err, err


# -- the config file ------------------------------------------------------------------------------------

BAD_FILES = {
    "typo in [binance]": (
        f'[binance]\napikey = "{API_KEY}"\napi_secret = "s"\n',
        ["unknown key 'apikey' in [binance]", "did you mean 'api_key'?"],
    ),
    "binance key at the top": (f'apikey = "{API_KEY}"\n', ["unknown key 'apikey'", "'api_key' in [binance]"]),
    "[[webhooks]] instead of [[channels]]": (
        f'[[webhooks]]\nurl = "https://hooks.example.com/{WEBHOOK_TOKEN}"\n',
        ["unknown key 'webhooks'", "[[channels]]"],
    ),
    "typo in a channel": (
        f'[[channels]]\ntype = "webhook"\nurl = "https://h.example.com/{WEBHOOK_TOKEN}"\nsecrett = "{WHSEC}"\n',
        ["unknown key 'secrett' in [[channels]] #1", "did you mean 'secret'?"],
    ),
    "typo in a channel's filters": (
        f'[[channels]]\ntype = "webhook"\nurl = "https://h.example.com/{WEBHOOK_TOKEN}"\n'
        'filters = { min_severty = "warning" }\n',
        ["unknown key 'min_severty' in filters of [[channels]] #1", "'min_severity'"],
    ),
    "channel without type": (
        f'[[channels]]\nurl = "https://h.example.com/{WEBHOOK_TOKEN}"\n',
        ['[[channels]] #1 needs type = "webhook" or "email"'],
    ),
    "webhook URL without a scheme": (
        f'[[channels]]\ntype = "webhook"\nurl = "hooks.example.com/{WEBHOOK_TOKEN}"\n',
        ["invalid url in [[channels]] #1", "http:// or https://"],
    ),
    "recipient without @": (
        f'[[channels]]\ntype = "email"\nsmtp_url = "smtp://me:{SMTP_PASSWORD}@mail.example.com"\n'
        'to = ["alice.example.com"]\n',
        ["invalid to in [[channels]] #1", "'alice.example.com' is not an e-mail address"],
    ),
    "email channel without smtp_url": (
        '[[channels]]\ntype = "email"\nto = ["a@example.com"]\n',
        ["missing key 'smtp_url' in [[channels]] #1"],
    ),
    "missing ca_file": (
        f'[[channels]]\ntype = "email"\nsmtp_url = "smtp://me:{SMTP_PASSWORD}@mail.example.com"\n'
        'to = ["a@example.com"]\nca_file = "/no/such/ca.pem"\n',
        ["invalid ca_file", "/no/such/ca.pem", "is not a file"],
    ),
    "channel timeout of nan": (
        f'[[channels]]\ntype = "webhook"\nurl = "https://h.example.com/{WEBHOOK_TOKEN}"\ntimeout = nan\n',
        ["invalid timeout = nan in [[channels]] #1", "finite"],
    ),
    "log level": ('log_level = "LOUD"\n', ['invalid log_level = "LOUD"', "debug, info, warning"]),
    "infinite poll interval": ("poll_interval_seconds = inf\n", ["invalid poll_interval_seconds = inf", "finite"]),
    "poll interval in minutes by mistake": ("poll_interval_seconds = 2\n", ["poll_interval_seconds = 2", "5"]),
    "http timeout nan": ("http_timeout = nan\n", ["invalid http_timeout = nan", "finite"]),
    "http timeout an hour": ("http_timeout = 3600\n", ["invalid http_timeout = 3600", "600"]),
    "port out of range": ("health_port = 70000\n", ["invalid health_port = 70000", "65535"]),
    "port given as true": ("health_port = true\n", ["invalid health_port = true", "must not be true or false"]),
    "web port out of range": ("web_port = 65536\n", ["invalid web_port = 65536", "65535"]),
    "web host with a space": ('web_host = "my host"\n', ['invalid web_host = "my host"', "host name"]),
    "web public url without scheme": ('web_public_url = "td.example.com"\n', ["invalid web_public_url", "http"]),
    "health host with a space": ('health_host = "my host"\n', ['invalid health_host = "my host"', "host name"]),
    "quarantine share above 1": ("quarantine_share = 1.5\n", ["invalid quarantine_share = 1.5"]),
    "quarantine share of 0": ("quarantine_share = 0\n", ["invalid quarantine_share = 0", "greater than 0"]),
    "negative threshold": ("violation_threshold_adr = -1\n", ["invalid violation_threshold_adr = -1"]),
    "fractional adr days": ("adr_days = 1.5\n", ["invalid adr_days = 1.5", "integer"]),
    "per-source interval too short": (
        '[source_intervals]\n"bybit-linear" = 1\n',
        ["source_intervals", "bybit-linear", "between 5 and 86400"],
    ),
    "unknown source": ('sources = ["kraken"]\n', ["invalid sources", "unknown source 'kraken'"]),
    "no source": ("sources = []\n", ["invalid sources", "names no source"]),
    "endpoint without scheme": ('[endpoints]\nbybit = "api.bybit.com"\n', ["invalid bybit", "in [endpoints]"]),
    "half a Binance key": (f'[binance]\napi_key = "{API_KEY}"\n', ["[binance]", "api_secret is missing"]),
    "postgres:// URL with passwords": (
        f'database_url = "{PG_URL.replace("postgresql+psycopg", "postgres")}"\n',
        ["invalid database_url", "bob:***@", "password=***", "postgresql+psycopg://"],
    ),
    "email_to without @": ('email_to = "alice.example.com"\n', ["invalid email_to", "not an e-mail address"]),
    "webhook shortcut without scheme": (
        f'webhook_url = "hooks.example.com/{WEBHOOK_TOKEN}"\n',
        ["invalid webhook_url", "http:// or https://"],
    ),
    "a table where a value goes": (f'binance = "{API_KEY}"\n', ["[binance]", "must be a table"]),
    "malformed TOML": ('log_level = "INFO\n', ["cannot read config file"]),
}


@pytest.mark.parametrize("case", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_config_file_is_one_line_naming_the_key(
    case: tuple[str, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text, expected = case
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    code, out, err = tierdrift(capsys, monkeypatch, "--config", str(cfg), "config", "show")
    assert code == 1 and out == ""
    assert_one_line(err, f"config file {cfg}" if "cannot read" not in expected[0] else str(cfg), *expected)


BAD_VARIABLES = {
    "log level": ({"TIERDRIFT_LOG_LEVEL": "LOUD"}, ["TIERDRIFT_LOG_LEVEL", 'log_level = "LOUD"']),
    "infinite interval": (
        {"TIERDRIFT_POLL_INTERVAL_SECONDS": "inf"},
        ["TIERDRIFT_POLL_INTERVAL_SECONDS", "finite"],
    ),
    "nan timeout": ({"TIERDRIFT_HTTP_TIMEOUT": "nan"}, ["TIERDRIFT_HTTP_TIMEOUT", "finite"]),
    "port not a number": ({"TIERDRIFT_HEALTH_PORT": "91o8"}, ["TIERDRIFT_HEALTH_PORT", "integer"]),
    "nested typo": (
        {"TIERDRIFT_BINANCE__APIKEY": API_KEY},
        ["environment variable TIERDRIFT_BINANCE__APIKEY", "unknown key 'apikey' in [binance]", "'api_key'"],
    ),
    "half a key": ({"TIERDRIFT_BINANCE__API_KEY": API_KEY}, ["TIERDRIFT_BINANCE__API_KEY", "api_secret is missing"]),
    "webhook without scheme": (
        {"TIERDRIFT_WEBHOOK_URL": f"hooks.example.com/{WEBHOOK_TOKEN}"},
        ["TIERDRIFT_WEBHOOK_URL", "http:// or https://"],
    ),
    "smtp url without scheme": (
        {"TIERDRIFT_SMTP_URL": f"me:{SMTP_PASSWORD}@mail.example.com", "TIERDRIFT_EMAIL_TO": "a@example.com"},
        ["TIERDRIFT_SMTP_URL", "smtp://"],
    ),
    "list not in JSON": ({"TIERDRIFT_SOURCES": "binance-usdm,bybit-linear"}, ["TIERDRIFT_SOURCES", "JSON"]),
    "channel list typo": (
        {"TIERDRIFT_CHANNELS": f'[{{"type": "webhook", "url": "https://h/{WEBHOOK_TOKEN}", "secrett": "x"}}]'},
        ["TIERDRIFT_CHANNELS", "unknown key 'secrett' in [[channels]] #1"],
    ),
    "database URL of another back end": (
        {"TIERDRIFT_DATABASE_URL": PG_URL.replace("postgresql+psycopg", "mysql")},
        ["TIERDRIFT_DATABASE_URL", "bob:***@", "password=***"],
    ),
}


@pytest.mark.parametrize("case", BAD_VARIABLES.values(), ids=BAD_VARIABLES.keys())
def test_a_bad_environment_variable_is_one_line_naming_it(
    case: tuple[dict[str, str], list[str]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, expected = case
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = tierdrift(capsys, monkeypatch, "config", "show")
    assert code == 1 and out == ""
    assert_one_line(err, "environment variable", *expected)


def test_a_bad_config_stops_writing_commands_before_they_touch_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('log_level = "LOUD"\n')
    db = tmp_path / "never.db"
    for command in (["run"], ["run", "--once"], ["poll"], ["check"]):
        code, _, err = tierdrift(capsys, monkeypatch, "--config", str(cfg), "--db", f"sqlite:///{db}", *command)
        assert code == 1, command
        assert_one_line(err, "log_level")
    assert not db.exists() and not (tmp_path / "never.db.lock").exists()


def test_the_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[binance]\napikey = "{API_KEY}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERDRIFT_")}
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "run", "--once"],
        env={**env, "XDG_DATA_HOME": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert_one_line(done.stderr, "unknown key 'apikey' in [binance] (did you mean 'api_key'?)")


def test_the_readme_examples_load(tmp_path: Path) -> None:
    """The validation must not refuse what the README tells people to write."""
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    for n, block in enumerate(blocks):
        cfg = tmp_path / f"readme{n}.toml"
        cfg.write_text(block)
        settings = load_settings(cfg)
        assert settings.model_dump()  # loaded
    # Together, top-level keys first (in TOML they would otherwise belong to the last table).
    cfg.write_text("\n".join(sorted(blocks, key=lambda b: b.lstrip().startswith("["))))
    assert [c.name for c in load_settings(cfg).all_channels()] == [
        "me",
        "ops",
        "night-phone",
        "phone",
        "push",
        "everywhere",
    ]


def test_lenient_spellings_a_trader_would_use_are_accepted(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('log_level = "warn"\nhealth_port = 0\nhealth_host = "::"\nemail_from = "td@[127.0.0.1]"\n')
    settings = load_settings(cfg)
    assert settings.log_level == "WARNING"
    assert settings.health_address is None  # 0: off, as unset
    cfg.write_text('health_port = 9108\nhealth_host = "tierdrift_app.internal"\n')
    assert load_settings(cfg).health_address == ("tierdrift_app.internal", 9108)


def test_a_config_file_named_explicitly_must_be_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for path, why in ((tmp_path, "is not a file"), (tmp_path / "typo.toml", "does not exist")):
        code, _, err = tierdrift(capsys, monkeypatch, "--config", str(path), "config", "show")
        assert code == 1
        assert_one_line(err, f"config file {path} {why}")


def test_a_config_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_bytes('\ufefflog_level = "debug"\n'.encode())
    assert load_settings(cfg).log_level == "DEBUG"


@given(st.sampled_from(sorted(Settings.model_fields)), st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=3))
def test_any_misspelled_top_level_key_is_refused_and_named(field: str, junk: str) -> None:
    key = field + junk
    with pytest.raises(ConfigError) as err:
        _load_text(f"{key} = 1\n")
    assert f"unknown key {key!r}" in str(err.value) and "\n" not in str(err.value)


def _load_text(text: str) -> Settings:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(text)
        return load_settings(cfg)


# -- warnings: unknown variables, half a shortcut, no channel at all -----------------------------------


def test_unknown_variables_are_warned_about_with_a_suggestion(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_WEBHOOK_UR", f"https://hooks.example.com/{WEBHOOK_TOKEN}")
    monkeypatch.setenv("TIERDRIFT_DEBUG", "1")  # a process switch of the CLI, not a setting: no warning
    code, out, err = tierdrift(capsys, monkeypatch, "config", "show", "--json")
    assert code == 0 and '"webhook_url": null' in out
    assert "warning: environment variable TIERDRIFT_WEBHOOK_UR is not a setting" in err
    assert "did you mean TIERDRIFT_WEBHOOK_URL?" in err
    assert "TIERDRIFT_DEBUG" not in err and WEBHOOK_TOKEN not in err + out


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(tables={"binance-usdm": generate_tables("binance-usdm", 6, seed=3)}) as server:
        yield server


@pytest.fixture
def fake_env(fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    point_at_fake(fake, monkeypatch, tmp_path, page_retries=0)
    monkeypatch.setenv("TIERDRIFT_SOURCES", '["binance-usdm"]')
    return f"sqlite:///{tmp_path / 'tierdrift.db'}"


def test_run_once_without_a_channel_warns_that_no_alert_will_reach_anyone(
    fake_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = tierdrift(capsys, monkeypatch, "--db", fake_env, "run", "--once")
    assert code == 0 and "1/1 polls ok" in out
    assert "WARNING no alert channel is configured" in err and "NO ALERT WILL REACH ANYONE" in err
    assert "channels: NONE" in err
    assert "no alert channel" not in out  # stdout keeps its one cycle line


def test_run_once_with_a_channel_does_not_warn(
    fake_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_WEBHOOK_URL", f"http://127.0.0.1:9/{WEBHOOK_TOKEN}")
    code, _, err = tierdrift(capsys, monkeypatch, "--db", fake_env, "run", "--once")
    assert code == 0 and "WARNING" not in err, err
    assert "channels: webhook 'webhook' → http://127.0.0.1:9/… (json)" in err and WEBHOOK_TOKEN not in err


def test_smtp_url_without_email_to_says_what_is_missing(
    fake_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_SMTP_URL", f"smtp://me:{SMTP_PASSWORD}@mail.example.com:587")
    code, _, err = tierdrift(capsys, monkeypatch, "--db", fake_env, "run", "--once")
    assert code == 0
    assert "TIERDRIFT_SMTP_URL (smtp_url) is set but TIERDRIFT_EMAIL_TO (email_to) is not: no e-mail" in err
    assert "no alert channel is configured" in err and SMTP_PASSWORD not in err


def test_check_warns_without_a_channel_and_keeps_its_exit_code(
    fake_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    open_engine(fake_env).dispose()  # an empty database: never polled, so unhealthy
    code, out, err = tierdrift(capsys, monkeypatch, "--db", fake_env, "check")
    assert code == 1 and out.count("\n") == 1 and out.startswith("unhealthy: ")
    assert err.startswith("warning: no alert channel is configured")
    monkeypatch.setenv("TIERDRIFT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    code, again, err = tierdrift(capsys, monkeypatch, "--db", fake_env, "check")
    assert code == 1 and again == out and err == ""


# -- the start-up summary --------------------------------------------------------------------------------


def test_startup_summary_names_database_sources_channels_health_and_next_poll() -> None:
    settings = Settings(
        database_url=PG_URL,
        sources=["binance-usdm", "bybit-linear"],
        source_intervals={"bybit-linear": 600},
        poll_interval_seconds=120,
        poll_jitter_seconds=10,
        channels=[
            WebhookConfig(name="ops", url=SecretStr(f"https://hooks.example.com:8443/{WEBHOOK_TOKEN}?t=x")),
            EmailConfig(
                name="me",
                smtp_url=SecretStr(f"smtp://alice:{SMTP_PASSWORD}@smtp.example.com:587"),
                to=["alice@example.com"],
                filters={"min_severity": "warning"},
            ),
        ],
    )
    lines = startup_summary(settings, "http://127.0.0.1:9108", False, parse_ts("2026-03-14T09:30:05.123456"))
    text = "\n".join(lines)
    for secret in SECRETS:
        assert secret not in text
    assert lines[0] == f"tierdrift starting: database {redact_url(PG_URL)}"
    assert "bob:***@db.example.com:5432/td?password=***" in lines[0]
    assert lines[1] == "sources: binance-usdm every 120 s, bybit-linear every 600 s, ±10 s jitter"
    assert lines[2] == (
        "channels: webhook 'ops' → https://hooks.example.com:8443/… (json); "
        "email 'me' → smtp://alice@smtp.example.com:587 (starttls) to alice@example.com (filtered)"
    )
    assert lines[3] == "health server: http://127.0.0.1:9108/healthz, /readyz, /metrics"
    assert lines[4].startswith("next poll: now (2026-03-14T09:30:05Z) once this process holds the writer lock")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_logs_the_summary_with_the_health_address_then_serves_it(fake_env: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TIERDRIFT_HEALTH_PORT": str(port), "TIERDRIFT_WEBHOOK_URL": "http://127.0.0.1:9/hook"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", fake_env, "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the health server never answered"
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"INFO tierdrift starting: database {fake_env}" in err
    assert "INFO sources: binance-usdm every 300 s, ±30 s jitter" in err
    assert "INFO channels: webhook 'webhook' → http://127.0.0.1:9/… (json)" in err
    assert f"INFO health server: http://127.0.0.1:{port}/healthz, /readyz, /metrics" in err
    assert "INFO next poll: now (" in err
    assert f"INFO config file: {tmp_path / 'absent.toml'} (not there: defaults and TIERDRIFT_* variables only)" in err
    assert out == ""  # the summary is on the log, not on stdout


# -- start-up checks of `run` ---------------------------------------------------------------------------


def test_a_health_port_in_use_fails_run_before_the_lock_or_a_poll(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("TIERDRIFT_HEALTH_PORT", str(port))
        db = tmp_path / "tierdrift.db"
        code, out, err = tierdrift(capsys, monkeypatch, "--db", f"sqlite:///{db}", "run")
    assert code == 1 and out == ""
    assert_one_line(err, f"health server: 127.0.0.1:{port} is already in use")
    assert not db.exists() and not Path(f"{db}.lock").exists()


def test_an_unresolvable_health_host_fails_run_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_HEALTH_PORT", "9108")
    monkeypatch.setenv("TIERDRIFT_HEALTH_HOST", "tierdrift-health.invalid")  # RFC 2606: never resolves
    code, _, err = tierdrift(capsys, monkeypatch, "--db", f"sqlite:///{tmp_path / 'x.db'}", "run")
    assert code == 1
    assert_one_line(err, "health server: cannot resolve health_host 'tierdrift-health.invalid'")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_the_health_server_listens_on_an_ipv6_host_too() -> None:
    try:
        server = HealthServer("::1", 0, lambda: b"", lambda: (True, "ready")).start()
    except HealthServerError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        assert urllib.request.urlopen(server.url + "/readyz", timeout=5).read() == b"ready\n"
    finally:
        server.stop()


# -- database passwords -----------------------------------------------------------------------------------


def test_a_postgresql_password_never_shows_in_config_show_or_repr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_DATABASE_URL", PG_URL + "&sslpassword=pg-ssl-1a2b&sslmode=require")
    for args in (["config", "show"], ["config", "show", "--json"]):
        code, out, err = tierdrift(capsys, monkeypatch, *args)
        assert code == 0, err
        assert "bob:***@db.example.com:5432/td?password=***&sslpassword=***&sslmode=require" in out
        for secret in (PG_USER_PASSWORD, PG_QUERY_PASSWORD, "pg-ssl-1a2b"):
            assert secret not in out + err
    settings = load_settings(None)
    for text in (repr(settings), str(settings)):
        assert PG_USER_PASSWORD not in text and PG_QUERY_PASSWORD not in text
    assert repr(settings).startswith("Settings(database_url='postgresql+psycopg://bob:***@")
    assert {PG_USER_PASSWORD, PG_QUERY_PASSWORD} <= set(settings.secrets())  # hence redacted from logs


def test_a_postgresql_password_never_shows_in_a_connection_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg://bob:{PG_USER_PASSWORD}@127.0.0.1:1/td?password={PG_QUERY_PASSWORD}"
    with pytest.raises(TierdriftError) as err:
        open_engine(url)  # port 1: refused at once
    assert PG_USER_PASSWORD not in str(err.value) and PG_QUERY_PASSWORD not in str(err.value)
    code, _, stderr = tierdrift(capsys, monkeypatch, "--db", url, "run", "--once")
    assert code == 1
    assert_one_line(stderr, "127.0.0.1")


def test_database_passwords_are_redacted_from_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url=PG_URL)
    logs.setup("plain", "INFO", settings.secrets())
    logging.getLogger("tierdrift").warning("driver said: auth for %s failed (%s)", PG_URL, PG_QUERY_PASSWORD)
    err = capsys.readouterr().err
    assert "driver said" in err and PG_USER_PASSWORD not in err and PG_QUERY_PASSWORD not in err


@given(
    st.text(min_size=1, max_size=20).map(lambda s: "Q" + s),
    st.text(min_size=1, max_size=20).map(lambda s: "Q" + s),
    st.booleans(),
)
def test_redact_url_hides_any_password_in_either_place(user_pw: str, query_pw: str, encode: bool) -> None:
    write = (lambda s: quote(s, safe="")) if encode else (lambda s: s.replace("@", "%40").replace("&", "%26"))
    url = f"postgresql+psycopg://bob:{write(user_pw)}@db/td?sslmode=require&password={write(query_pw)}"
    shown = redact_url(url)
    assert shown == "postgresql+psycopg://bob:***@db/td?sslmode=require&password=***"


# -- packaging ----------------------------------------------------------------------------------------------


def test_the_license_is_an_spdx_expression_with_a_setuptools_that_reads_it() -> None:
    """`license = { text = … }` is deprecated (setuptools stops accepting it in February 2027)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    (requirement,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert re.fullmatch(r"setuptools>=(\d+)", requirement)
    assert int(requirement.split(">=")[1]) >= 77
    assert not any(c.startswith("License ::") for c in meta["project"].get("classifiers", []))
