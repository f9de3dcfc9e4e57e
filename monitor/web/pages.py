"""The dashboard's HTML pages: overview, changes, symbol, position, alerts, and their static assets.

Every page reads through `monitor.web.views` on a session opened for the request and renders a Jinja2
template (autoescaped: outside text is data). Query parameters are read as text and parsed here, so
that a bad one is a 400 page of one line, an unknown source, symbol, position or version a 404 page, an
unreadable database a 503 page, never a 500 or a JSON error. plotly.js comes from the installed `plotly`
package (never a CDN), gzipped once in memory, with a long cache lifetime.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from monitor.store.storage import DatabaseError, describe
from monitor.web import params, position_views, views
from monitor.web.charts import data_block
from snapshots.errors import NotFound, TierdriftError
from snapshots.history import check_source, resolve_symbol
from snapshots.model import CHANGE_KINDS, SOURCES, TIER_FIELDS
from snapshots.numbers import MISSING, adr, leverage, money, num, pct
from snapshots.timefmt import iso, utcnow

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
#: Our own assets, by name: nothing else under /static/ is served (no path is ever joined from a request).
ASSETS = {"tierdrift.css": "text/css; charset=utf-8", "charts.js": "text/javascript; charset=utf-8"}
PAGE_SIZE, MAX_PAGE = 50, 500
ERROR_LIMIT = 300
MAX_ID = 2**31 - 1  # row ids are 32-bit INTEGER columns on PostgreSQL
#: The overview lists the riskiest open positions up to this many (a page of 10,000 rows helps nobody).
OVERVIEW_POSITIONS = 100
YEAR = 365 * 86400


# -- rendering --------------------------------------------------------------------------------------


def when(dt: datetime | None, missing: str = MISSING) -> str:
    """A time for people: UTC to the second, `2024-01-31 12:00:05` (the pages say UTC once, in the footer)."""
    if dt is None:
        return missing
    aware = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
    return aware.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat(sep=" ")


def ago(dt: datetime | None, now: datetime) -> str:
    """How long before `now`, roughly: `42 s`, `5 min`, `3 h`, `12 d` (`in 5 min` for a time ahead)."""
    if dt is None:
        return ""
    aware = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
    seconds = (now - aware).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if ahead else f"{text} ago"


def symbol_url(source: str, symbol: str, **query: Any) -> str:
    """The symbol page's address: the ccxt symbol encoded as one path segment (`/` and `:` too)."""
    url = f"/symbols/{quote(source, safe='')}/{quote(symbol, safe='')}"
    args = {k: v for k, v in query.items() if v is not None}
    return f"{url}?{urlencode(args)}" if args else url


def _input_time(dt: datetime | None) -> str:
    """A time as a `datetime-local` input holds it (UTC, to the second)."""
    return "" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


FILTERS: dict[str, Callable[..., Any]] = {
    "num": num, "pct": pct, "adr": adr, "leverage": leverage, "money": money, "when": when, "iso": iso,
    "input_time": _input_time,
}  # fmt: skip


def render(request: Request, name: str, context: Mapping[str, Any], status: int = 200) -> Response:
    """Template `name` with `context`, the number and time filters, and the helpers every page uses."""
    templates = request.app.state.templates
    templates.env.filters.update(FILTERS)  # the app owns the environment; adding the same filters is idempotent
    now = context.get("now") or utcnow()
    base = {
        "symbol_url": symbol_url, "ago": lambda dt: ago(dt, now), "now": now, "data_block": data_block,
        "plotly_url": plotly_url(),
    }  # fmt: skip
    response: Response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    return response


def error_page(request: Request, status: int, message: str) -> Response:
    titles = {400: "Bad request", 404: "Not found", 503: "Database unavailable"}
    line = " ".join(message.split())
    if len(line) > ERROR_LIMIT:  # an error may quote what was typed, and that can be any length
        line = line[: ERROR_LIMIT - 1] + "…"
    return render(request, "error.html", {"title": titles.get(status, "Error"), "message": line}, status)


def _answer(request: Request, build: Callable[[Session], Response]) -> Response:
    """`build` on a session of its own, with every deliberate error turned into its page."""
    try:
        with Session(request.app.state.engine) as session:
            return build(session)
    except NotFound as exc:
        return error_page(request, 404, str(exc))
    except DatabaseError as exc:
        return error_page(request, 503, str(exc))
    except TierdriftError as exc:
        return error_page(request, 400, str(exc))
    except SQLAlchemyError as exc:  # the database failed under the page: a disk, a lock, a server gone
        why = describe(exc, request.app.state.settings.database_url)
        if why is None:
            raise
        return error_page(request, 503, why)


