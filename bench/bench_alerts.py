"""Benchmark: delivering 1,000 pending webhook alerts to a local receiver (target ≤ 10 s), and the cost
of a receiver that is down (target: at most one failed attempt per alert per back-off step).

1. 1,000 alerts are enqueued for one signed webhook channel; a real HTTP receiver on 127.0.0.1 verifies
   every signature. Timed: the delivery loop until all are sent (send, then mark each in its own
   transaction). Baseline in the same run: the same 1,000 signed POSTs sent straight with httpx, no
   outbox, which bounds what the outbox costs.
2. The receiver is down (a closed port). The delivery job runs every 5 s for 6 simulated hours (a fake
   clock; 4,320 runs). Counted: send attempts, against the 1,000 × steps a naive retry-each-alert loop
   would make.

Usage: python bench/bench_alerts.py [--alerts N]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlmodel import Session

from alerts.channels.webhook import WebhookChannel
from alerts.config import Filters, WebhookConfig
from alerts.deliver import DeliveryPolicy, deliver_due
from alerts.events import sample_alert
from alerts.outbox import Route, enqueue
from alerts.render import render_json
from alerts.signing import sign, verify
from monitor.store.database import open_engine

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_YmVuY2gtc2VjcmV0LWtleS0wMTIzNDU2Nzg5"


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.bad = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(SECRET, dict(self.headers.items()), body, now=time.time())
                with lock:
                    owner.count += 1
                    owner.bad += not ok
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enqueue_many(engine: Any, n: int, now: datetime) -> None:
    with Session(engine) as s:
        enqueue(s, [sample_alert(now) for _ in range(n)], [Route("hook", Filters())], now)
        s.commit()


def bench_delivery(n: int, work: Path) -> dict[str, Any]:
    receiver = Receiver()
    engine = open_engine(f"sqlite:///{work / 'deliver.db'}")
    enqueue_many(engine, n, datetime.now(UTC))
    channel = WebhookChannel(WebhookConfig(name="hook", url=SecretStr(receiver.url), secret=SecretStr(SECRET)))
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        report = deliver_due(engine, {"hook": channel}, clock=lambda: datetime.now(UTC))
        sent += report.sent
        assert report.failed == 0 and report.retried == 0, report.errors
    ours = time.perf_counter() - t0
    channel.close()
    assert receiver.count == n and receiver.bad == 0

    alerts = [sample_alert(datetime.now(UTC)) for _ in range(n)]
    t0 = time.perf_counter()
    with httpx.Client() as client:
        for alert in alerts:
            body = json.dumps(render_json(alert)).encode()
            stamp = int(time.time())
            headers = {
                "webhook-id": alert.id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(SECRET, alert.id, stamp, body),
                "content-type": "application/json",
            }
            client.post(receiver.url, content=body, headers=headers).raise_for_status()
    raw = time.perf_counter() - t0
    receiver.server.shutdown()
    engine.dispose()
    return {"alerts": n, "ours_s": round(ours, 2), "raw_httpx_s": round(raw, 2), "ours_over_raw": round(ours / raw, 2)}


def bench_down_receiver(n: int, work: Path) -> dict[str, Any]:
    engine = open_engine(f"sqlite:///{work / 'down.db'}")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    enqueue_many(engine, n, start)
    url = f"http://127.0.0.1:{closed_port()}/hook"
    channel = WebhookChannel(WebhookConfig(name="hook", url=SecretStr(url), timeout=1))
    attempts = 0
    original = channel.send

    def counting(alert: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return original(alert)

    channel.send = counting  # type: ignore[method-assign]
    clock = [start]
    policy = DeliveryPolicy()  # the defaults: 10 s doubling to 1 h, ±20% jitter
    runs = 0
    t0 = time.perf_counter()
    while clock[0] < start + timedelta(hours=6):
        deliver_due(engine, {"hook": channel}, clock=lambda: clock[0], policy=policy)
        clock[0] += timedelta(seconds=5)
        runs += 1
    wall = time.perf_counter() - t0
    channel.close()
    engine.dispose()
    steps = _steps(policy, 6 * 3600)
    return {
        "alerts": n,
        "simulated_hours": 6,
        "delivery_runs": runs,
        "send_attempts": attempts,
        "backoff_steps_in_window": steps,
        "naive_attempts_one_per_alert_per_step": n * steps,
        "wall_s": round(wall, 1),
    }


def _steps(policy: DeliveryPolicy, seconds: float) -> int:
    elapsed, n = 0.0, 0
    while elapsed < seconds:
        n += 1
        elapsed += min(policy.max_delay, policy.base_delay * 2.0 ** (n - 1))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "alerts.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "delivery": bench_delivery(args.alerts, Path(tmp)),
            "down_receiver": bench_down_receiver(args.alerts, Path(tmp)),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
