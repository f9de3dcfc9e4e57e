"""Outside text is data in every human output; times to the second; `positions show` prices cross right.

A fake exchange on 127.0.0.1 lists symbols whose names are hostile (Rich markup, ESC sequences, `\\r`, a
bidi override, HTML, a newline, a very long name) and then fails with hostile error messages. Every
human command then runs through the real CLI on a real SQLite file: none may crash, interpret the text
as markup, let a control character reach the terminal, or split one record over a forged line. The
alert renderers get the same strings. Cross margin: Binance's published example (domain doc §3).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from alerts.model import Alert, Severity
from alerts.render import render_chat, render_html, render_text, subject
from monitor.cli import app, output
from monitor.fake_exchange import RISK_LIMIT, FakeExchange, Fault, generate_tables
from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from monitor.store.models import MarketData
from snapshots.printable import printable
from tests.conftest import ccxt_tiers, point_at_fake, write_archive

runner = CliRunner()

# Base-coin names as a hostile exchange could list them (the fake serves `<name>USDT`). ccxt upper-cases
# a base coin, so they are given upper-case; lower-case markup comes in error messages and notes.
MARKUP = ["[/]", "[LINK=HTTP://EVIL]X[/LINK]", "[#F00]BOOM[/]"]
CONTROL = ["\x1b[31MRED\x1b[0M", "CR\rOVER", "\u202eDSU", "BEL\x07\x9b2J"]
HTML = ["<B>X</B>&AMP;"]
FORGED = "NL\nFAKE: FORGED"
LONG = "L" * 400
HOSTILE = [*MARKUP, *CONTROL, *HTML, FORGED, LONG]
ERROR_TEXT = "\x1b[2J\x1b[31mboom [/] [link=http://evil]click[/link]\r\u202e <script>x</script>\nFAKE: ok"


def hidden(text: str) -> list[str]:
    """The characters of `text` a terminal would act on or hide (newlines excepted)."""
    return [ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


def assert_inert(out: str) -> None:
    """No control character in `out`, and no line that a newline in outside text forged."""
    assert hidden(out) == [], hidden(out)
    assert not any(line.lstrip(" │").startswith("FAKE") for line in out.splitlines()), out


def cli(db_url: str, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["--db", db_url, *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return result.output


def js(db_url: str, *args: str) -> Any:
    return json.loads(cli(db_url, *args, "--json"))


def symbol(base: str) -> str:
    return f"{base}/USDT:USDT"


@dataclass
class World:
    db: str
    fake: FakeExchange
    polls: list[str]  # the human output of each poll
    position: int


@pytest.fixture(autouse=True)
def _fresh_console() -> Iterator[None]:
    """The console is cached with its width: give each test its own."""
    output.console.cache_clear()
    yield
    output.console.cache_clear()


def _world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, bases: list[str], error: str
) -> Iterator[World]:
    tables = {"bybit-linear": generate_tables("bybit-linear", 3, seed=3)}
    template = next(iter(tables["bybit-linear"].values()))
    # One change per symbol (the top tier's cap doubles), so that the poll prints every one of them.
    top = template.tiers[-1]
    other = replace(template, tiers=(*template.tiers[:-1], replace(top, cap=top.cap * 2)))
    for base in bases:
        tables["bybit-linear"][f"{base}USDT"] = template
    with FakeExchange(tables=tables) as fake:
        point_at_fake(fake, monkeypatch, tmp_path)
        monkeypatch.setenv("TIERDRIFT_SOURCES", '["bybit-linear"]')
        # Alerts go to a port nobody listens on: they stay in the outbox with an error to show.
        monkeypatch.setenv("TIERDRIFT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
        polls = [cli(db_url, "poll", "-s", "bybit-linear")]
        first = bases[0]
        cli(db_url, "positions", "add", "-s", "bybit-linear", "--symbol", symbol(first), "--side", "long",
            "--entry", "100", "--qty", "10", "--margin", "500", "--note", f"note {ERROR_TEXT}")  # fmt: skip
        position = js(db_url, "positions", "list")[0]["id"]
        _market(db_url, [symbol(b) for b in bases], error)
        for base in bases:
            fake.set_table("bybit-linear", f"{base}USDT", other)
        polls.append(cli(db_url, "poll", "-s", "bybit-linear"))
        fake.inject(RISK_LIMIT, Fault.raw(json.dumps({"retCode": 10001, "retMsg": error})), times=10)
        polls.append(cli(db_url, "poll", "-s", "bybit-linear", code=1))
        yield World(db_url, fake, polls, position)


def _market(db_url: str, symbols: list[str], error: str) -> None:
    engine = open_engine(db_url)
    now = datetime.now(UTC)
    with Session(engine) as s:
        for i, sym in enumerate(symbols):
            failed = {"error": error, "error_at": now} if i else {}
            s.add(MarketData(source="bybit-linear", symbol=sym, mark_price=101.5, mark_at=now, adr=3.0, adr_days=14,
                             adr_at=now, **failed))  # fmt: skip
        s.commit()
    engine.dispose()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[World]:
    yield from _world(tmp_path, monkeypatch, db_url, HOSTILE, ERROR_TEXT)


# --- the terminal ---------------------------------------------------------------------------------


def test_poll_prints_hostile_symbols_and_errors_as_text(world: World) -> None:
    baseline, changed, failed = world.polls
    for out in world.polls:
        assert_inert(out)
    assert "bybit-linear: first snapshot stored (13 symbols)" in baseline
    assert f"bybit-linear: ok, 13 symbols, {len(HOSTILE)} changed" in changed
    change_lines = [line for line in changed.splitlines() if line.startswith("  ") and "tier" in line]
    for base in [*MARKUP, *HTML]:
        assert any(line.startswith(f"  {symbol(base)}: tier") for line in change_lines), base
    assert any(line.startswith(f"  {printable(symbol(FORGED))}: tier") for line in change_lines)
    assert "\\x1b[31MRED\\x1b[0M/USDT:USDT" in changed and "\\u202eDSU" in changed and "\\x9b2J" in changed
    (line,) = [line for line in failed.splitlines() if "FAILED" in line]
    assert line.startswith("bybit-linear: FAILED: ")
    assert "\\x1b[2J\\x1b[31mboom [/] [link=http://evil]click[/link]" in line and "<script>x</script>" in line
    assert failed.count("\n") == 2  # the failure, and the alerts line: nothing forged


@pytest.mark.parametrize(
    "args",
    [
        ["sources"],
        ["polls"],
        ["changes"],
        ["impacts"],
        ["positions", "list"],
        ["market", "show"],
        ["alerts", "list"],
    ],
    ids=lambda a: " ".join(a),
)
def test_read_commands_show_hostile_text_literally(world: World, args: list[str]) -> None:
    out = cli(world.db, *args)
    assert_inert(out)
    shown = {
        "sources": ["[link=http://evil]click[/link]", "<script>x</script>"],
        "polls": ["[link=http://evil]click[/link]"],
        "market show": ["[link=http://evil]click[/link]", "\\x1b[31MRED", "[/]/USDT:USDT"],
        "positions list": ["[/]/USDT:USDT"],
        "impacts": ["[/]/USDT:USDT"],
        "alerts list": ["[/]/USDT:USDT long #1"],
    }.get(" ".join(args), ["[LINK=HTTP://EVIL]X[/LINK]/USDT:USDT", "[#F00]BOOM[/]/USDT:USDT", "[/]/USDT:USDT"])
    for text in shown:
        assert text in out, (text, out)


@pytest.mark.parametrize("base", HOSTILE, ids=lambda b: repr(b[:12]))
def test_tiers_history_and_liq_of_a_hostile_symbol(world: World, base: str) -> None:
    sym = symbol(base)
    for args in (["tiers", sym, "-s", "bybit-linear"], ["history", sym, "-s", "bybit-linear"]):
        out = cli(world.db, *args)
        assert_inert(out)
        assert out.splitlines()[0].startswith(output.safe(sym)), out
    out = cli(world.db, "liq", "-s", "bybit-linear", "--symbol", sym, "--side", "long", "--entry", "100",
              "--qty", "10", "--margin", "500")  # fmt: skip
    assert_inert(out)
    assert out.startswith(f"{output.safe(sym)} long, entry 100")


def test_positions_show_keeps_a_hostile_note_on_one_line(world: World) -> None:
    out = cli(world.db, "positions", "show", str(world.position))
    assert_inert(out)
    (note,) = [line for line in out.splitlines() if line.lstrip().startswith("note:")]
    assert note.endswith("note: note " + printable(ERROR_TEXT))
    assert "symbol: [/]/USDT:USDT" in out
    assert js(world.db, "positions", "show", str(world.position))["note"] == f"note {ERROR_TEXT}"  # JSON: as is


def test_alert_delivery_errors_and_check_are_inert(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    out = cli(world.db, "alerts", "deliver")
    assert_inert(out)
    assert out.startswith("alerts: ")
    world.fake.inject(RISK_LIMIT, Fault.raw(json.dumps({"retCode": 10001, "retMsg": ERROR_TEXT})), times=10)
    cli(world.db, "poll", "-s", "bybit-inverse", code=1)
    monkeypatch.setenv("TIERDRIFT_SOURCES", '["bybit-inverse"]')
    out = cli(world.db, "check", code=1)
    assert_inert(out)
    assert out.count("\n") == 1 and out.startswith("unhealthy: bybit-inverse: never polled successfully (")
    assert "[link=http://evil]click[/link]" in out
    monkeypatch.setenv("TIERDRIFT_LOG_LEVEL", "info")
    out = cli(world.db, "config", "show")
    assert_inert(out)


def test_json_outputs_keep_outside_text_exactly(world: World) -> None:
    changes = js(world.db, "changes")
    assert {c["symbol"] for c in changes} == {symbol(b) for b in HOSTILE}
    (status,) = [s for s in js(world.db, "sources") if s["source"] == "bybit-linear"]
    assert "\x1b[2J" in status["last_error"] and "\u202e" in status["last_error"]


def test_a_hostile_error_is_one_line_from_main(tmp_path: Path, db_url: str) -> None:
    name = tmp_path / "bad\x1b[31m\nerror: forged\u202e.csv"
    name.write_text("source,symbol,side,entry\nnope,X,long,1\nnope,Y,long,1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--db", db_url, "positions", "import", str(name)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TIERDRIFT_CONFIG": str(tmp_path / "absent.toml"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert hidden(proc.stderr) == []
    first, *rows = proc.stderr.splitlines()
    assert first.startswith("error: ") and "bad\\x1b[31m\\nerror: forged\\u202e.csv: 2 bad row(s)" in first
    assert [r.split(":")[0] for r in rows] == ["  line 2", "  line 3"]  # the detail, indented


def test_log_lines_of_the_daemon_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from monitor.service import logs

    logs.setup("text", "info", [])
    logging.getLogger("tierdrift.test").info("poll failed: %s", ERROR_TEXT)
    err = capsys.readouterr().err
    assert hidden(err) == [] and err.count("\n") == 1 and printable(ERROR_TEXT) in err


# --- times and width ------------------------------------------------------------------------------

SECONDS = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b")
FRACTION = re.compile(r"\d\d:\d\d:\d\d[.,]\d")


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[World]:
    yield from _world(tmp_path, monkeypatch, db_url, ["PLAIN", "OTHER"], "params error: symbol invalid")


def tokens(out: str) -> set[str]:
    """The words of a rendering's values: not its header row, box characters or a trailing `:`."""
    body = "\n".join(line for line in out.splitlines() if not line.startswith("┃"))
    return {t.rstrip(":") for t in re.findall(r"[^\s\u2500-\u257f•·]+", body)}


