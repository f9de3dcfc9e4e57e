"""Reads and storage at a year's scale, each against its floor measured in the same run.

On the databases of bench/yeardb.py (built, or reused from its cache):
1. `tierdrift changes` over the real history (71,784 records) as a table on a screen (COLUMNS set: the
   first 100 records and the hint), and `changes --all` piped (plain lines, every record): wall time;
2. `tierdrift changes --since <a year ago> --json` on the year at 10× the real change rate: wall time and
   peak RSS, against bench/changes_floor.py (sqlite3 + json, byte for byte the same output);
3. `tierdrift tiers SYMBOL --at T --json` as a whole process, against bench/tiers_floor.py (same output),
   and where its start-up goes (`python -X importtime`);
4. the queries of `sources`, `polls` and the latest change, in process: median time per query, on the
   rolled-up year and on the year stored one row per poll (420,480 poll rows);
5. database size per year at the real change rate, with and without the roll-up, and at 10×.

Medians over several runs, the runs of a command and of its floor interleaved. Results go to
bench/results/year.json and the "## Year scale: storage and reads" section of docs/benchmarks.md.

Usage: python bench/bench_year.py [--runs N] [--no-doc]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yeardb  # bench/ is not a package: its own folder is on the path

from snapshots import history
from snapshots.reader import SqliteReader

ROOT = yeardb.ROOT
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Year scale: storage and reads"
SYMBOL = "BTC/USDT:USDT"
SINCE = "2025-01-01T00:00:00Z"
AT = "2025-07-01T00:00:00Z"
ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "TIERDRIFT_CONFIG": "/nonexistent/config.toml",
    "PYTHONPATH": str(ROOT),
}


def cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", "--db", f"sqlite:///{db}", *args]


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / name), *args]


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and the sha256 of stdout of one process (stdout to a file).

    The peak RSS is GNU time's (`%M`): a child's own `ru_maxrss` would count this process's memory, which
    the child shares between fork and exec."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv]
        t0 = time.perf_counter()
        proc = subprocess.run(timed, stdout=out, stderr=subprocess.PIPE, env={**ENV, **(env or {})}, cwd=ROOT)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode().strip()}")
        out.seek(0)
        digest = hashlib.sha256(out.read()).hexdigest()
        peak_kb = int(rss.read().split()[-1])
    return elapsed, peak_kb / 1024, digest


def compare(
    runs: int, ours: list[str], floor: list[str] | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Medians of `ours` and `floor` run alternately; checks they print the same bytes."""
    mine: list[tuple[float, float, str]] = []
    base: list[tuple[float, float, str]] = []
    for _ in range(runs):
        mine.append(run(ours, env))
        if floor:
            base.append(run(floor, env))
    result: dict[str, Any] = {
        "runs": runs,
        "ours_s": round(statistics.median(t for t, _, _ in mine), 3),
        "ours_rss_mb": round(max(r for _, r, _ in mine), 1),
    }
    if floor:
        if {d for _, _, d in mine} != {d for _, _, d in base}:
            sys.exit(f"{' '.join(ours)} and its floor print different output")
        result["floor_s"] = round(statistics.median(t for t, _, _ in base), 3)
        result["floor_rss_mb"] = round(max(r for _, r, _ in base), 1)
        result["ratio"] = round(result["ours_s"] / result["floor_s"], 2)
    return result


#: Modules inside `monitor.cli` whose cumulative import time the report names.
INSIDE = ("monitor.cli.fast", "monitor.cli.state", "monitor.cli.output", "snapshots.history", "typer")


def import_time(db: Path) -> dict[str, Any]:
    """Where `tiers --at` spends its start-up: the slowest top-level imports, by cumulative microseconds."""
    argv = [sys.executable, "-X", "importtime", *cli(db, "tiers", SYMBOL, "-s", yeardb.CHANGING, "--at", AT)[1:]]
    proc = subprocess.run([*argv, "--json"], capture_output=True, text=True, env=ENV, check=True, cwd=ROOT)
    top: list[tuple[int, str]] = []
    named: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m.group(3):  # imported by the script itself, not by another module
            top.append((int(m.group(2)), m.group(4)))
        if m and m.group(4) in INSIDE:
            named[m.group(4)] = round(int(m.group(2)) / 1000, 1)
    top.sort(reverse=True)
    return {
        "total_ms": round(sum(us for us, _ in top) / 1000, 1),
        "top": [[n, round(us / 1000, 1)] for us, n in top[:4]],
        "inside": named,
    }


