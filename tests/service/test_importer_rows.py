"""The rows an import writes, compared column by column with a dump of what the ORM-based store wrote.

`tests/golden/import_rows.json` was written by this module's `__main__` run against the store as it was
before versions, tiers and change records became Core executemany inserts (`PYTHONPATH=<that checkout>
python tests/service/test_importer_rows.py`). The archives are our own, generated here from a seed: symbols
listed and delisted, tiers split, merged and re-rated, and versions that differ from the previous one only
in formatting (numbers as strings, 1 as 1.0, key order), which must store nothing.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "import_rows.json"
SOURCE = "binance-usdm"
#: Columns left out: how long a poll took is the one value no two runs share.
TABLES = {
    "poll": "SELECT * FROM poll ORDER BY id",
    "table_version": "SELECT * FROM table_version ORDER BY id",
    "tier_row": "SELECT * FROM tier_row ORDER BY version_id, tier",
    "change_record": "SELECT * FROM change_record ORDER BY id",
}
SKIP = {"duration_ms"}


def _tiers(rng: random.Random, n: int) -> list[tuple[float, float, float]]:
    floor, rows = 0.0, []
    for i in range(n):
        rate = round(0.004 + 0.005 * i + rng.choice((0, 0.0025)), 4)
        rows.append((floor, rate, float(int(0.5 / rate))))
        floor = floor * 5 + 5000
    return rows


def _entry(sym: str, rows: list[tuple[float, float, float]], style: int) -> list[dict[str, Any]]:
    """Binance's ccxt shape; `style` varies only the formatting (0: numbers, 1: strings, 2: ints, keys reversed)."""
    out, cum = [], 0.0
    for i, (floor, rate, lev) in enumerate(rows):
        cap = rows[i + 1][0] if i + 1 < len(rows) else floor * 5 + 5000
        cum += floor * (rate - rows[i - 1][1]) if i else 0.0

        def fmt(v: float) -> Any:
            return str(v) if style == 1 else (int(v) if style == 2 and v.is_integer() else v)

        tier = {
            "tier": fmt(float(i + 1)),
            "symbol": sym,
            "minNotional": fmt(floor),
            "maxNotional": fmt(cap),
            "maintenanceMarginRate": fmt(rate),
            "maxLeverage": fmt(lev),
            "info": {"bracket": str(i + 1), "cum": str(round(cum, 6))},
        }
        out.append(dict(reversed(tier.items())) if style == 2 else tier)
    return out


def write_archives(folder: Path, seed: int = 10) -> list[Path]:
    """Twelve dated archives of 30-odd symbols each, every kind of change among them."""
    rng = random.Random(seed)
    tables = {f"S{i:02d}/USDT:USDT": _tiers(rng, rng.randint(1, 6)) for i in range(30)}
    paths = []
    for k in range(12):
        if k % 3 == 1:  # formatting only: the next file says the same in other words
            pass
        else:
            for sym in rng.sample(sorted(tables), 6):
                rows = tables[sym]
                move = rng.randrange(4)
                if move == 0:
                    tables[sym] = _tiers(rng, min(8, len(rows) + rng.randint(1, 3)))  # split into more tiers
                elif move == 1 and len(rows) > 1:
                    tables[sym] = rows[:-1]  # the top tier merged away
                else:
                    i = rng.randrange(len(rows))
                    up = [(f, round(r + 0.0025, 4)) for f, r, _ in rows[i:]]  # re-rated from tier i up
                    tables[sym] = rows[:i] + [(f, r, float(int(0.5 / r))) for f, r in up]
            if k % 4 == 2:
                del tables[rng.choice(sorted(tables))]
            tables[f"N{k:02d}/USDT:USDT"] = _tiers(rng, rng.randint(1, 5))
        body = {sym: _entry(sym, rows, k % 3) for sym, rows in sorted(tables.items())}
        path = folder / f"2024-{k + 1:02d}-01.json.gz"
        path.write_bytes(gzip.compress(json.dumps(body).encode(), mtime=0))
        paths.append(path)
    return paths


def _value(v: Any, column: str) -> Any:
    if column == "raw":
        return zlib.decompress(v).decode()
    if isinstance(v, datetime):  # PostgreSQL's, written as SQLite stores them (naive UTC text)
        return (v.astimezone(UTC) if v.tzinfo else v).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


def dump(engine: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables an import writes, as JSON-ready values."""
    from sqlalchemy import text

    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, sql in TABLES.items():
            result = conn.execute(text(sql))
            out[name] = [
                {c: _value(v, c) for c, v in zip(result.keys(), row, strict=True) if c not in SKIP} for row in result
            ]
    return out


def import_into(engine: Any, folder: Path) -> list[Any]:
    from monitor.service.importer import import_files, plan

    return import_files(engine, SOURCE, plan(write_archives(folder)))


def test_an_import_stores_exactly_the_rows_the_orm_store_did(engine: Any, tmp_path: Path) -> None:
    results = import_into(engine, tmp_path)
    got, want = dump(engine), json.loads(GOLDEN.read_text())
    assert [len(got[t]) for t in TABLES] == [len(want[t]) for t in TABLES]
    for table in TABLES:
        for mine, theirs in zip(got[table], want[table], strict=True):
            assert mine == theirs, table
    # The fixture exercises what it claims: changes of every kind, and formatting-only files storing nothing.
    kinds = {r["kind"] for r in got["change_record"]}
    assert kinds == {"symbol_listed", "symbol_delisted", "tier_added", "tier_removed", "tier_changed"}
    assert [len(r.updates) for r in results][1::3] == [0] * 4


if __name__ == "__main__":  # write the golden dump with whichever store is on sys.path
    import tempfile

    from monitor.store.database import open_engine

    with tempfile.TemporaryDirectory() as tmp:
        eng = open_engine(f"sqlite:///{Path(tmp) / 'g.db'}")
        import_into(eng, Path(tmp))
        rows = dump(eng)
        tables = [
            f"{json.dumps(name)}: [\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in rows[name]) + "\n]"
            for name in TABLES
        ]
        GOLDEN.write_text("{\n" + ",\n".join(tables) + "\n}\n")  # a row a line, to read a diff of it
        eng.dispose()
    print(f"wrote {GOLDEN}", file=sys.stderr)
