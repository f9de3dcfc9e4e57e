"""The common Typer options and the Context of a Typer command; the rest of what every command shares is
in monitor.cli.state (re-exported here), which the fast read-only path uses without Typer."""

from __future__ import annotations

from typing import Annotated

import typer

from monitor.cli.state import MAX_ID as MAX_ID
from monitor.cli.state import MAX_INT as MAX_INT
from monitor.cli.state import WAITING as WAITING
from monitor.cli.state import Context as Context
from monitor.cli.state import opt_ts as opt_ts
from monitor.cli.state import warn as warn
from snapshots.model import SOURCES


def get(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj


SourceOpt = Annotated[str, typer.Option("--source", "-s", help=f"One of: {', '.join(SOURCES)}.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (a stable contract) instead of a table.")]
IdArg = Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_ID)]