# -- pages ------------------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request) -> Response:
    """Each source's health, the latest changes, the open positions by risk, and the pending/failed outbox."""

    def build(session: Session) -> Response:
        settings, now = request.app.state.settings, utcnow()
        status = request.app.state.status()
        latest, _ = views.changes_page(session, views.ChangeFilter(), after=None, limit=views.OVERVIEW_ROWS)
        positions = position_views.open_positions(session, settings, now)
        context = {
            "now": now,
            "sources": views.sources(session, settings, status.get("next_poll") or {}),
            "polls": views.polls(session, settings),
            "daemon": status,
            "changes": latest,
            "positions": positions[:OVERVIEW_POSITIONS],
            "more_positions": max(len(positions) - OVERVIEW_POSITIONS, 0),
            "outbox": views.deliveries(session, settings, statuses=("pending", "failed"), limit=views.OVERVIEW_ROWS),
            "disabled": views.disabled_channels(session, settings),
            "all_sources": SOURCES,
        }
        return render(request, "overview.html", context)

    return _answer(request, build)


@router.get("/changes")
def changes(request: Request) -> Response:
    """The changes feed, newest first, filtered and paged by a keyset cursor."""

    def build(session: Session) -> Response:
        source = params.choice(request, "source", SOURCES)
        symbol_text = params.text(request, "symbol")
        f = views.ChangeFilter(
            source=source,
            symbol=_symbol_filter(session, source, symbol_text) if symbol_text else None,
            kind=params.choice(request, "kind", CHANGE_KINDS),
            field=params.choice(request, "field", TIER_FIELDS),
            since=params.time(request, "since"),
            until=params.time(request, "until"),
        )
        limit = params.integer(request, "limit", PAGE_SIZE, 1, MAX_PAGE)
        page, more = views.changes_page(session, f, after=params.cursor(request), limit=limit)
        query = {k: v for k, v in request.query_params.items() if k != "cursor" and v}
        context = {
            "filter": f,
            "limit": limit,
            "default_limit": PAGE_SIZE,
            "symbol_text": symbol_text or "",
            "changes": page,
            "next_url": f"/changes?{urlencode({**query, 'cursor': params.cursor_text(more)})}" if more else None,
            "first_url": f"/changes?{urlencode(query)}" if request.query_params.get("cursor") else None,
            "sources": SOURCES,
            "kinds": CHANGE_KINDS,
            "fields": TIER_FIELDS,
        }
        return render(request, "changes.html", context)

    return _answer(request, build)


def _symbol_filter(session: Session, source: str | None, text: str) -> str:
    """The stored symbol a filter means (`BTCUSDT` → `BTC/USDT:USDT`), in `source` or the first source that
    has it."""
    conn = session.connection()
    if source:
        return resolve_symbol(conn, source, text)
    for name in SOURCES:
        try:
            return resolve_symbol(conn, name, text)
        except NotFound:
            continue
    raise NotFound(f"unknown symbol {text!r} in every source")


@router.get("/symbols")
def find_symbol(request: Request) -> Response:
    """The lookup form of the overview: `?source=S&symbol=BTCUSDT` → that symbol's page."""

    def build(session: Session) -> Response:
        source = params.choice(request, "source", SOURCES) or SOURCES[0]
        text = params.text(request, "symbol")
        if text is None:
            raise params.BadParameter("bad parameter symbol: give a symbol, e.g. BTCUSDT or BTC/USDT:USDT")
        return RedirectResponse(symbol_url(source, resolve_symbol(session.connection(), source, text)), 303)

    return _answer(request, build)


@router.get("/symbols/{source}/{symbol:path}")
def symbol_page(request: Request, source: str, symbol: str) -> Response:
    """A symbol's table at `?at=`, its versions, the diff of `?a=&b=` (default: the last change) and its chart."""

    def build(session: Session) -> Response:
        check_source(source)
        stored = resolve_symbol(session.connection(), source, symbol)
        at, now = params.time(request, "at"), utcnow()
        a, b = params.text(request, "a"), params.text(request, "b")
        if (a is None) != (b is None):
            raise params.BadParameter("bad parameter a/b: give both versions to compare, a (old) and b (new)")
        pair = (
            (params.integer(request, "a", 0, 1, MAX_ID), params.integer(request, "b", 0, 1, MAX_ID))
            if a and b
            else None
        )
        view = views.symbol_view(
            session,
            request.app.state.settings,
            source,
            stored,
            at=at or now,
            at_given=at is not None,
            pair=pair,
            now=now,
        )
        return render(request, "symbol.html", {"now": now, "v": view, "page_url": symbol_url(source, stored)})

    return _answer(request, build)


@router.get("/positions/{position_id}")
def position_page(request: Request, position_id: str) -> Response:
    """A position: inputs, current figures, the history of its impacts with a chart, and the what-if form."""

    def build(session: Session) -> Response:
        if not params.whole(position_id) or not 0 < int(position_id) <= MAX_ID:
            raise params.BadParameter(f"bad position id {position_id[:40]!r}: give a whole number, e.g. /positions/1")
        settings, now = request.app.state.settings, utcnow()
        view = position_views.position_view(session, settings, int(position_id), now)
        form = _whatif_form(request, view)
        result, problem = None, None
        if request.query_params.get("whatif"):
            try:
                w = _whatif_input(request)
                result = position_views.what_if(session, settings, view.position.source, view.position.symbol, w, now)
            except TierdriftError as exc:
                problem = " ".join(str(exc).split())
        context = {"now": now, "v": view, "form": form, "whatif": result, "whatif_error": problem}
        return render(request, "position.html", context, 400 if problem else 200)

    return _answer(request, build)