def per_query(db: Path, reps: int = 300) -> dict[str, float]:
    """Median microseconds of each read question on `db`, through the CLI's own sqlite3 reader."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    reader = SqliteReader(conn)
    questions: dict[str, Callable[[], object]] = {
        "sources (one source's status: 8 queries)": lambda: history.source_status(reader, yeardb.CHANGING),
        "polls --source (20 rows)": lambda: history.recent_polls(reader, yeardb.CHANGING, 20),
        "polls (20 rows, all sources)": lambda: history.recent_polls(reader, None, 20),
        "latest change of a source": lambda: reader.rows(history.LATEST_CHANGE, {"source": yeardb.CHANGING}),
    }
    out = {}
    for name, ask in questions.items():
        ask()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            ask()
            times.append(time.perf_counter() - t0)
        out[name] = round(statistics.median(times) * 1e6, 1)
    conn.close()
    return out


def sizes(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    polls = conn.execute("SELECT count(*), sum(repeats) FROM poll").fetchone()
    changes = conn.execute("SELECT count(*) FROM change_record").fetchone()[0]
    try:  # per table with its indexes, when this SQLite has the dbstat table
        pages = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        poll_bytes = sum(size for name, size in pages if owner.get(name) == "poll")
    except sqlite3.DatabaseError:
        poll_bytes = None
    conn.close()
    mb = db.stat().st_size / 1e6
    return {
        "mb": round(mb, 1),
        "poll_rows": polls[0],
        "polls": polls[1],
        "changes": changes,
        "poll_share": round(poll_bytes / db.stat().st_size, 3) if poll_bytes is not None else None,
    }


def migrate_year(rows_db: Path) -> dict[str, Any]:
    """Migration 0005 on a year stored a row per poll: a copy taken down to revision 0004 (what that
    revision's store wrote), then upgraded; the seconds of the upgrade and the size after VACUUM."""
    import shutil

    from alembic import command
    from alembic.config import Config

    from monitor.store.database import MIGRATIONS
    from snapshots.engine import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "year.db"
        shutil.copy(rows_db, copy)
        engine = make_engine(f"sqlite:///{copy}")
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))

        def migrate(down: bool) -> float:
            t0 = time.perf_counter()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                (command.downgrade if down else command.upgrade)(cfg, "0004" if down else "0005")
            return time.perf_counter() - t0

        migrate(down=True)
        before = sqlite3.connect(copy).execute("SELECT count(*) FROM poll").fetchone()[0]
        seconds = migrate(down=False)
        engine.dispose()
        conn = sqlite3.connect(copy)
        after = conn.execute("SELECT count(*), sum(repeats) FROM poll").fetchone()
        conn.execute("VACUUM")
        conn.close()
        return {
            "rows_before": before,
            "rows_after": after[0],
            "polls_after": after[1],
            "upgrade_s": round(seconds, 1),
            "mb_after_vacuum": round(copy.stat().st_size / 1e6, 1),
        }


