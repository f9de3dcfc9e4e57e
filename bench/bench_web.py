"""Benchmark: the dashboard and API on the 134 real Binance USDⓈ-M versions.

Set-up (not timed): a SQLite store holding every recorded version (`../shared/data`, through the real
importer; positions logged before the last 30 versions, so those record impacts), market data and an
outbox of 300 deliveries. The app is served as `tierdrift run` serves it: uvicorn in a thread of this
process, on 127.0.0.1.

1. Pages: the median *server* time (an ASGI timer around the app: first byte in to last byte out) of
   `/`, `/changes`, `/symbols/binance-usdm/BTC%2FUSDT%3AUSDT`, `/positions/1` and `/alerts`, over
   `--runs` sequential requests each after two warm-ups. Target ≤ 150 ms each.
2. API throughput: a load generator in another process (httpx, keep-alive, `--clients` threads, bounded
   by `--requests` and `--seconds`) asks `tiers` (BTC) or `changes` (first page) as fast as it can;
   requests/s and latency percentiles. Target ≥ 300 requests/s. Floor in the same run: `/healthz`, which
   touches no database, measures what the server and the generator cost by themselves.
3. A poll (700 generated binance-coinm tables from the fake exchange, one table changed each time, as
   `Daemon.poll` runs it) in this process, alone and while the generator holds the API at 300 requests/s
   (half tiers, half changes), interleaved `--polls` times. Target: loaded median ≤ 1.5 × alone median.

Every measurement is repeated `--repeat` times (3) in one process; the report is their median, every run
is kept in the JSON (`bench/results/web.json`).

Usage: python bench/bench_web.py [--runs N] [--requests N] [--seconds S] [--clients N] [--polls N]
       [--repeat N] [--db PATH] [--out FILE]   (--db keeps the built database there and reuses it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT.parent / "shared" / "data" / "binance-usdm-tiers-history"
PAGES = ["/", "/changes", "/symbols/binance-usdm/BTC%2FUSDT%3AUSDT", "/positions/1", "/alerts"]
API = {
    "tiers": "/api/v1/tiers?source=binance-usdm&symbol=BTC%2FUSDT%3AUSDT",
    "changes": "/api/v1/changes",
    "healthz (floor)": "/healthz",
}
POLL_SOURCE = "binance-coinm"


def build(db: Path) -> None:
    """The database of the set-up (see the module docstring)."""
    from sqlalchemy import text
    from sqlmodel import Session

    from alerts.config import Filters
    from alerts.events import sample_alert
    from alerts.outbox import Route, enqueue
    from monitor.risk.impacts import ImpactContext, make_hook
    from monitor.risk.positions import PositionInput, validate
    from monitor.service.importer import import_files, plan
    from monitor.store.database import open_engine
    from monitor.store.models import MarketData
    from snapshots.timefmt import utcnow

    url = f"sqlite:///{db}"
    engine = open_engine(url)
    items = plan(sorted(HISTORY.glob("*.json.gz")))
    split = len(items) - 30
    t0 = time.perf_counter()
    import_files(engine, "binance-usdm", items[:split])
    now = utcnow()
    with Session(engine) as session:
        opened = items[split].at - timedelta(hours=1)
        for symbol, side, entry, notional, margin in [
            ("BTC/USDT:USDT", "long", 60_000.0, 250_000.0, 12_000.0),
            ("ETH/USDT:USDT", "short", 3_000.0, 80_000.0, 6_000.0),
            ("SOL/USDT:USDT", "long", 150.0, 30_000.0, 3_000.0),
            ("DOGE/USDT:USDT", "long", 0.2, 20_000.0, 2_000.0),
        ]:
            item = PositionInput(
                "binance-usdm", symbol, side, entry, notional=notional, margin=margin, opened_at=opened
            )
            session.add(validate(session.connection(), item, now=now))
        for symbol, mark in (("BTC/USDT:USDT", 64_000.0), ("ETH/USDT:USDT", 3_100.0)):
            row = MarketData(source="binance-usdm", symbol=symbol, mark_price=mark, mark_at=now)
            row.adr, row.adr_days, row.adr_at = mark * 0.04, 14, now
            session.add(row)
        session.commit()
    import_files(engine, "binance-usdm", items[split:], hooks=[make_hook(ImpactContext(3.0))])
    with Session(engine) as session:
        routes = [Route("ops", Filters()), Route("mail", Filters()), Route("chat", Filters())]
        for i in range(100):
            enqueue(session, [sample_alert(now - timedelta(minutes=i))], routes, now)
        session.commit()
        session.execute(text("UPDATE delivery SET status='sent', attempts=1, sent_at=:t WHERE id % 3 = 0"), {"t": now})
        session.execute(text("UPDATE delivery SET status='failed', attempts=5, last_error='HTTP 500' WHERE id % 7 = 0"))
        session.commit()
    engine.dispose()
    print(f"built {db} from {len(items)} versions in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


class Timed:
    """ASGI wrapper recording each request's server time, from the call to the end of the response body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: dict[str, list[float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        await self.app(scope, receive, send)
        path = scope["path"] + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
        self.times.setdefault(path, []).append((time.perf_counter() - t0) * 1000)