@pytest.mark.parametrize(
    "args",
    [
        ["sources"],
        ["polls"],
        ["changes"],
        ["impacts"],
        ["positions", "list"],
        ["market", "show"],
        ["alerts", "list"],
        ["history", "PLAIN/USDT:USDT", "-s", "bybit-linear"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_tables_show_times_to_the_second_and_stay_readable_at_100_columns(
    plain: World, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    wide = cli(plain.db, *args)
    monkeypatch.setenv("COLUMNS", "100")
    output.console.cache_clear()
    out = cli(plain.db, *args)
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert out.count("…") == wide.count("…"), out  # nothing is cut short
    assert tokens(wide) <= tokens(out), (tokens(wide) - tokens(out), out)  # no word broken or lost: they wrap
    for text in (wide, out):
        assert not FRACTION.search(text), text
        # Every date has its whole time, to the second (in a narrow column, on the next line).
        dates = re.findall(r"\b\d{4}-\d\d-\d\d\b", text)
        assert len(re.findall(r"\b\d\d:\d\d:\d\d\b", text)) == len(dates), text
    assert SECONDS.search(wide) or args == ["positions", "list"], wide


def test_positions_show_times_to_the_second(plain: World) -> None:
    out = cli(plain.db, "positions", "show", str(plain.position))
    (opened,) = [line for line in out.splitlines() if line.lstrip().startswith("opened_at:")]
    assert SECONDS.search(opened) and not FRACTION.search(opened)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z", js(plain.db, "positions", "show", str(plain.position))["opened_at"]
    )


def test_when_truncates_to_the_second_and_reads_naive_as_utc() -> None:
    assert output.when(datetime(2024, 1, 31, 12, 0, 5, 999_999, tzinfo=UTC)) == "2024-01-31 12:00:05"
    assert output.when(datetime(2024, 1, 31, 12, 0, 5)) == "2024-01-31 12:00:05"
    assert output.when(None) == "—" and output.when(None, "never") == "never"
    assert output.when_text("2024-01-31T12:00:05.5Z") == "2024-01-31 12:00:05"


# --- one rule for outside text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC/USDT:USDT", "BTC/USDT:USDT"),
        ("a\nb", "a\\nb"),
        ("\x1b[31mx", "\\x1b[31mx"),
        ("\r\t\x00\x7f\x85\x9b", "\\r\\t\\x00\\x7f\\x85\\x9b"),
        ("\u202e\u2066\u200b\ufeff\u2028", "\\u202e\\u2066\\u200b\\ufeff\\u2028"),
        ("[/] <b> &", "[/] <b> &"),
        ("日本語 émoji 🚀", "日本語 émoji 🚀"),
    ],
)
def test_printable(text: str, expected: str) -> None:
    assert printable(text) == expected


def test_printable_keeps_our_newlines_when_asked_and_clips() -> None:
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert printable("x" * 10, limit=5) == "xxxx…"
    assert output.safe("x" * 5000) == "x" * (output.TEXT_LIMIT - 1) + "…"


def test_the_console_prints_markup_and_emoji_codes_literally(capsys: pytest.CaptureFixture[str]) -> None:
    con = output.console()
    con.print("[/] [link=http://evil]x[/link] [bold]b :warning: \x1b[31m")
    table = output.new_table("a")
    table.add_row("[/]\x1b]8;;http://evil\x07")
    con.print(table)
    out = capsys.readouterr().out
    assert "[/] [link=http://evil]x[/link] [bold]b :warning: \\x1b[31m" in out
    assert "[/]\\x1b]8;;http://evil\\x07" in out and hidden(out) == []


# --- alerts ---------------------------------------------------------------------------------------


def hostile_alert() -> Alert:
    text = "[/]<b>x</b> <script>alert(1)</script> & \"q\" 'q' \x1b[31m\r\u202e @everyone <!channel> <@123>"
    return Alert(
        id="a1",
        kind="tier_changes",
        severity=Severity.CRITICAL,
        created_at=datetime(2026, 3, 14, 9, 30, 5, tzinfo=UTC),
        title=f"{text}\nFAKE: title",
        source="bybit-linear",
        symbol=f"{text}/USDT:USDT",
        lines=(f"line {text}", "[x](http://evil) <http://evil|click> <#123> <t:1:R>"),
        rows=((f"row {text}", "1", "2"),),
    )


def test_email_bodies_are_inert() -> None:
    alert = hostile_alert()
    doc = render_html(alert)
    assert "<script>" not in doc and "<b>x" not in doc and "<!channel>" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#x27;q&#x27;" in doc
    assert hidden(doc) == []
    text = render_text(alert)
    assert hidden(text) == [] and "[/]<b>x</b>" in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())
    head = subject(alert)
    assert hidden(head) == [] and "\n" not in head and head.startswith("[tierdrift] CRITICAL: [/]<b>x</b>")


