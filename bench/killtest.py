"""Crash test: `tierdrift run` killed with SIGKILL at random points of polls and deliveries, many times.

Each round changes a few tables on the loopback fake exchange, starts the daemon as a real process, and
kills it -9 after a random 0.2–5 s (during start-up, a poll, an impact computation or a delivery).
Then one clean `tierdrift run --once` settles everything, and the store and the receiver are checked:

- no change lost: the stored tables equal what the exchange serves now, every version chain is
  contiguous, and every poll that stored versions also stored its change records and its digest alert;
- no false change: every stored version is a table the exchange really served for that symbol;
- no alert lost: every alert in the outbox was sent, and the receiver got every alert id;
- no alert doubled except as a same-id resend: the receiver got no id the outbox does not have, and
  every resend of an id carried the same body.

Usage: python bench/killtest.py [--rounds 50] [--db URL]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from alerts.db import AlertRecord, Delivery
from alerts.signing import verify
from monitor.config.settings import Endpoints, Settings
from monitor.exchanges import fetch_snapshot
from monitor.fake_exchange import FakeExchange, generate_tables
from monitor.store.database import open_engine
from monitor.store.models import Impact
from snapshots.db import ChangeRecord, Poll, TableVersion
from snapshots.history import tables_at
from snapshots.timefmt import utcnow

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_a2lsbC10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5YWI="
SOURCES = {"binance-usdm": 200, "bybit-linear": 45}


@dataclass
class Received:
    bodies: dict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    count: int = 0
    unsigned: int = 0


def start_receiver(box: Received) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify(SECRET, dict(self.headers.items()), body, now=time.time())
            with lock:
                box.count += 1
                box.unsigned += not ok
                box.bodies[self.headers["webhook-id"]].add(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def mutate(fake: FakeExchange, source: str, rng: random.Random, n: int) -> None:
    """Change `n` random tables the way exchanges do: a top cap or a max leverage moves."""
    tables = fake.tables(source)
    for ident in rng.sample(sorted(tables), n):
        t = tables[ident]
        top = t.tiers[-1]
        fake.set_table(
            source, ident, replace(t, tiers=(*t.tiers[:-1], replace(top, cap=top.cap * rng.uniform(1.01, 1.5))))
        )


def served_hashes(settings: Settings, into: dict[tuple[str, str], set[str]]) -> None:
    for source in SOURCES:
        snap = fetch_snapshot(source, settings, now=utcnow)
        for symbol, table in snap.tables.items():
            into[(source, symbol)].add(table.hash)


def run_daemon(env: dict[str, str], args: list[str], kill_after: float | None) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "monitor", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    if kill_after is None:
        return proc.wait(timeout=300)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


def check(db_url: str, settings: Settings, served: dict[tuple[str, str], set[str]], box: Received) -> dict[str, Any]:
    engine = open_engine(db_url)
    problems: list[str] = []
    with Session(engine) as s:
        conn = s.connection()
        for source in SOURCES:
            now_served = fetch_snapshot(source, settings, now=utcnow)
            stored = tables_at(conn, source, utcnow())
            if {k: v.hash for k, v in stored.items()} != {k: v.hash for k, v in now_served.tables.items()}:
                problems.append(f"{source}: stored tables differ from what the exchange serves")
        versions = list(
            s.exec(
                select(TableVersion).order_by(TableVersion.source, TableVersion.symbol, TableVersion.valid_from)
            ).scalars()
        )  # type: ignore[arg-type]
        chains: dict[tuple[str, str], list[TableVersion]] = defaultdict(list)
        for v in versions:
            chains[(v.source, v.symbol)].append(v)
            if v.content_hash not in served[(v.source, v.symbol)]:
                problems.append(f"false change: {v.source} {v.symbol} version {v.id} was never served")
        for key, chain in chains.items():
            for a, b in itertools.pairwise(chain):
                if a.valid_to != b.valid_from:
                    problems.append(f"broken chain for {key}")
        polls = list(s.exec(select(Poll)).scalars())  # type: ignore[arg-type]
        changed_polls = {p.id for p in polls if p.changes}
        digests = s.execute(
            select(func.count()).select_from(AlertRecord).where(AlertRecord.kind == "tier_changes")
        ).scalar_one()
        if digests != len(changed_polls):
            problems.append(f"{digests} digest alerts for {len(changed_polls)} polls with changes")
        for p in polls:
            if p.symbols_changed and p.changes == 0 and p.id != min(q.id for q in polls if q.source == p.source):  # type: ignore[type-var]
                problems.append(f"poll {p.id} stored versions without change records")
        records = s.execute(select(func.count()).select_from(ChangeRecord)).scalar_one()
        impacts = s.execute(select(func.count()).select_from(Impact)).scalar_one()
        impact_alerts = s.execute(
            select(func.count()).select_from(AlertRecord).where(AlertRecord.kind == "position_impact")
        ).scalar_one()
        if impact_alerts != impacts:
            problems.append(f"{impact_alerts} impact alerts for {impacts} impacts")
        alert_ids = {a for (a,) in s.execute(select(AlertRecord.id))}
        statuses = dict(s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())  # type: ignore[arg-type]
    engine.dispose()
    if statuses.get("pending") or statuses.get("failed"):
        problems.append(f"deliveries not all sent: {statuses}")
    if set(box.bodies) != alert_ids:
        problems.append(f"receiver ids differ from the outbox: {len(set(box.bodies) ^ alert_ids)} differences")
    if any(len(bodies) != 1 for bodies in box.bodies.values()):
        problems.append("an alert id arrived with different bodies")
    if box.unsigned:
        problems.append(f"{box.unsigned} deliveries failed signature verification")
    return {
        "versions": len(versions),
        "change_records": records,
        "polls": sum(p.repeats for p in polls),  # polls, not rows: unchanged ones are rolled up
        "polls_with_changes": len(changed_polls),
        "impacts": impacts,
        "alerts": len(alert_ids),
        "deliveries_received": box.count,
        "same_id_resends": box.count - len(box.bodies),
        "problems": problems,
    }


def run(rounds: int, db_url: str | None, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    box = Received()
    receiver = start_receiver(box)
    tables = {source: generate_tables(source, n, seed=seed) for source, n in SOURCES.items()}
    with tempfile.TemporaryDirectory() as tmp, FakeExchange(tables=tables) as fake:
        db_url = db_url or f"sqlite:///{Path(tmp) / 'kill.db'}"
        settings = Settings(database_url=db_url, sources=list(SOURCES), endpoints=Endpoints(**fake.endpoints()))
        env = {
            **os.environ,
            "TIERDRIFT_CONFIG": str(Path(tmp) / "absent.toml"),
            "TIERDRIFT_DATABASE_URL": db_url,
            "TIERDRIFT_SOURCES": json.dumps(list(SOURCES)),
            "TIERDRIFT_POLL_INTERVAL_SECONDS": "5",
            "TIERDRIFT_POLL_JITTER_SECONDS": "1",
            "TIERDRIFT_DELIVER_INTERVAL_SECONDS": "0.5",
            "TIERDRIFT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
            "TIERDRIFT_WEBHOOK_SECRET": SECRET,
            **{f"TIERDRIFT_ENDPOINTS__{k.upper()}": v for k, v in fake.endpoints().items()},
        }
        first = sorted(tables["binance-usdm"])[:5]
        for ident in first:
            fake.set_market("binance-usdm", ident, mark=100.0, daily_ranges=[4.0] * 20)
        run_daemon(env, ["run", "--once"], None)
        for ident in first:
            add = ["positions", "add", "-s", "binance-usdm", "--symbol", ident, "--side", "long", "--entry", "100",
                   "--notional", "1000", "--margin", "250"]  # fmt: skip
            subprocess.run([sys.executable, "-m", "monitor", *add], env=env, check=True, capture_output=True)
        served: dict[tuple[str, str], set[str]] = defaultdict(set)
        served_hashes(settings, served)
        kills = []
        t0 = time.monotonic()
        for _ in range(rounds):
            mutate(fake, "binance-usdm", rng, rng.randint(1, 4))
            if rng.random() < 0.5:
                mutate(fake, "bybit-linear", rng, rng.randint(1, 3))
            for ident in rng.sample(first, 2):  # positions' symbols change too: impacts and their alerts
                mutate(fake, "binance-usdm", rng, 0)
                t = fake.tables("binance-usdm")[ident]
                top = t.tiers[-1]
                fake.set_table(
                    "binance-usdm", ident, replace(t, tiers=(*t.tiers[:-1], replace(top, cap=top.cap + 1000)))
                )
            served_hashes(settings, served)
            after = rng.uniform(0.2, 5.0)
            kills.append(round(after, 2))
            run_daemon(env, ["run"], after)
        code = run_daemon(env, ["run", "--once"], None)
        result = check(db_url, settings, served, box)
        result.update({"rounds": rounds, "kill_after_s": kills, "settle_exit_code": code,
                       "wall_s": round(time.monotonic() - t0, 1)})  # fmt: skip
    receiver.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "killtest.json")
    args = parser.parse_args()
    result = run(args.rounds, args.db)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "kill_after_s"}, indent=2))
    if result["problems"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
