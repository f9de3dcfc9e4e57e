"""One bad receiver must not stall delivery, and an echoing SMTP server must not leak the credentials.

Real receivers on 127.0.0.1: a raw-socket HTTP server that drip-feeds its answer one byte every half
second, hangs after accept, or streams a 200 MB body; a healthy receiver beside it; aiosmtpd servers that
drip-feed their greeting or echo the AUTH exchange in their refusal. The bounds on elapsed time are
generous upper bounds on hangs, never speed measurements.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session as DbSession
from sqlmodel import select
from typer.testing import CliRunner

from alerts.channels.email import EmailChannel
from alerts.channels.webhook import WebhookChannel
from alerts.claims import ClaimGuard
from alerts.config import EmailConfig, Filters, WebhookConfig
from alerts.db import AlertRecord, ChannelState, Delivery
from alerts.deliver import Dispatcher, deliver_due
from alerts.events import sample_alert
from alerts.model import Alert
from alerts.outbox import Route, enqueue
from monitor.cli import app
from monitor.fake_exchange import FakeExchange, generate_tables
from monitor.service.lock import writer_lock
from tests.conftest import point_at_fake

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
DRIP = 0.5  # seconds between two bytes of a drip-fed answer


# --- a hostile HTTP receiver ----------------------------------------------------------------------------------


@dataclass
class Hostile:
    """A raw-socket HTTP server answering every request the way `mode` says:

    - "headers": the status line and headers one byte every DRIP seconds (never finishing);
    - "body": a 500 with its headers at once and its body one byte every DRIP seconds;
    - "hang": reads the request, then says nothing;
    - "huge": `status` with a 200 MB body, streamed as fast as the client reads it;
    - "ok": 204 at once.

    It records every request (id and body), when each connection was closed by the client, and the body
    bytes it managed to send. Every connection ends within `max_seconds`, whatever the client does."""

    mode: str
    status: int = 500
    max_seconds: float = 60.0
    tls: ssl.SSLContext | None = None
    requests: list[tuple[str, bytes, float]] = field(default_factory=list)
    closed_at: list[float] = field(default_factory=list)
    sent_body: list[int] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}/hooks/T0K3N"

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.max_seconds)
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                head, body = self._read_request(conn)
                ident = re.search(rb"(?im)^webhook-id: *(\S+)", head)
                self.requests.append((ident.group(1).decode() if ident else "", body, time.monotonic()))
                self.connected.set()
                getattr(self, f"_answer_{self.mode}")(conn)
            except OSError:
                pass
            self.closed_at.append(time.monotonic())

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += conn.recv(65536)
        return head, body

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        end = time.monotonic() + self.max_seconds
        for i in range(len(data)):
            if self._stop.is_set() or time.monotonic() > end:
                return
            conn.sendall(data[i : i + 1])
            time.sleep(DRIP)

    def _answer_headers(self, conn: socket.socket) -> None:
        self._drip(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n" + b"x-padding: " + b"a" * 10_000)

    def _answer_body(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100000\r\n\r\n")
        self._drip(conn, b"e" * 100_000)

    def _answer_hang(self, conn: socket.socket) -> None:
        conn.recv(1)  # returns when the client closes (or after max_seconds)

    def _answer_huge(self, conn: socket.socket) -> None:
        size, chunk = 200 * 2**20, b"boom " * 13_107  # 64 KiB, reused: the server holds no big buffer either
        conn.sendall(f"HTTP/1.1 {self.status} Whatever\r\ncontent-length: {size}\r\n\r\n".encode())
        sent = 0
        try:
            while sent < size and not self._stop.is_set():
                conn.sendall(chunk)
                sent += len(chunk)
        finally:
            self.sent_body.append(sent)

    def _answer_ok(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    servers: list[Hostile] = []

    def start(mode: str, **kw: Any) -> Hostile:
        servers.append(Hostile(mode, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def hook(url: str, name: str = "hook", **kw: Any) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(name=name, url=SecretStr(url), **kw))


def put(engine: Engine, routes: tuple[str, ...], n: int = 1) -> list[Alert]:
    alerts = [sample_alert(datetime.now(UTC)) for _ in range(n)]
    with DbSession(engine) as s:
        enqueue(s, alerts, [Route(r, Filters()) for r in routes], datetime.now(UTC))
        s.commit()
    return alerts


def deliveries(engine: Engine) -> dict[str, Delivery]:
    with DbSession(engine) as s:
        return {f"{d.channel}:{d.alert_id}": d for d in s.exec(select(Delivery))}


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# --- a total deadline per attempt ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["headers", "body", "hang"])
def test_a_drip_feeding_or_hung_receiver_is_cut_off_at_the_deadline(hostile: Callable[..., Hostile], mode: str) -> None:
    server = hostile(mode)
    channel = hook(server.url, timeout=5, deadline=2)  # each byte comes well within the 5 s read timeout
    started = time.monotonic()
    result = channel.send(sample_alert(datetime.now(UTC)))
    elapsed = time.monotonic() - started
    channel.close()
    port = server.url.split(":")[2].split("/")[0]
    assert not result.ok and result.retryable
    assert result.error == f"no complete answer within 2 s from http://127.0.0.1:{port}/…"
    assert elapsed < 10  # a generous bound: without the deadline it would be 60 s (the server's limit)
    wait_for(lambda: len(server.closed_at) == 1)  # and the connection really was dropped


def test_the_deadline_holds_over_tls_too(
    hostile: Callable[..., Hostile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # httpx trusts it (trust_env)
    server = hostile("body", tls=server_tls)
    channel = hook(server.url, timeout=5, deadline=2)
    started = time.monotonic()
    result = channel.send(sample_alert(datetime.now(UTC)))
    channel.close()
    assert result.error is not None and result.error.startswith("no complete answer within 2 s from https://")
    assert time.monotonic() - started < 10
    assert server.requests  # TLS was set up and the request went through before the drip-feed


def test_the_default_deadline_is_three_timeouts() -> None:
    assert WebhookConfig(url=SecretStr("https://h.example/x")).attempt_deadline == 30
    assert WebhookConfig(url=SecretStr("https://h.example/x"), timeout=2).attempt_deadline == 6
    email = EmailConfig(smtp_url=SecretStr("smtp://h.example"), to=["a@b.example"])
    assert email.attempt_deadline == 60 and hook("https://h.example/x", deadline=7).deadline == 7


def huge_body_in_a_subprocess(url: str) -> dict[str, Any]:
    """Send one alert to `url` from a fresh interpreter; its peak RSS growth during the send, and the result."""
    script = f"""