def serve(db: Path) -> tuple[Timed, Any, str]:
    from monitor.config.settings import Settings
    from monitor.service.httpserver import Served
    from monitor.web.app import create_app
    from monitor.web.serve import bind

    settings = Settings(database_url=f"sqlite:///{db}", sources=[POLL_SOURCE])
    served = bind(settings, port=0)
    assert isinstance(served, Served)
    timed = Timed(create_app(settings))
    served.start(timed)
    return timed, served, served.url


def pages(base: str, timed: Timed, runs: int) -> dict[str, float]:
    import httpx

    out = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for page in PAGES:
            for _ in range(runs + 2):
                r = client.get(page)
                assert r.status_code == 200, (page, r.status_code, r.text[:200])
            key = page.replace("%2F", "/").replace("%3A", ":")
            samples = timed.times.get(page) or timed.times[key]
            out[page] = round(statistics.median(samples[2:]), 1)
    return out


def load(base: str, path: str, *, requests: int, seconds: float, clients: int, rate: float | None = None) -> Any:
    """Run the load generator in another process (its threads must not share this process's GIL)."""
    args = [
        sys.executable,
        __file__,
        "--generate",
        base + path,
        str(requests),
        str(seconds),
        str(clients),
        str(rate or 0),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout)


def generate(url: str, requests: int, seconds: float, clients: int, rate: float) -> None:
    """The load generator's process: `clients` threads with a keep-alive connection each (the standard
    library's http.client: the cheapest Python client, so the server gets most of the CPU), until
    `requests` answers or `seconds`; paced to `rate` requests/s overall when given. URLs split on `|`
    alternate (they share one host)."""
    import http.client
    from urllib.parse import urlsplit

    parts = [urlsplit(u) for u in url.split("|")]
    host, port = parts[0].hostname or "127.0.0.1", parts[0].port or 80
    paths = [p.path + (f"?{p.query}" if p.query else "") for p in parts]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    per_client = requests // clients
    interval = clients / rate if rate else 0.0

    def client_loop(n: int) -> None:
        mine: list[float] = []
        bad = 0
        conn = http.client.HTTPConnection(host, port, timeout=30)
        start = time.perf_counter() + n * interval / clients  # paced threads spread over the interval
        for i in range(per_client):
            if interval:
                wait = start + i * interval - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            conn.request("GET", paths[(i + n) % len(paths)])
            response = response_of(conn)
            mine.append((time.perf_counter() - t0) * 1000)
            bad += response != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    def response_of(conn: http.client.HTTPConnection) -> int:
        r = conn.getresponse()
        r.read()
        return r.status

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": errors[0],
                "seconds": round(elapsed, 2),
                "per_second": round(len(latencies) / elapsed, 1),
                "p50_ms": round(latencies[len(latencies) // 2], 1),
                "p99_ms": round(latencies[int(len(latencies) * 0.99)], 1),
            }
        )
    )


