"""The read-only JSON API under `/api/v1`: the same shapes as the CLI's `--json` (`monitor.service.shapes`).

Errors are `{"error": "<one line>"}`: 400 for a bad parameter (FastAPI's own validation errors included),
404 for an unknown source, symbol or id, 503 when the database cannot be read.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from monitor.service import shapes
from snapshots.errors import NotFound, TierdriftError
from snapshots.history import check_source, list_changes, recent_polls, resolve_symbol, source_status, table_at
from snapshots.history import versions as symbol_versions
from snapshots.model import CHANGE_KINDS, SOURCES, TIER_FIELDS
from snapshots.reader import SqliteReader
from snapshots.timefmt import parse_ts, utcnow

router = APIRouter(prefix="/api/v1")  # the routes answer `JSON` (below) themselves

#: The largest integer SQLite and PostgreSQL store: the bound of ids and limits (as the CLI's).
MAX_INT = 2**63 - 1
#: The largest id a position can have: its column is a 32-bit integer on PostgreSQL (a larger one in a query
#: is a database error there, not "no such position").
MAX_ID = 2**31 - 1
#: A page of `changes` holds this many records unless `limit` says otherwise, and never more than MAX_PAGE.
PAGE = 100
MAX_PAGE = 1000


class BadParameter(TierdriftError):
    """A query parameter the API cannot use (400); the message names it."""


Source = Annotated[str, Query(description=f"One of: {', '.join(SOURCES)}.")]
Symbol = Annotated[str, Query(description="ccxt form (BTC/USDT:USDT) or the exchange's id (BTCUSDT).")]
When = Annotated[str | None, Query(description="ISO 8601 time, UTC when it has no offset (2024-01-31T12:00Z).")]
Kind = Literal[CHANGE_KINDS]  # type: ignore[valid-type]
Field = Literal[TIER_FIELDS]  # type: ignore[valid-type]


class JSON(Response):
    """A JSON answer serialised as the CLI's `--json` is (`json.dumps`, UTF-8 kept), without FastAPI's
    encoder: the shapes are plain data already, and the encoder costs more than the query (3 ms a page)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False).encode()


@contextmanager
def reading(request: Request) -> Iterator[Any]:
    """A connection for one request's read-side queries (`snapshots.history`): on a SQLite file, this
    thread's read-only sqlite3 connection, as the fast CLI commands read (SQLAlchemy's row processing
    costs four times the query on a `tiers`); a connection of the app's engine otherwise."""
    engine = request.app.state.engine
    conn = _sqlite_reader(engine)
    if conn is not None:
        yield SqliteReader(conn)
        return
    with engine.connect() as alchemy:
        yield alchemy


_threads = threading.local()


def _sqlite_reader(engine: Any) -> sqlite3.Connection | None:
    """This thread's read-only connection to the engine's SQLite file (None: not a plain SQLite file, or it
    cannot be opened so; the engine's own connection then serves). Outside a transaction, every query
    sees what the daemon last committed."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" or url.query:
        return None
    cache: dict[str, sqlite3.Connection | None] = _threads.__dict__.setdefault("sqlite", {})
    if url.database not in cache:
        try:
            path = quote(str(FilePath(url.database).resolve()))  # a `?` or `#` in a folder's name stays a name
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            conn.execute("SELECT 1 FROM alembic_version")
        except sqlite3.Error:
            conn = None
        cache[url.database] = conn
    return cache[url.database]


def _ts(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_ts(text)
    except TierdriftError as exc:
        raise BadParameter(f"{name}: {exc}") from None


def encode_cursor(cursor: tuple[datetime, int] | None) -> str | None:
    """The opaque `next_cursor` of a page: URL-safe base64 of `<ISO time>|<id>` of its last record."""
    if cursor is None:
        return None
    at, ident = cursor
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, int]:
    """The (detected_at, id) a `cursor` stands for, or `BadParameter` for one this API did not give out."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, ident = raw.split("|")
        parsed, number = datetime.fromisoformat(at), int(ident)
        when = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise BadParameter("cursor: not a cursor this API gave out (pass next_cursor back unchanged)") from None
    if not 0 < number <= MAX_INT:
        raise BadParameter("cursor: not a cursor this API gave out (pass next_cursor back unchanged)")
    return when, number


@router.get("/tiers", summary="The tier table of a symbol in force at a time (as `tiers --json`)")
def tiers(request: Request, source: Source, symbol: Symbol, at: When = None) -> JSON:
    when = _ts("at", at) or utcnow()
    with reading(request) as conn:
        table, _ = table_at(conn, source, resolve_symbol(conn, source, symbol), when)
    return JSON(shapes.tiers_json(table))


