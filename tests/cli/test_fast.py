"""The fast path of the read-only commands (monitor.cli.fast) answers exactly as the Typer app does.

Every invocation runs twice through `monitor.cli.run`, the boundary `main` uses: as it comes (the fast
path when it takes it) and with the fast path turned off (the Typer app parses it), on the same database;
stdout, stderr and the exit code must be equal. The cases name what each should be (taken or left to
Typer, succeeding or failing); hypothesis then draws argument lists from the commands' own words.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session
from typer.testing import CliRunner

from monitor import cli
from monitor.cli import fast, reads
from monitor.cli.state import MAX_INT
from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from monitor.store.models import MarketData, Position
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, write_archive

runner = CliRunner()
SRC = "binance-usdm"
AT = "2021-06-01T00:00:00Z"
NOW = datetime(2021, 9, 1, 12, 30, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("fast")
    return seeded(f"sqlite:///{root / 'tiers.db'}", root)


def seeded(url: str, root: Path) -> str:
    """`url` with two versions of two Binance tables imported, and three positions (one closed)."""
    engine = open_engine(url)
    old = {s: ccxt_tiers(s, rows, top=500e6) for s, rows in (("BTC/USDT:USDT", BTC_ROWS), ("ETH/USDT:USDT", ETH_ROWS))}
    new = {**old, "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS[:-1], top=400e6)}
    files = [write_archive(root / "2021-05-01_a.json", old), write_archive(root / "2021-07-01_b.json", new)]
    import_files(engine, SRC, plan(files))
    opened = datetime(2021, 8, 1, tzinfo=UTC)
    with Session(engine) as s:
        for symbol, side, closed in (("BTC/USDT:USDT", "long", None), ("ETH/USDT:USDT", "short", None),
                                     ("ETH/USDT:USDT", "long", NOW)):  # fmt: skip
            s.add(Position(source=SRC, symbol=symbol, side=side, entry_price=30_000.0, size=2.0, size_input="qty=2",
                           margin=8_000.0, opened_at=opened, closed_at=closed))  # fmt: skip
        s.add(MarketData(source=SRC, symbol="BTC/USDT:USDT", mark_price=31_000.0, mark_at=NOW, adr=900.0, adr_at=NOW))
        s.commit()
    engine.dispose()
    return url


def invoke(argv: list[str], *, fast_path: bool, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    env = {"TIERDRIFT_CONFIG": "/nonexistent/config.toml", "TIERDRIFT_DATABASE_URL": None, "COLUMNS": "120"}
    with monkeypatch.context() as m:
        m.setattr(reads, "utcnow", lambda: NOW)  # `tiers` without --at shows the time: the same in both runs
        if not fast_path:
            m.setattr(fast, "parse", lambda argv: None)
        with runner.isolation(env=env) as (out, err, _):
            code = cli.run(argv)
            sys.stdout.flush()
            sys.stderr.flush()
            return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def same(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """Run `argv` both ways; assert they answer alike; the answer."""
    quick = invoke(argv, fast_path=True, monkeypatch=monkeypatch)
    assert quick == invoke(argv, fast_path=False, monkeypatch=monkeypatch), argv
    return quick


#: (arguments after `--db URL`, taken by the fast path, exit code)
CASES = [
    (["tiers", "BTCUSDT", "-s", SRC, "--at", AT], True, 0),
    (["tiers", "BTC/USDT:USDT", "--source", SRC, "--at", AT, "--json"], True, 0),
    (["tiers", "--at=2021-08-01", "-s", SRC, "ETHUSDT", "--json"], True, 0),
    (["tiers", "BTCUSDT", "-s", SRC, "--json"], True, 0),
    (["tiers", "NOPE", "-s", SRC], True, 1),
    (["tiers", "BTCUSDT", "-s", "nope"], True, 1),
    (["tiers", "BTCUSDT", "-s", SRC, "--at", "yesterday"], True, 1),
    (["tiers", "BTCUSDT", "-s", SRC, "--at", "2020-01-01"], True, 1),
    (["tiers", "BTCUSDT"], False, 2),
    (["tiers", "-s", SRC], False, 2),
    (["tiers", "BTCUSDT", "ETHUSDT", "-s", SRC], False, 2),
    (["tiers", "BTCUSDT", "-s", SRC, "--json", "--json"], False, 0),
    (["tiers", "BTCUSDT", "-s", SRC, "-s", SRC, "--json"], False, 0),
    (["tiers", "BTCUSDT", "-s"], False, 2),
    (["tiers", "BTCUSDT", "-s", SRC, "--at"], False, 2),
    (["tiers", "BTCUSDT", "-s", SRC, "--bogus"], False, 2),
    (["tiers", "BTCUSDT", "-s", SRC, "--json=1"], False, 2),
    (["tiers", "BTCUSDT", f"-s{SRC}", "--json"], False, 0),
    (["tiers", "", "-s", SRC], False, 1),
    (["tiers", "--", "BTCUSDT", "-s", SRC, "--json"], False, 2),  # after `--`, `-s` is an argument
    (["tiers", "--help"], False, 0),
    (["changes"], True, 0),
    (["changes", "--json"], True, 0),
    (["changes", "--source", SRC, "--symbol", "BTCUSDT", "--json", "--limit", "1"], True, 0),
    (["changes", "--since", "2021-06-01", "--until", "2021-08-01", "--all"], True, 0),
    (["changes", "--limit", "3"], True, 0),
    (["changes", "--limit", str(MAX_INT)], True, 0),
    (["changes", "--since", "soon"], True, 1),
    (["changes", "-s", "nope"], True, 1),
    (["changes", "-s", SRC, "--symbol", "NOPE"], True, 1),
    (["changes", "--symbol", "BTCUSDT"], False, 2),
    (["changes", "--limit", "0"], False, 2),
    (["changes", "--limit", "007"], False, 0),
    (["changes", "--limit", str(MAX_INT + 1)], False, 2),
    (["changes", "--limit", "x"], False, 2),
    (["changes", "--limit", "-1"], False, 2),
    (["changes", "extra"], False, 2),
    (["history", "BTCUSDT", "-s", SRC], True, 0),
    (["history", "ETHUSDT", "-s", SRC, "--json"], True, 0),
    (["history", "NOPE", "-s", SRC], True, 1),
    (["history", "BTCUSDT"], False, 2),
    (["history", "--help"], False, 0),
    (["sources"], True, 0),
    (["sources", "--json"], True, 0),
    (["sources", "--json", "x"], False, 2),
    (["polls"], True, 0),
    (["polls", "-s", SRC, "--limit", "1", "--json"], True, 0),
    (["polls", "-s", "nope"], True, 1),
    (["polls", "--limit", "0"], False, 2),
    (["polls", "--limit="], False, 2),
    (["positions", "list"], True, 0),
    (["positions", "list", "--json"], True, 0),
    (["positions", "list", "--all", "--limit", "0"], True, 0),
    (["positions", "list", "--limit=1", "--all"], True, 0),
    (["positions", "list", "--json", "--limit", str(MAX_INT)], True, 0),
    (["positions", "list", "--limit", "007"], False, 0),
    (["positions", "list", "--limit", "00"], False, 0),
    (["positions", "list", "--limit", "-1"], False, 2),
    (["positions", "list", "--limit", str(MAX_INT + 1)], False, 2),
    (["positions", "list", "--all", "--all"], False, 0),
    (["positions", "list", "extra"], False, 2),
    (["positions", "list", "--source", SRC], False, 2),
    (["positions", "list", "--help"], False, 0),
    (["positions", "--help", "list"], False, 0),
    (["positions", "--json", "list"], False, 2),
    (["positions", "show", "1", "--json"], False, 0),
]


@pytest.mark.parametrize(("args", "taken", "code"), CASES)
def test_the_fast_path_answers_as_typer(
    db: str, args: list[str], taken: bool, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--db", db, *args]
    assert (fast.parse(argv) is not None) == taken
    outcome = same(argv, monkeypatch)
    assert outcome.code == code, outcome
    if code:
        assert outcome.stderr.startswith("error: ") and outcome.stderr.count("\n") == 1, outcome
    elif "--help" not in args:
        assert outcome.stdout and not outcome.stderr, outcome


@pytest.mark.parametrize(
    "argv",
    [
        ["--db=DB", "sources"],
        ["--config", "/nonexistent/other.toml", "--db", "DB", "polls"],
        ["--config", "{tmp}/settings.toml", "sources", "--json"],  # the database named by the config file
        ["--db", "sqlite:///{tmp}/absent.db", "tiers", "BTCUSDT", "-s", SRC],
        ["--db", "DB", "--db", "DB", "sources"],
        ["--help"],
        ["--db", "DB"],
        ["--db", "DB", "--help", "sources"],
        ["--bogus", "sources"],
        ["--db", "DB", "positions", "list"],
        ["--db", "DB", "positions"],
        ["--db", "sqlite:///{tmp}/absent.db", "positions", "list", "--json"],
        ["--config", "{tmp}/settings.toml", "positions", "list", "--json"],
        ["--config", "{tmp}/bad.toml", "positions", "list"],  # the settings are invalid: one line, exit 1
        ["--db", "DB", "sources", "--db", "DB"],
    ],
)
def test_root_options_and_other_commands_answer_alike(
    db: str, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "settings.toml").write_text(f'database_url = "{db}"\n')
    (tmp_path / "bad.toml").write_text(f'database_url = "{db}"\nviolation_threshold_adr = -1\n')
    argv = [a.replace("DB", db).replace("{tmp}", str(tmp_path)) for a in argv]
    same(argv, monkeypatch)


WORDS = st.sampled_from(
    [
        *("tiers", "changes", "history", "sources", "polls", "BTCUSDT", "NOPE", SRC, "nope", AT, "2021-08-01", "x", ""),
        *("positions", "list"),
        *("-s", "--source", "--at", "--json", "--symbol", "--since", "--until", "--limit", "--all", "--help", "--"),
        *("--limit=2", "--at=2021-06-02", "-s=" + SRC, "--json=", "1", "0", "-1", "--db", "--config", "--x"),
    ]
)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(fast.SPECS)), st.lists(WORDS, max_size=6))
def test_drawn_invocations_answer_alike(db: str, command: str, words: list[str]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        same(["--db", db, *command.split(), *words], monkeypatch)


def click_params(command: str | None) -> dict[str, tuple[str, ...]]:
    """The Typer command's parameters as `fast.Spec` sees them: option name → (parameter, kind)."""
    click_command = typer.main.get_command(cli.app)
    for word in command.split() if command else ():  # `positions list`: the group, then its command
        click_command = click_command.commands[word]  # type: ignore[attr-defined]
    found: dict[str, tuple[str, ...]] = {}
    for p in click_command.params:
        if p.param_type_name == "argument":
            found[p.name] = ("argument", str(p.required), str(p.nargs))
            continue
        kind = "flag" if getattr(p, "is_flag", False) else type(p.type).__name__
        if kind == "IntRange":
            kind = f"count {p.type.min}..{p.type.max} {p.type.min_open} {p.type.max_open} {p.type.clamp}"
        for opt in (*p.opts, *p.secondary_opts):
            found[opt] = (str(p.name), kind, str(p.required), str(bool(p.multiple or p.nargs != 1 or p.envvar)))
    return found


