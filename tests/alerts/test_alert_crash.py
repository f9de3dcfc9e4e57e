"""A delivery process killed between sending an alert and marking it sent loses nothing and doubles
nothing except as a resend with the same id (the receiver de-duplicates on `webhook-id`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from alerts.config import Filters
from alerts.db import Delivery
from alerts.events import sample_alert
from alerts.outbox import Route, enqueue
from alerts.signing import verify
from monitor.store.database import open_engine

SECRET = "whsec_Y3Jhc2gtdGVzdC1zZWNyZXQta2V5LTAxMjM0NQ=="


class Receiver:
    """Records every delivery; while `kill_pid` is set, SIGKILLs that process on receipt, before answering."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes, bool]] = []
        self.kill_pid: int | None = None
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(SECRET, dict(self.headers.items()), body, now=time.time())
                with owner.lock:
                    owner.received.append((self.headers["webhook-id"], body, ok))
                    pid, owner.kill_pid = owner.kill_pid, None
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)  # the sender dies after sending, before it can mark
                    time.sleep(0.2)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def deliver(db_url: str, receiver: Receiver, tmp_path: Path, *, kill: bool) -> int:
    env = {
        **os.environ,
        "TIERDRIFT_CONFIG": str(tmp_path / "absent.toml"),
        "TIERDRIFT_WEBHOOK_URL": receiver.url,
        "TIERDRIFT_WEBHOOK_SECRET": SECRET,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", db_url, "alerts", "deliver"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill:
        receiver.kill_pid = proc.pid
    return proc.wait(timeout=60)


def test_killed_between_send_and_mark_resends_with_the_same_id(db_url: str, receiver: Receiver, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    alerts = [sample_alert(datetime.now(UTC)) for _ in range(3)]
    with Session(engine) as s:
        enqueue(s, alerts, [Route("webhook", Filters())], datetime.now(UTC))
        s.commit()
    code = deliver(db_url, receiver, tmp_path, kill=True)
    assert code == -signal.SIGKILL
    assert len(receiver.received) == 1  # the first alert went out, then the process died
    with Session(engine) as s:
        assert [d.status for d in s.exec(select(Delivery))] == ["pending"] * 3  # nothing was marked
    assert deliver(db_url, receiver, tmp_path, kill=False) == 0
    with Session(engine) as s:
        assert [d.status for d in s.exec(select(Delivery))] == ["sent"] * 3
    engine.dispose()
    ids = [i for i, _, _ in receiver.received]
    assert sorted(set(ids)) == sorted(a.id for a in alerts)  # nothing lost
    assert len(ids) == 4 and ids.count(ids[0]) == 2  # one resend, with the same id
    bodies: dict[str, set[bytes]] = {}
    for i, body, ok in receiver.received:
        assert ok  # every attempt is signed
        bodies.setdefault(i, set()).add(body)
    assert all(len(b) == 1 for b in bodies.values())  # a resend is byte-for-byte the same message
    assert json.loads(next(iter(bodies[ids[0]])))["id"] == ids[0]
