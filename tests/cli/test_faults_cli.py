"""Every command's inputs, hostile: the CLI answers with one line, never a traceback, and writes nothing
when it refuses.

Each run goes through `monitor.cli.run`, the error boundary `main` uses, in-process (CliRunner's stream
isolation) on a fresh copy of a seeded SQLite file; a few go through `python -m monitor` as a user runs
it. The contract checked after every run (`assert_contract`):

- the exit code is 0, 1 or 2, and no Python traceback is printed;
- no error is an "unexpected" one (the boundary's last resort, which means a bug);
- a failure prints exactly one `error:` line on stderr (a CSV import adds one line per bad row under it,
  a settings warning may come first), or, for the commands that report failures on stdout, nothing;
- a failed command leaves the database exactly as it was.

The table at the top pins the classes of input that used to end in a traceback; hypothesis then draws
values for every option of every command, and hostile files for the commands that read one.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from monitor import cli
from monitor.cli import reads as cli_reads
from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from snapshots.model import SOURCES
from tests.conftest import BTC_ROWS, ETH_ROWS, ccxt_tiers, write_archive

runner = CliRunner()
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


class World:
    """A seeded database copied afresh for every run, and the environment of those runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seed = root / "seed.db"
        self.env = {
            "TIERDRIFT_CONFIG": str(root / "absent.toml"),
            "HOME": str(root / "home"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "TIERDRIFT_DATABASE_URL": None,
            "TIERDRIFT_DEBUG": None,
            "COLUMNS": "120",
        }
        self._n = itertools.count()

    def fresh(self) -> Path:
        """A new copy of the seed, under a name no earlier run used (their engines may still be open)."""
        path = self.root / "runs" / f"{next(self._n)}.db"
        path.parent.mkdir(exist_ok=True)
        shutil.copyfile(self.seed, path)
        return path

    def file(self, name: str, data: bytes) -> Path:
        path = self.root / "files" / f"{next(self._n)}" / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        return path

    def run(self, argv: list[str]) -> Outcome:
        # In `root`: a drawn relative `sqlite:///name` must not create a file in the repository.
        with contextlib.chdir(self.root), runner.isolation(env=self.env) as (out, err, _):
            code = cli.run(argv)
            sys.stdout.flush()
            sys.stderr.flush()
            return Outcome(code, out.getvalue().decode(), err.getvalue().decode())

    def check(self, argv: list[str]) -> Outcome:
        """Run `argv` on a fresh database and assert the contract, including "nothing written on failure"."""
        db = self.fresh()
        before = digest(db)
        outcome = self.run(["--db", f"sqlite:///{db}", *argv])
        assert_contract(outcome, argv)
        if outcome.code != 0:
            assert digest(db) == before, f"{argv}: a failed command changed the database"
        return outcome


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("faults-cli"))
    engine = open_engine(f"sqlite:///{w.seed}")
    usdm = {s: ccxt_tiers(s, rows, top=500e6) for s, rows in (("BTC/USDT:USDT", BTC_ROWS), ("ETH/USDT:USDT", ETH_ROWS))}
    import_files(engine, "binance-usdm", plan([write_archive(w.root / "2021-05-01_usdm.json", usdm)]))
    coinm = {"BTC/USD:BTC": ccxt_tiers("BTC/USD:BTC", [(0, 0.004, 125), (5, 0.005, 100)], top=100)}
    import_files(engine, "binance-coinm", plan([write_archive(w.root / "2021-05-01_coinm.json", coinm)]))
    engine.dispose()  # the last connection checkpoints the WAL: the .db file alone is the whole database
    return w


