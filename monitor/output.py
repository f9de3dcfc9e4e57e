"""Shapes of what the CLI prints: the `--json` contracts and the human tables.

The JSON shapes are contracts other tools script against; tests/test_cli.py pins their keys.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from snapshots.history import SourceStatus, StoredChange, VersionInfo
from snapshots.model import Tier
from snapshots.timefmt import iso

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from snapshots.store import PollResult


@functools.cache
def console() -> Console:
    # rich costs ~20 ms to import; `--json` output never needs it.
    from rich.console import Console

    # Piped output keeps whole values instead of rich's 80-column ellipses.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def new_table(**kwargs: Any) -> Table:
    from rich.table import Table

    return Table(**kwargs)


def emit_json(data: Any) -> None:
    # Plain print: rich would re-wrap or colour the text and break pipes into `jq`.
    print(json.dumps(data, ensure_ascii=False, indent=2))


def num(x: float | None, digits: int = 10) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits}g}" if abs(x) < 1e15 else f"{x:.4g}"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.4g}%"


def change_json(c: StoredChange) -> dict[str, Any]:
    ch = c.change
    return {
        "detected_at": iso(c.detected_at),
        "previous_poll_at": iso(c.previous_poll_at),
        "source": ch.source,
        "symbol": ch.symbol,
        "kind": ch.kind,
        "tier": ch.tier,
        "field": ch.field,
        "old": ch.old,
        "new": ch.new,
    }


def version_json(v: VersionInfo, tiers: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": v.source,
        "symbol": v.symbol,
        "valid_from": iso(v.valid_from),
        "valid_to": iso(v.valid_to),
        "content_hash": v.content_hash,
        "provenance": v.provenance,
        "previous_poll_at": iso(v.previous_poll_at),
        "notional_coef": v.notional_coef,
        "warnings": list(v.warnings),
    }
    if tiers is not None:
        data["tiers"] = tiers
    return data


def status_json(s: SourceStatus) -> dict[str, Any]:
    return {
        "source": s.source,
        "symbols": s.symbols,
        "last_poll_at": iso(s.last_poll_at),
        "last_outcome": s.last_outcome,
        "last_success_at": iso(s.last_success_at),
        "last_change_at": iso(s.last_change_at),
        "last_error_at": iso(s.last_error_at),
        "last_error": s.last_error,
    }


def poll_json(r: PollResult) -> dict[str, Any]:
    return {
        "poll_id": r.poll_id,
        "source": r.source,
        "kind": r.kind,
        "outcome": r.outcome,
        "started_at": iso(r.started_at),
        "previous_poll_at": iso(r.previous_poll_at),
        "symbols": r.symbols,
        "baseline": r.baseline,
        "error": r.error,
        "warnings": list(r.warnings),
        "changes": [change_json(StoredChange(r.started_at, r.previous_poll_at, c)) for c in r.changes],
    }


def tiers_table(title: str, tiers: Sequence[Tier], unit_label: str) -> Table:
    table = new_table(title=title, title_justify="left")
    for name in (
        "tier",
        f"floor ({unit_label})",
        f"cap ({unit_label})",
        "maint. rate",
        "maint. amount",
        "max lev.",
    ):
        table.add_column(name, justify="right")
    for t in tiers:
        table.add_row(
            str(t.tier),
            num(t.floor),
            num(t.cap),
            pct(t.maintenance_margin_rate),
            num(t.maintenance_amount),
            f"{t.max_leverage:g}×",
        )
    return table


def describe_change(c: StoredChange) -> str:
    ch = c.change
    if ch.kind in ("symbol_listed", "symbol_delisted"):
        return f"{ch.symbol}: {ch.kind.replace('_', ' ')}"
    if ch.kind != "tier_changed":
        return f"{ch.symbol}: tier {ch.tier} {ch.kind.split('_')[1]}"
    field = (ch.field or "").replace("_", " ")
    if ch.field == "maintenance_margin_rate":
        return f"{ch.symbol}: tier {ch.tier} {field} {pct(ch.old)} → {pct(ch.new)}"
    return f"{ch.symbol}: tier {ch.tier} {field} {num(ch.old)} → {num(ch.new)}"


def changes_table(changes: Iterable[StoredChange]) -> Table:
    table = new_table()
    for name in ("detected", "between", "source", "symbol", "kind", "tier", "field", "old", "new"):
        table.add_column(name)
    for c in changes:
        ch = c.change
        rate = ch.field == "maintenance_margin_rate"
        table.add_row(
            iso(c.detected_at),
            iso(c.previous_poll_at) or "—",
            ch.source,
            ch.symbol,
            ch.kind,
            "" if ch.tier is None else str(ch.tier),
            ch.field or "",
            (pct(ch.old) if rate else num(ch.old)) if ch.old is not None else "",
            (pct(ch.new) if rate else num(ch.new)) if ch.new is not None else "",
        )
    return table
