"""`changes` at scale: human output stops with a hint, `--all` and `--limit` say how many, `--json` streams."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from monitor.cli import output
from monitor.store.database import open_engine
from snapshots.history import count_changes, iter_changes, list_changes
from snapshots.model import Snapshot
from snapshots.parse import parse_ccxt_tiers
from snapshots.store import apply_snapshot
from tests.conftest import ETH_ROWS, ccxt_tiers, ts

SRC = "binance-usdm"
SYMBOLS = [f"C{i:02d}/USDT:USDT" for i in range(40)]


def rows(step: int) -> list[tuple[float, float, float]]:
    return [(f, r + 0.0003 * step if i == 0 else r, lev) for i, (f, r, lev) in enumerate(ETH_ROWS)]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite history whose polls change the first tier of 40 symbols at a time (hundreds of records)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('paging') / 'tierdrift.db'}"
    engine = open_engine(url)
    for step in range(4):
        at = ts(f"2024-01-0{step + 1}")
        tables = parse_ccxt_tiers(SRC, {s: ccxt_tiers(s, rows(step)) for s in SYMBOLS})
        with Session(engine) as s:
            apply_snapshot(s, Snapshot(SRC, at, "test", tables), started_at=at, duration_ms=1.0)
            s.commit()
    engine.dispose()
    return url


def run(db_url: str, *args: str, columns: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TIERDRIFT_CONFIG": "/nonexistent/config.toml"}
    if columns:
        env["COLUMNS"] = columns
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--db", db_url, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def stored(db_url: str) -> list[Any]:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        found = list_changes(conn)
    engine.dispose()
    return found


def test_human_output_shows_the_first_records_and_how_many_more(many: str) -> None:
    total = len(stored(many))
    assert total > 200
    lines = run(many, "changes").splitlines()
    assert len(lines) == 101 and lines[-1] == f"… {total - 100:,} more: --limit N, --all, or --json"
    expected = [output.change_line(c) for c in stored(many)[:100]]
    assert lines[:100] == expected  # plain lines when piped, oldest first


def test_all_and_limit_print_exactly_that_many_without_a_hint(many: str) -> None:
    everything = run(many, "changes", "--all").splitlines()
    assert everything == [output.change_line(c) for c in stored(many)]
    assert run(many, "changes", "--limit", "150").splitlines() == everything[:150]
    source = run(many, "changes", "--source", SRC, "--since", "2024-01-04", "--all").splitlines()
    assert source and all(line.startswith("2024-01-04 00:00:00  2024-01-03 00:00:00  binance-usdm") for line in source)


def test_a_screen_gets_a_table_of_a_short_result(many: str) -> None:
    out = run(many, "changes", "--limit", "5", columns="200")
    assert "┃ detected" in out and out.count(SRC) == 5
    assert "more:" not in out


def test_json_streams_the_whole_result_as_the_unpaged_list(many: str) -> None:
    text = run(many, "changes", "--json")
    expected = [output.change_json(c) for c in stored(many)]
    assert text == json.dumps(expected, ensure_ascii=False, indent=2) + "\n"  # byte for byte the old output
    assert json.loads(run(many, "changes", "--json", "--limit", "7")) == expected[:7]


def test_iter_changes_pages_with_the_cursor_and_counts_agree(many: str) -> None:
    engine = open_engine(many)
    with engine.connect() as conn:
        whole = list_changes(conn, since=ts("2024-01-02"))
        assert list(iter_changes(conn, batch=7, since=ts("2024-01-02"))) == whole
        assert list(iter_changes(conn, batch=7, limit=30, since=ts("2024-01-02"))) == whole[:30]
        assert count_changes(conn, since=ts("2024-01-02")) == len(whole)
        assert count_changes(conn, source=SRC, symbol=SYMBOLS[0]) == len(list_changes(conn, symbol=SYMBOLS[0]))
    engine.dispose()


@pytest.mark.parametrize("items", [[], [{"a": 1, "b": 'x"\n\u202e', "c": None, "d": 0.1}], [{}, {"n": [1, {}]}, 3]])
def test_stream_json_writes_what_emit_json_prints(items: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    output.stream_json(iter(items), out, flush_every=1)
    output.emit_json(items)
    assert out.getvalue() == capsys.readouterr().out


def test_output_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--db", f"sqlite:///{tmp_path / 'none.db'}", "changes", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1  # nothing half-written