def digest(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


#: Commands that report a failure on stdout with exit 1 (a table of outcomes) rather than an error line.
REPORTS_ON_STDOUT = ("check", "market refresh", "alerts test", "alerts deliver", "alerts retry")


def assert_contract(outcome: Outcome, argv: list[str]) -> None:
    both = outcome.stdout + outcome.stderr
    assert outcome.code in (0, 1, 2), (argv, outcome)
    assert "Traceback" not in both, (argv, both)
    assert "(a bug: please report it)" not in outcome.stderr, (argv, outcome.stderr)
    if outcome.code == 0:
        return
    lines = [line for line in outcome.stderr.splitlines() if not line.startswith("warning: ")]
    if not lines:
        command = " ".join(w for w in argv if not w.startswith("-"))
        assert outcome.code == 1 and command.startswith(REPORTS_ON_STDOUT), (argv, outcome)
        return
    assert lines[0].startswith("error: "), (argv, outcome.stderr)
    rest = lines[1:]
    if rest:  # only a CSV import lists its bad rows, one per line, under the error line
        assert "bad row(s), nothing imported" in lines[0], (argv, outcome.stderr)
        assert all(line.startswith(("  line ", "  … and ")) for line in rest), (argv, outcome.stderr)


# -- the classes of input that ended in a traceback before -------------------------------------------

ADD = ["positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000"]
LIQ = ["liq", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000"]
INT64 = str(2**63)

REGRESSIONS = [
    # integers wider than the database's 64-bit integers
    (["positions", "show", INT64], "Invalid value for 'ID'"),
    (["positions", "close", INT64], "Invalid value for 'ID'"),
    (["positions", "show", str(2**31)], "Invalid value for 'ID'"),  # PostgreSQL's INTEGER ids: not a DataError
    (["changes", "--limit", INT64], "Invalid value for '--limit'"),
    (["polls", "--limit", "99999999999999999999999999"], "Invalid value for '--limit'"),
    (["alerts", "list", "--limit", INT64], "Invalid value for '--limit'"),
    # times that exist, but not once converted to UTC
    (["tiers", "BTCUSDT", "-s", "binance-usdm", "--at", "9999-12-31T23:59:59-05:00"], "out of range"),
    (["changes", "--since", "0001-01-01T00:00+05:00"], "out of range"),
    (["impacts", "--since", "9999-12-31T23:00-01:00"], "out of range"),
    ([*LIQ, "--qty", "1", "--margin", "3000", "--at", "9999-12-31T23:59:59-05:00"], "out of range"),
    # text no database can store (lone surrogates: bytes that are not UTF-8)
    (["tiers", "\udcff", "-s", "binance-usdm"], "not valid UTF-8"),
    (["alerts", "retry", "\ud800"], "not valid UTF-8"),
    # numbers at the edges
    ([*ADD, "--qty", "1e308", "--margin", "1e308"], "too large"),
    ([*LIQ, "--qty", "1", "--margin", "3000", "--mark", "1e308"], "mark price 1e+308 is too large"),
    ([*ADD, "--notional", "1e-320", "--margin", "3000"], "rounds to 0"),
    ([*ADD, "--qty", "nan", "--margin", "3000"], "qty must be a finite number"),
    ([*ADD, "--qty", "1", "--margin", "-0"], "margin must be > 0, got -0"),
    (["account", "set", "-s", "binance-usdm", "--wallet-balance", "inf"], "wallet balance must be a finite number"),
    # position open times
    ([*ADD, "--qty", "1", "--margin", "3000", "--opened-at", "2062-01-01"], "is in the future"),
    ([*ADD, "--qty", "1", "--margin", "3000", "--opened-at", "0001-01-01"], "before the first perpetual future"),
]


@pytest.mark.parametrize(("argv", "message"), REGRESSIONS)
def test_inputs_that_used_to_traceback_are_one_line(world: World, argv: list[str], message: str) -> None:
    outcome = world.check(argv)
    assert outcome.code in (1, 2) and message in outcome.stderr, outcome


UTF8_CSV = b"source,symbol,side,entry,qty,margin\nbinance-usdm,BTCUSDT,long,30000,1,3000\n"

FILES = [
    # CSV in encodings and shapes other than UTF-8 text
    ("latin1.csv", UTF8_CSV + b"binance-usdm,BTC\xe9,long,1,1,1\n", "line 3: byte 0xe9 is not UTF-8"),
    ("binary.csv", bytes(range(256)), "is not UTF-8"),
    ("nul.csv", UTF8_CSV.replace(b"3000", b"3\x000"), "line 2: a NUL byte"),
    ("huge-field.csv", UTF8_CSV + b"binance-usdm,BTCUSDT,long,1," + b"9" * 200_000 + b"\n", "malformed CSV"),
    ("extra.csv", UTF8_CSV.replace(b"3000\n", b"3000,x,y\n"), "2 more value(s) than the header"),
    ("twice.csv", b"source,symbol,side,entry,qty,qty\nbinance-usdm,BTCUSDT,long,1,1,1\n", "given twice: qty"),
    ("utf16-no-bom.csv", UTF8_CSV.decode().encode("utf-16-le"), "UTF-16 without its byte-order mark"),
]


@pytest.mark.parametrize(("name", "data", "message"), FILES, ids=[f[0] for f in FILES])
def test_csv_files_of_the_wrong_shape_are_one_line(world: World, name: str, data: bytes, message: str) -> None:
    outcome = world.check(["positions", "import", str(world.file(name, data))])
    assert outcome.code == 1 and message in outcome.stderr, outcome
    assert name in outcome.stderr  # the message names the file


ARCHIVES = {
    "deep-list": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "5000-digit-int": b"9" * 5000,
    "number-beyond-float": json.dumps(
        {"BTC/USDT:USDT": [{"tier": 1, "minNotional": 0, "maxNotional": 10**400}]}
    ).encode(),
    "tier-number-1e30": json.dumps({"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)})
    .replace('"tier": 1.0', '"tier": 1e30')
    .encode(),
    "a-list": b"[1, 2, 3]",
}


@pytest.mark.parametrize("name", ARCHIVES)
def test_archives_of_the_wrong_shape_are_one_line(world: World, name: str) -> None:
    path = world.file(f"2024-01-01_{name}.json", ARCHIVES[name])
    outcome = world.check(["import", str(path), "-s", "binance-usdm"])
    assert outcome.code == 1 and path.name in outcome.stderr, outcome


CONFIGS = {"nested-5000-deep": b"a = " + b"[" * 5000 + b"]" * 5000, "binary": bytes(range(256)),
           "utf16": 'database_url = "x"'.encode("utf-16"), "not-a-number": b'http_timeout = "soon"'}  # fmt: skip


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("command", [["config", "show"], ["check"]])
def test_config_files_of_the_wrong_shape_are_one_line(world: World, name: str, command: list[str]) -> None:
    path = world.file("config.toml", CONFIGS[name])
    outcome = world.check(["--config", str(path), *command])
    assert outcome.code == 1 and "config" in outcome.stderr, outcome


def test_a_utf16_csv_with_its_bom_is_read(world: World) -> None:
    """A spreadsheet's "Unicode text" export: UTF-16 with a byte-order mark is unambiguous, so it is taken."""
    path = world.file("utf16.csv", codecs.BOM_UTF16_LE + UTF8_CSV.decode().encode("utf-16-le"))
    db = world.fresh()
    outcome = world.run(["--db", f"sqlite:///{db}", "positions", "import", str(path)])
    assert outcome.code == 0 and "imported 1 position(s)" in outcome.stdout, outcome


def test_a_directory_device_or_missing_csv_is_one_line(world: World) -> None:
    cases = [(world.root, "not a regular file"), (Path("/dev/zero"), "not a regular file"),
             (world.root / "nope.csv", "cannot read: No such file or directory")]  # fmt: skip
    for target, message in cases:
        outcome = world.check(["positions", "import", str(target)])
        assert outcome.code == 1 and message in outcome.stderr, outcome


READ_ONLY = [
    ["tiers", "BTCUSDT", "-s", "binance-usdm"],
    ["changes"],
    ["history", "BTCUSDT", "-s", "binance-usdm"],
    ["sources"],
    ["polls"],
    ["positions", "list"],
    ["positions", "show", "1"],
    ["impacts"],
    ["alerts", "list"],
    [*LIQ, "--qty", "1", "--margin", "3000"],
    ["market", "show"],
    ["check"],
]


@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_read_only_commands_never_create_a_database(world: World, argv: list[str]) -> None:
    missing = world.root / "nowhere" / "sub" / "tierdrift.db"
    outcome = world.run(["--db", f"sqlite:///{missing}", *argv])
    assert outcome.code == 1, outcome
    assert outcome.stderr.splitlines()[-1] == (
        f"error: no database at {missing}: run `tierdrift poll` or `tierdrift import` first"
    )
    assert not missing.parent.parent.exists()


def test_writing_commands_still_create_their_database(world: World) -> None:
    new = world.root / "brand" / "new.db"
    outcome = world.run(["--db", f"sqlite:///{new}", "account", "set", "-s", "binance-usdm", "--wallet-balance", "5"])
    assert outcome.code == 0 and new.is_file(), outcome


def test_usage_errors_are_one_line_with_a_pointer_to_help(world: World) -> None:
    outcome = world.check(["changes", "--limit", "0"])
    assert outcome.code == 2
    assert outcome.stderr == (
        "error: Invalid value for '--limit': 0 is not in the range 1<=x<=9223372036854775807."
        " (see `tierdrift changes --help`)\n"
    )


# -- hypothesis: every command, every option ---------------------------------------------------------

EDGE_NUMBERS = ["0", "-0", "-1", "nan", "-nan", "inf", "-inf", "1e308", "1e309", "1e-320", "5e-324", INT64,
                str(-(2**63) - 1), "9" * 400, "", " ", "1,5", "0x10", "1_000", "１２"]  # fmt: skip
EDGE_TEXT = ["", " ", "x" * 3000, "\x1b[31mred", "[/]", "[bold]x[/bold]", "a\nb", "\r", "\u202e", "\ud800",
             "日本語", "BTCUSDT\x00", "-", "--", "%s%n", "' OR 1=1 --", "../../etc/passwd"]  # fmt: skip
EDGE_TIMES = ["2062-01-01", "0000-00-00", "9999-12-31T23:59:59", "9999-12-31T23:59:59-05:00", "0001-01-01",
              "0001-01-01T00:00+05:00", "1970-01-01", "2024-13-01", "2024-02-30", "2024-01-01T25:00",
              "2024-01-01T00:00+25:00", "2024-01-01T00:00:00.1234567Z", "now", "-1", "1e10", ""]  # fmt: skip

numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
)
integers = st.one_of(st.sampled_from(["0", "-1", "1", INT64, "1.5", "", "x"]), st.integers(-(2**70), 2**70).map(str))
texts = st.one_of(st.sampled_from(EDGE_TEXT), st.text(max_size=40))
times = st.one_of(
    st.sampled_from(EDGE_TIMES),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(alphabet="0123456789-:TZ+. ", max_size=30),
)
sources = st.one_of(st.sampled_from([*SOURCES, "nope", "", "BINANCE-USDM"]), texts)
symbols = st.one_of(st.sampled_from(["BTCUSDT", "BTC/USDT:USDT", "ETHUSDT", "BTCUSD_PERP", "DOGEUSDT"]), texts)
sides = st.one_of(st.sampled_from(["long", "short", "LONG", "up", ""]), texts)


#: An option without a value (`--json`), in an `options` spec.
FLAG: st.SearchStrategy[str] = st.just("")


def options(draw: st.DrawFn, spec: dict[str, st.SearchStrategy[str]]) -> list[str]:
    """Some of `spec`'s options (each drawn or left out), with drawn values."""
    out: list[str] = []
    for name, values in spec.items():
        if draw(st.booleans()):
            out += [name, draw(values)] if values is not FLAG else [name]
    return out


SIZE = {"--qty": numbers, "--notional": numbers, "--contracts": numbers, "--contract-size": numbers}


def _tiers(d: st.DrawFn) -> list[str]:
    return ["tiers", d(symbols), "-s", d(sources), *options(d, {"--at": times, "--json": FLAG})]


def _changes(d: st.DrawFn) -> list[str]:
    spec = {"-s": sources, "--symbol": symbols, "--since": times, "--until": times, "--limit": integers, "--json": FLAG}
    return ["changes", *options(d, spec)]


def _history(d: st.DrawFn) -> list[str]:
    return ["history", d(symbols), "-s", d(sources), *options(d, {"--json": FLAG})]


def _polls(d: st.DrawFn) -> list[str]:
    return ["polls", *options(d, {"-s": sources, "--limit": integers, "--json": FLAG})]


def _add(d: st.DrawFn) -> list[str]:
    head = ["positions", "add", "-s", d(sources), "--symbol", d(symbols), "--side", d(sides), "--entry", d(numbers)]
    spec = {**SIZE, "--mode": st.sampled_from(["isolated", "cross", "CROSS", "x"]), "--margin": numbers,
            "--adr": numbers, "--note": texts, "--opened-at": times}  # fmt: skip
    return head + options(d, spec)


def _liq(d: st.DrawFn) -> list[str]:
    head = ["liq", "-s", d(sources), "--symbol", d(symbols), "--side", d(sides), "--entry", d(numbers)]
    spec = {**SIZE, "--mark": numbers, "--adr": numbers, "--at": times, "--json": FLAG}
    return [*head, "--margin", d(numbers), *options(d, spec)]


def _positions(d: st.DrawFn) -> list[str]:
    verb = d(st.sampled_from(["close", "show", "list"]))
    return ["positions", "list", "--all", "--json"] if verb == "list" else ["positions", verb, d(integers)]


def _account(d: st.DrawFn) -> list[str]:
    return ["account", "set", "-s", d(sources), "--wallet-balance", d(numbers)]


def _alerts(d: st.DrawFn) -> list[str]:
    return d(
        st.one_of(
            st.builds(lambda s, n: ["alerts", "list", "--status", s, "--limit", n], texts, integers),
            st.builds(lambda i: ["alerts", "retry", i], texts),
            st.just(["alerts", "retry", "--failed"]),
            st.builds(lambda c: ["alerts", "test", "--channel", c], texts),
        )
    )


def _other(d: st.DrawFn) -> list[str]:
    return d(
        st.one_of(
            st.builds(lambda s: ["market", "refresh", "-s", s], sources),
            st.just(["market", "show", "--json"]),
            st.builds(lambda s: ["poll", "-s", s], st.sampled_from(["nope", "", "[/]", "\x1b"])),
            st.just(["sources", "--json"]),
            st.builds(lambda s: ["impacts", "--since", s], times),
            st.just(["config", "show"]),
        )
    )


COMMANDS: list[Callable[[st.DrawFn], list[str]]] = [
    _tiers, _changes, _history, _polls, _add, _liq, _positions, _account, _alerts, _other,
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda f: f.__name__.strip("_"))
@EXAMPLES
@given(data=st.data())
def test_every_command_survives_hostile_values(
    world: World, command: Callable[[st.DrawFn], list[str]], data: st.DataObject
) -> None:
    world.check(data.draw(st.composite(lambda draw: command(draw))()))


# -- hypothesis: hostile files -----------------------------------------------------------------------

CSV_HEADER = "source,symbol,side,entry,qty,notional,contracts,contract_size,mode,margin,adr,note,opened_at"
cells = st.one_of(numbers, texts, times, sources, symbols, sides)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.one_of(st.just(CSV_HEADER), st.just("source,symbol,side,entry,qty,margin"), texts))
    width = len(header.split(","))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=width + 2), max_size=6))
    text = "\n".join([header, *(",".join(r) for r in rows)]) + draw(st.sampled_from(["", "\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"]))
    return text.encode(encoding, errors="replace")


