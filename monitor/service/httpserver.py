"""The daemon's HTTP servers: uvicorn on a socket bound at start-up, and the health-only app of `health_port`.

`/healthz` answers 200 while the process runs (a standby is healthy). `/readyz` answers 200 only on the
replica that holds the writer lock and can reach the database, 503 with the reason otherwise. `/metrics` is
the Prometheus exposition. The dashboard (`monitor.web`) serves the same three on `web_port`; `health_port`
serves only them, so that it may listen on 0.0.0.0 for a container's probes without opening the dashboard.

The socket is bound when the server is built, before `start()`: `tierdrift run` builds its servers first,
so that a port in use or a host that does not resolve is one line at start-up, before the daemon takes the
writer lock or polls anything.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from snapshots.errors import TierdriftError

#: () -> (ready, reason)
Readiness = Callable[[], tuple[bool, str]]
#: How long a stopping server lets the requests in flight finish before it closes their connections.
GRACE_SECONDS = 5


class HealthServerError(TierdriftError):
    """The health server cannot listen where it was told to; the message names the address."""


def bind(host: str, port: int, *, what: str, setting: str, error: type[TierdriftError]) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6), or `error` saying, in one line, why not.
    `what` names the server (`health server`), `setting` the port's setting (`health_port`)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError):
        host_setting = setting.replace("_port", "_host")
        raise error(f"{what}: cannot resolve {host_setting} {host!r}") from None
    # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on every connection: without it a response
    # written in two parts waits for the client's delayed ACK, 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise error(f"{what}: {where} {_why(exc, setting)}") from None
    sock.set_inheritable(True)
    return sock


def _why(exc: OSError, setting: str) -> str:
    host_setting = setting.replace("_port", "_host")
    if exc.errno == errno.EADDRINUSE:
        return f"is already in use (another process listens there; choose another {setting})"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"is not an address of this machine ({host_setting})"
    if exc.errno == errno.EACCES:
        return f"needs privileges (ports below 1024); choose a {setting} above 1023"
    return f"cannot be listened on: {exc.strerror or type(exc).__name__}"


class Served:
    """uvicorn serving an ASGI app on a socket bound in `__init__`, in a thread of its own."""

    def __init__(self, host: str, port: int, *, what: str, setting: str, error: type[TierdriftError]) -> None:
        self.sock = bind(host, port, what=what, setting=setting, error=error)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = str(self.sock.getsockname()[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def _uvicorn(self, app: Any) -> Any:
        import uvicorn  # the ASGI server: only the commands that serve load it

        # Our logging (monitor.service.logs) takes uvicorn's records, secrets redacted; no access log: probes
        # and page loads every few seconds would drown the poll and alert lines.
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=GRACE_SECONDS
        )
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # start-up lines: ours say where it listens
        return uvicorn.Server(config)

    def start(self, app: Any) -> Served:
        """Serve `app` in a background thread (the socket already accepts connections)."""
        self._server = self._uvicorn(app)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self.sock]))

    def serve_forever(self, app: Any) -> None:
        """Serve `app` until SIGINT or SIGTERM, then stop cleanly: the requests in flight get `GRACE_SECONDS`
        and the command exits 0 (uvicorn's own handlers would re-raise the signal and exit with it)."""
        import signal

        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        self.start(app)
        try:
            while not stopping.wait(1.0):
                if self._thread is not None and not self._thread.is_alive():
                    break  # the server gave up on its own (its error is on the log)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and free the port (also on a server that was never started)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(GRACE_SECONDS + 5)
        self.sock.close()


class HealthServer(Served):
    """`/healthz`, `/readyz` and `/metrics` only, on `health_host:health_port`. `ready` may be replaced
    after the server is built (the daemon exists only once the start-up checks have passed)."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], ready: Readiness) -> None:
        super().__init__(host, port, what="health server", setting="health_port", error=HealthServerError)
        self.metrics = metrics
        self.ready = ready

    def start(self, app: Any = None) -> HealthServer:
        super().start(app or health_app(lambda: self.metrics(), lambda: self.ready()))
        return self


def health_app(metrics: Callable[[], bytes], ready: Readiness) -> Any:
    """The three health routes as a small Starlette app (no dashboard, no token: they tell nothing private)."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(request: Request) -> Response:  # a PostgreSQL lock asks its server: in the thread pool
        ok, reason = ready()
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    def metrics_route(request: Request) -> Response:
        return Response(metrics(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found\n", status_code=404)

    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_route)]
    return Starlette(routes=routes, exception_handlers={404: not_found})
