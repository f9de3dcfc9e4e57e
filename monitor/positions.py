"""The positions log: validate what a trader enters, store it, and import it from CSV all-or-nothing.

A position is checked against the tier table stored for its symbol, so an unknown symbol, a size that
is not positive, or a margin that no exchange would accept (below the initial margin of the tier that
holds the notional) is refused before anything is written.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from monitor.liquidation import PositionError
from monitor.models import Account, Position
from snapshots.errors import NotFound, TierdriftError
from snapshots.history import check_source, resolve_symbol, table_at
from snapshots.model import is_inverse
from snapshots.timefmt import parse_ts

#: Sources whose cross margin has a per-position formula (domain doc §3).
CROSS_COMPUTED = ("binance-usdm",)
#: Sources where cross margin is account-level: positions are kept, their liquidation price is not computed.
CROSS_ACCOUNT_LEVEL = ("bybit-linear", "bybit-inverse")

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


class CsvImportError(TierdriftError):
    """Every bad row of a CSV file, one per line; nothing was written."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} bad row(s), nothing imported\n" + "\n".join(problems))
        self.problems = problems


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


def size_of(p: PositionInput, symbol: str) -> tuple[float, str, float]:
    """(size, what the user typed, contract size): base quantity for linear, contracts for inverse."""
    given = [(k, v) for k, v in (("qty", p.qty), ("notional", p.notional), ("contracts", p.contracts)) if v is not None]
    if len(given) != 1:
        raise PositionError("give exactly one of --qty, --notional or --contracts")
    kind, value = given[0]
    if not math.isfinite(value) or value <= 0:
        raise PositionError(f"{kind} must be > 0, got {value:g}")
    typed = f"{kind}={value:g}"
    if not is_inverse(p.source):
        if kind == "contracts" or p.contract_size is not None:
            raise PositionError(f"{p.source} is linear: give --qty (base) or --notional (quote), not contracts")
        return (value if kind == "qty" else value / p.entry), typed, 1.0
    cs = p.contract_size if p.contract_size is not None else default_contract_size(p.source, symbol)
    if not math.isfinite(cs) or cs <= 0:
        raise PositionError(f"contract size must be > 0, got {cs:g}")
    contracts = {"contracts": value, "notional": value / cs, "qty": value * p.entry / cs}[kind]
    return contracts, typed, cs


def validate(conn: Connection, p: PositionInput, *, now: datetime) -> Position:
    """A `Position` ready to store, or `PositionError`/`NotFound` with a one-line reason."""
    check_source(p.source)
    if p.side not in ("long", "short"):
        raise PositionError(f"side must be long or short, got {p.side!r}")
    if not math.isfinite(p.entry) or p.entry <= 0:
        raise PositionError(f"entry price must be > 0, got {p.entry:g}")
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
        _check_margin(conn, p, symbol, size, cs, now)
    if p.adr is not None and (not math.isfinite(p.adr) or p.adr <= 0):
        raise PositionError(f"ADR must be > 0, got {p.adr:g}")
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
        opened_at=p.opened_at or now,
    )


def _check_margin(conn: Connection, p: PositionInput, symbol: str, size: float, cs: float, now: datetime) -> None:
    if p.margin is None:
        raise PositionError("an isolated position needs --margin")
    if not math.isfinite(p.margin) or p.margin <= 0:
        raise PositionError(f"margin must be > 0, got {p.margin:g}")
    table, _ = table_at(conn, p.source, symbol, now)
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


def set_wallet(session: Session, source: str, balance: float, at: datetime) -> Account:
    check_source(source)
    if source not in CROSS_COMPUTED:
        raise PositionError(f"cross wallet balances are used for {', '.join(CROSS_COMPUTED)} only")
    if not math.isfinite(balance) or balance < 0:
        raise PositionError(f"wallet balance must be ≥ 0, got {balance:g}")
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


def parse_csv(text: str) -> list[tuple[int, PositionInput | str]]:
    """(line number, input or the reason the row is bad) for every data row."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"source", "symbol", "side", "entry"} - set(reader.fieldnames or [])
    if missing:
        return [(1, f"missing column(s): {', '.join(sorted(missing))}")]
    unknown = set(reader.fieldnames or []) - set(CSV_COLUMNS)
    if unknown:
        return [(1, f"unknown column(s): {', '.join(sorted(unknown))}")]
    out: list[tuple[int, PositionInput | str]] = []
    for row in reader:
        line = reader.line_num
        try:
            entry = _opt_float(row, "entry")
            if entry is None:
                raise PositionError("entry is empty")
            opened = (row.get("opened_at") or "").strip()
            out.append(
                (
                    line,
                    PositionInput(
                        source=(row.get("source") or "").strip(),
                        symbol=(row.get("symbol") or "").strip(),
                        side=(row.get("side") or "").strip().lower(),
                        entry=entry,
                        qty=_opt_float(row, "qty"),
                        notional=_opt_float(row, "notional"),
                        contracts=_opt_float(row, "contracts"),
                        contract_size=_opt_float(row, "contract_size"),
                        mode=(row.get("mode") or "isolated").strip().lower() or "isolated",
                        margin=_opt_float(row, "margin"),
                        adr=_opt_float(row, "adr"),
                        note=(row.get("note") or "").strip() or None,
                        opened_at=parse_ts(opened) if opened else None,
                    ),
                )
            )
        except TierdriftError as exc:
            out.append((line, str(exc)))
    return out


def import_csv(session: Session, path: Path, *, now: datetime) -> list[Position]:
    """Validate every row, then store them all in the caller's transaction, or raise `CsvImportError`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CsvImportError(str(path), [f"cannot read: {exc.strerror}"]) from None
    rows = parse_csv(text)
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
