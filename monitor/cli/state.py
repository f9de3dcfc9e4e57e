"""What every command shares: the lazily built settings and engine, time parsing. No Typer here: the fast
read-only path (monitor.cli.fast) runs without it; the common Typer options are in monitor.cli.context.

Read-only commands open the database through `reader()` or `read_engine`, which never create one: a
`--db` naming a file that is not there is a one-line `NoDatabase`. Writing commands use `engine`, and
take SQLite's write lock through `write_session()`, waiting visibly while another process writes.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.cli import output
from monitor.config import paths
from monitor.store import storage
from monitor.store.revision import HEAD
from monitor.store.storage import NoDatabase
from snapshots.reader import SqliteReader
from snapshots.timefmt import parse_ts

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from monitor.config.settings import Settings

#: The largest integer SQLite and PostgreSQL store (a signed 64-bit integer): the bound of ids and limits.
MAX_INT = 2**63 - 1
#: Row ids are 32-bit INTEGER columns on PostgreSQL: a larger id is a typo, refused before any query.
MAX_ID = 2**31 - 1
WAITING = "waiting for another tierdrift process to finish writing…"


@dataclass
class Context:
    config: Path | None = None
    database_url: str | None = None
    _settings: Settings | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from monitor.config.settings import load_settings  # pydantic: ~100 ms, only for commands that need it

            overrides = {"database_url": self.database_url} if self.database_url else {}
            self._settings = load_settings(self.config, **overrides)
        return self._settings

    @property
    def url(self) -> str:
        # Read-only commands must not pay for pydantic: resolve the URL alone unless settings exist.
        return self._settings.database_url if self._settings else paths.database_url(self.config, self.database_url)

    @contextmanager
    def reader(self) -> Iterator[Any]:
        """A connection for read-only queries: the standard library's sqlite3 on an up-to-date SQLite file
        (no SQLAlchemy import: these commands must start fast), a SQLAlchemy connection otherwise.
        Raises `NoDatabase` rather than create a database."""
        conn = _sqlite_at_head(self.url)
        if conn is not None:
            try:
                yield SqliteReader(conn)
            finally:
                conn.close()
            return
        with self.read_engine.connect() as alchemy:
            yield alchemy

    @property
    def engine(self) -> Engine:
        """The engine of writing commands: a missing SQLite database is created, its schema migrated."""
        # SQLAlchemy is heavy to import: commands that can read through sqlite3 never reach this.
        from monitor.store.database import open_engine

        if self._engine is None:
            self._engine = open_engine(self.url)
        return self._engine

    @property
    def read_engine(self) -> Engine:
        """The engine of read-only commands: `NoDatabase` instead of creating a database that is not there."""
        from monitor.store.database import open_engine

        if self._engine is None:
            self._engine = open_engine(self.url, create=False)
        return self._engine

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction holds the database's write lock from its start, so that a short CLI
        write waits for a long poll or import to commit instead of failing after the busy timeout. It says
        once on stderr that it waits. The caller commits."""
        from sqlmodel import Session

        from monitor.store.database import begin_write

        with Session(self.engine) as session:
            begin_write(session.connection(), lambda: print(WAITING, file=sys.stderr, flush=True))
            yield session


def _sqlite_at_head(url: str) -> sqlite3.Connection | None:
    """A read-only sqlite3 connection when `url` names an existing SQLite file at the current revision;
    `NoDatabase` when it names a file that does not exist."""
    if "?" in url:
        return None
    path = storage.sqlite_path(url)
    if path is None:
        return None
    try:
        if not path.exists():
            raise NoDatabase(str(path))
        if not path.is_file():
            return None  # the SQLAlchemy path names the problem (a folder, a device)
    except OSError:
        return None  # the SQLAlchemy path names the problem (e.g. a name too long)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    if row is None or row[0] != HEAD:
        conn.close()
        return None  # the SQLAlchemy path migrates it first
    return conn


def opt_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text is not None else None


def warn(settings: Settings) -> None:
    """Print, on stderr, what will not work as the user probably expects (above all: no alert channel)."""
    for line in settings.warnings():
        print(f"warning: {output.safe(line, limit=None)}", file=sys.stderr)