def test_slack_message_is_inert() -> None:
    body = render_chat(hostile_alert(), "slack")
    text = body["text"]
    assert hidden(text) == []
    assert "<" not in text and ">" not in text  # no <!channel>, <@user> or <url|label> can form
    assert "&lt;!channel&gt;" in text and "&lt;http://evil|click&gt;" in text and "&amp;" in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())


def test_discord_message_is_inert() -> None:
    body = render_chat(hostile_alert(), "discord")
    text = body["content"]
    assert body["allowed_mentions"] == {"parse": []}
    assert hidden(text) == []
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # Discord parses nothing in a code block
    assert "<!channel>" in text and re.search(r"(?<!\\)<[@#!t:]", prose) is None  # <@…>, <#…>, <t:…> escaped
    assert r"\[x](http://evil)" in text  # no masked link
    assert not any(line.startswith("FAKE") for line in text.splitlines())


def test_webhook_json_keeps_the_text_as_sent() -> None:
    from alerts.render import render_json

    alert = hostile_alert()
    assert render_json(alert)["title"] == alert.title


# --- the known wrong figure: cross positions in `positions show` ------------------------------------

# The 2020–21 tables of domain doc §3, as (floor, rate, max leverage); amounts follow the recurrence.
BTC_ERA = [
    (0, 0.004, 125), (50_000, 0.005, 100), (250_000, 0.01, 50), (1_000_000, 0.025, 20), (5_000_000, 0.05, 10),
    (20_000_000, 0.10, 5), (50_000_000, 0.125, 4), (100_000_000, 0.15, 3), (200_000_000, 0.25, 2),
    (300_000_000, 0.5, 1),
]  # fmt: skip
ETH_ERA = [
    (0, 0.005, 100), (10_000, 0.0065, 75), (100_000, 0.01, 50), (500_000, 0.02, 25), (1_000_000, 0.05, 10),
    (2_000_000, 0.10, 5), (5_000_000, 0.125, 4), (10_000_000, 0.15, 3), (20_000_000, 0.25, 2),
]  # fmt: skip


