"""The journal's part of the `--json` shape of a position: `entry`, `exit` and `events`."""

from __future__ import annotations

from typing import Any

from monitor.journal.records import JournalRecords


def journal_json(j: JournalRecords | None) -> dict[str, Any]:
    """`{"entry": …, "exit": …, "events": […]}`: records in the key names of `liq --json` (None when not
    recorded) plus `at` and `table_valid_from`; `exit` adds `price`, `pnl` and `period`."""
    if j is None:
        return {"entry": None, "exit": None, "events": []}
    return {"entry": j.entry, "exit": j.exit, "events": j.events}
