"""The positions log: validate what a trader enters, store it, and import it from CSV all-or-nothing.

A position is checked against the tier table stored for its symbol, so an unknown symbol, a size that
is not positive, or a margin that no exchange would accept (below the initial margin of the tier that
holds the notional) is refused before anything is written. So are numbers no trade has (NaN, infinities,
anything above `MAX_AMOUNT`) and open times in the future or before perpetual futures existed.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from monitor.risk.figures import CROSS_ACCOUNT_LEVEL, CROSS_COMPUTED
from monitor.risk.liquidation import PositionError
from monitor.store.models import Account, Position
from snapshots.errors import NotFound, TierdriftError
from snapshots.history import check_source, resolve_symbol, table_at, versions
from snapshots.model import is_inverse
from snapshots.timefmt import CLOCK_SKEW, iso, parse_ts

CSV_COLUMNS = (
    "source",
    "symbol",
    "side",
    "entry",
    "qty",
    "notional",
    "contracts",
    "contract_size",
    "mode",
    "margin",
    "adr",
    "note",
    "opened_at",
)


#: The largest price, size, margin or balance taken: above every exchange's tier caps and open interest
#: (Binance's largest notional cap is about 1e9 USDT), so a larger number is a typo, and products of two
#: such numbers stay finite (1e308 × 1e308 is inf).
MAX_AMOUNT = 1e15
#: No perpetual future existed before BitMEX listed XBTUSD on 2016-05-13: an earlier open time is a typo.
EARLIEST_OPEN = datetime(2016, 5, 13, tzinfo=UTC)
#: A positions CSV is a few kilobytes; a larger file is not one (and is not read into memory).
MAX_CSV_BYTES = 10_000_000
#: At most this many bad rows are listed; the count covers them all.
MAX_REPORTED = 50


class CsvImportError(TierdriftError):
    """Every bad row of a CSV file (up to `MAX_REPORTED`), one per line; nothing was written."""

    def __init__(self, path: str, problems: list[str]) -> None:
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"{path}: {problems[0]}; nothing imported")
            self.problems: list[str] = []
            return
        shown = problems[:MAX_REPORTED]
        if len(problems) > len(shown):
            shown.append(f"… and {len(problems) - len(shown)} more")
        super().__init__(f"{path}: {len(problems)} bad row(s), nothing imported\n" + "\n".join(shown))
        self.problems = shown


class CsvFileError(TierdriftError):
    """A file that cannot be read as CSV text at all (unreadable, too large, not UTF-8); nothing was written."""


@dataclass(frozen=True, slots=True)
class PositionInput:
    """A position as typed by the user, before validation."""

    source: str
    symbol: str
    side: str
    entry: float
    qty: float | None = None
    notional: float | None = None
    contracts: float | None = None
    contract_size: float | None = None
    mode: str = "isolated"
    margin: float | None = None
    adr: float | None = None
    note: str | None = None
    opened_at: datetime | None = None


def default_contract_size(source: str, symbol: str) -> float:
    """Face value of one inverse contract in USD: Binance COIN-M BTC 100, others 10; Bybit inverse 1."""
    if source == "binance-coinm":
        return 100.0 if symbol.startswith("BTC/") else 10.0
    return 1.0


def check_amount(name: str, value: float, *, zero_ok: bool = False) -> float:
    """`value` if it is a finite number above 0 (or at 0, with `zero_ok`) and at most `MAX_AMOUNT`; else a
    one-line `PositionError` naming `name`."""
    if not math.isfinite(value):
        raise PositionError(f"{name} must be a finite number, got {value:g}")
    if value < 0 or (value == 0 and not zero_ok):
        raise PositionError(f"{name} must be {'≥' if zero_ok else '>'} 0, got {value:g}")
    if value > MAX_AMOUNT:
        raise PositionError(f"{name} {value:g} is too large (at most {MAX_AMOUNT:g})")
    return value


def check_opened(opened_at: datetime | None, now: datetime) -> datetime | None:
    """`opened_at` unless it is in the future (beyond `CLOCK_SKEW`) or before `EARLIEST_OPEN`."""
    if opened_at is None:
        return None
    if opened_at > now + CLOCK_SKEW:
        raise PositionError(f"opened_at {iso(opened_at)} is in the future (now {iso(now)}); a typo in the year?")
    if opened_at < EARLIEST_OPEN:
        raise PositionError(
            f"opened_at {iso(opened_at)} is before the first perpetual future ({EARLIEST_OPEN.date()}); a typo?"
        )
    return opened_at


def size_of(p: PositionInput, symbol: str) -> tuple[float, str, float]:
    """(size, what the user typed, contract size): base quantity for linear, contracts for inverse."""
    given = [(k, v) for k, v in (("qty", p.qty), ("notional", p.notional), ("contracts", p.contracts)) if v is not None]
    if len(given) != 1:
        raise PositionError("give exactly one of --qty, --notional or --contracts")
    kind, value = given[0]
    check_amount(kind, value)
    check_amount("entry price", p.entry)
    typed = f"{kind}={value:.15g}"  # as typed: :g would show 3683.979 as 3683.98
    if not is_inverse(p.source):
        if kind == "contracts" or p.contract_size is not None:
            raise PositionError(f"{p.source} is linear: give --qty (base) or --notional (quote), not contracts")
        return _nonzero(value if kind == "qty" else value / p.entry, typed), typed, 1.0
    cs = p.contract_size if p.contract_size is not None else default_contract_size(p.source, symbol)
    check_amount("contract size", cs)
    contracts = {"contracts": value, "notional": value / cs, "qty": value * p.entry / cs}[kind]
    return _nonzero(contracts, typed), typed, cs


def _nonzero(size: float, typed: str) -> float:
    # A tiny notional over a huge price underflows to a size of 0, which no formula can price.
    if not size > 0:
        raise PositionError(f"{typed} is too small: the size rounds to 0")
    return size


def validate(conn: Connection, p: PositionInput, *, now: datetime) -> Position:
    """A `Position` ready to store, or `PositionError`/`NotFound` with a one-line reason."""
    check_source(p.source)
    if p.side not in ("long", "short"):
        raise PositionError(f"side must be long or short, got {p.side!r}")
    check_amount("entry price", p.entry)
    opened_at = check_opened(p.opened_at, now)
    symbol = resolve_symbol(conn, p.source, p.symbol)
    size, typed, cs = size_of(p, symbol)
    if p.mode not in ("isolated", "cross"):
        raise PositionError(f"mode must be isolated or cross, got {p.mode!r}")
    if p.mode == "cross":
        if p.source not in CROSS_COMPUTED + CROSS_ACCOUNT_LEVEL:
            raise PositionError(f"cross margin on {p.source} cannot be computed; log it as isolated")
        if p.margin is not None:
            raise PositionError("a cross position has no margin of its own; set the wallet with `account set`")
    else:
        _check_margin(conn, p, symbol, size, cs, opened_at or now)
    if p.adr is not None:
        check_amount("ADR", p.adr)
    return Position(
        source=p.source,
        symbol=symbol,
        side=p.side,
        entry_price=p.entry,
        size=size,
        size_input=typed,
        contract_size=cs,
        mode=p.mode,
        margin=p.margin,
        adr_override=p.adr,
        note=p.note,
        opened_at=opened_at or now,
    )


def _check_margin(conn: Connection, p: PositionInput, symbol: str, size: float, cs: float, at: datetime) -> None:
    """The margin fits the tier holding the notional in the table in force at `at` (the opening), or in
    the oldest one stored when the history begins later."""
    if p.margin is None:
        raise PositionError("an isolated position needs --margin")
    check_amount("margin", p.margin)
    try:
        table, _ = table_at(conn, p.source, symbol, at)
    except NotFound:
        first = versions(conn, p.source, symbol)
        if not first:
            raise
        table, _ = table_at(conn, p.source, symbol, first[0].valid_from)
    notional = size * cs / p.entry if is_inverse(p.source) else size * p.entry
    tier = table.tier_for(notional)
    needed = notional / tier.max_leverage
    if p.margin < needed * (1 - 1e-9):
        unit = "coin" if is_inverse(p.source) else "quote"
        raise PositionError(
            f"margin {p.margin:g} does not fit: notional {notional:,.2f} is in tier {tier.tier} "
            f"(max {tier.max_leverage:g}×), which needs at least {needed:,.2f} {unit}"
        )


def add(session: Session, position: Position) -> Position:
    session.add(position)
    session.flush()
    return position


def close(session: Session, position_id: int, at: datetime) -> Position:
    position = session.get(Position, position_id)
    if position is None:
        raise NotFound(f"no position with id {position_id}")
    if position.closed_at is not None:
        raise NotFound(f"position {position_id} is already closed")
    position.closed_at = at
    session.add(position)
    return position


def open_positions(session: Session, source: str | None = None) -> list[Position]:
    stmt = select(Position).where(col(Position.closed_at).is_(None))
    if source:
        stmt = stmt.where(Position.source == source)
    return list(session.exec(stmt.order_by(col(Position.id))))


def priced_with(session: Session, position: Position) -> list[Position]:
    """The open positions that `position`'s figures depend on, itself first: with a Binance cross
    position, every open cross position of its account, whose maintenance margins and PnL are its
    TMM1 and UPNL1 (domain doc §3); otherwise `position` alone. `assess` prices the list together."""
    if position.mode != "cross" or position.source not in CROSS_COMPUTED or position.closed_at is not None:
        return [position]
    account = [p for p in open_positions(session, position.source) if p.mode == "cross" and p.id != position.id]
    return [position, *account]


def set_wallet(session: Session, source: str, balance: float, at: datetime) -> Account:
    check_source(source)
    if source not in CROSS_COMPUTED:
        raise PositionError(f"cross wallet balances are used for {', '.join(CROSS_COMPUTED)} only")
    check_amount("wallet balance", balance, zero_ok=True)
    account = session.get(Account, source) or Account(source=source, wallet_balance=balance, updated_at=at)
    account.wallet_balance = balance
    account.updated_at = at
    session.add(account)
    return account


# -- CSV ---------------------------------------------------------------------------------------------


def _opt_float(row: dict[str, str], key: str) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise PositionError(f"{key} {text!r} is not a number") from None


def parse_csv(text: str, extra: Sequence[str] = ()) -> list[tuple[int, PositionInput | str]]:
    """(line number, input or the reason the row is bad) for every data row. `extra`: more columns allowed
    (read by the caller, e.g. the journal's)."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        return [(1, f"malformed CSV: {exc}")]
    problem = _header_problem(header, extra)
    if problem:
        return [(1, problem)]
    out: list[tuple[int, PositionInput | str]] = []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return out
        except csv.Error as exc:  # e.g. a field over the csv module's size limit: the rest cannot be trusted
            out.append((reader.line_num, f"malformed CSV: {exc}"))
            return out
        out.append((reader.line_num, _row_input(row)))


def _header_problem(header: list[str], extra: Sequence[str] = ()) -> str | None:
    missing = {"source", "symbol", "side", "entry"} - set(header)
    if missing:
        return f"missing column(s): {', '.join(sorted(missing))}"
    unknown = set(header) - set(CSV_COLUMNS) - set(extra)
    if unknown:
        return f"unknown column(s): {', '.join(repr(name) for name in sorted(unknown))}"
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        return f"column(s) given twice: {', '.join(twice)}"
    return None


def _row_input(row: dict[str | None, str | list[str] | None]) -> PositionInput | str:
    """The row as a `PositionInput`, or the reason it is bad."""
    extra = row.get(None)
    if extra:
        return f"{len(extra)} more value(s) than the header has columns"
    values = {k: v for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
    try:
        entry = _opt_float(values, "entry")
        if entry is None:
            raise PositionError("entry is empty")
        opened = (values.get("opened_at") or "").strip()
        return PositionInput(
            source=(values.get("source") or "").strip(),
            symbol=(values.get("symbol") or "").strip(),
            side=(values.get("side") or "").strip().lower(),
            entry=entry,
            qty=_opt_float(values, "qty"),
            notional=_opt_float(values, "notional"),
            contracts=_opt_float(values, "contracts"),
            contract_size=_opt_float(values, "contract_size"),
            mode=(values.get("mode") or "isolated").strip().lower() or "isolated",
            margin=_opt_float(values, "margin"),
            adr=_opt_float(values, "adr"),
            note=unquote((values.get("note") or "").strip()) or None,
            opened_at=parse_ts(opened) if opened else None,
        )
    except TierdriftError as exc:
        return str(exc)


#: How a cell that a spreadsheet would run as a formula starts.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def unquote(text: str) -> str:
    """A cell without the quote that `positions export` puts before text starting like a formula."""
    return text[1:] if text.startswith("'") and text[1:2] in FORMULA_START else text


def read_csv_text(path: Path) -> str:
    """The text of a CSV file: UTF-8 (a BOM allowed) or UTF-16 with its BOM (a spreadsheet's "Unicode
    text"). Anything else is a one-line `CsvFileError` naming the file, and the line of a bad byte."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO or /dev/zero: nothing to read, or never an end
            raise CsvFileError(f"{path}: not a regular file")
        size = info.st_size
        if size > MAX_CSV_BYTES:
            raise CsvFileError(f"{path}: {size:,} bytes is too large for a positions CSV (at most {MAX_CSV_BYTES:,})")
        data = path.read_bytes()
    except OSError as exc:
        raise CsvFileError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvFileError(
            f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not {'UTF-16' if utf16 else 'UTF-8'} text; "
            "save the file as UTF-8 CSV"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CsvFileError(
            f"{path}: line {line}: a NUL byte: not CSV text (UTF-16 without its byte-order mark, or a binary "
            "file); save it as UTF-8 CSV"
        )
    return text


def import_csv(session: Session, path: Path, *, now: datetime, extra: Sequence[str] = ()) -> list[Position]:
    """Validate every row, then store them all in the caller's transaction (in row order), or raise
    `CsvImportError` (bad rows) or `CsvFileError` (a file that is not CSV text). `extra`: more columns
    allowed, left to the caller (monitor.journal.export reads the journal's)."""
    rows = parse_csv(read_csv_text(path), extra)
    if not rows:
        raise CsvImportError(str(path), ["no rows"])
    problems: list[str] = []
    positions: list[Position] = []
    conn = session.connection()
    for line, item in rows:
        if isinstance(item, str):
            problems.append(f"line {line}: {item}")
            continue
        try:
            positions.append(validate(conn, item, now=now))
        except TierdriftError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise CsvImportError(str(path), problems)
    for p in positions:
        session.add(p)
    session.flush()
    return positions
