"""The hostile world of bench/faults.py: misbehaving receivers, a process runner, and what counts as handled.

Every loop here is bounded in time and bytes, and every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerts.signing import verify

#: Receivers that misbehave, each in its own way (see `Receiver._misbehave`).
BAD_RECEIVERS = (
    "drip_headers",  # the status line and headers one byte every 0.5 s
    "drip_body",  # a 500 whose body comes one byte every 0.5 s
    "hang",  # reads the request, then never answers
    "huge_500",  # a 500 with a 200 MB body, streamed as fast as the client reads
    "reset",  # closes the connection without a word
    "gone_410",  # 410 Gone: the channel must be disabled, the others unaffected
    "slow_ok",  # answers 204 after 8 s
    "garbage",  # answers bytes that are not HTTP
)

_MAX_SECONDS = 90.0  # no misbehaviour lasts longer than this
_HUGE = 200 * 1024 * 1024


@dataclass
class Received:
    """What a well-behaved receiver got: alert ids with their bodies and arrival times."""

    bodies: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    times: dict[str, float] = field(default_factory=dict)
    unsigned: int = 0


class Receiver:
    """A webhook receiver on 127.0.0.1: `mode` "ok" verifies signatures and records alerts; any other mode
    is one of `BAD_RECEIVERS`."""

    def __init__(self, mode: str = "ok", secret: str | None = None) -> None:
        self.mode = mode
        self.secret = secret
        self.got = Received()
        self.hits = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.hits += 1
                if receiver.mode == "ok":
                    receiver._record(dict(self.headers.items()), body)
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    receiver._misbehave(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/TOKENfaults5566"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _record(self, headers: dict[str, str], body: bytes) -> None:
        signed = self.secret is None or verify(self.secret, headers, body, now=time.time())
        with self._lock:
            ident = headers.get("webhook-id") or headers.get("Webhook-Id") or f"unsigned-{len(self.got.bodies)}"
            self.got.bodies[ident].append(body)
            self.got.times.setdefault(ident, time.time())
            self.got.unsigned += not signed

    def _misbehave(self, h: BaseHTTPRequestHandler) -> None:
        out, deadline = h.wfile, time.monotonic() + _MAX_SECONDS
        try:
            if self.mode == "drip_headers":
                self._drip(h, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", deadline)
            elif self.mode == "drip_body":
                out.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\n\r\n")
                self._drip(h, b"x" * 100_000, deadline)
            elif self.mode == "hang":
                self._stop.wait(_MAX_SECONDS)
            elif self.mode == "huge_500":
                out.write(f"HTTP/1.1 500 Internal Server Error\r\nContent-Length: {_HUGE}\r\n\r\n".encode())
                chunk, sent = b"e" * 65536, 0
                while sent < _HUGE and not self._stop.is_set() and time.monotonic() < deadline:
                    out.write(chunk)
                    sent += len(chunk)
            elif self.mode == "reset":
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                h.connection.close()
            elif self.mode == "gone_410":
                out.write(b"HTTP/1.1 410 Gone\r\nContent-Length: 4\r\n\r\ngone")
            elif self.mode == "slow_ok":
                self._stop.wait(8.0)
                out.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            elif self.mode == "garbage":
                out.write(b"\x00\xff\xfe not http at all \r\n\r\n")
            out.flush()
        except OSError:
            pass  # the client gave up: that is the point
        h.close_connection = True

    def _drip(self, h: BaseHTTPRequestHandler, data: bytes, deadline: float) -> None:
        for byte in data:
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            self._stop.wait(0.5)


# -- running the real CLI ----------------------------------------------------------------------------


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str
    seconds: float
    timed_out: bool = False

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.out + self.err

    @property
    def error_lines(self) -> list[str]:
        """What the run said was wrong, on stderr: its error lines, without the indented detail under one (a
        CSV import's bad rows), notes such as "waiting for …" and warnings."""
        return [
            line
            for line in self.err.splitlines()
            if line.strip()
            and not line.startswith((" ", "\t"))
            and not line.lower().startswith(("warning", "waiting", "note:"))
        ]

    @property
    def handled(self) -> bool:
        """Ended on its own with an ordinary exit code, without a traceback, and said at most one line of error."""
        if self.timed_out or self.traceback or self.code not in (0, 1, 2):
            return False
        return self.code == 0 or len(self.error_lines) <= 1


def cli(args: list[str], env: dict[str, str], *, timeout: float = 120.0, cwd: Path | None = None) -> Run:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "monitor", *args],
            env=env,
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace")
        err = (exc.stderr or b"").decode("utf-8", "replace")
        return Run(args, -9, out, err, time.monotonic() - t0, timed_out=True)
    return Run(
        args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - t0,
    )


# -- secrets -----------------------------------------------------------------------------------------


def secret_forms(secrets: list[str], smtp_user: str, smtp_password: str) -> list[str]:
    """Every secret, plus the base64 forms an SMTP conversation carries (AUTH PLAIN and AUTH LOGIN)."""
    forms = list(secrets)
    plain = f"\0{smtp_user}\0{smtp_password}".encode()
    forms += [base64.b64encode(plain).decode(), base64.b64encode(smtp_password.encode()).decode()]
    return [f for f in forms if len(f) >= 6]


def leaks(text: str, forms: list[str]) -> list[str]:
    return [f for f in forms if f in text]


def database_text(path: Path) -> str:
    """Every text value of every table of a SQLite file, for a secrets scan."""
    if not path.exists():
        return ""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def counts(path: Path) -> dict[str, int]:
    """Row counts of the tables that a fault must not touch, and the poll outcomes."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        out = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("change_record", "table_version", "alert", "position", "account", "impact")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone()
        }
        # Polls, not rows: a run of polls that failed alike is one row (`repeats`).
        for outcome, n in conn.execute("SELECT outcome, sum(repeats) FROM poll GROUP BY outcome"):
            out[f"poll_{outcome}"] = n
        return out
    finally:
        conn.close()


def fingerprint(path: Path, tables: tuple[str, ...] = ("position", "account", "poll", "table_version")) -> str:
    """The content of the tables a failed write must leave as they were."""
    if not path.exists():
        return "absent"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        parts = []
        for t in tables:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone():
                parts.append(repr(conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()))
        return "|".join(parts)
    finally:
        conn.close()


def clean_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without any TIERDRIFT_ setting, pointed at no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERDRIFT_")}
    env["TIERDRIFT_CONFIG"] = str(tmp / "absent.toml")
    env["COLUMNS"] = "100"
    return env
