"""Replay of the 134 recorded Binance USDⓈ-M versions (2022–2026) from ../shared/data.

The data is not part of the repository; without it these tests skip with the reason.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from snapshots.history import tables_at
from snapshots.store import PollResult
from snapshots.symbols import canonical_symbol
from tests.conftest import BINANCE_HISTORY

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not BINANCE_HISTORY.is_dir(), reason=f"recorded tier data not found at {BINANCE_HISTORY} (outside the repo)"
    ),
]

SRC = "binance-usdm"


def files() -> list[Path]:
    return sorted(BINANCE_HISTORY.glob("*.json.gz"))


def oracle(path: Path) -> dict[str, list[tuple[float, ...]]]:
    """The file's tables read independently of snapshots.parse: plain floats of the raw fields."""
    data: dict[str, list[dict[str, Any]]] = json.loads(gzip.decompress(path.read_bytes()))
    out = {}
    for key, tiers in data.items():
        rows = []
        for t in tiers:
            floor = t.get("minNotional", t.get("notionalFloor"))
            cap = t.get("maxNotional", t.get("notionalCap"))
            rate = t.get("maintenanceMarginRate", t.get("maintenanceMarginRatio"))
            rows.append((float(floor), float(cap), float(rate), float(t["info"]["cum"]), float(t["maxLeverage"])))
        out[canonical_symbol(SRC, key)] = sorted(rows)
    return out


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, list[PollResult], str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('replay') / 'tierdrift.db'}"
    engine = open_engine(url)
    results = import_files(engine, SRC, plan(files()))
    yield engine, results, url
    engine.dispose()


def test_every_version_imports(replay: tuple[Engine, list[PollResult], str]) -> None:
    _, results, _ = replay
    assert len(results) == len(files()) == 134
    assert all(r.outcome == "ok" for r in results)


def test_formatting_only_versions_give_no_change_and_real_changes_are_seen(
    replay: tuple[Engine, list[PollResult], str],
) -> None:
    _, results, _ = replay
    ordered = plan(files())
    previous = oracle(ordered[0].path)
    formatting_only = 0
    for item, result in zip(ordered[1:], results[1:], strict=True):
        current = oracle(item.path)
        if current == previous:
            formatting_only += 1
            assert result.changes == [], item.path.name
        else:
            assert result.changes, item.path.name
        previous = current
    assert formatting_only >= 4  # the README lists several such pairs; all must be silent


def test_the_table_at_each_files_date_is_that_file(replay: tuple[Engine, list[PollResult], str]) -> None:
    engine, _, _ = replay
    ordered = plan(files())
    with engine.connect() as conn:
        for i, item in enumerate(ordered):
            if i + 1 < len(ordered) and ordered[i + 1].at == item.at:
                continue  # two files share a date: the later one is the table in force at that time
            expected = oracle(item.path)
            stored = tables_at(conn, SRC, item.at)
            assert set(stored) == set(expected), item.path.name
            for symbol, table in stored.items():
                got = sorted(
                    (t.floor, t.cap, t.maintenance_margin_rate, t.maintenance_amount, t.max_leverage)
                    for t in table.tiers
                )
                assert got == expected[symbol], (item.path.name, symbol)


def test_tiers_command_answers_each_file(replay: tuple[Engine, list[PollResult], str]) -> None:
    _, _, url = replay
    rng = random.Random(7)
    for item in rng.sample(plan(files()), 6):
        expected = oracle(item.path)
        symbol = rng.choice(sorted(expected))
        proc = subprocess.run(
            [sys.executable, "-m", "monitor", "--db", url, "tiers", symbol, "--source", SRC,
             "--at", item.at.isoformat(), "--json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        rows = json.loads(proc.stdout)
        got = sorted(
            (r["floor"], r["cap"], r["maintenance_margin_rate"], r["maintenance_amount"], r["max_leverage"])
            for r in rows
        )
        assert got == expected[symbol], (item.path.name, symbol)
