"""The read-only JSON API under `/api/v1`: the same shapes as the CLI's `--json` (`monitor.service.shapes`).

Errors are `{"error": "<one line>"}`: 400 for a bad parameter (FastAPI's own validation errors included),
404 for an unknown source, symbol or id, 503 when the database cannot be read.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from snapshots.errors import NotFound, TierdriftError

router = APIRouter(prefix="/api/v1")


def install(app: FastAPI) -> None:
    """The API's routes and the error handlers that make every failure one JSON line."""
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(TierdriftError, _tierdrift_error)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error(400, validation_line(exc.errors()))


def validation_line(errors: Any) -> str:
    """FastAPI's list of validation errors as one line: `bad parameter limit: Input should be …`."""
    first = next(iter(errors), None)
    if not isinstance(first, dict):
        return "bad request"
    where = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
    name = ".".join(where) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join(f"bad parameter {name}: {first.get('msg', 'invalid')}{more}".split())


async def _tierdrift_error(request: Request, exc: Exception) -> JSONResponse:
    from monitor.store.storage import DatabaseError

    if isinstance(exc, NotFound):
        return error(404, _line(exc))
    if isinstance(exc, DatabaseError):
        return error(503, _line(exc))
    return error(400, _line(exc))


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
