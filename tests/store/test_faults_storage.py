"""Storage failures through the real CLI: one line that names the database, nothing half-written.

A read-only file and folder (chmod, or `chattr +i` when the tests run as root, who ignores file modes),
a full database (SQLite's `max_page_count` set on every connection: the driver answers SQLITE_FULL just
as it does on a full disk), a missing folder, a database another process keeps locked, a file that is
not a database, and PostgreSQL servers that refuse the connection or the password.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg.errors as pg_errors
import pytest
from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.pool import Pool
from typer.testing import CliRunner

from monitor import cli
from monitor.cli import context as cli_context
from monitor.service.importer import import_files, plan
from monitor.store import database, storage
from tests.conftest import BTC_ROWS, PG_URL, ccxt_tiers, write_archive

runner = CliRunner()
ADD = ["positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000",
       "--qty", "1", "--margin", "3000"]  # fmt: skip
SECRET = "s3cret-Passw0rd"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run(url: str, *argv: str) -> Outcome:
    with runner.isolation(env={"TIERDRIFT_CONFIG": "/nonexistent/config.toml", "TIERDRIFT_DEBUG": None}) as streams:
        code = cli.run(["--db", url, *argv])
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, streams[0].getvalue().decode(), streams[1].getvalue().decode())


def one_error_line(outcome: Outcome) -> str:
    """The single `error:` line of a failed run (and nothing else on stderr)."""
    assert outcome.code == 1, outcome
    assert outcome.stderr.count("\n") == 1 and outcome.stderr.startswith("error: "), outcome.stderr
    assert "Traceback" not in outcome.stderr + outcome.stdout
    return outcome.stderr.strip()


def digest(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def positions(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM position").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite file with one binance-usdm table, closed (its WAL checkpointed into the file)."""
    path = tmp_path / "data" / "tierdrift.db"
    engine = database.open_engine(f"sqlite:///{path}")
    payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS, top=500e6)}
    import_files(engine, "binance-usdm", plan([write_archive(tmp_path / "2021-05-01_usdm.json", payload)]))
    engine.dispose()
    return path


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (a file or a folder) read-only for this process, restored afterwards. Root ignores file
    modes, so as root the file is made immutable (`chattr +i`), which binds root too."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root where `chattr +i` is not available: nothing can be read-only for root")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_a_read_only_database_file_refuses_a_write_in_one_line_and_still_reads(db: Path) -> None:
    before = digest(db)
    with read_only(db):
        line = one_error_line(run(f"sqlite:///{db}", *ADD))
        assert line == f"error: database {db} is read-only: nothing was written"
        assert run(f"sqlite:///{db}", "tiers", "BTCUSDT", "-s", "binance-usdm", "--json").code == 0
        assert run(f"sqlite:///{db}", "positions", "list", "--json").stdout.strip() == "[]"
    assert digest(db) == before


def test_a_read_only_folder_is_named(db: Path) -> None:
    with read_only(db.parent):
        line = one_error_line(run(f"sqlite:///{db}", *ADD))
    # SQLite keeps a WAL database's -wal and -shm files beside it: it cannot open it where it cannot create them.
    assert line == f"error: folder {db.parent} is read-only: SQLite cannot create the files it keeps beside {db.name}"
    assert positions(db) == 0


@pytest.fixture
def full_database(db: Path) -> Iterator[Path]:
    """`db`, full: every SQLite connection opened from now on in this process may not grow a file by a page."""

    def cap(dbapi_conn: Any, _record: Any) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={max(pages, 1)}")

    event.listen(Pool, "connect", cap)
    try:
        yield db
    finally:
        event.remove(Pool, "connect", cap)


def test_a_full_database_writes_nothing(full_database: Path, tmp_path: Path) -> None:
    db = full_database
    before = digest(db)
    long_note = "n" * 200_000  # needs overflow pages: the write cannot fit in the pages the file has
    line = one_error_line(run(f"sqlite:///{db}", *ADD, "--note", long_note))
    assert line == f"error: database or disk is full ({db}): nothing was written"
    rows = "".join(f"binance-usdm,BTCUSDT,long,30000,0.1,300,{'x' * 500}\n" for _ in range(400))
    csv = tmp_path / "many.csv"
    csv.write_text("source,symbol,side,entry,qty,margin,note\n" + rows)
    line = one_error_line(run(f"sqlite:///{db}", "positions", "import", str(csv)))
    assert line == f"error: database or disk is full ({db}): nothing was written"
    assert digest(db) == before