import json, resource
from datetime import UTC, datetime
from pydantic import SecretStr
from alerts.channels.webhook import WebhookChannel
from alerts.config import WebhookConfig
from alerts.events import sample_alert
channel = WebhookChannel(WebhookConfig(name="hook", url=SecretStr({url!r}), timeout=10, deadline=60))
alert = sample_alert(datetime.now(UTC))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = channel.send(alert)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"ok": result.ok, "error": result.error, "grew_kib": after - before}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_500_with_a_200_mb_body_reads_only_a_snippet(hostile: Callable[..., Hostile]) -> None:
    server = hostile("huge", status=500)
    got = huge_body_in_a_subprocess(server.url)
    assert not got["ok"]
    assert got["error"].startswith("HTTP 500 Whatever from http://127.0.0.1:") and ": boom boom" in got["error"]
    assert len(got["error"]) < 400 and "T0K3N" not in got["error"]
    assert got["grew_kib"] < 50 * 1024  # a generous bound: the whole body would be 200 MB
    wait_for(lambda: len(server.sent_body) == 1)
    assert server.sent_body[0] < 100 * 2**20  # the client hung up long before the end


def test_a_2xx_body_is_not_read(hostile: Callable[..., Hostile]) -> None:
    server = hostile("huge", status=200)
    got = huge_body_in_a_subprocess(server.url)
    assert got["ok"] and got["grew_kib"] < 50 * 1024
    wait_for(lambda: len(server.sent_body) == 1)
    assert server.sent_body[0] < 100 * 2**20