@pytest.fixture
def cross(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Binance's published cross example (domain doc §3), logged through the CLI."""
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    payload = {
        s: ccxt_tiers(s, rows, top=500e6) for s, rows in (("BTC/USDT:USDT", BTC_ERA), ("ETH/USDT:USDT", ETH_ERA))
    }
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", plan([write_archive(tmp_path / "2021-05-01_usdm.json", payload)]))
    now = datetime.now(UTC)
    with Session(engine) as s:
        for sym, mark in (("BTC/USDT:USDT", 31_967.27), ("ETH/USDT:USDT", 1_335.18)):
            s.add(MarketData(source="binance-usdm", symbol=sym, mark_price=mark, mark_at=now, adr=mark / 30,
                             adr_days=14, adr_at=now))  # fmt: skip
        s.commit()
    engine.dispose()
    cli(db_url, "account", "set", "--source", "binance-usdm", "--wallet-balance", "1535443.01")
    for sym, entry, qty in (("BTCUSDT", "32481.98", "109.488"), ("ETHUSDT", "1456.84", "3683.979")):
        cli(db_url, "positions", "add", "-s", "binance-usdm", "--symbol", sym, "--side", "long", "--entry", entry,
            "--qty", qty, "--mode", "cross")  # fmt: skip
    return db_url


@pytest.mark.parametrize(("position", "expected"), [(1, 26_316.89), (2, 1_153.26)], ids=["BTCUSDT", "ETHUSDT"])
def test_positions_show_prices_a_cross_position_with_its_account(cross: str, position: int, expected: float) -> None:
    shown = js(cross, "positions", "show", str(position))
    assert round(shown["liquidation_price"], 2) == expected
    listed = {r["id"]: r for r in js(cross, "positions", "list")}[position]
    figures = {k: v for k, v in listed.items()}
    assert {k: shown[k] for k in figures} == figures  # `show` and `list` agree on every key
    human = cli(cross, "positions", "show", str(position))
    (line,) = [x for x in human.splitlines() if x.lstrip().startswith("liquidation_price:")]
    assert round(float(line.split(":", 1)[1]), 2) == expected


def test_closing_the_other_cross_position_reprices_show_like_list(cross: str) -> None:
    cli(cross, "positions", "close", "2")
    alone = js(cross, "positions", "show", "1")
    assert round(alone["liquidation_price"], 2) != 26_316.89
    assert alone["liquidation_price"] == js(cross, "positions", "list")[0]["liquidation_price"]


def test_a_cross_account_position_missing_its_mark_blocks_show_too(cross: str) -> None:
    engine = open_engine(cross)
    with Session(engine) as s:
        row = s.get(MarketData, ("binance-usdm", "ETH/USDT:USDT"))
        assert row is not None
        s.delete(row)
        s.commit()
    engine.dispose()
    shown = js(cross, "positions", "show", "1")
    assert shown["liquidation_price"] is None and "mark price of cross position #2" in shown["not_computed"]
