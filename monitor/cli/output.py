"""Shapes of what the CLI prints: the human tables, and the `--json` contracts.

The JSON shapes are contracts other tools script against; tests/cli/test_cli.py pins their keys. They live
in `monitor.service.shapes`, shared with the web API, and are re-exported here.

Human output treats outside text (symbols, exchange and channel errors, notes) as data: the console
interprets no Rich markup or emoji codes, every string it renders has its control characters shown as
escapes (`snapshots.printable`), and `safe` also keeps a value on one line. Times are shown to the second.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from monitor.service.shapes import change_json as change_json
from monitor.service.shapes import poll_json as poll_json
from monitor.service.shapes import status_json as status_json
from monitor.service.shapes import version_json as version_json
from snapshots.history import StoredChange
from snapshots.model import Tier
from snapshots.numbers import leverage, num, pct
from snapshots.printable import printable
from snapshots.timefmt import parse_ts

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.table import Table


#: Outside text longer than this is clipped in human output (the JSON outputs keep it whole). As long as
#: the longest poll error (`monitor.exchanges.errors.MAX_LINE`), whose end can say what to do about it.
TEXT_LIMIT = 1000


@functools.cache
def console() -> Console:
    """The console of every human output: literal text only, control characters escaped."""
    # rich costs ~20 ms to import; `--json` output never needs it.
    from rich.console import Console
    from rich.text import Text

    class SafeConsole(Console):
        # Every str rich prints (lines, table cells, titles) passes here: a symbol such as `[/]` or
        # `[link=…]` stays text (markup is off), and an ESC or `\r` in it cannot reach the terminal.
        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(printable(text, keep_newlines=True), **kwargs)

    # Piped output keeps whole values instead of rich's 80-column ellipses, unless COLUMNS asks for a width.
    width = None if for_screen() else 200
    return SafeConsole(highlight=False, markup=False, emoji=False, soft_wrap=True, width=width)


def for_screen() -> bool:
    """True when output is laid out for a screen: stdout is a terminal, or COLUMNS gives a width."""
    return sys.stdout.isatty() or bool(os.environ.get("COLUMNS"))


def safe(text: object, limit: int | None = TEXT_LIMIT) -> str:
    """Outside text for a human output: one line, control characters as escapes, at most `limit` characters
    (None: no limit)."""
    return printable(str(text), limit=limit)


def error_text(exc: BaseException) -> str:
    """`error: …` for a deliberate error, on one line with its control characters escaped (its text may
    quote a symbol or a server's answer). An error listing `problems` (a CSV import's bad rows) adds one
    line per problem under it, indented, each made one line the same way."""
    text = str(exc)
    found = getattr(exc, "problems", None)
    problems = [str(p) for p in found] if isinstance(found, list) else []
    listed = "\n" + "\n".join(problems)
    if problems and text.endswith(listed):
        return "\n".join([f"error: {printable(text[: -len(listed)])}", *(f"  {printable(p)}" for p in problems)])
    return f"error: {printable(text)}"


def when(dt: datetime | None, missing: str = "—", *, sep: str = " ") -> str:
    """A time for people: UTC to the second, `2024-01-31 12:00:05` (the README's rule: no offset means
    UTC), so that a narrow table wraps it at its space. Truncated, not rounded: given back to `--since`,
    it still covers the instant shown. `missing` for None; `sep="T"` for a time inside a shell command."""
    if dt is None:
        return missing
    aware = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt  # SQLite gives naive UTC back
    return aware.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat(sep=sep)


def when_text(text: str | None, missing: str = "—") -> str:
    """`when` of a time already rendered as ISO 8601 (a JSON row's value)."""
    return missing if text is None else when(parse_ts(text))


#: A word longer than this may be folded in a narrow column; shorter ones (an alert id: 38) stay whole.
_WORD_MAX = 40


def new_table(*columns: str, wrap: Iterable[str] = (), **kwargs: Any) -> Table:
    """A table with these column headers, readable on a terminal of any width (see `fit_widths`): the
    `wrap` columns (times, symbols, free text) wrap at spaces and give up their width first; the others
    (ids, sources, numbers, words) stay whole. When even that is too wide, each row is printed as one
    wrapped `header: value · …` paragraph instead. Nothing is cut short with `…`. `kwargs` go to
    `rich.table.Table`."""
    from rich.table import Table

    class FittedTable(Table):
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            widths = fit_widths(self, options.max_width)
            if widths is None:
                yield from _records(self, console, options.max_width)
                return
            for column, width in zip(self.columns, widths, strict=True):
                column.width = width
            yield from super().__rich_console__(console, options)

    table = FittedTable(**kwargs)
    wrapping = set(wrap)
    for name in columns:
        table.add_column(name, overflow="fold", no_wrap=name not in wrapping)
    return table


def _cell_width(text: str, words: bool = False) -> int:
    from rich.cells import cell_len

    return max((cell_len(part) for part in (text.split() if words else text.split("\n"))), default=0)


def fit_widths(table: Table, max_width: int) -> list[int | None] | None:
    """Widths for the columns of `table` (a `new_table`, its cells str) within `max_width` cells.

    All None when it fits as it is. Otherwise every wrapping column starts at its longest word (at most
    `_WORD_MAX`) and the spare width goes back to the columns that need the least to be whole again,
    so as many columns as possible stay on one line. None when even the longest words do not fit.
    """
    texts = [[str(c.header), *map(str, c.cells)] for c in table.columns]
    natural = [max(_cell_width(t) for t in column) for column in texts]
    floors = [
        n if c.no_wrap else max(1, min(n, _WORD_MAX, max(_cell_width(t, words=True) for t in column)))
        for c, n, column in zip(table.columns, natural, texts, strict=True)
    ]
    room = max_width - (3 * len(texts) + 1)  # the default box: a border and a space each side of a column
    if sum(natural) <= room:
        return [None] * len(texts)
    if sum(floors) > room:
        return None
    widths: list[int | None] = list(floors)
    spare = room - sum(floors)
    for i in sorted(range(len(texts)), key=lambda i: natural[i] - floors[i]):
        give = min(spare, natural[i] - floors[i])
        widths[i] = floors[i] + give
        spare -= give
    return widths


def _records(table: Table, console: Console, width: int) -> Iterator[RenderableType]:
    """`table` as one paragraph per row, `• header: value · header: value`, wrapped to `width` under a
    hanging indent; empty values are left out."""
    from rich.text import Text

    if table.title:
        yield str(table.title)
    headers = [str(c.header) for c in table.columns]
    for row in zip(*(list(map(str, c.cells)) for c in table.columns), strict=True):
        flat = [" ".join(value.split("\n")) for value in row]  # an alert's id and title share a cell
        pairs = [f"{h}: {v}" for h, v in zip(headers, flat, strict=True) if v.strip()]
        lines = console.render_str(" · ".join(pairs)).wrap(console, max(width - 2, 1), overflow="fold")
        for i, line in enumerate(lines):
            line.rstrip()
            yield Text("• " if i == 0 else "  ") + line


def emit_json(data: Any) -> None:
    # Plain print: rich would re-wrap or colour the text and break pipes into `jq`.
    print(indented_json(data))


@functools.cache
def _run_encoder(depth: int) -> Callable[[Any], str]:
    """The C encoder writing a container of scalars as `json.dumps(indent=2)` does `depth` levels in: one
    item a line. The standard library's encoder is pure Python whenever it indents (5 times slower)."""
    sep = ",\n" + "  " * depth
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(sep, ": "))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return encoder.encode
    # The C encoder `encoder.encode` would build, built once: `indented_json` calls it for every run of
    # every container, tens of thousands of times for positions with journals, and `encode`'s Python frames
    # around each call cost more than most runs. No cycle check (markers None): our shapes are acyclic.
    chunks = make(None, encoder.default, json.encoder.encode_basestring, None, ": ", sep, False, False, True)
    return lambda value: "".join(chunks(value, 0))