def test_a_write_creates_missing_folders_and_names_one_it_cannot_create(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b" / "new.db"
    assert run(f"sqlite:///{new}", "account", "set", "-s", "binance-usdm", "--wallet-balance", "10").code == 0
    assert new.is_file()
    (tmp_path / "file").write_text("not a folder")
    blocked = tmp_path / "file" / "sub" / "x.db"
    line = one_error_line(run(f"sqlite:///{blocked}", "account", "set", "-s", "binance-usdm", "--wallet-balance", "1"))
    assert line == f"error: cannot create the folder of database {blocked}: not a folder: {blocked.parent}"


def test_a_read_on_a_missing_folder_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "x.db"
    line = one_error_line(run(f"sqlite:///{missing}", "positions", "list"))
    assert line == f"error: no database at {missing}: run `tierdrift poll` or `tierdrift import` first"
    assert not missing.parent.exists()


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not SQLite" * 100)
    for argv in (["sources"], ADD):
        assert one_error_line(run(f"sqlite:///{junk}", *argv)) == f"error: {junk} is not a SQLite database"
    assert junk.read_bytes() == b"this is not SQLite" * 100


# -- another process holds the write lock -------------------------------------------------------------

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO account (source, wallet_balance, updated_at) VALUES ('bybit-linear', 7, '2024-01-01')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@contextmanager
def held_write_lock(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process in a write transaction on `db` for `seconds`, as a long poll or import would be."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.wait(timeout=60)


def test_a_cli_write_waits_visibly_for_a_long_write_transaction(db: Path) -> None:
    with held_write_lock(db, 4.0) as holder:
        outcome = run(f"sqlite:///{db}", *ADD)
        assert holder.poll() is not None  # it succeeded after the other transaction ended, not beside it
    assert outcome.code == 0, outcome
    assert outcome.stderr == cli_context.WAITING + "\n"  # said once
    assert positions(db) == 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT wallet_balance FROM account WHERE source = 'bybit-linear'").fetchone() == (7,)
    conn.close()


def test_a_short_wait_is_silent(db: Path) -> None:
    with held_write_lock(db, 0.3):
        outcome = run(f"sqlite:///{db}", "account", "set", "-s", "binance-usdm", "--wallet-balance", "5")
    assert (outcome.code, outcome.stderr) == (0, "")


def test_a_cli_write_gives_up_after_its_limit_in_one_line(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "WRITE_WAIT_SECONDS", 1.5)
    monkeypatch.setattr(database, "QUIET_WAIT_SECONDS", 0.5)
    with held_write_lock(db, 6.0):
        outcome = run(f"sqlite:///{db}", *ADD)
    lines = outcome.stderr.splitlines()
    assert outcome.code == 1 and lines[0] == cli_context.WAITING, outcome
    assert lines[1:] == [
        f"error: database {db} is still locked by another process after 1.5 s: nothing was written;"
        " try again when it has finished"
    ]
    assert positions(db) == 0


# -- PostgreSQL ----------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://tierdrift:{secret}@127.0.0.1:{port}/tierdrift",
        "postgresql+psycopg://tierdrift@127.0.0.1:{port}/tierdrift?password={secret}",
    ],
    ids=["userinfo", "query"],
)
@pytest.mark.parametrize("argv", [["tiers", "BTCUSDT", "-s", "binance-usdm"], ADD], ids=["read", "write"])
def test_an_unreachable_postgresql_is_one_line_without_its_password(url: str, argv: list[str]) -> None:
    port = closed_port()
    line = one_error_line(run(url.format(secret=SECRET, port=port), *argv))
    assert line == f"error: cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused"
    assert SECRET not in line


@pytest.mark.skipif(PG_URL is None, reason="TIERDRIFT_TEST_PG_URL is not set: no PostgreSQL server to refuse us")
def test_a_wrong_postgresql_password_is_one_line_without_it() -> None:
    assert PG_URL is not None
    url = make_url(PG_URL).set(password=SECRET).render_as_string(hide_password=False)
    line = one_error_line(run(url, "sources"))
    assert "password authentication failed" in line and SECRET not in line


def _sqlite_error(code: int) -> sqlite3.Error:
    err = sqlite3.OperationalError("as the driver says it")
    err.sqlite_errorcode = code  # what the driver sets on the errors it raises
    return err


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_sqlite_error(sqlite3.SQLITE_FULL), "database or disk is full (/data/t.db): nothing was written"),
        (_sqlite_error(sqlite3.SQLITE_READONLY_DBMOVED), "database /data/t.db is read-only: nothing was written"),
        (_sqlite_error(sqlite3.SQLITE_BUSY),
         "database /data/t.db is locked by another process: nothing was written; try again"),
        (_sqlite_error(sqlite3.SQLITE_IOERR), "disk I/O error on database /data/t.db: nothing was written"),
        (_sqlite_error(sqlite3.SQLITE_CORRUPT), "database /data/t.db is corrupt: nothing was written"),
        (_sqlite_error(sqlite3.SQLITE_CONSTRAINT), None),  # a bug, not the storage: the boundary says so
        (OSError(errno.ENOSPC, "No space left on device", "/data/t.db-wal"),
         "no space left on device: /data/t.db-wal: nothing was written"),
        (OSError(errno.EROFS, "Read-only file system", "/data"), "read-only file system: /data: nothing was written"),
        (OSError(errno.EACCES, "Permission denied", "/data/t.db"), "permission denied: /data/t.db"),
        (ValueError("not storage"), None),
    ],
)  # fmt: skip
def test_storage_failures_are_sentences(exc: BaseException, expected: str | None) -> None:
    assert storage.describe(exc, "sqlite:////data/t.db") == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pg_errors.DiskFull("could not extend file"), "PostgreSQL at db.example:6543: disk full: nothing was written"),
        (pg_errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
         "PostgreSQL at db.example:6543: read-only (a standby server?): nothing was written"),
        (pg_errors.OperationalError(f"connection failed: FATAL: password authentication failed ({SECRET})"),
         "cannot connect to PostgreSQL at db.example:6543: password authentication failed"),
        (pg_errors.OperationalError(f"something new about {SECRET}\nand more"),
         "PostgreSQL at db.example:6543: something new about ***"),
    ],
)  # fmt: skip
def test_postgresql_failures_name_the_server_never_the_password(exc: BaseException, expected: str) -> None:
    assert storage.describe(exc, f"postgresql+psycopg://u:{SECRET}@db.example:6543/tierdrift") == expected