def measure(runs: int) -> dict[str, Any]:
    real = yeardb.real_history_db()
    year = yeardb.year_db(yeardb.Recipe())
    year1 = yeardb.year_db(yeardb.Recipe(rate=1.0))
    year1_rows = yeardb.year_db(yeardb.Recipe(rate=1.0, rollup=False))
    print("databases ready", file=sys.stderr)
    tiers_args = ("tiers", SYMBOL, "-s", yeardb.CHANGING, "--at", AT)
    return {
        "changes_table": compare(runs, cli(real, "changes"), env={"COLUMNS": "200"}),
        "changes_all_piped": compare(max(3, runs // 2), cli(real, "changes", "--all")),
        "changes_year_json": compare(
            runs, cli(year, "changes", "--since", SINCE, "--json"), script("changes_floor.py", str(year), SINCE)
        ),
        "tiers_at_json": compare(
            3 * runs, cli(year, *tiers_args, "--json"), script("tiers_floor.py", str(year), yeardb.CHANGING, SYMBOL, AT)
        ),
        "tiers_at_table": compare(3 * runs, cli(year, *tiers_args)),
        "bare_python": compare(3 * runs, [sys.executable, "-c", "pass"]),
        "tiers_imports": import_time(year),
        "migration": migrate_year(year1_rows),
        "queries_us": {"year 10x, rolled up": per_query(year), "year 1x, a row per poll": per_query(year1_rows)},
        "size": {
            "year 1x, rolled up": sizes(year1),
            "year 1x, a row per poll": sizes(year1_rows),
            "year 10x, rolled up": sizes(year),
            "real history (import)": sizes(real),
        },
    }


def section(r: dict[str, Any]) -> str:
    t, a, j = r["changes_table"], r["changes_all_piped"], r["changes_year_json"]
    ti, tt, imp, bare = r["tiers_at_json"], r["tiers_at_table"], r["tiers_imports"], r["bare_python"]
    size = r["size"]
    real_n = size["real history (import)"]["changes"]
    lines = [
        HEADING,
        "",
        "On the databases of `bench/yeardb.py`: a year of 4 sources polled every 5 minutes (105,120 polls each), "
        "the real consecutive pairs of the recorded Binance USDⓈ-M history replayed on one of them at 1× or 10× "
        "their real rate (31 or 314 changing polls), built through the store (changing polls through "
        "`apply_snapshot`, the unchanged ones in bulk as the rows the store writes), and the 134 versions imported "
        f"as `tierdrift import` does ({real_n:,} change records). Whole processes unless said; medians of "
        f"{t['runs']}–{ti['runs']} runs, each alternating with its floor. Reproduce with `python bench/bench_year.py`.",
        "",
        "| measurement | target | tierdrift | floor | tierdrift / floor |",
        "|---|---|---|---|---|",
        f"| `changes` over the real history as a table on a screen (first 100 and a hint) | < 2 s | {t['ours_s']} s, "
        f"{t['ours_rss_mb']} MB | | |",
        f"| `changes --all` over the real history, piped (plain lines, {real_n:,}) | | {a['ours_s']} s, "
        f"{a['ours_rss_mb']} MB | | |",
        f"| `changes --since` a year at 10× `--json` ({size['year 10x, rolled up']['changes']:,} records) | near the "
        f"floor, flat RSS | {j['ours_s']} s, {j['ours_rss_mb']} MB peak | {j['floor_s']} s, {j['floor_rss_mb']} MB "
        f"(sqlite3 + json, same bytes) | {j['ratio']}× |",
        f"| `tiers SYMBOL --at` `--json` | ≤ 2× the floor | {ti['ours_s'] * 1000:.0f} ms | "
        f"{ti['floor_s'] * 1000:.0f} ms (`bench/tiers_floor.py`, same bytes) | {ti['ratio']}× |",
        f"| `tiers SYMBOL --at` as a table | | {tt['ours_s'] * 1000:.0f} ms | | |",
        "",
        f"Start-up of `tiers --at` (`python -X importtime`): {imp['total_ms']} ms of imports; the largest: "
        + ", ".join(f"`{n}` {ms} ms" for n, ms in imp["top"])
        + "; within `monitor.cli`: "
        + ", ".join(f"`{n}` {ms} ms" for n, ms in imp["inside"].items())
        + f". The interpreter alone (`python -c pass`, `site` included) takes {bare['ours_s'] * 1000:.0f} ms.",
        "",
        "Read questions in process, through the CLI's sqlite3 reader (median µs per call; each is index lookups, "
        "see `tests/snapshots/test_query_plans.py`):",
        "",
        "| question | " + " | ".join(r["queries_us"]) + " |",
        "|---|" + "---|" * len(r["queries_us"]),
    ]
    names = list(next(iter(r["queries_us"].values())))
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{q[name]} µs" for q in r["queries_us"].values()) + " |")
    lines += [
        "",
        "Database size (SQLite file after a checkpoint; the poll share counts the poll table and its indexes):",
        "",
        "| database | target | size | poll rows | polls | change records | poll share |",
        "|---|---|---|---|---|---|---|",
    ]
    m = r["migration"]
    for name, s in size.items():
        target = "≤ 20 MB" if name == "year 1x, rolled up" else ""
        share = f"{s['poll_share']:.0%}" if s["poll_share"] is not None else "n/a"
        lines.append(
            f"| {name} | {target} | {s['mb']} MB | {s['poll_rows']:,} | {s['polls']:,} | {s['changes']:,} | {share} |"
        )
    lines += [
        "",
        f"Migration 0005 of the year stored a row per poll (taken down to revision 0004 first): {m['rows_before']:,} "
        f"poll rows become {m['rows_after']:,} ({m['polls_after']:,} polls accounted for) in {m['upgrade_s']} s; "
        f"{m['mb_after_vacuum']} MB after `VACUUM` (SQLite keeps the freed pages for reuse until then).",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (or append it), leaving the others alone."""
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    start = doc.find(HEADING)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        nxt = doc.find("\n## ", start + len(HEADING))
        doc = doc[:start] + text + ("\n" + doc[nxt + 1 :] if nxt >= 0 else "")
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    results = measure(args.runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "year.json").write_text(json.dumps(results, indent=2) + "\n")
    text = section(results)
    (RESULTS / "year.md").write_text(text)
    if not args.no_doc:
        write_section(text)
    print(text)


if __name__ == "__main__":
    main()