def spec_params(spec: fast.Spec) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {name: ("argument", "True", "1") for name in spec.arguments}
    for opt, name in spec.options.items():
        found[opt] = (name, "StringParamType", str(name in spec.required), "False")
    for opt, name in spec.counts.items():
        found[opt] = (name, f"count {0 if name in spec.zero else 1}..{MAX_INT} False False False", "False", "False")
    for opt, name in spec.flags.items():
        found[opt] = (name, "flag", "False", "False")
    return found


@pytest.mark.parametrize("command", sorted(fast.SPECS))
def test_specs_mirror_the_typer_commands(command: str) -> None:
    assert spec_params(fast.SPECS[command]) == click_params(command)
    assert fast.SPECS[command].body.__name__ == command.replace(" ", "_")
    root = click_params(None)
    assert {opt: kind[0] for opt, kind in root.items()} == fast.ROOT_OPTIONS
    assert root["--db"][1] == "StringParamType" and root["--config"][1] == "TyperPath"


@pytest.mark.parametrize(
    "args",
    [
        ["tiers", "BTCUSDT", "-s", SRC, "--at", AT],
        ["tiers", "BTCUSDT", "-s", SRC, "--json"],
        ["tiers", "NOPE", "-s", SRC],
        ["changes", "--json"],
        ["changes", "-s", SRC, "--symbol", "ETHUSDT"],
        ["history", "BTCUSDT", "-s", SRC, "--json"],
        ["sources", "--json"],
        ["polls", "--limit", "1"],
        ["positions", "list"],
        ["positions", "list", "--all", "--json"],
    ],
)
def test_the_fast_path_answers_as_typer_on_each_backend(
    db_url: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL the read goes through SQLAlchemy (no sqlite3 reader): the same answers either way.
    url = seeded(db_url, tmp_path)
    assert fast.parse(["--db", url, *args]) is not None
    same(["--db", url, *args], monkeypatch)


def test_a_fast_command_imports_no_typer(db: str) -> None:
    code = (
        "import sys, runpy\n"
        "try:\n    runpy.run_module('monitor', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('typer', 'click', 'rich') if m in sys.modules), file=sys.stderr)"
    )
    argv = [sys.executable, "-c", code, "--db", db, "tiers", "BTCUSDT", "-s", SRC, "--at", AT, "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert "LOADED []" in proc.stderr and proc.stdout.startswith("[\n  {"), proc
    helped = subprocess.run([*argv[:3], "tiers", "--help"], capture_output=True, text=True, timeout=60)
    assert "'typer'" in helped.stderr and "Usage: tierdrift tiers" in helped.stdout, helped  # left to Typer


def test_positions_list_reads_without_typer_or_sqlalchemy(db: str) -> None:
    code = (
        "import sys, runpy\n"
        "try:\n    runpy.run_module('monitor', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = ('typer', 'click', 'sqlalchemy', 'sqlmodel', 'ccxt', 'fastapi')\n"
        "print('LOADED', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)"
    )
    argv = [sys.executable, "-c", code, "--db", db, "positions", "list", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert "LOADED []" in proc.stderr and proc.stdout.startswith('[\n  {\n    "id": 1,'), proc
