"""Reading the journal: the entry and exit records and the events of positions, in the `--json` key names.

    records_for(session, position_ids) -> {position_id: JournalRecords}
    listed_records(reader, include_closed=...) -> the same, of every position `positions list` shows


The record dicts use the key names of `liq --json` for the same figures, plus `at`, `table_valid_from`
and `unknown` ({figure: reason}); an entry's `price` is its entry price; an exit's `price` is the exit
price, and it adds `pnl` and `period`. Used by the `--json` shapes
(monitor.journal.shapes), the export and the review.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from snapshots.reader import Reader, utc
from snapshots.timefmt import iso

if TYPE_CHECKING:
    from sqlmodel import Session

    from monitor.store.models import PositionEvent, PositionRecord

#: The figure columns of a record, named as in `liq --json`.
FIGURES = (
    "tier", "maintenance_margin_rate", "maintenance_amount", "liquidation_price", "mark_price", "adr", "adr_days",
    "adr_source", "distance", "buffer_adr", "violation", "headroom_notional",
)  # fmt: skip
#: Every key of a record dict, in order (an exit's `price`, `pnl` and `period` are None on an entry).
RECORD_KEYS = (
    "at", "table_valid_from", "table_version_id", "size", "margin", "notional", *FIGURES, "price", "pnl",
    "recomputed", "unknown", "period",
)  # fmt: skip
EVENT_KEYS = ("at", "kind", "amount", "price", "pnl", "note", "size_after", "margin_after", "entry_price_after")


@dataclass(slots=True)
class JournalRecords:
    """One position's journal: entry and exit as dicts (None when not recorded) and its events in time order."""

    entry: dict[str, Any] | None = None
    exit: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def record_dict(r: PositionRecord | Mapping[Any, Any]) -> dict[str, Any]:
    """A stored record (a model, or a row's mapping) in the `--json` key names: times as ISO text,
    `unknown` and `period` decoded; an entry has no `pnl` nor `period`."""
    row: Mapping[Any, Any] = r if isinstance(r, Mapping) else r.model_dump()
    out: dict[str, Any] = {k: row[k] for k in RECORD_KEYS}
    out["at"] = iso(utc(row["at"]))  # a datetime, or SQLite's text from a plain query
    out["table_valid_from"] = iso(utc(row["table_valid_from"]))
    out["unknown"] = json.loads(row["unknown"]) if row["unknown"] else {}
    out["period"] = json.loads(row["period"]) if row["period"] else None
    if out["violation"] is not None:
        out["violation"] = bool(out["violation"])  # SQLite hands Core rows' booleans back as 0/1
    out["recomputed"] = bool(out["recomputed"])
    if row["kind"] == "entry":
        for k in ("pnl", "period"):  # an entry's `price` is its entry price
            del out[k]
    return out


def event_dict(e: PositionEvent | Mapping[Any, Any]) -> dict[str, Any]:
    row: Mapping[Any, Any] = e if isinstance(e, Mapping) else e.model_dump()
    out: dict[str, Any] = {k: row[k] for k in EVENT_KEYS}
    out["at"] = iso(utc(row["at"]))
    return out


def records_for(session: Session, position_ids: Iterable[int]) -> dict[int, JournalRecords]:
    """The journal of each of `position_ids` (every id gets one, empty when nothing was recorded)."""
    # SQLAlchemy and the models are heavy to import: `positions list` reads through `listed_records`.
    from sqlalchemy import Table, select

    from monitor.store.models import PositionEvent, PositionRecord

    ids = sorted(set(position_ids))
    out = {i: JournalRecords() for i in ids}
    # Core rows, not ORM objects: 10,000 positions' records and events read in a fraction of the time.
    records: Table = PositionRecord.__table__  # type: ignore[attr-defined]
    events: Table = PositionEvent.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    for chunk in _chunks(ids):
        for r in conn.execute(select(records).where(records.c.position_id.in_(chunk))).mappings():
            setattr(out[r["position_id"]], r["kind"], record_dict(r))
        stmt = select(events).where(events.c.position_id.in_(chunk)).order_by(events.c.at, events.c.id)
        for e in conn.execute(stmt).mappings():
            out[e["position_id"]].events.append(event_dict(e))
    return out


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    # Bounded IN lists: SQLite caps bound parameters, and 10,000 positions must still read in a few queries.
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


#: The positions `positions list` shows: the open ones, or all (the same filter as its query of them).
_LISTED = {False: " JOIN position p ON p.id = x.position_id WHERE p.closed_at IS NULL", True: ""}


def listed_records(reader: Reader, *, include_closed: bool = False) -> dict[int, JournalRecords]:
    """`records_for` every position `positions list` shows (the open ones, or all), in two plain queries
    whatever their number: the records, then the events in time order. Only positions with a record or an
    event get an entry."""
    out: defaultdict[int, JournalRecords] = defaultdict(JournalRecords)
    where = _LISTED[include_closed]
    columns = ", ".join(f"x.{k}" for k in ("position_id", "kind", *RECORD_KEYS))
    for r in reader.rows(f"SELECT {columns} FROM position_record x{where}"):
        setattr(out[r["position_id"]], r["kind"], record_dict(r))
    columns = ", ".join(f"x.{k}" for k in ("position_id", "id", *EVENT_KEYS))
    for e in reader.rows(f"SELECT {columns} FROM position_event x{where} ORDER BY x.at, x.id"):
        out[e["position_id"]].events.append(event_dict(e))
    return dict(out)
