"""What every command shares: the lazily built settings and engine, common options, time parsing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor import paths
from monitor.revision import HEAD
from snapshots.model import SOURCES
from snapshots.reader import SqliteReader
from snapshots.timefmt import parse_ts

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.settings import Settings


@dataclass
class Context:
    config: Path | None = None
    database_url: str | None = None
    _settings: Settings | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from monitor.settings import load_settings  # pydantic: ~100 ms, only for commands that need it

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
        (no SQLAlchemy import: these commands must start fast), a SQLAlchemy connection otherwise."""
        conn = _sqlite_at_head(self.url)
        if conn is not None:
            try:
                yield SqliteReader(conn)
            finally:
                conn.close()
            return
        with self.engine.connect() as alchemy:
            yield alchemy

    @property
    def engine(self) -> Engine:
        # SQLAlchemy is heavy to import: commands that can read through sqlite3 never reach this.
        from monitor.database import open_engine

        if self._engine is None:
            self._engine = open_engine(self.url)
        return self._engine


def _sqlite_at_head(url: str) -> sqlite3.Connection | None:
    """A read-only sqlite3 connection when `url` names an existing SQLite file at the current revision."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or len(url) == len(prefix):
        return None
    path = Path(url[len(prefix) :])
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    if row is None or row[0] != HEAD:
        conn.close()
        return None  # the SQLAlchemy path migrates it first
    return conn


def get(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj


SourceOpt = Annotated[str, typer.Option("--source", "-s", help=f"One of: {', '.join(SOURCES)}.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (a stable contract) instead of a table.")]


def opt_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text is not None else None
