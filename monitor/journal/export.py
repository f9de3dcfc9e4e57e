"""`positions export` and the journal half of `positions import`: one row per position, in columns a
journal spreadsheet takes, and back.

Columns (CSV; `export_rows` gives the same keys for JSON, with the records and events as objects):

- the import's own columns (`monitor.risk.positions.CSV_COLUMNS`), holding the position **as entered**:
  `entry` is the entry price, `qty` (linear) or `contracts` (inverse) and `margin` the size and margin at
  entry (edits come after, as events), `note` the current note;
- `id`, `closed_at`, and `size_now`, `entry_price_now`, `margin_now` (after the events; derived, so
  ignored by the import);
- `entry_<key>` and `exit_<key>` for every key of a record (`EXPORT_KEYS`: all but the database's own
  `table_version_id`;
  `unknown` and `period` as JSON text), and `events`, a JSON list.

The import accepts every one of these columns: it stores the position from its own columns (validated as
ever), then the events, the close and the records as exported (records recomputed only when their columns
are empty). So `export` → `import` into an empty database gives back the same journal. Text starting
like a spreadsheet formula (`=`, `+`, `-`, `@`, tab, CR) is written with a leading `'`, which the import drops.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from monitor.config.settings import Settings
from monitor.journal.log import backfill
from monitor.journal.records import EVENT_KEYS, RECORD_KEYS, JournalRecords, records_for
from monitor.risk import positions as risk_positions
from monitor.risk.liquidation import PositionError
from monitor.store.models import Position, PositionEvent, PositionRecord
from snapshots.errors import TierdriftError
from snapshots.history import versions
from snapshots.model import is_inverse
from snapshots.reader import as_utc
from snapshots.timefmt import iso, parse_ts

EVENT_KINDS = ("margin_added", "margin_removed", "size_added", "size_reduced", "note", "closed")
DERIVED = ("id", "size_now", "entry_price_now", "margin_now")
#: A record's keys in the export: not `table_version_id`, an id of one database (`table_valid_from` names the
#: version in any database holding the same history).
EXPORT_KEYS = tuple(k for k in RECORD_KEYS if k != "table_version_id")
RECORD_COLUMNS = tuple(
    f"{kind}_{k}" for kind in ("entry", "exit") for k in EXPORT_KEYS if (kind, k) != ("entry", "pnl")
)
#: The columns beyond the import's own, in the order the export writes them.
JOURNAL_COLUMNS = (*DERIVED, "closed_at", *RECORD_COLUMNS, "events")
COLUMNS = ("id", *risk_positions.CSV_COLUMNS, "closed_at", *DERIVED[1:], *RECORD_COLUMNS, "events")
_JSON_KEYS = ("unknown", "period")


def export_rows(session: Session) -> list[dict[str, Any]]:
    """Every position (by id) with its journal, as flat rows keyed by `COLUMNS`."""
    positions = list(session.exec(select(Position).order_by(col(Position.id))))
    journals = records_for(session, [p.id for p in positions if p.id is not None])
    return [_row(p, journals[p.id or 0]) for p in positions]


def _row(p: Position, j: JournalRecords) -> dict[str, Any]:
    entry = j.entry or {}
    inverse = is_inverse(p.source)
    size = entry.get("size", p.size)
    row: dict[str, Any] = {
        "id": p.id,
        "source": p.source,
        "symbol": p.symbol,
        "side": p.side,
        "entry": entry.get("price") or p.entry_price,
        "qty": None if inverse else size,
        "notional": None,
        "contracts": size if inverse else None,
        "contract_size": p.contract_size if inverse else None,
        "mode": p.mode,
        "margin": entry.get("margin", p.margin) if j.entry else p.margin,
        "adr": p.adr_override,
        "note": p.note,
        "opened_at": iso(as_utc(p.opened_at)),
        "closed_at": iso(as_utc(p.closed_at)),
        "size_now": p.size,
        "entry_price_now": p.entry_price,
        "margin_now": p.margin,
    }
    for kind, rec in (("entry", j.entry), ("exit", j.exit)):
        for k in EXPORT_KEYS:
            if (kind, k) == ("entry", "pnl"):
                continue
            row[f"{kind}_{k}"] = None if rec is None else rec.get(k)
    row["events"] = j.events
    return row


def write_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV text: empty cells for None, JSON for the objects, floats exact (repr)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(r[k]) for k in COLUMNS})
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str):
        # Text a spreadsheet would run as a formula gets a leading quote (OWASP's CSV injection advice);
        # the import takes it off again (`risk.positions.unquote`).
        return "'" + value if value[:1] in risk_positions.FORMULA_START else value
    return str(value)


# -- import --------------------------------------------------------------------------------------------


def import_csv(session: Session, path: Path, settings: Settings, *, now: datetime) -> list[Position]:
    """`positions import`: the positions (all or nothing, `risk.positions.import_csv`), then their journal
    columns when the file has them; entry records it lacks are computed from the history (`backfill`)."""
    added = risk_positions.import_csv(session, path, now=now, extra=JOURNAL_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(risk_positions.read_csv_text(path))))
    problems = []
    for line, (p, row) in enumerate(zip(added, rows, strict=True), start=2):
        try:
            _restore(session, p, row, now)
        except (TierdriftError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise risk_positions.CsvImportError(str(path), problems)
    session.flush()
    # Rows without entry columns: computed from the history at opened_at (cache only), so `recomputed`.
    backfill(session, settings, now=now)
    return added


def _restore(session: Session, p: Position, row: dict[str, str], now: datetime) -> None:
    """The journal columns of `row` onto the just-stored `p`: events, the close, the records."""
    events = json.loads(row.get("events") or "[]")
    if not isinstance(events, list):
        raise PositionError("events is not a JSON list")
    last: PositionEvent | None = None
    for e in events:
        last = _event(p, e, now)
        session.add(last)
    if last is not None:
        p.size, p.margin, p.entry_price = last.size_after, last.margin_after, last.entry_price_after
    closed = (row.get("closed_at") or "").strip()
    if closed:
        at = parse_ts(closed)
        if at > now or at < p.opened_at:
            raise PositionError(f"closed_at {closed} is not between opened_at and now")
        p.closed_at = at
    session.add(p)
    session.flush()
    for kind in ("entry", "exit"):
        if (row.get(f"{kind}_at") or "").strip():
            session.add(_record(session, p, kind, row))


def _event(p: Position, e: Any, now: datetime) -> PositionEvent:
    if not isinstance(e, dict) or set(e) - set(EVENT_KEYS) or e.get("kind") not in EVENT_KINDS:
        raise PositionError(f"not an event: {json.dumps(e)[:80]}")
    at = parse_ts(str(e["at"]))
    if at > now:
        raise PositionError(f"event at {e['at']} is in the future")
    values = {
        k: _number(e.get(k), k) for k in ("amount", "price", "pnl", "size_after", "margin_after", "entry_price_after")
    }
    if values["size_after"] is None or values["entry_price_after"] is None:
        raise PositionError("an event needs size_after and entry_price_after")
    note = e.get("note")
    assert p.id is not None
    return PositionEvent(
        position_id=p.id,
        at=at,
        kind=e["kind"],
        note=None if note is None else str(note),
        amount=values["amount"],
        price=values["price"],
        pnl=values["pnl"],
        size_after=values["size_after"],
        margin_after=values["margin_after"],
        entry_price_after=values["entry_price_after"],
    )


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PositionError(f"{name} {value!r} is not a number")
    x = float(value)
    if not math.isfinite(x):
        raise PositionError(f"{name} {value!r} is not a finite number")
    return x


def _record(session: Session, p: Position, kind: str, row: dict[str, str]) -> PositionRecord:
    def text(key: str) -> str:
        return (row.get(f"{kind}_{key}") or "").strip()

    valid_from = parse_ts(text("table_valid_from")) if text("table_valid_from") else None
    version = None
    if valid_from is not None:  # ids differ between databases: the version is the one with that valid_from
        found = [v for v in versions(session.connection(), p.source, p.symbol) if v.valid_from == valid_from]
        version = found[0].id if found else None
    floats = ("size", "margin", "notional", "maintenance_margin_rate", "maintenance_amount", "liquidation_price",
              "mark_price", "adr", "distance", "buffer_adr", "headroom_notional", "price", "pnl")  # fmt: skip
    values: dict[str, Any] = {k: _number(text(k), f"{kind}_{k}") for k in floats if (kind, k) != ("entry", "pnl")}
    if values["size"] is None:
        raise PositionError(f"{kind}_size is empty")
    assert p.id is not None
    return PositionRecord(
        position_id=p.id,
        kind=kind,
        at=parse_ts(text("at")),
        table_version_id=version,
        table_valid_from=valid_from,
        source=p.source,
        symbol=p.symbol,
        tier=int(text("tier")) if text("tier") else None,
        adr_days=int(text("adr_days")) if text("adr_days") else None,
        adr_source=text("adr_source") or None,
        violation={"true": True, "false": False, "": None}[text("violation").lower()],
        recomputed=text("recomputed").lower() == "true",
        unknown=json.dumps(json.loads(text("unknown") or "{}"), sort_keys=True),
        period=json.dumps(json.loads(text("period")), sort_keys=True) if text("period") else None,
        **values,
    )