def poll_runner(db: Path) -> tuple[Callable[[], float], Callable[[], None]]:
    """A function running one poll of `POLL_SOURCE` from the fake exchange (one table changed each time),
    returning its duration in ms; and one to tear it down."""
    from monitor.config.settings import Endpoints, Settings
    from monitor.exchanges import fetch_snapshot
    from monitor.fake_exchange.scenarios import generate_tables
    from monitor.fake_exchange.server import FakeExchange
    from monitor.service.daemon import Daemon
    from monitor.service.lock import writer_lock
    from monitor.store.database import open_engine
    from snapshots.timefmt import utcnow

    tables = generate_tables(POLL_SOURCE, 700, seed=2)
    fake = FakeExchange(tables={POLL_SOURCE: tables}).start()
    url = f"sqlite:///{db}"
    settings = Settings(database_url=url, sources=[POLL_SOURCE], endpoints=Endpoints(**fake.endpoints()))
    engine = open_engine(url)
    daemon = Daemon(settings, engine, lambda s, st: fetch_snapshot(s, st, now=utcnow), writer_lock(engine), utcnow)
    assert daemon.lock.acquire()
    assert daemon.poll(POLL_SOURCE).outcome == "ok"  # the baseline
    ids = sorted(tables)
    count = [0]

    def one() -> float:
        count[0] += 1
        ident = ids[count[0] % len(ids)]
        t = fake.tables(POLL_SOURCE)[ident]
        top = t.tiers[-1]
        fake.set_table(POLL_SOURCE, ident, replace(t, tiers=(*t.tiers[:-1], replace(top, cap=top.cap * 1.01))))
        t0 = time.perf_counter()
        result = daemon.poll(POLL_SOURCE)
        assert result.outcome == "ok" and result.changes, result.error
        return (time.perf_counter() - t0) * 1000

    def close() -> None:
        daemon.lock.release()
        engine.dispose()
        fake.stop()

    return one, close


def poll_phase(base: str, one: Callable[[], float], polls: int, clients: int) -> dict[str, Any]:
    """Polls alone and under 300 requests/s, interleaved, so that other work on the machine weighs on both."""
    mixed = base + API["tiers"] + "|" + base + API["changes"]
    alone, loaded, loads = [], [], []
    for _ in range(polls):
        alone.append(one())
        span = 1.5 + 3 * alone[-1] / 1000  # the load is steady for a second before the poll, and outlasts it
        holder: dict[str, Any] = {}
        generator = threading.Thread(
            target=lambda span=span, holder=holder: holder.update(
                load("", mixed, requests=int(300 * span), seconds=span, clients=clients, rate=300)
            )
        )
        generator.start()
        time.sleep(1.0)
        loaded.append(one())
        generator.join()
        loads.append(holder)
    return {
        "alone_median_ms": round(statistics.median(alone), 1),
        "under_300_rps_median_ms": round(statistics.median(loaded), 1),
        "ratio": round(statistics.median(loaded) / statistics.median(alone), 2),
        "load_per_second": statistics.median(x["per_second"] for x in loads),
        "load_p99_ms": statistics.median(x["p99_ms"] for x in loads),
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key median of several runs' results (nested dicts of numbers)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median_of([r[k] for r in runs]) for k in first}
    return round(statistics.median(runs), 2)  # type: ignore[arg-type,return-value]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        url, requests, seconds, clients, rate = sys.argv[2:7]
        generate(url, int(requests), float(seconds), int(clients), float(rate))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--polls", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="Whole measurements; the report is their median.")
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web.json")
    args = parser.parse_args()
    if not HISTORY.is_dir():
        sys.exit(f"needs the recorded Binance versions in {HISTORY} (see ../shared/data/README.md)")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "web.db"
        if not db.exists():
            build(db)
        timed, served, base = serve(db)
        one, close = poll_runner(db)
        one()  # warm: ccxt's markets, the first page of the SQLite cache
        for _ in range(args.repeat):
            timed.times.clear()
            run: dict[str, Any] = {"pages_median_server_ms": pages(base, timed, args.runs)}
            run["api"] = {
                name: load(base, path, requests=args.requests, seconds=args.seconds, clients=args.clients)
                for name, path in API.items()
            }
            run["poll"] = poll_phase(base, one, args.polls, args.clients)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)
        close()
        served.stop()
    results = {**median_of(runs), "repeat": args.repeat, "clients": args.clients, "runs": runs}
    # The poll's figures come whole from the run of the median ratio (medians taken key by key would pair
    # one run's alone time with another's loaded time).
    results["poll"] = sorted((r["poll"] for r in runs), key=lambda p: p["ratio"])[len(runs) // 2]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