# --- channels are delivered independently ----------------------------------------------------------------------


def test_a_slow_channel_delays_only_itself(engine: Engine, hostile: Callable[..., Hostile]) -> None:
    slow, fast = hostile("headers"), hostile("ok")
    (alert,) = put(engine, ("slow", "fast"))
    channels = {"slow": hook(slow.url, "slow", timeout=5, deadline=6), "fast": hook(fast.url, "fast")}
    box: list[Any] = []
    worker = threading.Thread(target=lambda: box.append(deliver_due(engine, channels, clock=lambda: datetime.now(UTC))))
    worker.start()
    wait_for(lambda: bool(fast.requests) and bool(slow.requests))
    assert fast.requests[0][0] == ""  # unsigned, but it is the alert:
    assert json.loads(fast.requests[0][1])["id"] == alert.id
    assert not slow.closed_at and worker.is_alive()  # the slow receiver is still being waited on
    worker.join(30)
    assert not worker.is_alive()
    (report,) = box
    assert (report.sent, report.retried) == (1, 1)
    rows = deliveries(engine)
    assert rows[f"fast:{alert.id}"].status == "sent"
    stalled = rows[f"slow:{alert.id}"]
    assert stalled.status == "pending" and stalled.attempts == 1 and stalled.claimed_until is None
    assert stalled.last_error is not None and stalled.last_error.startswith("no complete answer within 6 s from")
    for channel in channels.values():
        channel.close()


def test_stop_abandons_the_send_in_flight_and_leaves_it_pending(
    engine: Engine, hostile: Callable[..., Hostile]
) -> None:
    server = hostile("headers")
    (alert,) = put(engine, ("slow",))
    channel = hook(server.url, "slow", timeout=5, deadline=60)
    dispatcher = Dispatcher(engine, {"slow": channel}, clock=lambda: datetime.now(UTC))
    dispatcher.dispatch()
    assert server.connected.wait(10)
    with DbSession(engine) as s:
        (row,) = s.exec(select(Delivery))
        assert row.claimed_until is not None  # claimed while being sent
    started = time.monotonic()
    assert dispatcher.stop()  # every worker came back within the stop grace
    assert time.monotonic() - started < 5
    row = deliveries(engine)[f"slow:{alert.id}"]
    assert (row.status, row.attempts, row.claimed_until, row.last_error) == ("pending", 0, None, None)
    wait_for(lambda: len(server.closed_at) == 1)
    channel.close()


# --- claims: two live processes never send the same delivery; a dead one's claim does not hold it up -----------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Recorder:
    name: str = "hook"
    kind: str = "webhook"
    deadline: float = 10.0
    sent: list[str] = field(default_factory=list)

    def send(self, alert: Alert) -> Any:
        from alerts.channels.base import SendResult

        self.sent.append(alert.id)
        return SendResult.success()

    def describe(self) -> str:
        return "recorder"

    def close(self) -> None:
        pass


def claim(engine: Engine, until: datetime) -> None:
    with DbSession(engine) as s:
        for d in s.exec(select(Delivery)):
            d.claimed_until = until
            s.add(d)
        s.commit()


def test_a_claim_held_by_a_live_process_is_respected_until_it_expires(engine: Engine) -> None:
    clock, hook_ = Clock(), Recorder()
    (alert,) = put(engine, ("hook",))
    with DbSession(engine) as s:  # enqueued "now"; make it due at the fake clock's time
        for d in s.exec(select(Delivery)):
            d.next_attempt_at = d.created_at = clock.now
            s.add(d)
        s.commit()
    claim(engine, clock.now + timedelta(seconds=40))
    live = ClaimGuard(engine)  # another process, delivering right now
    with live.delivering():
        report = deliver_due(engine, {"hook": hook_}, clock=clock)
        assert hook_.sent == [] and report.attempted == 0
        clock.now += timedelta(seconds=41)  # it died without releasing: the claim expires
        deliver_due(engine, {"hook": hook_}, clock=clock)
    assert hook_.sent == [alert.id]
    row = deliveries(engine)[f"hook:{alert.id}"]
    assert row.status == "sent" and row.claimed_until is None