#: The what-if form's fields, the `liq` options: (name, label).
WHATIF_FIELDS = (
    ("entry", "entry price"), ("margin", "isolated margin"), ("qty", "size (base)"), ("notional", "size (notional)"),
    ("contracts", "contracts"), ("contract_size", "contract size"), ("mark", "mark price"), ("adr", "ADR"),
)  # fmt: skip


def _whatif_form(request: Request, view: position_views.PositionView) -> dict[str, str]:
    """The form's values: what was sent, else the position's own inputs and current market data."""
    p, a = view.position, view.assessment
    kind, _, typed = p.size_input.partition("=")
    defaults = {
        "side": p.side,
        "entry": f"{p.entry_price:.15g}",
        "margin": f"{p.margin:.15g}" if p.margin else "",
        kind: typed,
        "contract_size": f"{p.contract_size:.15g}" if p.source in ("binance-coinm", "bybit-inverse") else "",
        "mark": f"{a.mark:.15g}" if a and a.mark else "",
        "adr": f"{a.adr:.15g}" if a and a.adr else "",
        "at": "",
    }
    if request.query_params.get("whatif"):
        return {name: request.query_params.get(name, "") for name in defaults | dict(WHATIF_FIELDS)}
    return {name: defaults.get(name, "") for name in defaults | dict(WHATIF_FIELDS)}


def _whatif_input(request: Request) -> position_views.WhatIfInput:
    side = params.choice(request, "side", ("long", "short"))
    entry, margin = params.number(request, "entry"), params.number(request, "margin")
    if side is None or entry is None or margin is None:
        raise params.BadParameter("the what-if needs a side, an entry price and an isolated margin")
    number = functools.partial(params.number, request)
    return position_views.WhatIfInput(
        side, entry, margin, number("qty"), number("notional"), number("contracts"), number("contract_size"),
        number("mark"), number("adr"), params.time(request, "at"),
    )  # fmt: skip


@router.get("/alerts")
def alerts_page(request: Request) -> Response:
    """The outbox: every delivery with its status, attempts, next try and last error (secrets redacted)."""

    def build(session: Session) -> Response:
        settings = request.app.state.settings
        status = params.choice(request, "status", ("pending", "sent", "failed"))
        limit = params.integer(request, "limit", 100, 1, 1000)
        rows = views.deliveries(session, settings, statuses=(status,) if status else (), limit=limit)
        context = {
            "rows": rows,
            "status": status or "",
            "limit": limit,
            "disabled": views.disabled_channels(session, settings),
        }
        return render(request, "alerts.html", context)

    return _answer(request, build)


# -- assets -----------------------------------------------------------------------------------------


@functools.cache
def plotly_url() -> str:
    """Where the pages load plotly.js: the installed version is in the name, so that the year-long cache
    of a browser never keeps an old one after an upgrade."""
    return f"/static/plotly-{metadata.version('plotly')}.min.js"


@router.get("/static/plotly-{version}.min.js")
def plotly_js(request: Request, version: str) -> Response:
    """plotly.js as the installed `plotly` package ships it; gzipped when the browser takes it (4.8 MB → 1.4)."""
    if request.url.path != plotly_url():
        return Response("not found\n", status_code=404, media_type="text/plain")
    etag = f'"{plotly_url()}"'
    headers = {"Cache-Control": f"public, max-age={YEAR}, immutable", "Vary": "Accept-Encoding", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        zipped = _plotly_gzip()
        return Response(zipped, media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"})
    shipped = _plotly_file()
    if isinstance(shipped, Path):  # an installed package on disk: sent from the file, never held in memory
        return FileResponse(shipped, media_type="text/javascript", headers=headers)
    return Response(shipped.read_bytes(), media_type="text/javascript", headers=headers)


def _plotly_file() -> Traversable:
    # Found through the package's files, not imported: importing plotly costs a second and it is not needed.
    return resources.files("plotly") / "package_data" / "plotly.min.js"


@functools.cache
def _plotly_gzip() -> bytes:
    # Only the gzipped copy stays in the daemon's memory (1.4 MB: what browsers ask for); the plain 4.8 MB
    # is read from the package's file for the rare client that takes no gzip.
    return gzip.compress(_plotly_file().read_bytes(), 6)


@router.get("/static/{name}")
def asset(name: str) -> Response:
    """Our own stylesheet and script; any other name is a plain 404."""
    if name not in ASSETS:
        return Response("not found\n", status_code=404, media_type="text/plain")
    headers = {"Cache-Control": "public, max-age=3600"}
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers=headers)
