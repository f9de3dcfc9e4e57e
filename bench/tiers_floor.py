"""The floor of `tierdrift tiers SYMBOL --source S --at T --json`: the standard library alone, same output.

Usage: python bench/tiers_floor.py DB_FILE SOURCE SYMBOL AT (SYMBOL as stored, AT as ISO 8601 UTC)

It answers the question as directly as the schema allows: the version of SYMBOL in force at AT (one
lookup in the version index), its tier rows, printed as `tierdrift` prints them. No symbol resolution
beyond an exact match, no checks, no error messages: a floor, not a replacement.
"""

import json
import sqlite3
import sys
from datetime import UTC, datetime


def main() -> None:
    path, source, symbol, at_text = sys.argv[1:5]
    at = datetime.fromisoformat(at_text.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (vid,) = conn.execute(
        "SELECT id FROM table_version WHERE source = ? AND symbol = ? AND valid_from <= ?"
        " AND (valid_to IS NULL OR valid_to > ?) ORDER BY valid_from DESC LIMIT 1",
        (source, symbol, at, at),
    ).fetchone()
    rows = conn.execute(
        "SELECT tier, floor, cap, maintenance_margin_rate, maintenance_amount, max_leverage FROM tier_row"
        " WHERE version_id = ? ORDER BY floor, tier",
        (vid,),
    )
    keys = ("tier", "floor", "cap", "maintenance_margin_rate", "maintenance_amount", "max_leverage")
    print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
