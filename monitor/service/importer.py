"""Backfill history from archived ccxt `fetch_leverage_tiers()` JSON files (`.json` or `.json.gz`).

Files are applied in date order, one transaction each, so a malformed file writes nothing and the files
before it stay imported. The import stops at the first bad file: importing later files would skip over a
version and misdate the changes it carries.

A snapshot time in the future (beyond a few minutes of clock skew) is refused before anything is read:
a typo such as 2062 for 2026 would otherwise delist whatever the file lacks and, as polls older than the
stored history are refused, block every live poll of the source until then. Whatever goes wrong inside a
file, expected or not, is one line naming the file.

Archives skip the vanishing-symbols quarantine: a file is a deliberate, complete record chosen by the
user, and real history has genuine mass delistings (Binance dropped its BUSD pairs, 14% of USDⓈ-M symbols,
between the 2023-12-12 and 2024-02-03 versions).
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.service.polling import Hook, describe
from snapshots.errors import PayloadError, SnapshotError
from snapshots.jsontext import NotSplit, decode_text
from snapshots.model import Snapshot, TierTable
from snapshots.parse import ParseCache, parse_ccxt_text, parse_ccxt_tiers
from snapshots.store import ApplyPolicy, PollResult, apply_snapshot
from snapshots.timefmt import CLOCK_SKEW, iso, utcnow

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")


class ImportFileError(SnapshotError):
    pass


@dataclass(frozen=True, slots=True)
class Planned:
    path: Path
    at: datetime


def date_from_name(path: Path) -> datetime:
    m = _DATE.match(path.name)
    if not m:
        raise ImportFileError(f"{path.name}: no leading YYYY-MM-DD in the file name; pass --at")
    try:
        return datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
    except ValueError:
        raise ImportFileError(f"{path.name}: {m.group(1)} is not a valid date") from None


def check_not_future(at: datetime, now: datetime, what: str) -> None:
    """Refuse a snapshot time more than `CLOCK_SKEW` after `now`; `what` says where the time came from."""
    if at > now + CLOCK_SKEW:
        raise ImportFileError(f"{what}: {iso(at)} is in the future (now {iso(now)}); a typo in the year?")


def plan(paths: Sequence[Path], at: datetime | None = None, *, now: datetime | None = None) -> list[Planned]:
    """Date every file and sort them oldest first (ties in name order); check they all exist and that
    no time is in the future of `now` (the real clock when None)."""
    now = now or utcnow()
    if at is not None and len(paths) > 1:
        raise ImportFileError("--at applies to one file; to import several, date them in their names")
    if at is not None:
        check_not_future(at, now, "--at")
    for p in paths:
        if not p.is_file():
            raise ImportFileError(f"{p}: no such file")
    planned = [Planned(p, at if at is not None else date_from_name(p)) for p in paths]
    for item in planned:
        if at is None:
            check_not_future(item.at, now, f"{item.path.name}: the date in its name")
    return sorted(planned, key=lambda x: (x.at, x.path.name))


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`, transparently gunzipped."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError) as exc:
        raise ImportFileError(f"{path.name}: cannot read: {exc}") from None


def _decode(path: Path, data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an integer too long, nesting too deep
        raise ImportFileError(f"{path.name}: not valid JSON: {exc}") from None


def load_snapshot(source: str, item: Planned, cache: ParseCache | None = None) -> Snapshot:
    """The snapshot in `item`'s file; with `cache`, a table whose entry is the one of the previous file
    that cache saw is taken from it rather than parsed and validated again (`snapshots.parse.ParseCache`);
    an entry whose text is the previous file's, byte for byte, is not even decoded (`parse_ccxt_text`)."""
    data = read_bytes(item.path)
    try:
        tables = _parse(source, item.path, data, cache)
    except ImportFileError:
        raise
    except PayloadError as exc:
        raise ImportFileError(f"{item.path.name}: {exc}") from None
    except Exception as exc:  # a parser bug on a shape nobody foresaw: still one line naming the file
        raise ImportFileError(f"{item.path.name}: {describe(exc)}") from exc
    if not tables:
        raise ImportFileError(f"{item.path.name}: holds no tier tables")
    return Snapshot(source, item.at, f"import:{item.path.name}", tables)


def _parse(source: str, path: Path, data: bytes, cache: ParseCache | None) -> dict[str, TierTable]:
    if cache is not None:
        try:
            return parse_ccxt_text(source, decode_text(data), cache)
        except (NotSplit, UnicodeDecodeError):
            pass  # not an object the split takes (bad JSON among them): json.loads says what it is
    return parse_ccxt_tiers(source, _decode(path, data), cache)


def import_files(
    engine: Engine,
    source: str,
    items: Sequence[Planned],
    *,
    hooks: Sequence[Hook] = (),
    progress: Callable[[Planned, PollResult], None] | None = None,
) -> list[PollResult]:
    """Import `items` (from `plan`) in order; raise at the first bad file, keeping the ones before it.

    Each file is all or nothing: its versions, changes and whatever `hooks` add commit together.
    """
    results = []
    cache = ParseCache()  # consecutive archives repeat most of their tables
    stored: dict[str, TierTable] = {}  # the tables of the last file imported: what is stored now
    for item in items:
        t0 = time.perf_counter()
        snap = load_snapshot(source, item, cache)
        try:
            result = _apply(engine, snap, item, t0, hooks, stored)
        except ImportFileError:
            raise
        except SnapshotError as exc:
            raise ImportFileError(f"{item.path.name}: {exc}") from None
        except Exception as exc:  # a bug or a database error: the file's transaction was rolled back
            raise ImportFileError(f"{item.path.name}: nothing imported from it: {describe(exc)}") from exc
        results.append(result)
        stored = snap.tables if result.outcome == "ok" else {}
        if progress:
            progress(item, result)
    return results


def _apply(
    engine: Engine, snap: Snapshot, item: Planned, t0: float, hooks: Sequence[Hook], stored: dict[str, TierTable]
) -> PollResult:
    with Session(engine) as session:
        result = apply_snapshot(
            session,
            snap,
            started_at=item.at,
            duration_ms=(time.perf_counter() - t0) * 1000,
            kind="import",
            policy=ApplyPolicy(max_vanish_share=None),
            known=stored,
        )
        for hook in hooks:
            hook(session, result)
        session.commit()
    return result
