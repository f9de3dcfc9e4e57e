"""The floor of `tierdrift changes --since T --json`: the standard library alone, byte for byte the same output.

Usage: python bench/changes_floor.py DB_FILE SINCE (ISO 8601 UTC)

One query in detection order, a cursor iterated row by row, each record written as it comes in the layout
of `json.dumps(indent=2)` (by the C encoder, as `monitor.cli.output.stream_json` does), blocks of 1000.
"""

import json
import sqlite3
import sys
from datetime import UTC, datetime

KEYS = ("detected_at", "previous_poll_at", "source", "symbol", "kind", "tier", "field", "old", "new")
ITEM = json.JSONEncoder(ensure_ascii=False, separators=(",\n    ", ": "))


def iso(text: str | None) -> str | None:
    """SQLite's stored UTC text as tierdrift's JSON shows it (`…T12:00:00Z`, microseconds only when set)."""
    if text is None:
        return None
    return (text[:19] if text.endswith(".000000") else text).replace(" ", "T") + "Z"


def main() -> None:
    path, since_text = sys.argv[1:3]
    since = datetime.fromisoformat(since_text.replace("Z", "+00:00")).astimezone(UTC)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT detected_at, previous_poll_at, source, symbol, kind, tier, field, old, new FROM change_record"
        " WHERE detected_at >= ? ORDER BY detected_at, id",
        (since.strftime("%Y-%m-%d %H:%M:%S.%f"),),
    )
    out = sys.stdout
    block: list[str] = []
    sep = "[\n"
    for r in rows:
        item = dict(zip(KEYS, r, strict=True))
        item["detected_at"], item["previous_poll_at"] = iso(r[0]), iso(r[1])
        block.append(sep + "  {\n    " + ITEM.encode(item)[1:-1] + "\n  }")
        sep = ",\n"
        if len(block) >= 1000:
            out.write("".join(block))
            block.clear()
    block.append("[]\n" if sep == "[\n" else "\n]\n")
    out.write("".join(block))


if __name__ == "__main__":
    main()