@router.get("/changes", summary="Detected tier changes, oldest first, a page at a time (items as `changes --json`)")
def changes(
    request: Request,
    source: Annotated[str | None, Query(description="Only this source.")] = None,
    symbol: Annotated[str | None, Query(description="Only this symbol (needs source).")] = None,
    kind: Annotated[Kind | None, Query(description="Only this kind of change.")] = None,
    field: Annotated[Field | None, Query(description="Only changes of this tier field.")] = None,
    since: When = None,
    until: When = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Records per page.")] = PAGE,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> JSON:
    if symbol and not source:
        raise BadParameter("symbol: needs source")
    after = decode_cursor(cursor) if cursor is not None else None
    start, end = _ts("since", since), _ts("until", until)
    with reading(request) as conn:
        if source:
            check_source(source)
        sym = resolve_symbol(conn, source, symbol) if source and symbol else None
        rows = list_changes(
            conn, source=source, symbol=sym, kind=kind, field=field, since=start, until=end, after=after,
            limit=limit + 1,
        )  # fmt: skip
    more = len(rows) > limit
    page = rows[:limit]
    items = [shapes.change_json(r) for r in page]
    return JSON({"items": items, "next_cursor": encode_cursor(page[-1].cursor) if more else None})


@router.get("/history", summary="The versions of a symbol's table and when each was in force (as `history --json`)")
def history(request: Request, source: Source, symbol: Symbol) -> JSON:
    with reading(request) as conn:
        rows = symbol_versions(conn, source, resolve_symbol(conn, source, symbol))
    return JSON([shapes.version_json(v) for v in rows])


@router.get("/sources", summary="Each source's last poll, success, change and error (as `sources --json`)")
def sources(request: Request) -> JSON:
    with reading(request) as conn:
        return JSON([shapes.status_json(source_status(conn, s)) for s in SOURCES])


@router.get("/polls", summary="Recent polls and imports, newest first (as `polls --json`)")
def polls(
    request: Request,
    source: Annotated[str | None, Query(description="Only this source.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_INT)] = 20,
) -> JSON:
    with reading(request) as conn:
        if source:
            check_source(source)
        return JSON([shapes.poll_info_json(p) for p in recent_polls(conn, source, limit)])


@router.get("/positions", summary="Logged positions with their current figures (as `positions list --json`)")
def positions(request: Request, all: Annotated[bool, Query(description="Include closed positions.")] = False) -> JSON:
    from sqlmodel import Session

    with Session(request.app.state.engine) as session:
        return JSON(shapes.positions(session, request.app.state.settings, utcnow(), include_closed=all))


@router.get("/positions/{position_id}", summary="One position, its figures and impacts (as `positions show --json`)")
def position(request: Request, position_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> JSON:
    from sqlmodel import Session

    with Session(request.app.state.engine) as session:
        return JSON(shapes.position(session, request.app.state.settings, position_id, utcnow()))


@router.get("/impacts", summary="What tier changes did to positions, oldest first (as `impacts --json`)")
def impacts(request: Request, since: When = None) -> JSON:
    from sqlmodel import Session

    start = _ts("since", since)
    with Session(request.app.state.engine) as session:
        return JSON(shapes.impacts(session, since=start))


@router.get("/alerts", summary="Alert deliveries, newest first, secrets redacted (as `alerts list --json`)")
def alerts(
    request: Request,
    status: Annotated[Literal["pending", "sent", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_INT)] = 100,
) -> JSON:
    from sqlmodel import Session

    with Session(request.app.state.engine) as session:
        return JSON(shapes.alerts(session, status=status, limit=limit))


@router.get("/liq", summary="What-if liquidation figures of an isolated position (as `liq --json`)")
def liq(
    request: Request,
    source: Source,
    symbol: Symbol,
    side: Annotated[Literal["long", "short"], Query()],
    entry: Annotated[float, Query(description="Entry price.")],
    margin: Annotated[float, Query(description="Isolated margin (quote; coin for inverse).")],
    qty: Annotated[float | None, Query(description="Size in base units.")] = None,
    notional: Annotated[float | None, Query(description="Size as quote notional.")] = None,
    contracts: Annotated[float | None, Query(description="Size in contracts (inverse only).")] = None,
    contract_size: Annotated[float | None, Query(description="Face value of one inverse contract in USD.")] = None,
    mark: Annotated[float | None, Query(description="Mark price for distance and buffer.")] = None,
    adr: Annotated[float | None, Query(description="Average daily range.")] = None,
    at: When = None,
) -> JSON:
    from monitor.risk.positions import PositionInput

    when = _ts("at", at) or utcnow()
    item = PositionInput(source, symbol, side, entry, qty, notional, contracts, contract_size, "isolated", margin)
    with reading(request) as conn:
        return JSON(shapes.liq(conn, request.app.state.settings, item, when, mark=mark, adr=adr))


def install(app: FastAPI) -> None:
    """The API's routes, the error handlers that make every failure one JSON line, and an OpenAPI document
    that says so (400, not FastAPI's 422, for a bad parameter)."""
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(TierdriftError, _tierdrift_error)
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _one_line_errors(plain())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What went wrong, in one line."}},
    "required": ["error"],
}
ERRORS = {
    "400": "A parameter the API cannot use",
    "404": "Unknown source, symbol or id",
    "503": "The database cannot be read",
}


def _one_line_errors(document: dict[str, Any]) -> dict[str, Any]:
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in ERRORS.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": ERROR_SCHEMA}},
                }
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


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
