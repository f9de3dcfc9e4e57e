"""The daemon's small HTTP server on loopback: `/healthz`, `/readyz` and Prometheus `/metrics`.

`/healthz` answers 200 while the process runs (a standby is healthy). `/readyz` answers 200 only on the
replica that holds the writer lock and can reach the database, 503 with the reason otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

#: () -> (ready, reason)
Readiness = Callable[[], tuple[bool, str]]


class HealthServer:
    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], ready: Readiness) -> None:
        self.metrics = metrics
        self.ready = ready
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
