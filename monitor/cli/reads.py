"""The read-only commands `tiers`, `changes`, `history`, `sources`, `polls` and `positions list`, without Typer.

Their Typer commands (monitor.cli.full, monitor.cli.positions) parse the arguments and call these; so does
the fast path (monitor.cli.fast), which parses a plain invocation itself so that these commands start
without importing Typer or building the app. They must start fast: no SQLAlchemy, pydantic, ccxt, web
framework or lock library at import (tests/cli/test_cli.py checks). `positions list` loads the settings
(pydantic) for its threshold and freshness, and on an up-to-date SQLite file reads without SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from monitor.cli import output
from monitor.cli.state import Context, opt_ts
from monitor.service import shapes
from snapshots.history import (
    StoredChange,
    check_source,
    count_changes,
    iter_changes,
    recent_polls,
    resolve_symbol,
    source_status,
    table_at,
    versions,
)
from snapshots.model import SOURCES
from snapshots.numbers import num, pct
from snapshots.timefmt import utcnow

#: Human output of `changes` shows at most this many records unless --limit or --all says otherwise.
CHANGES_SHOWN = 100
#: A terminal gets a table of the records when there are at most this many; more are printed as plain lines.
CHANGES_TABLE_MAX = 500
#: Rows `positions list` shows as a table by default.
LIST_LIMIT = 100


def tiers(c: Context, symbol: str, source: str, at: str | None = None, as_json: bool = False) -> None:
    """The tier table of SYMBOL in force at a time."""
    when = opt_ts(at) or utcnow()
    with c.reader() as session:
        sym = resolve_symbol(session, source, symbol)
        table, info = table_at(session, source, sym, when)
    if as_json:
        output.emit_json([t.as_dict() for t in table.tiers])
        return
    unit = "coin" if table.unit.value == "base" else "quote"
    title = (
        f"{output.safe(sym)} on {source} at {output.when(when)}"
        f" (in force since {output.when(info.valid_from)}, {output.safe(info.provenance)})"
    )
    output.console().print(output.tiers_table(title, table.tiers, unit))
    for w in info.warnings:
        output.console().print(f"warning: {output.safe(w)}")


def changes(
    c: Context,
    source: str | None = None,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    show_all: bool = False,
    as_json: bool = False,
) -> None:
    """Tier changes detected between polls, oldest first (the caller has refused `symbol` without `source`)."""
    with c.reader() as session:
        if source:
            check_source(source)
        sym = resolve_symbol(session, source, symbol) if symbol and source else None
        filters: dict[str, Any] = {
            "source": source,
            "symbol": sym,
            "since": opt_ts(since),
            "until": opt_ts(until),
        }
        cut = limit is None and not show_all  # the default cut-off: say how many more there are
        shown = limit if as_json or not cut else CHANGES_SHOWN
        # Closed here, whatever happens: a stream left suspended would be finalised at some random later point.
        with contextlib.closing(iter_changes(session, limit=shown, **filters)) as records:
            if as_json:
                output.stream_json((output.change_json(r) for r in records), flat=True)
                return
            printed = _print_changes(records)
        more = count_changes(session, **filters) - printed if cut and printed == CHANGES_SHOWN else 0
    if more:
        output.console().print(f"… {more:,} more: --limit N, --all, or --json")


def _print_changes(rows: Iterator[StoredChange]) -> int:
    """Print `rows` as a table on a screen when they are few, else as plain lines; return how many."""
    head = list(itertools.islice(rows, CHANGES_TABLE_MAX + 1))
    if not head:
        output.console().print("no changes")
    elif len(head) <= CHANGES_TABLE_MAX and output.for_screen():
        output.console().print(output.changes_table(head))
    else:
        return _print_lines(itertools.chain(head, rows))
    return len(head)


def _print_lines(rows: Iterable[StoredChange]) -> int:
    """Plain lines, one per change (columns as the table's, without a header, for scripts), written in
    blocks: a Rich table of thousands of rows takes minutes."""
    out = sys.stdout
    block: list[str] = []
    count = 0
    for r in rows:
        block.append(output.change_line(r))
        count += 1
        if len(block) >= 1000:
            out.write("\n".join(block) + "\n")
            block.clear()
    if block:
        out.write("\n".join(block) + "\n")
    out.flush()
    return count


def history(c: Context, symbol: str, source: str, as_json: bool = False) -> None:
    """The versions of one symbol's table, with the time each was in force."""
    with c.reader() as session:
        sym = resolve_symbol(session, source, symbol)
        rows = versions(session, source, sym)
    if as_json:
        output.emit_json([output.version_json(v) for v in rows])
        return
    table = output.new_table(
        "valid from",
        "valid to",
        "hash",
        "provenance",
        "warnings",
        wrap=("valid from", "valid to", "provenance"),
        title=f"{output.safe(sym)} on {source}",
        title_justify="left",
    )
    for v in rows:
        table.add_row(
            output.when(v.valid_from),
            output.when(v.valid_to, "(current)"),
            v.content_hash[:12],
            output.safe(v.provenance),
            str(len(v.warnings)),
        )
    output.console().print(table)


def sources(c: Context, as_json: bool = False) -> None:
    """Each source's last poll, last success, last change and last error."""
    with c.reader() as session:
        rows = [source_status(session, s) for s in SOURCES]
    if as_json:
        output.emit_json([output.status_json(s) for s in rows])
        return
    table = output.new_table(
        "source", "symbols", "polls", "last poll", "outcome", "last success", "last change", "last error",
        wrap=("polls", "last poll", "last success", "last change", "last error"),
    )  # fmt: skip
    for s in rows:
        error = f"{output.when(s.last_error_at)}: {output.safe(s.last_error)}" if s.last_error_at else ""
        ran = f"{s.polls:,} since {output.when(s.first_poll_at)}" if s.first_poll_at else "0"
        table.add_row(
            s.source,
            str(s.symbols),
            ran,
            output.when(s.last_poll_at, "never"),
            s.last_outcome or "",
            output.when(s.last_success_at, "never"),
            output.when(s.last_change_at, ""),
            error,
        )
    output.console().print(table)


def polls(c: Context, source: str | None = None, limit: int = 20, as_json: bool = False) -> None:
    """Recent polls and imports, newest first, with failures and quarantines and their reasons."""
    with c.reader() as session:
        if source:
            check_source(source)
        rows = recent_polls(session, source, limit)
    if as_json:
        output.emit_json([shapes.poll_info_json(p) for p in rows])
        return
    table = output.new_table(
        "id", "source", "kind", "polls", "started", "ms", "outcome", "symbols", "changed", "changes", "error",
        wrap=("started", "error"),
    )  # fmt: skip
    for p in rows:
        table.add_row(
            str(p.id),
            p.source,
            p.kind,
            f"{p.repeats:,}",
            output.span(p.started_at, p.last_at, p.repeats),
            f"{p.duration_ms:.0f}",
            p.outcome,
            str(p.symbols),
            str(p.symbols_changed),
            str(p.changes),
            output.safe(p.error or ""),
        )
    output.console().print(table)


def positions_list(c: Context, all_: bool = False, limit: int = LIST_LIMIT, as_json: bool = False) -> None:
    """Open positions with their current risk figures (the first `limit` as a table, with a count of the rest;
    0: all); `all_` includes closed positions; `as_json` lists every one with its journal."""
    with c.reader() as conn:
        data = shapes.positions(conn, c.settings, utcnow(), include_closed=all_, journal=as_json)
    if as_json:
        output.emit_json(data)
    elif not data:
        output.console().print("no open positions; add one with `tierdrift positions add`")
    else:
        # A table of 10,000 rows takes Rich 20 s to lay out and nobody reads it: show the first rows,
        # then what the rest hold and how to see them.
        shown = data if limit == 0 else data[:limit]
        _print_positions(shown)
        if len(shown) < len(data):
            rest = data[len(shown) :]
            flagged = sum(1 for r in rest if r["violation"])
            output.console().print(
                f"… {len(rest):,} more ({flagged:,} of them violating the margin rule): "
                "--limit N to show more, --limit 0 for all, --json for every figure"
            )


def _print_positions(rows: list[dict[str, Any]]) -> None:
    table = output.new_table(
        "id", "source", "symbol", "side", "entry", "size", "mark", "tier", "liq. price", "distance",
        "buffer (ADR)", "flag",
        wrap=("symbol", "liq. price"),
    )  # fmt: skip
    for r in rows:
        flag = "VIOLATION" if r["violation"] else ("" if r["violation"] is not None else "unknown")
        liq = num(r["liquidation_price"]) if r["not_computed"] is None else r["not_computed"]
        if r["not_computed"] is None and r["liquidation_price"] is None:
            liq = "none"
        table.add_row(
            str(r["id"]), r["source"], output.safe(r["symbol"]), r["side"], num(r["entry_price"]),
            r["size_input"], num(r["mark_price"]), "" if r["tier"] is None else str(r["tier"]),
            output.safe(liq),
            pct(r["distance"]), num(r["buffer_adr"], 3), flag,
        )  # fmt: skip
    output.console().print(table)
