"""Rebuild stored tier tables from their rows (the read side shared by the store and history)."""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING

from sqlalchemy import select

from snapshots.catalog import table_version as tv
from snapshots.catalog import tier_row as tr
from snapshots.model import Tier, TierTable, Unit

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    Reader = Connection | Session


def load_tables(conn: Reader, version_ids: list[int]) -> dict[int, TierTable]:
    """Rebuild the stored tables of the given versions, keyed by version id."""
    out: dict[int, TierTable] = {}
    for start in range(0, len(version_ids), 500):  # stay under every driver's bound-parameter limit
        chunk = version_ids[start : start + 500]
        rows: dict[int, list[Tier]] = {vid: [] for vid in chunk}
        stmt = select(tr).where(tr.c.version_id.in_(chunk)).order_by(tr.c.version_id, tr.c.floor, tr.c.tier)
        for r in conn.execute(stmt):
            rows[r.version_id].append(
                Tier(
                    r.tier,
                    r.floor,
                    r.cap,
                    r.maintenance_margin_rate,
                    r.maintenance_amount,
                    r.max_leverage,
                    r.initial_margin_rate,
                )
            )
        vstmt = select(
            tv.c.id,
            tv.c.source,
            tv.c.symbol,
            tv.c.unit,
            tv.c.raw,
            tv.c.warnings,
            tv.c.notional_coef,
            tv.c.content_hash,
        ).where(tv.c.id.in_(chunk))
        for v in conn.execute(vstmt):
            out[v.id] = TierTable(
                source=v.source,
                symbol=v.symbol,
                unit=Unit(v.unit),
                tiers=tuple(rows[v.id]),
                raw=zlib.decompress(v.raw).decode(),
                warnings=tuple(json.loads(v.warnings)) if v.warnings else (),
                notional_coef=v.notional_coef,
                hash=v.content_hash,
            )
    return out
