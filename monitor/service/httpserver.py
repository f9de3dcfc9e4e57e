"""The daemon's small HTTP server on loopback: `/healthz`, `/readyz` and Prometheus `/metrics`.

`/healthz` answers 200 while the process runs (a standby is healthy). `/readyz` answers 200 only on the
replica that holds the writer lock and can reach the database, 503 with the reason otherwise.

The socket is bound when the server is built, before `start()`: `tierdrift run` builds it first, so that
a port in use or a host that does not resolve is one `HealthServerError` line at start-up, before the
daemon takes the writer lock or polls anything.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from snapshots.errors import TierdriftError

#: () -> (ready, reason)
Readiness = Callable[[], tuple[bool, str]]


class HealthServerError(TierdriftError):
    """The health server cannot listen where it was told to; the message names the address."""


class HealthServer:
    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], ready: Readiness) -> None:
        self.metrics = metrics
        self.ready = ready
        self._server = _bind(host, port, _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (also on a server that was never started)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server listening on host:port (IPv4 or IPv6), or `HealthServerError` saying why not."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError):
        raise HealthServerError(f"health server: cannot resolve health_host {host!r}") from None
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    try:
        return server_class((host, port), handler)  # type: ignore[no-any-return]
    except OSError as exc:
        raise HealthServerError(f"health server: {where} {_why(exc)}") from None


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "is already in use (another process listens there; choose another health_port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "is not an address of this machine (health_host)"
    if exc.errno == errno.EACCES:
        return "needs privileges (ports below 1024); choose a health_port above 1023"
    return f"cannot be listened on: {exc.strerror or type(exc).__name__}"


def _handler(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ready, reason = owner.ready()
                self._send(200 if ready else 503, (reason + "\n").encode(), "text/plain")
            elif path == "/metrics":
                self._send(200, owner.metrics(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the poll and alert lines

    return Handler
