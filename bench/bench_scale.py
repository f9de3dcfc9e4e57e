"""Benchmark: compute and fetch at a year's scale (issue 10), each line against its floor in the same run.

Sections (pick with --only; all by default):
- impacts:  one poll changing 700 tables, impacts of 10,000 and 100,000 open positions (the poll as
            `tierdrift poll` commits it); and the longest a CLI write (`account set`-like, on its own
            connection) waited while the 100,000 run held the write transaction;
- positions: `tierdrift positions list` (human and --json) with 10,000 open positions, as whole processes,
            against `python -c pass` as the process floor, interleaved (--baseline-root DIR: the same
            commands of another checkout in the same rounds, and whether their output is byte-identical);
- import:   the 134 real Binance versions (../shared/data) against gunzip + JSON decode of the same files;
- unchanged: an unchanged 716-symbol poll from the raw HTTP body (decode, parse with the daemon's cache,
            compare, record the poll, commit) against decode + a hash per entry + one SELECT of the
            stored hashes;
- bybit:    Bybit polls through the daemon's kept client (`Clients`) against a new client per poll:
            requests and time per poll, on the loopback fake with 500 symbols;
- daemon:   `tierdrift run` (4 sources, ccxt for Bybit) in its own process against the fake, RSS sampled
            every few seconds after warm-up; the slope of RSS over time with its 95% interval
            (--baseline-root DIR: the same for another checkout, e.g. main, in the same run; --change-every S:
            5 symbols of a Binance and a Bybit source get new tables every S seconds, from the start).

Every timed figure is a median over --runs runs. Results are written to bench/results/scale.json.

Usage: python bench/bench_scale.py [--only SECTION ...] [--runs N] [--soak-seconds S]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import marshal
import math
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance-usdm-tiers-history"
sys.path.insert(0, str(ROOT / "bench"))

import bench_impacts as bi  # noqa: E402  (the impact benchmark's tables and positions)
from sqlmodel import Session  # noqa: E402

from monitor.risk.impacts import ImpactContext, make_hook  # noqa: E402
from snapshots.store import apply_snapshot  # noqa: E402


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 1)


# -- impacts -----------------------------------------------------------------------------------------


def writer_waits(path: Path, stop: threading.Event, waits: list[float]) -> None:
    """A CLI-like writer: every 50 ms, one short write transaction on its own connection; record each wait."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE account SET updated_at = updated_at")
            conn.execute("COMMIT")
            waits.append((time.perf_counter() - t0) * 1000)
            stop.wait(0.05)
    finally:
        conn.close()


class TimedHook:
    """The impact hook, timing its `prepare` (outside the write transaction) and its write (inside)."""

    def __init__(self) -> None:
        self.inner = make_hook(ImpactContext(2.0))
        self.prepare_ms = self.write_ms = 0.0

    def prepare(self, engine: Any, snap: Any, started_at: datetime) -> None:
        t0 = time.perf_counter()
        self.inner.prepare(engine, snap, started_at)
        self.prepare_ms = (time.perf_counter() - t0) * 1000

    def __call__(self, session: Session, result: Any) -> None:
        t0 = time.perf_counter()
        self.inner(session, result)
        self.write_ms = (time.perf_counter() - t0) * 1000


