"""Rebuild stored tier tables from their rows (the read side shared by the store and history)."""

from __future__ import annotations

import json
import zlib
from typing import Any

from snapshots.model import Tier, TierTable, Unit
from snapshots.reader import placeholders, reader_of


def load_tables(conn: Any, version_ids: list[int]) -> dict[int, TierTable]:
    """Rebuild the stored tables of the given versions, keyed by version id.

    `conn` is a `snapshots.reader.Reader` or a SQLAlchemy connection or session.
    """
    reader = reader_of(conn)
    out: dict[int, TierTable] = {}
    for start in range(0, len(version_ids), 500):  # stay under every driver's bound-parameter limit
        chunk = version_ids[start : start + 500]
        marks, params = placeholders("v", chunk)
        rows: dict[int, list[Tier]] = {vid: [] for vid in chunk}
        for r in reader.rows(
            "SELECT version_id, tier, floor, cap, maintenance_margin_rate, maintenance_amount, max_leverage,"
            f" initial_margin_rate FROM tier_row WHERE version_id IN ({marks}) ORDER BY version_id, floor, tier",
            params,
        ):
            rows[r["version_id"]].append(
                Tier(
                    r["tier"],
                    r["floor"],
                    r["cap"],
                    r["maintenance_margin_rate"],
                    r["maintenance_amount"],
                    r["max_leverage"],
                    r["initial_margin_rate"],
                )
            )
        for v in reader.rows(
            "SELECT id, source, symbol, unit, raw, warnings, notional_coef, content_hash"
            f" FROM table_version WHERE id IN ({marks})",
            params,
        ):
            out[v["id"]] = TierTable(
                source=v["source"],
                symbol=v["symbol"],
                unit=Unit(v["unit"]),
                tiers=tuple(rows[v["id"]]),
                raw=zlib.decompress(v["raw"]).decode(),
                warnings=tuple(json.loads(v["warnings"])) if v["warnings"] else (),
                notional_coef=v["notional_coef"],
                hash=v["content_hash"],
            )
    return out
