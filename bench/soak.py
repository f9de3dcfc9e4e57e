"""Soak: 1,000 poll cycles of a 700-symbol table against the loopback fake exchange, with flat memory.

Each cycle is what the daemon's jobs do: poll binance-usdm (keyless web endpoint, 700 symbols), and
deliver the outbox to a webhook receiver. Every 25th cycle the exchange changes one table, so writes,
impacts and alerts happen too. Resident memory (VmRSS) is sampled every 50 cycles; the targets are growth
≤ 5% from the end of warm-up (cycle 100) to the end, and a steady state ≤ 250 MB. The fake exchange and
the receiver run in this same process, so the figures are conservative.

Usage: python bench/soak.py [--cycles N] [--symbols N]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlmodel import Session

from alerts.config import WebhookConfig
from monitor.config.settings import Endpoints, Settings
from monitor.exchanges import fetch_snapshot
from monitor.fake_exchange import FakeExchange, generate_tables
from monitor.risk.positions import PositionInput, validate
from monitor.service.daemon import Daemon
from monitor.service.lock import writer_lock
from monitor.store.database import open_engine
from snapshots.timefmt import utcnow

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "binance-usdm"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def receiver() -> tuple[ThreadingHTTPServer, list[int]]:
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            count[0] += 1
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=700)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    rng = random.Random(9)
    tables = generate_tables(SOURCE, args.symbols, seed=2)
    server, delivered = receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as tmp, FakeExchange(tables={SOURCE: tables}) as fake:
        db_url = f"sqlite:///{Path(tmp) / 'soak.db'}"
        settings = Settings(
            database_url=db_url,
            sources=[SOURCE],
            endpoints=Endpoints(**fake.endpoints()),
            channels=[WebhookConfig(name="hook", url=SecretStr(url))],
        )
        engine = open_engine(db_url)
        daemon = Daemon(settings, engine, lambda s, st: fetch_snapshot(s, st, now=utcnow), writer_lock(engine), utcnow)
        daemon.lock.acquire()
        ids = sorted(tables)
        daemon.poll(SOURCE)
        with Session(engine) as s:
            for ident in ids[:20]:  # open positions, so that changes produce impacts and alerts
                item = PositionInput(SOURCE, ident, "long", 100.0, notional=1_000.0, margin=200.0)
                s.add(validate(s.connection(), item, now=utcnow()))
            s.commit()
        samples: list[tuple[int, float]] = []
        durations: list[float] = []
        changes = 0
        for cycle in range(1, args.cycles + 1):
            if cycle % 25 == 0:
                ident = rng.choice(ids[:20])
                t = fake.tables(SOURCE)[ident]
                top = t.tiers[-1]
                fake.set_table(SOURCE, ident, replace(t, tiers=(*t.tiers[:-1], replace(top, cap=top.cap * 1.01))))
            t0 = time.perf_counter()
            result = daemon.poll(SOURCE)
            daemon.deliver()
            durations.append((time.perf_counter() - t0) * 1000)
            assert result.outcome == "ok", result.error
            changes += len(result.changes)
            if cycle % 50 == 0:
                gc.collect()
                samples.append((cycle, round(rss_mb(), 1)))
        daemon.lock.release()
        engine.dispose()
    server.shutdown()
    warm = next((mb for c, mb in samples if c >= 100), samples[0][1])
    end = samples[-1][1]
    results = {
        "cycles": args.cycles,
        "symbols": args.symbols,
        "changes_detected": changes,
        "alerts_delivered": delivered[0],
        "cycle_median_ms": round(statistics.median(durations), 1),
        "rss_after_warmup_mb": warm,
        "rss_end_mb": end,
        "rss_max_mb": max(mb for _, mb in samples),
        "growth_after_warmup_pct": round((end - warm) / warm * 100, 2),
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
