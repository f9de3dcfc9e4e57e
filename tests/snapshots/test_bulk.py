"""`insert_many` and `apply_snapshot(known=...)`: the store's fast paths write and diff what the slow ones did."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from snapshots import catalog
from snapshots.bulk import insert_many
from snapshots.model import Snapshot
from snapshots.store import apply_snapshot
from tests.conftest import BTC_ROWS, ETH_ROWS
from tests.snapshots.test_store import SRC, apply, tables, ts

COLUMNS = ("poll_id", "source", "symbol", "detected_at", "previous_poll_at", "kind", "tier", "field", "old", "new")


def change_rows(poll_id: int, n: int) -> list[tuple[Any, ...]]:
    rng = random.Random(n)
    base = datetime(2024, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    return [
        (poll_id, SRC, rng.choice(["BTC/USDT:USDT", "É/USDT:USDT", "x'; --"]),
         base + timedelta(microseconds=rng.choice([0, 1, 999_999])), rng.choice([None, base - timedelta(days=1)]),
         rng.choice(["tier_changed", "tier_added"]), rng.choice([None, 1, 12]), rng.choice([None, "cap"]),
         rng.choice([None, 0.1 + 0.2, -0.0, 1e300]), rng.choice([None, 5e-324, 2.5]))
        for _ in range(n)
    ]  # fmt: skip


def stored(session: Session) -> list[tuple[Any, ...]]:
    cols = [catalog.change_record.c[n] for n in COLUMNS]
    return [tuple(r) for r in session.execute(select(*cols).order_by(catalog.change_record.c.id))]


def test_insert_many_stores_what_sqlalchemy_executemany_stores(engine: Engine) -> None:
    poll_id = apply(engine, "2024-01-01", tables(BTC=BTC_ROWS)).poll_id
    rows = change_rows(poll_id, 300)
    with Session(engine) as s:
        s.execute(insert(catalog.change_record), [dict(zip(COLUMNS, r, strict=True)) for r in rows])
        want = stored(s)
        s.execute(delete(catalog.change_record))
        shuffled = list(reversed(COLUMNS))  # names in another order than the table's: the values follow them
        insert_many(s, catalog.change_record, shuffled, [tuple(reversed(r)) for r in rows])
        insert_many(s, catalog.change_record, COLUMNS, [])  # nothing to insert: no statement
        got = stored(s)
        s.execute(delete(catalog.change_record))
        shared = {"poll_id": poll_id, "detected_at": rows[0][3], "source": SRC}  # given once, for every row
        insert_many(s, catalog.change_record, ("symbol", *COLUMNS[4:]), [(r[2], *r[4:]) for r in rows], shared)
        got_shared = stored(s)
        s.commit()
    assert len(want) == 300 and got == want
    assert got_shared == [(poll_id, SRC, w[2], want[0][3], *w[4:]) for w in want]


def test_a_known_table_is_used_only_when_its_hash_is_the_stored_one(engine: Engine) -> None:
    first = tables(BTC=BTC_ROWS, ETH=ETH_ROWS)
    apply(engine, "2024-01-01", first)
    bumped = [(floor, mmr * 1.5, lev) for floor, mmr, lev in ETH_ROWS]
    second = tables(BTC=BTC_ROWS[:-1], ETH=bumped)
    lying = tables(BTC=BTC_ROWS[:-2], ETH=ETH_ROWS)  # not what is stored for BTC: its hash says so
    with Session(engine) as s:
        result = apply_snapshot(
            s, Snapshot(SRC, ts("2024-01-02"), "test", second), started_at=ts("2024-01-02"), duration_ms=1.0,
            known={"BTC/USDT:USDT": lying["BTC/USDT:USDT"], "ETH/USDT:USDT": first["ETH/USDT:USDT"]},
        )  # fmt: skip
        s.rollback()
    with Session(engine) as s:
        plain = apply_snapshot(
            s, Snapshot(SRC, ts("2024-01-02"), "test", second), started_at=ts("2024-01-02"), duration_ms=1.0
        )
        s.rollback()
    assert [u.changes for u in result.updates] == [u.changes for u in plain.updates]
    removed = [c for u in result.updates for c in u.changes if c.kind == "tier_removed"]
    assert removed and all(c.symbol == "BTC/USDT:USDT" and c.tier == len(BTC_ROWS) for c in removed)
    old = {u.symbol: u.old for u in result.updates}
    assert old["ETH/USDT:USDT"] is first["ETH/USDT:USDT"]  # known and true: not read back
    assert old["BTC/USDT:USDT"] is not lying["BTC/USDT:USDT"] and old["BTC/USDT:USDT"] == first["BTC/USDT:USDT"]


def test_insert_many_refuses_a_column_the_table_lacks(engine: Engine) -> None:
    poll_id = apply(engine, "2024-01-01", tables(BTC=BTC_ROWS)).poll_id
    with Session(engine) as s:
        with pytest.raises(KeyError, match="change_record has no column nope"):
            insert_many(s, catalog.change_record, ("symbol", "nope"), [("X", 1)], {"poll_id": poll_id, "source": SRC})
        assert stored(s) == []