def indented_json(value: Any, depth: int = 0) -> str:
    """`json.dumps(value, ensure_ascii=False, indent=2)`, byte for byte (tests/cli/test_json_text.py), with
    the C encoder writing every run of scalars inside a dict or list, and every run of flat dicts in a list
    (a JSON output's usual rows) in one call; Python only walks the containers. `depth`: the text is for a
    value nested that many levels in (its lines after the first are indented as such). An empty dict or
    list is a scalar here: `{}` and `[]` in both encoders. `value` must be acyclic, as our shapes are."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        return _dict_text(value, depth, _nested(list(value.values())))
    if isinstance(value, list | tuple):
        return _wrapped("[", _list_parts(value, depth + 1), "]", depth) if value else "[]"
    return _run_encoder(depth)(value)


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _dict_text(value: dict[Any, Any], depth: int, nested: list[int] | None) -> str:
    """`indented_json` of a non-empty dict whose non-empty containers are at `nested` (see `_nested`)."""
    if nested == []:
        return _wrapped("{", [_run_encoder(depth + 1)(value)[1:-1]], "}", depth)
    if not set(map(type, value)) <= {str}:  # other keys become text as the encoder sees fit
        return json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n" + "  " * depth)
    return _wrapped("{", _dict_parts(value, depth + 1, nested), "}", depth)


_CONTAINERS = (dict, list, tuple)
_PLAIN = _SCALARS | set(_CONTAINERS)


def _nested(values: list[Any]) -> list[int] | None:
    """The indexes of the non-empty dicts, lists and tuples among `values`, in order; None when a value's
    type is none of those nor a scalar's (a subclass: the caller then looks at each value). The containers
    are found by the C-level `list.index` on the values' types: a row has dozens of scalars and a few
    containers, and a Python test of each value cost more than encoding them."""
    types = list(map(type, values))
    kinds = set(types)
    if not kinds <= _PLAIN:
        return None
    found = []
    for kind in _CONTAINERS:
        i = -1
        for _ in range(types.count(kind) if kind in kinds else 0):
            i = types.index(kind, i + 1)
            if values[i]:
                found.append(i)
    return sorted(found)


def _rows_text(rows: list[dict[str, Any]], depth: int) -> str:
    """Consecutive items of a list, non-empty dicts of scalars at `depth`, in one C encoder call: laid out
    for their keys, the rows' boundaries `},<keys' indent>{` are then given the rows' own indent. A JSON
    string holds no raw newline and an object's value never follows a separator, so the boundary appears
    nowhere else."""
    rows_pad, keys_pad = "\n" + "  " * depth, "\n" + "  " * (depth + 1)
    text = _run_encoder(depth + 1)(rows)[2:-2]
    body = text.replace("}," + keys_pad + "{", rows_pad + "}," + rows_pad + "{" + keys_pad)
    return "{" + keys_pad + body + rows_pad + "}"


def _wrapped(opening: str, parts: list[str], closing: str, depth: int) -> str:
    inner = "\n" + "  " * (depth + 1)
    return opening + inner + ("," + inner).join(parts) + "\n" + "  " * depth + closing


def _dict_parts(value: dict[str, Any], depth: int, nested: list[int] | None = None) -> list[str]:
    """The items of a dict at `depth`: each run of items between its non-empty containers (their indexes,
    `nested`, if known) in one C encoder call."""
    encoder = _run_encoder(depth)
    items = list(value.items())
    if nested is None:
        nested = [i for i, (_, item) in enumerate(items) if item and isinstance(item, dict | list | tuple)]
    parts: list[str] = []
    start = 0
    for i in nested:
        if i > start:
            parts.append(encoder(dict(items[start:i]))[1:-1])
        key, item = items[i]
        parts.append(encoder(key) + ": " + indented_json(item, depth))
        start = i + 1
    if start < len(items):
        parts.append(encoder(dict(items[start:]))[1:-1])
    return parts


def _list_parts(value: list[Any] | tuple[Any, ...], depth: int) -> list[str]:
    """The items of a list at `depth`: runs of scalars and runs of flat rows each in one C encoder call."""
    encoder = _run_encoder(depth)
    parts: list[str] = []
    run: list[Any] = []
    rows: list[dict[str, Any]] = []
    for item in value:
        nested = _nested(list(item.values())) if type(item) is dict and item else None
        if nested == []:
            if run:
                parts.append(encoder(run)[1:-1])
                run = []
            rows.append(item)
            continue
        if rows:
            parts.append(_rows_text(rows, depth))
            rows = []
        if item and isinstance(item, dict | list | tuple):
            if run:
                parts.append(encoder(run)[1:-1])
                run = []
            parts.append(
                indented_json(item, depth) if nested is None else _dict_text(cast(dict[Any, Any], item), depth, nested)
            )
        else:
            run.append(item)
    if run:
        parts.append(encoder(run)[1:-1])
    if rows:
        parts.append(_rows_text(rows, depth))
    return parts


#: A flat object (scalar values) in the layout `json.dumps(indent=2)` gives it as an item of a list.
_FLAT_ITEM = _run_encoder(2)


def _item_text(item: Any) -> str:
    return "  " + indented_json(item, 1)


def stream_json(items: Iterable[Any], out: Any = None, flush_every: int = 1000, *, flat: bool = False) -> None:
    """Write `items` as one JSON array as they come, byte for byte what `emit_json(list(items))` prints,
    without holding them all: memory stays flat whatever the count. `out` defaults to stdout. `flat`: the
    caller promises every item is a non-empty dict of scalars (as `change_json`), which skips the check."""
    out = out or sys.stdout
    buffer: list[str] = []
    first = True
    for item in items:
        text = "  {\n    " + _FLAT_ITEM(item)[1:-1] + "\n  }" if flat else _item_text(item)
        buffer.append(("[\n" if first else ",\n") + text)
        first = False
        if len(buffer) >= flush_every:
            out.write("".join(buffer))
            buffer.clear()
    buffer.append("[]\n" if first else "\n]\n")
    out.write("".join(buffer))


def span(first: datetime, last: datetime | None, count: int) -> str:
    """When a run of `count` polls ran: one time, or `first → last` (both to the second)."""
    if count <= 1 or last is None or last == first:
        return when(first)
    return f"{when(first)} → {when(last)}"


def tiers_table(title: str, tiers: Sequence[Tier], unit_label: str) -> Table:
    table = new_table(title=title, title_justify="left")
    for name in (
        "tier",
        f"floor ({unit_label})",
        f"cap ({unit_label})",
        "maint. rate",
        "maint. amount",
        "max lev.",
    ):
        table.add_column(name, justify="right", overflow="fold")
    for t in tiers:
        table.add_row(
            str(t.tier),
            num(t.floor),
            num(t.cap),
            pct(t.maintenance_margin_rate),
            num(t.maintenance_amount),
            leverage(t.max_leverage),
        )
    return table


def what_changed(c: StoredChange) -> str:
    """The change itself, without its symbol: `listed`, `tier 3 added`, `tier 2 cap 50,000 → 40,000`."""
    ch = c.change
    if ch.kind in ("symbol_listed", "symbol_delisted"):
        return ch.kind.replace("_", " ")
    if ch.kind != "tier_changed":
        return f"tier {ch.tier} {ch.kind.split('_')[1]}"
    field = (ch.field or "").replace("_", " ")
    if ch.field == "maintenance_margin_rate":
        return f"tier {ch.tier} {field} {pct(ch.old)} → {pct(ch.new)}"
    return f"tier {ch.tier} {field} {num(ch.old)} → {num(ch.new)}"


def describe_change(c: StoredChange) -> str:
    """One change as one line of text, its symbol made `safe`: `BTC/USDT:USDT: tier 3 added`."""
    return f"{safe(c.change.symbol)}: {what_changed(c)}"


#: The columns of `changes` in human output, as a table and as plain lines (one per change).
CHANGE_COLUMNS = ("detected", "between", "source", "symbol", "change")
#: Between the columns of a plain line: two spaces (times hold one; a tab would be a control character).
COLUMN_SEP = "  "


def change_line(c: StoredChange) -> str:
    """One change as one plain line of `CHANGE_COLUMNS` (its symbol made `safe`)."""
    return COLUMN_SEP.join(
        (when(c.detected_at), when(c.previous_poll_at), c.change.source, safe(c.change.symbol), what_changed(c))
    )


def changes_table(changes: Iterable[StoredChange]) -> Table:
    """Detected changes, one per row: when (and the poll before it), where, and what changed."""
    table = new_table(*CHANGE_COLUMNS, wrap=("detected", "between", "symbol", "change"))
    for c in changes:
        table.add_row(
            when(c.detected_at), when(c.previous_poll_at), c.change.source, safe(c.change.symbol), what_changed(c)
        )
    return table
