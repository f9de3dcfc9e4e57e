"""The dashboard's query parameters, read as text and parsed here: a bad one is `BadParameter`, whose
one line is the 400 page (FastAPI's own validation would answer JSON, and name the parameter less well).
"""

from __future__ import annotations

import math
from datetime import datetime

from fastapi import Request

from snapshots.errors import TierdriftError
from snapshots.timefmt import iso, parse_ts


class BadParameter(TierdriftError):
    """A query parameter that cannot be used; its text is the 400 page's one line."""


def text(request: Request, name: str) -> str | None:
    """The parameter as given, trimmed; None when absent or blank (an empty form field means "any")."""
    value = (request.query_params.get(name) or "").strip()
    return value or None


def time(request: Request, name: str) -> datetime | None:
    value = text(request, name)
    if value is None:
        return None
    try:
        return parse_ts(value)
    except TierdriftError as exc:
        raise BadParameter(f"bad parameter {name}: {exc}") from None


def number(request: Request, name: str) -> float | None:
    value = text(request, name)
    if value is None:
        return None
    try:
        number = float(value.replace(",", "").replace("_", ""))
    except ValueError:
        raise BadParameter(f"bad parameter {name}: {value[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise BadParameter(f"bad parameter {name}: must be a finite number")
    return number


def integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = text(request, name)
    if value is None:
        return default
    if not whole(value) or not low <= int(value) <= high:
        raise BadParameter(f"bad parameter {name}: give a whole number from {low} to {high}")
    return int(value)


def whole(text: str) -> bool:
    """ASCII digits only: `str.isdigit` also takes "²", which `int` refuses."""
    return text.isascii() and text.isdigit()


def choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = text(request, name)
    if value is not None and value not in choices:
        raise BadParameter(f"bad parameter {name}: choose one of {', '.join(choices)}")
    return value


def cursor(request: Request) -> tuple[datetime, int] | None:
    """The changes feed's cursor, `<ISO time>~<id>` as its pager wrote it."""
    value = text(request, "cursor")
    if value is None:
        return None
    at, _, rid = value.rpartition("~")
    try:
        cursor = parse_ts(at), int(rid)
    except (TierdriftError, ValueError):
        cursor = None
    if cursor is None or not 0 <= cursor[1] < 2**63:  # a database integer: larger ones overflow the driver
        raise BadParameter("bad parameter cursor: use the links of the page")
    return cursor


def cursor_text(cursor: tuple[datetime, int]) -> str:
    return f"{iso(cursor[0])}~{cursor[1]}"