def impacts(runs: int) -> dict[str, Any]:
    from monitor.config.settings import Settings
    from monitor.service.polling import poll_source

    out: dict[str, Any] = {}
    for positions in (10_000, 100_000):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "b.db"
            engine, symbols = bi.setup(f"sqlite:///{path}", 700, positions)
            totals, prepares, writes, max_waits, reused = [], [], [], [], []
            for run in range(runs if positions == 10_000 else max(2, runs // 2)):
                at = bi.T0 + timedelta(minutes=5 * (run + 1))
                bi.fresh_market(engine, at)
                snap = bi.snapshot(symbols, 1.1 if run % 2 == 0 else 1.0, at)
                hook = TimedHook()
                waits: list[float] = []
                stop = threading.Event()
                writer = threading.Thread(target=writer_waits, args=(path, stop, waits))
                writer.start()
                time.sleep(0.2)
                t0 = time.perf_counter()
                fetch, clock = (lambda _s, _st, snap=snap: snap), (lambda at=at: at)
                result = poll_source(engine, Settings(), bi.SRC, fetch, clock=clock, hooks=[hook])
                totals.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.2)
                stop.set()
                writer.join()
                assert result.outcome == "ok", result.error
                prepares.append(hook.prepare_ms)
                writes.append(hook.write_ms)
                max_waits.append(max(waits))
                reused.append(hook.inner.reused)
            engine.dispose()
        out[f"{positions}"] = {
            "poll_total_median_ms": median(totals),
            "impacts_prepare_median_ms": median(prepares),
            "impacts_in_transaction_median_ms": median(writes),
            "cli_write_max_wait_median_ms": median(max_waits),
            "prepared_rows_used": all(reused),
            "runs": len(totals),
        }
    return out


# -- positions list ----------------------------------------------------------------------------------


def timed_process(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append((time.perf_counter() - t0) * 1000)
        assert done.returncode == 0, done.stderr.decode()[-500:]
    return median(times)


def interleaved(variants: dict[str, tuple[list[str], dict[str, str], Path]], runs: int) -> dict[str, Any]:
    """Each variant (argv, env, working directory) once per round, `runs` rounds: the load of a shared
    machine falls on all of them alike. Medians, and each variant's stdout of its last run."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, bytes] = {}
    for _ in range(runs):
        for name, (argv, env, cwd) in variants.items():
            t0 = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
            times[name].append((time.perf_counter() - t0) * 1000)
            assert done.returncode == 0, (name, done.stderr.decode()[-500:])
            outputs[name] = done.stdout
    return {"medians_ms": {n: median(t) for n, t in times.items()}, "runs_ms": times, "outputs": outputs}


def positions_list(runs: int, baseline: Path | None = None) -> dict[str, Any]:
    """`positions list` (the table, --json) as whole processes against `python -c pass`, interleaved; with
    `baseline` (another checkout, e.g. main) its two commands too, and their output compared byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.db"
        engine, _ = bi.setup(f"sqlite:///{path}", 700, 10_000)
        bi.fresh_market(engine, datetime.now(UTC))
        engine.dispose()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TIERDRIFT_CONFIG": str(Path(tmp) / "absent.toml"),
               "TIERDRIFT_DATABASE_URL": f"sqlite:///{path}", "COLUMNS": "200"}  # fmt: skip
        # `python -m` puts the working directory first on sys.path: each checkout runs from its own root.
        roots = {"": ROOT, **({"baseline_": baseline} if baseline else {})}
        variants: dict[str, tuple[list[str], dict[str, str], Path]] = {
            "process_floor": ([sys.executable, "-c", "pass"], env, ROOT)
        }
        for prefix, root in roots.items():
            run_env = {**env, "PYTHONPATH": str(root)}
            cli = [sys.executable, "-m", "monitor", "positions", "list"]
            variants[f"{prefix}list_human"] = (cli, run_env, root)
            variants[f"{prefix}list_json"] = ([*cli, "--json"], run_env, root)
        done = interleaved(variants, runs)
        out: dict[str, Any] = {"positions": 10_000, **{f"{n}_ms": t for n, t in done["medians_ms"].items()}}
        out["runs_ms"] = done["runs_ms"]
        if baseline:
            out["baseline_root"] = str(baseline)
            outputs = done["outputs"]
            out["same_output"] = all(outputs[k] == outputs[f"baseline_{k}"] for k in ("list_human", "list_json"))
        out["list_human_all_ms"] = timed_process(
            [sys.executable, "-m", "monitor", "positions", "list", "--all"], env, max(1, runs // 2)
        )
        return out


# -- import ------------------------------------------------------------------------------------------


def import_real(runs: int) -> dict[str, Any]:
    from monitor.service.importer import import_files, plan
    from monitor.store.database import open_engine

    files = sorted(DATA.glob("*.json.gz"))
    if not files:
        return {"skipped": f"no real data in {DATA}"}
    floors, ours = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        for f in files:
            json.loads(gzip.decompress(f.read_bytes()))
        floors.append((time.perf_counter() - t0) * 1000)
        with tempfile.TemporaryDirectory() as tmp:
            engine = open_engine(f"sqlite:///{Path(tmp) / 'i.db'}")
            t0 = time.perf_counter()
            import_files(engine, "binance-usdm", plan(files))
            ours.append((time.perf_counter() - t0) * 1000)
            engine.dispose()
    return {"files": len(files), "floor_gunzip_decode_median_ms": median(floors), "import_median_ms": median(ours),
            "ratio": round(statistics.median(ours) / statistics.median(floors), 2)}  # fmt: skip


# -- the unchanged poll ------------------------------------------------------------------------------


def signed_body() -> tuple[bytes, int]:
    """The newest real version as the signed `/fapi/v1/leverageBracket` answer: its raw HTTP body."""
    newest = sorted(DATA.glob("*.json.gz"))[-1]
    archive = json.loads(gzip.decompress(newest.read_bytes()))
    entries = []
    for symbol, tiers in archive.items():
        ident = symbol.split(":")[0].replace("/", "") + ("_" + symbol.split("-")[1] if "-" in symbol else "")
        entries.append({"symbol": ident, "brackets": [t["info"] for t in tiers]})
    return json.dumps(entries).encode(), len(entries)


def unchanged_poll(runs: int) -> dict[str, Any]:
    from monitor.store.database import open_engine
    from snapshots.catalog import table_version as tv
    from snapshots.model import Snapshot
    from snapshots.parse import ParseCache, parse_binance_brackets

    if not DATA.is_dir():
        return {"skipped": f"no real data in {DATA}"}
    body, n = signed_body()
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'u.db'}")
        cache = ParseCache()
        at = datetime(2026, 5, 1, tzinfo=UTC)
        with Session(engine) as s:
            tables = parse_binance_brackets("binance-usdm", json.loads(body), cache=cache)
            apply_snapshot(s, Snapshot("binance-usdm", at, "bench", tables), started_at=at, duration_ms=0)
            s.commit()
        floors, ours = [], []
        from sqlalchemy import select

        stmt = select(tv.c.symbol, tv.c.content_hash).where(tv.c.source == "binance-usdm", tv.c.valid_to.is_(None))
        for run in range(max(runs, 5) * 4):
            at += timedelta(minutes=5)
            t0 = time.perf_counter()
            decoded = json.loads(body)
            digests = [hashlib.blake2b(marshal.dumps(e, 2), digest_size=16).digest() for e in decoded]
            with engine.connect() as conn:
                stored = dict(conn.execute(stmt).all())
            floors.append((time.perf_counter() - t0) * 1000)
            assert len(digests) == n and len(stored) == n
            t0 = time.perf_counter()
            tables = parse_binance_brackets("binance-usdm", json.loads(body), cache=cache)
            with Session(engine) as s:
                result = apply_snapshot(s, Snapshot("binance-usdm", at, "bench", tables), started_at=at, duration_ms=0)
                s.commit()
            ours.append((time.perf_counter() - t0) * 1000)
            assert result.outcome == "ok" and not result.updates, result
            del run
        engine.dispose()
    return {"symbols": n, "floor_decode_hash_select_median_ms": median(floors), "poll_median_ms": median(ours),
            "ratio": round(statistics.median(ours) / statistics.median(floors), 2), "polls": len(ours)}  # fmt: skip


# -- Bybit client reuse ------------------------------------------------------------------------------


def bybit(runs: int) -> dict[str, Any]:
    from monitor.config.settings import Settings
    from monitor.exchanges import fetch_snapshot
    from monitor.exchanges.clients import Clients
    from monitor.fake_exchange import INSTRUMENTS, RISK_LIMIT, FakeExchange, generate_tables

    polls = max(runs, 5) * 2
    out: dict[str, Any] = {"symbols": 500, "polls": polls}
    with FakeExchange(tables={"bybit-linear": generate_tables("bybit-linear", 500, seed=4)}) as fake:
        settings = Settings(endpoints=fake.endpoints(), http_timeout=5.0)
        clients = Clients(now=lambda: datetime.now(UTC))
        for name, fetch in (
            ("new_client_each_poll", lambda: fetch_snapshot("bybit-linear", settings, now=lambda: datetime.now(UTC))),
            ("kept_client", lambda: clients("bybit-linear", settings)),
        ):
            fake.clear_requests()
            times = []
            for _ in range(polls):
                t0 = time.perf_counter()
                snap = fetch()
                times.append((time.perf_counter() - t0) * 1000)
                assert len(snap.tables) == 500
            out[name] = {
                "poll_median_ms": median(times),
                "first_poll_ms": round(times[0], 1),
                "market_requests_per_poll": round(len(fake.requests_to(INSTRUMENTS)) / polls, 2),
                "risk_limit_pages_per_poll": round(len(fake.requests_to(RISK_LIMIT)) / polls, 2),
            }
        clients.close()
    return out


# -- daemon RSS --------------------------------------------------------------------------------------


def rss_of(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def slope(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (seconds, MB) in MB/hour, and the half-width of its 95% interval."""
    xs, ys = [x for x, _ in samples], [y for _, y in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in samples) / sxx
    resid = [y - (my + b * (x - mx)) for x, y in samples]
    se = math.sqrt(sum(r * r for r in resid) / (len(samples) - 2) / sxx)
    return b * 3600, 2.1 * se * 3600  # t(0.975, ~20 dof) ≈ 2.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> int:
    """Bytes of a dashboard page (the daemon serves it, as `tierdrift run` does by default)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return len(resp.read())


def daemon(soak_seconds: float, warmup: float, root: Path = ROOT, change_every: float = 0.0) -> dict[str, Any]:
    """`tierdrift run` with its defaults (4 sources, the dashboard on) against the fake: RSS after warm-up.

    The dashboard's pages (and plotly.js) are fetched once during warm-up and its front page at every
    sample, so the web server's share is resident as it is for a user who opens it. With `change_every`
    (seconds), the tables of 5 symbols of a Binance and a Bybit source change that often, from the start,
    so that the change path (the diff, versions, change records, digest alerts) is resident too."""
    from monitor.fake_exchange import FakeExchange, generate_tables
    from snapshots.model import SOURCES

    tables = {source: generate_tables(source, 300, seed=6) for source in SOURCES}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, FakeExchange(tables=tables) as fake:
        env = {**os.environ, "PYTHONPATH": str(root), "TIERDRIFT_CONFIG": str(Path(tmp) / "absent.toml"),
               "TIERDRIFT_DATABASE_URL": f"sqlite:///{Path(tmp) / 'd.db'}", "TIERDRIFT_POLL_INTERVAL_SECONDS": "5",
               "TIERDRIFT_POLL_JITTER_SECONDS": "0", "TIERDRIFT_MARKET_INTERVAL_SECONDS": "10",
               "TIERDRIFT_WEB_PORT": str(port), "TIERDRIFT_HTTP_TIMEOUT": "5"}  # fmt: skip
        for name, url in fake.endpoints().items():
            env[f"TIERDRIFT_ENDPOINTS__{name.upper()}"] = url
        # cwd=root: `python -m` puts the current directory first on sys.path, before PYTHONPATH, so a run
        # started elsewhere would measure that directory's code (the baseline was this checkout's before).
        where = [sys.executable, "-c", "import monitor; print(monitor.__file__)"]
        code = subprocess.run(where, env=env, cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        # Its log goes to a file: a pipe nobody reads fills after 64 kB and then blocks every thread that logs
        # (the page requests included), which looked like a hang after 14 minutes of changing tables.
        log = Path(tmp) / "daemon.log"
        with log.open("wb") as err:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([sys.executable, "-m", "monitor", "run"], env=env, cwd=root,
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        stop, made = threading.Event(), [0]
        changer = threading.Thread(target=change_tables, args=(fake, tables, change_every, stop, made), daemon=True)
        if change_every:
            changer.start()
        try:
            time.sleep(warmup / 2)
            assert proc.poll() is None, log.read_text(errors="replace")[-800:]
            page = get(base + "/")
            for path in (
                "/changes",
                "/symbols?source=binance-usdm&symbol=BTCUSDT",
                "/alerts",
                "/api/v1/sources",
                "/api/v1/polls",
            ):
                try:
                    get(base + path)
                except urllib.error.HTTPError as exc:
                    raise RuntimeError(f"{path}: {exc}") from exc
            plotly = re.search(r'src="(/static/plotly-[^"]+)"', urllib.request.urlopen(base + "/").read().decode())
            if plotly:
                get(base + plotly.group(1))
            time.sleep(warmup / 2)
            samples, t0 = [], time.monotonic()
            while time.monotonic() - t0 < soak_seconds:
                get(base + "/")
                samples.append((time.monotonic() - t0, rss_of(proc.pid)))
                time.sleep(max(soak_seconds / 40, 1.0))
            polls = len([r for r in fake.requests if "risk-limit" in r.path or "brackets" in r.path])
        finally:
            stop.set()
            proc.terminate()
            proc.wait(30)
    per_hour, half = slope(samples)
    mbs = [mb for _, mb in samples]
    return {"sources": len(SOURCES), "symbols_per_source": 300, "warmup_s": warmup, "samples": len(samples),
            "rss_median_mb": round(statistics.median(mbs), 1), "rss_max_mb": round(max(mbs), 1),
            "slope_mb_per_hour": round(per_hour, 2), "slope_95pct_half_width": round(half, 2),
            "tier_requests_served": polls, "web_front_page_bytes": page, "change_every_s": change_every,
            "changes_made": made[0], "code": code}  # fmt: skip


def change_tables(fake: Any, tables: dict[str, Any], every: float, stop: threading.Event, made: list[int]) -> None:
    """Every `every` seconds until `stop`, 5 symbols of binance-usdm and bybit-linear get new tables (the
    next seed's); `made[0]` counts the changes."""
    from monitor.fake_exchange import generate_tables

    while not stop.wait(every):
        made[0] += 1
        for source in ("binance-usdm", "bybit-linear"):
            fake.set_tables(source, {**tables[source], **generate_tables(source, 5, seed=100 + made[0])})


SECTIONS = ("impacts", "positions", "import", "unchanged", "bybit", "daemon")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--soak-seconds", type=float, default=240.0)
    parser.add_argument("--warmup-seconds", type=float, default=40.0)
    parser.add_argument(
        "--baseline-root", type=Path, help="daemon, positions: also measure the checkout at this path (e.g. main)"
    )
    parser.add_argument("--change-every", type=float, default=0.0, help="daemon: change 5 symbols' tables this often")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    random.seed(1)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only:
        t0 = time.perf_counter()
        if name == "impacts":
            results[name] = impacts(args.runs)
        elif name == "positions":
            results[name] = positions_list(args.runs, args.baseline_root)
        elif name == "import":
            results[name] = import_real(max(1, args.runs // 2))
        elif name == "unchanged":
            results[name] = unchanged_poll(args.runs)
        elif name == "bybit":
            results[name] = bybit(args.runs)
        else:
            results[name] = daemon(args.soak_seconds, args.warmup_seconds, change_every=args.change_every)
            if args.baseline_root:
                results["daemon_baseline"] = {
                    "root": str(args.baseline_root),
                    **daemon(args.soak_seconds, args.warmup_seconds, args.baseline_root, args.change_every),
                }
        print(name, json.dumps(results[name]), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
