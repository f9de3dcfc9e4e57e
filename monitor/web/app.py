"""The web application: the read-only JSON API, the dashboard's pages, `/healthz`, `/readyz` and `/metrics`.

One ASGI app serves them all, behind one security layer (`monitor.web.security`): `tierdrift run` serves it
next to the daemon, `tierdrift web` over an existing database without one. Everything here reads; nothing
writes to the database.

`app.state` holds what the routes share: `settings`, `engine` (SQLAlchemy), `templates` (Jinja2, autoescape
on), `metrics` (a `monitor.service.metrics.Metrics`) and `status`, a callable answering the daemon's live
state as a dict: `{"ready": bool, "reason": str, "next_poll": {source: ISO time or None}}` (`ready` and
`reason` drive `/readyz`; `tierdrift web` has no daemon and answers not ready, "read-only web server").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST

from monitor.web import api, security

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitor.config.settings import Settings
    from monitor.service.metrics import Metrics

TEMPLATES = Path(__file__).parent / "templates"
#: What `/readyz` says without a daemon (`tierdrift web`): it serves pages, it does not poll or hold a lock.
NO_DAEMON = "read-only web server (tierdrift web): no daemon runs here"

Status = Callable[[], dict[str, Any]]


def _no_daemon() -> dict[str, Any]:
    return {"ready": False, "reason": NO_DAEMON, "next_poll": {}}


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    read_only: bool = True,
    status: Status | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The app over `settings.database_url` (or `engine`). `status` is the daemon's live state (see the module
    docstring), `metrics` its registry; without them (`tierdrift web`) the app is not ready and its `/metrics`
    holds the outbox gauges only. `read_only`: the engine is opened without creating a database."""
    from monitor.service.metrics import Metrics

    if engine is None:
        from monitor.store.database import open_engine

        engine = open_engine(settings.database_url, create=not read_only)
    if metrics is None:
        metrics = Metrics()
        metrics.watch_outbox(engine)
    app = FastAPI(
        title="tierdrift",
        summary="Read-only API of tierdrift: tier tables, their history and changes, positions, impacts and alerts.",
        version=_version(),
        docs_url=None,  # the Swagger page loads its script from a CDN; the OpenAPI document stays at /openapi.json
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.read_only = read_only
    app.state.status = status or _no_daemon
    app.state.metrics = metrics
    app.state.templates = Jinja2Templates(env=_jinja())
    api.install(app)
    from monitor.web import pages  # the pages' module pulls the charts; imported here, after the API

    app.include_router(pages.router)
    _http_errors(app, getattr(pages, "error_page", None))
    security.install(app, settings)
    _health_routes(app)
    return app


def _http_errors(app: FastAPI, page: Callable[[Request, int, str], Response] | None) -> None:
    """The framework's own refusals (unknown path, wrong method) as the API's one JSON line under `/api/`
    and `/openapi.json`, as the pages' error page elsewhere (a browser's address bar)."""
    from starlette.exceptions import HTTPException

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if page is None or request.url.path.startswith(("/api/", "/openapi.json")):
            return api.error(exc.status_code, str(exc.detail), headers)
        response = page(request, exc.status_code, str(exc.detail))
        response.headers.update(headers)
        return response

    app.add_exception_handler(HTTPException, handler)


def _health_routes(app: FastAPI) -> None:
    """`/healthz` (200 while the process runs), `/readyz` (200 only on the replica holding the writer lock,
    503 with the reason otherwise) and `/metrics` (Prometheus), as the health server always answered."""

    # async: it does no I/O, and answers on the event loop without a hop to the thread pool.
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> PlainTextResponse:  # a PostgreSQL lock asks its server: in the pool
        state = request.app.state.status()
        return PlainTextResponse(f"{state['reason']}\n", status_code=200 if state["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _jinja() -> Any:
    """The templates' environment: every value is HTML-escaped unless a template says otherwise (never for
    outside text), and an undefined name is an error rather than an empty string."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tierdrift")
    except PackageNotFoundError:
        return "0"