def _nest(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


json_payloads = st.one_of(
    st.sampled_from(
        [
            b"",
            b"[]",
            b"null",
            b'"x"',
            b"1e999999",
            b"9" * 5000,
            _nest(100_000),
            b'{"a":' * 50_000,
            b'{"BTC/USDT:USDT": 5}',
            b'{"BTC/USDT:USDT": [{}]}',
            b'{"BTC/USDT:USDT": ["x"]}',
            b"\x1f\x8b\x08\x00garbage",
            json.dumps({"X": []}).encode("utf-16"),
            bytes(range(256)),
        ]
    ),
    st.binary(max_size=300),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(), st.text(max_size=10)),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=20,
    ).map(lambda v: json.dumps(v, allow_nan=True).encode()),
)

toml_payloads = st.one_of(
    st.sampled_from(
        [
            b"",
            b"database_url = [1]",
            b'database_url = "nope://"',
            b"http_timeout = 1e999",
            b"adr_days = 99999999999999999999999",
            b'sources = ["nope"]',
            "x = 'é'".encode("latin-1"),
            'database_url = "x"'.encode("utf-16"),
            b"a = " + _nest(5000),
        ]
    ),
    st.binary(max_size=200),
)


@EXAMPLES
@given(data=csv_files())
def test_hostile_csv_files(world: World, data: bytes) -> None:
    world.check(["positions", "import", str(world.file("positions.csv", data))])


