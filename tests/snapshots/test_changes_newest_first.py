"""`list_changes(newest_first=True)`: the dashboard's feed order, paged by the same keyset cursor."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from snapshots.history import list_changes
from tests.conftest import BTC_ROWS, ETH_ROWS
from tests.snapshots.test_store import apply, tables


def test_newest_first_is_the_reverse_order_and_pages_without_gaps(engine: Engine) -> None:
    apply(engine, "2024-01-01", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    bumped = [(floor, mmr * 1.2, lev) for floor, mmr, lev in ETH_ROWS]
    apply(engine, "2024-01-02", tables(BTC=BTC_ROWS[:-1], ETH=bumped))
    apply(engine, "2024-01-03", tables(BTC=BTC_ROWS, ETH=ETH_ROWS))
    with engine.connect() as conn:
        oldest_first = list_changes(conn)
        newest_first = list_changes(conn, newest_first=True)
        assert [c.id for c in newest_first] == [c.id for c in reversed(oldest_first)]
        assert len({c.detected_at for c in newest_first}) == 2  # several records share a detection time
        for size in (1, 2, 3):
            seen, cursor = [], None
            while page := list_changes(conn, after=cursor, limit=size, newest_first=True):
                seen += [c.id for c in page]
                cursor = page[-1].cursor
            assert seen == [c.id for c in newest_first]
        eth = list_changes(conn, symbol="ETH/USDT:USDT", field="maintenance_margin_rate", newest_first=True)
        assert eth and [c.id for c in eth] == sorted((c.id for c in eth), reverse=True)
        assert all(c.change.symbol == "ETH/USDT:USDT" for c in eth)
