"""What every command shares: the lazily built settings and engine, common options, time parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy.engine import Engine

from monitor import paths
from monitor.database import open_engine
from snapshots.model import SOURCES
from snapshots.timefmt import parse_ts

if TYPE_CHECKING:
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
    def engine(self) -> Engine:
        if self._engine is None:
            # Read-only commands must not pay for pydantic: resolve the URL alone unless settings exist.
            url = self._settings.database_url if self._settings else paths.database_url(self.config, self.database_url)
            self._engine = open_engine(url)
        return self._engine


def get(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj


SourceOpt = Annotated[str, typer.Option("--source", "-s", help=f"One of: {', '.join(SOURCES)}.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (a stable contract) instead of a table.")]


def opt_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text is not None else None