def test_a_dead_processes_claim_is_cleared_at_once_when_nobody_delivers(engine: Engine) -> None:
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        pytest.skip("an in-memory database has no other process")
    hook_ = Recorder()
    (alert,) = put(engine, ("hook",))
    claim(engine, datetime.now(UTC) + timedelta(hours=1))
    deliver_due(engine, {"hook": hook_}, clock=lambda: datetime.now(UTC))
    assert hook_.sent == [alert.id]  # with the same id, as at-least-once promises


class GatedReceiver:
    """Answers 204, but holds each request until another one is in flight too (or 3 s pass), so that two
    delivering processes certainly overlap; records every webhook-id and the most requests at once."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.ids: list[str] = []
        self.in_flight = self.most = 0
        self.cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                with owner.cond:
                    owner.ids.append(self.headers["webhook-id"])
                    owner.in_flight += 1
                    owner.most = max(owner.most, owner.in_flight)
                    owner.cond.notify_all()
                    owner.cond.wait_for(lambda: owner.in_flight >= 2, timeout=3)
                    owner.in_flight -= 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


SECRET = "whsec_" + base64.b64encode(b"faults-test-signing-key-0123456").decode()


def test_two_processes_delivering_at_once_never_send_the_same_alert(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    receiver = GatedReceiver()
    alerts = put(engine, ("webhook",), n=6)
    env = {**os.environ, "TIERDRIFT_CONFIG": str(tmp_path / "absent.toml"), "TIERDRIFT_WEBHOOK_URL": receiver.url}
    env["TIERDRIFT_WEBHOOK_SECRET"] = SECRET
    cmd = [sys.executable, "-m", "monitor", "--db", db_url, "alerts", "deliver"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=90) == 0, proc.stderr.read() if proc.stderr else ""
    receiver.server.shutdown()
    assert sorted(receiver.ids) == sorted(a.id for a in alerts)  # each exactly once
    assert receiver.most == 2  # and the two processes really did deliver at the same time
    assert {d.status for d in deliveries(engine).values()} == {"sent"}


# --- stopping is prompt --------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(tables={"binance-usdm": generate_tables("binance-usdm", 5, seed=2)}) as server:
        yield server


def run_env(fake: FakeExchange, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> dict[str, str]:
    point_at_fake(fake, monkeypatch, tmp_path)
    return {**os.environ, "TIERDRIFT_SOURCES": '["binance-usdm"]', "TIERDRIFT_WEBHOOK_URL": url}


def test_sigterm_during_a_drip_fed_send_stops_promptly_and_the_alert_goes_out_on_the_next_start(
    db_url: str,
    engine: Engine,
    fake: FakeExchange,
    hostile: Callable[..., Hostile],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = hostile("headers")  # with the default 30 s deadline, one attempt would hold a send for 30 s
    (alert,) = put(engine, ("webhook",))
    env = run_env(fake, monkeypatch, tmp_path, server.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", db_url, "run"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.connected.wait(30), "the daemon never tried to deliver"
        time.sleep(1.0)  # well inside the drip-feed
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert stopped_in < 10, err  # generous: without the abort it is the 30 s deadline
    row = deliveries(engine)[f"webhook:{alert.id}"]
    assert (row.status, row.attempts, row.claimed_until) == ("pending", 0, None)
    assert "Traceback" not in err
    healthy = hostile("ok")
    env["TIERDRIFT_WEBHOOK_URL"] = healthy.url
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--db", db_url, "run", "--once"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(body)["id"] for _, body, _ in healthy.requests] == [alert.id]
    assert deliveries(engine)[f"webhook:{alert.id}"].status == "sent"


def test_poll_delivers_without_the_writer_lock_and_ctrl_c_abandons_the_send(
    db_url: str,
    engine: Engine,
    fake: FakeExchange,
    hostile: Callable[..., Hostile],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = hostile("body")
    (alert,) = put(engine, ("webhook",))
    env = run_env(fake, monkeypatch, tmp_path, server.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", db_url, "poll"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.connected.wait(30), "poll never tried to deliver"
        lock = writer_lock(engine)
        assert lock.acquire()  # the daemon could write while poll waits on the receiver
        lock.release()
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert stopped_in < 10 and "Traceback" not in err
    row = deliveries(engine)[f"webhook:{alert.id}"]
    assert (row.status, row.attempts, row.claimed_until) == ("pending", 0, None)


# --- e-mail: a drip-feeding server, and one that echoes the AUTH exchange ---------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_drip_feeding_smtp_server_is_cut_off_at_the_deadline(hostile: Callable[..., Hostile]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed = threading.Event()

    def greet() -> None:
        conn, _ = listener.accept()
        with conn:
            try:
                for byte in b"220-" + b"x" * 200:  # a greeting that never ends, well within each timeout
                    conn.sendall(bytes([byte]))
                    time.sleep(DRIP)
            except OSError:
                closed.set()

    threading.Thread(target=greet, daemon=True).start()
    config = EmailConfig(smtp_url=SecretStr(f"smtp://127.0.0.1:{port}?tls=none"), to=["a@b.example"], timeout=5)
    channel = EmailChannel(config.model_copy(update={"deadline": 2}))
    started = time.monotonic()
    result = channel.send(sample_alert(datetime.now(UTC)))
    assert time.monotonic() - started < 10
    assert not result.ok and result.retryable
    assert result.error == f"no complete answer within 2 s from 127.0.0.1:{port}"
    assert closed.wait(10)
    listener.close()


USER, PASSWORD = "alice", "S3cr3t-pa55:w/rd%#!"


class EchoAuth(SMTP):
    """Refuses every AUTH with a 535 that quotes what the client sent (prefixed with the AUTH line or not,
    whole or only the slice `cut` of it), as some servers do. Offers CRAM-MD5 besides PLAIN and LOGIN."""

    prefix = True
    cut: tuple[int, int] | None = None
    echoed: list[str] = []  # noqa: RUF012 - set per test

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> None:
        raise NotImplementedError  # only advertises the mechanism: smtp_AUTH answers

    async def smtp_AUTH(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        parts = [initial] if initial else []
        if mechanism == "LOGIN":
            if not parts:
                parts.append(await self._ask("Username:"))
            parts.append(await self._ask("Password:"))
        elif mechanism == "CRAM-MD5":
            parts.append(await self._ask("<1896.697170952@postoffice.example.net>"))
        elif not parts:
            parts.append(await self._ask(""))
        self.echoed.extend(parts)
        echo = " ".join(parts)[slice(*self.cut) if self.cut else slice(None)]
        quoted = f"AUTH {mechanism} {echo}" if self.prefix else echo
        await self.push(f"535 5.7.8 Authentication credentials invalid: {quoted}")

    async def _ask(self, challenge: str) -> str:
        answer = await self.challenge_auth(challenge)
        return base64.b64encode(answer if isinstance(answer, bytes) else b"").decode()


class Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


@pytest.fixture
def echo_server() -> Iterator[Callable[..., int]]:
    controllers: list[Controller] = []

    def start(mechanism: str, prefix: bool, cut: tuple[int, int] | None) -> int:
        others = [m for m in ("PLAIN", "LOGIN", "CRAM-MD5") if m != mechanism]
        server_class = type("Echo", (EchoAuth,), {"prefix": prefix, "cut": cut, "echoed": []})

        class EchoController(Controller):
            def factory(self) -> SMTP:
                return server_class(self.handler, **self.SMTP_kwargs)

        port = free_port()
        controller = EchoController(
            Sink(), hostname="127.0.0.1", port=port, ready_timeout=5, auth_require_tls=False,
            auth_exclude_mechanism=others,
        )  # fmt: skip
        controller.start()
        controllers.append(controller)
        start.echoed = server_class.echoed  # type: ignore[attr-defined]
        return port

    yield start
    for controller in controllers:
        controller.stop()


def credential_forms(echoed: list[str]) -> list[str]:
    """Every piece of the credentials a leak could show: the password raw and percent-encoded, its base64
    forms, and every 8-character window of what the client sent during AUTH."""
    raw = [PASSWORD, quote(PASSWORD, safe=""), "pa55"]
    b64 = [base64.b64encode(v.encode()).decode() for v in (PASSWORD, f"\0{USER}\0{PASSWORD}")]
    windows = {line[i : i + 8] for line in echoed for i in range(max(1, len(line) - 7))}
    return [*raw, *b64, *(b.rstrip("=") for b in b64), *windows]


def assert_no_credentials(texts: list[str], echoed: list[str]) -> None:
    assert echoed, "the server never saw an AUTH exchange"
    for text in texts:
        for form in credential_forms(echoed):
            assert form not in text, (form, text)


@pytest.mark.parametrize(
    ("mechanism", "prefix", "cut"),
    [
        ("PLAIN", True, None),
        ("PLAIN", False, None),
        ("PLAIN", False, (0, 14)),
        ("PLAIN", False, (5, 30)),
        ("LOGIN", True, None),
        ("LOGIN", False, None),
        ("CRAM-MD5", False, None),
    ],
)
def test_an_smtp_server_echoing_the_auth_exchange_leaks_no_credential(
    echo_server: Callable[..., int], mechanism: str, prefix: bool, cut: tuple[int, int] | None
) -> None:
    port = echo_server(mechanism, prefix, cut)
    url = f"smtp://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}?tls=none"
    channel = EmailChannel(EmailConfig(smtp_url=SecretStr(url), to=["ops@example.com"], timeout=5))
    result = channel.send(sample_alert(datetime.now(UTC)))
    assert not result.ok and not result.retryable and result.error is not None
    assert f"127.0.0.1:{port} login refused for user alice: 535 5.7.8 Authentication credentials invalid:" in (
        result.error
    )  # the server's words stay
    assert_no_credentials([result.error, channel.describe()], echo_server.echoed)  # type: ignore[attr-defined]


def test_echoed_credentials_reach_neither_the_database_nor_the_logs_nor_alerts_list(
    db_url: str,
    engine: Engine,
    fake: FakeExchange,
    echo_server: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    port = echo_server("PLAIN", True, None)
    url = f"smtp://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}?tls=none"
    env = run_env(fake, monkeypatch, tmp_path, "https://unused.example/x")
    del env["TIERDRIFT_WEBHOOK_URL"]
    env |= {"TIERDRIFT_SMTP_URL": url, "TIERDRIFT_EMAIL_TO": "ops@example.com"}
    put(engine, ("email",))
    daemon = subprocess.run(
        [sys.executable, "-m", "monitor", "--db", db_url, "run", "--once"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert daemon.returncode == 1  # the alert failed for good: a refused login is not retried
    assert "alert delivery email:" in daemon.stderr and "login refused" in daemon.stderr
    for key in ("TIERDRIFT_SMTP_URL", "TIERDRIFT_EMAIL_TO"):
        monkeypatch.setenv(key, env[key])
    listed = runner.invoke(app, ["--db", db_url, "alerts", "list"])
    as_json = runner.invoke(app, ["--db", db_url, "alerts", "list", "--json"])
    tested = runner.invoke(app, ["--db", db_url, "alerts", "test"])
    assert "login refused" in as_json.output and tested.exit_code == 1
    with DbSession(engine) as s:
        rows = [repr(r) for model in (Delivery, AlertRecord, ChannelState) for r in s.exec(select(model))]
    assert any("login refused" in r for r in rows)
    texts = [daemon.stdout, daemon.stderr, listed.output, as_json.output, tested.output, *rows]
    assert_no_credentials(texts, echo_server.echoed)  # type: ignore[attr-defined]