@EXAMPLES
@given(data=json_payloads, at=st.one_of(st.none(), times))
def test_hostile_archives(world: World, data: bytes, at: str | None) -> None:
    path = world.file("2024-01-01_tiers.json", data)
    world.check(["import", str(path), "-s", "binance-usdm", *(["--at", at] if at is not None else [])])


@EXAMPLES
@given(data=toml_payloads, command=st.sampled_from([["config", "show"], ["tiers", "BTCUSDT", "-s", "binance-usdm"]]))
def test_hostile_config_files(world: World, data: bytes, command: list[str]) -> None:
    world.check(["--config", str(world.file("config.toml", data)), *command])


@settings(max_examples=40, deadline=None, database=None)
@given(url=st.one_of(st.sampled_from(["", "nope", "sqlite://", "mysql://x/y", "postgresql://u:pw@[::1:5/db",
                                      "sqlite:///" + "x" * 5000, "sqlite:////proc/self/x.db"]), texts))  # fmt: skip
def test_hostile_database_urls(world: World, url: str) -> None:
    for command in (["sources"], ["positions", "list"], [*ADD, "--qty", "1", "--margin", "3000"]):
        outcome = world.run(["--db", url, *command])
        assert_contract(outcome, ["--db", url, *command])


# -- real processes: nothing reaches stderr as a traceback through `main` ------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["positions", "show", INT64],
        ["tiers", "BTCUSDT", "-s", "binance-usdm", "--at", "9999-12-31T23:59:59-05:00"],
        ["positions", "import", "{latin1}"],
        ["import", "{deep}", "-s", "binance-usdm"],
        ["--db", "sqlite:///{missing}", "sources"],
        ["tiers", b"\xff".decode("utf-8", "surrogateescape"), "-s", "binance-usdm"],
    ],
    ids=["huge-id", "utc-overflow", "latin1-csv", "deep-json", "missing-db", "not-utf8-argv"],
)
def test_main_prints_one_line_in_a_real_process(world: World, argv: list[str]) -> None:
    files = {
        "latin1": str(world.file("l.csv", UTF8_CSV + b"binance-usdm,BTC\xe9,long,1,1,1\n")),
        "deep": str(world.file("2024-01-01_deep.json", _nest(200_000))),
        "missing": str(world.root / "gone" / "x.db"),
    }
    args = [a.format(**files) if "{" in a else a for a in argv]
    if args[0] != "--db":
        args = ["--db", f"sqlite:///{world.fresh()}", *args]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(world.root / "home"), "TIERDRIFT_CONFIG": str(world.root / "no.toml")}
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120, env=env,
        errors="surrogateescape",
    )  # fmt: skip
    assert proc.returncode in (1, 2), proc
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert not (world.root / "gone").exists()


def test_an_unexpected_error_is_one_line_and_its_traceback_is_on_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boundary's last resort: a bug becomes one line that says so; TIERDRIFT_DEBUG shows the trace."""

    def broken(*_: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(cli_reads, "source_status", broken)
    db = world.fresh()
    outcome = world.run(["--db", f"sqlite:///{db}", "sources"])
    assert (outcome.code, outcome.stderr) == (
        1,
        "error: unexpected ZeroDivisionError: float division by zero (a bug: please report it)\n",
    )
    with runner.isolation(env=world.env) as (_, err, _):
        assert cli.run(["--db", f"sqlite:///{db}", "sources"], debug=True) == 1
        sys.stderr.flush()
        trace = err.getvalue().decode()
    assert "Traceback" in trace and trace.endswith("(a bug: please report it)\n")
