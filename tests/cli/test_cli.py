"""The command line as a user runs it: real processes on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, write_archive

CHANGE_KEYS = {"detected_at", "previous_poll_at", "source", "symbol", "kind", "tier", "field", "old", "new"}
TIER_KEYS = {"tier", "floor", "cap", "maintenance_margin_rate", "maintenance_amount", "max_leverage"}


def run(db_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--db", db_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TIERDRIFT_CONFIG": "/nonexistent/config.toml"},
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def archive(tmp_path: Path, name: str, **symbols: list[tuple[float, float, float]]) -> Path:
    payload = {f"{s}/USDT:USDT": ccxt_tiers(f"{s}/USDT:USDT", rows) for s, rows in symbols.items()}
    return write_archive(tmp_path / name, payload)


@pytest.fixture
def history(tmp_path: Path, db_url: str) -> str:
    tighter = [(f, r * 1.5, lev) for f, r, lev in ETH_ROWS]  # rate × leverage stays below 1
    files = [
        archive(tmp_path, "2024-03-01_b.json", BTC=BTC_ROWS, ETH=ETH_ROWS),
        archive(tmp_path, "2024-02-01_a.json.gz", BTC=BTC_ROWS, ETH=ETH_ROWS),
        archive(tmp_path, "2024-04-01_c.json.gz", BTC=BTC_ROWS, ETH=tighter),
    ]
    out = run(db_url, "import", *map(str, files), "--source", "binance-usdm")
    assert "imported 3 file(s)" in out.stdout
    return db_url


def js(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def test_tiers_json_contract_and_time_travel(history: str) -> None:
    before = js(run(history, "tiers", "ETHUSDT", "--source", "binance-usdm", "--at", "2024-03-31T23:59Z", "--json"))
    after = js(run(history, "tiers", "ETH/USDT:USDT", "--source", "binance-usdm", "--json"))
    assert all(set(t) == TIER_KEYS for t in before)
    assert [t["maintenance_margin_rate"] for t in before] == [r for _, r, _ in ETH_ROWS]
    assert [t["maintenance_margin_rate"] for t in after] == pytest.approx([1.5 * r for _, r, _ in ETH_ROWS])
    assert [t["maintenance_amount"] for t in before] == pytest.approx([0, 15, 365, 5365])


def test_changes_json_contract(history: str) -> None:
    rows = js(run(history, "changes", "--source", "binance-usdm", "--json"))
    assert rows and all(set(r) == CHANGE_KEYS for r in rows)
    assert {r["symbol"] for r in rows} == {"ETH/USDT:USDT"}
    first = rows[0]
    assert first["detected_at"] == "2024-04-01T00:00:00Z"
    assert first["previous_poll_at"] == "2024-03-01T00:00:00Z"
    assert first["kind"] == "tier_changed" and first["field"] == "maintenance_margin_rate"
    assert (first["old"], first["new"]) == (0.005, 0.0075)
    assert js(run(history, "changes", "--since", "2024-04-02", "--json")) == []
    assert len(js(run(history, "changes", "--symbol", "ETHUSDT", "--source", "binance-usdm", "--json"))) == len(rows)


def test_history_and_sources(history: str) -> None:
    versions = js(run(history, "history", "ETHUSDT", "--source", "binance-usdm", "--json"))
    assert [(v["valid_from"], v["valid_to"]) for v in versions] == [
        ("2024-02-01T00:00:00Z", "2024-04-01T00:00:00Z"),
        ("2024-04-01T00:00:00Z", None),
    ]
    status = {s["source"]: s for s in js(run(history, "sources", "--json"))}
    assert status["binance-usdm"]["last_success_at"] == "2024-04-01T00:00:00Z"
    assert status["binance-usdm"]["last_change_at"] == "2024-04-01T00:00:00Z"
    assert status["binance-usdm"]["symbols"] == 2
    assert status["bybit-linear"]["last_poll_at"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tiers", "BTCUSDT", "--source", "nope"], "unknown source 'nope'"),
        (["tiers", "DOGEUSDT", "--source", "binance-usdm"], "unknown symbol 'DOGEUSDT'"),
        (["tiers", "BTCUSDT", "--source", "binance-usdm", "--at", "2020-01-01"], "before its history begins"),
        (["tiers", "BTCUSDT", "--source", "binance-usdm", "--at", "yesterday"], "invalid timestamp"),
        (["changes", "--source", "bogus"], "unknown source"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(history: str, args: list[str], message: str) -> None:
    proc = run(history, *args, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_file_is_rejected_and_writes_nothing(tmp_path: Path, db_url: str) -> None:
    good = archive(tmp_path, "2024-01-01_ok.json", BTC=BTC_ROWS)
    bad_payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)}
    bad_payload["BTC/USDT:USDT"][1]["maxNotional"] = "lots"
    bad = write_archive(tmp_path / "2024-02-01_bad.json", bad_payload)
    proc = run(db_url, "import", str(bad), str(good), "--source", "binance-usdm", check=False)
    assert proc.returncode == 1
    assert "2024-02-01_bad.json" in proc.stderr and "BTC/USDT:USDT tier 2" in proc.stderr
    polls = js(run(db_url, "polls", "--json"))
    assert [p["provenance"] for p in polls] == ["import:2024-01-01_ok.json"]  # the good, older file only


def test_truncated_gzip_and_undated_names_are_rejected(tmp_path: Path, db_url: str) -> None:
    broken = tmp_path / "2024-01-01_x.json.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    proc = run(db_url, "import", str(broken), "--source", "binance-usdm", check=False)
    assert proc.returncode == 1 and "2024-01-01_x.json.gz" in proc.stderr
    undated = archive(tmp_path, "tiers.json", BTC=BTC_ROWS)
    proc = run(db_url, "import", str(undated), "--source", "binance-usdm", check=False)
    assert proc.returncode == 1 and "pass --at" in proc.stderr
    run(db_url, "import", str(undated), "--source", "binance-usdm", "--at", "2024-05-05T10:00Z")
    assert js(run(db_url, "polls", "--json"))[0]["started_at"] == "2024-05-05T10:00:00Z"


@pytest.mark.parametrize(
    "command",
    [
        ["tiers", "BTCUSDT", "-s", "binance-usdm"],
        ["changes"],
        ["sources"],
        ["history", "BTCUSDT", "-s", "binance-usdm"],
        ["polls"],
    ],
)
def test_read_only_commands_stay_light(history: str, command: list[str]) -> None:
    """No ccxt, deepdiff, pydantic, SQLModel or web stack; on SQLite not even SQLAlchemy (the stdlib's sqlite3
    reads)."""
    code = (
        "import sys, runpy; sys.argv = ['tierdrift', '--db', sys.argv[1], *sys.argv[2:], '--json']\n"
        "try:\n    runpy.run_module('monitor', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "names = ('ccxt', 'deepdiff', 'sqlmodel', 'pydantic', 'sqlalchemy',"
        " 'fastapi', 'starlette', 'uvicorn', 'jinja2')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code, history, *command], capture_output=True, text=True, timeout=60)
    expected = "HEAVY []" if history.startswith("sqlite") else "HEAVY ['sqlalchemy']"
    assert expected in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)


def test_every_command_has_help(db_url: str) -> None:
    from monitor.cli import app

    for command in app.registered_commands:
        assert command.callback is not None and command.callback.__doc__, command.name


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["--db", "sqlite:///x.db", "tiers", "BTCUSDT", "-s", "binance-usdm"], "tiers"),
        (["changes", "--json"], "changes"),
        (["--db", "tiers", "sources"], "sources"),  # "tiers" is the value of --db here
        (["positions", "list"], None),
        (["--help"], None),
        ([], None),
    ],
)
def test_fast_commands_get_a_one_command_app(argv: list[str], command: str | None) -> None:
    from monitor.cli import app, app_for

    chosen = app_for(argv)
    if command is None:
        assert chosen is app
    else:
        assert chosen is not app
        assert [c.name for c in chosen.registered_commands] == [command]
