"""The JSON shapes of tierdrift's records: the contracts of the CLI's `--json` and of the web API.

One serialiser for both, so that `tierdrift changes --json` and `GET /api/v1/changes` cannot drift apart
(tests/web/test_api_agrees.py holds them to it). The shape functions of the read-only commands import
nothing heavy (those commands must start fast); the ones that query positions, impacts, alerts or run the
liquidation engine import SQLModel and the risk room inside themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from snapshots.history import PollInfo, SourceStatus, StoredChange, VersionInfo
from snapshots.model import TierTable, is_inverse
from snapshots.timefmt import iso

if TYPE_CHECKING:
    from sqlmodel import Session

    from monitor.config.settings import Settings
    from monitor.journal.records import JournalRecords
    from monitor.risk.figures import Assessment
    from monitor.risk.positions import PositionInput
    from monitor.store.models import MarketData, Position
    from snapshots.store import PollResult

#: The statuses `alerts list --status` and `/api/v1/alerts?status=` accept.
ALERT_STATUSES = ("pending", "sent", "failed")


def tiers_json(table: TierTable) -> list[dict[str, Any]]:
    return [t.as_dict() for t in table.tiers]


def change_json(c: StoredChange) -> dict[str, Any]:
    ch = c.change
    return {
        "detected_at": iso(c.detected_at),
        "previous_poll_at": iso(c.previous_poll_at),
        "source": ch.source,
        "symbol": ch.symbol,
        "kind": ch.kind,
        "tier": ch.tier,
        "field": ch.field,
        "old": ch.old,
        "new": ch.new,
    }


def version_json(v: VersionInfo, tiers: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": v.source,
        "symbol": v.symbol,
        "valid_from": iso(v.valid_from),
        "valid_to": iso(v.valid_to),
        "content_hash": v.content_hash,
        "provenance": v.provenance,
        "previous_poll_at": iso(v.previous_poll_at),
        "notional_coef": v.notional_coef,
        "warnings": list(v.warnings),
    }
    if tiers is not None:
        data["tiers"] = tiers
    return data


def status_json(s: SourceStatus) -> dict[str, Any]:
    return {
        "source": s.source,
        "symbols": s.symbols,
        "last_poll_at": iso(s.last_poll_at),
        "last_outcome": s.last_outcome,
        "last_success_at": iso(s.last_success_at),
        "last_change_at": iso(s.last_change_at),
        "last_error_at": iso(s.last_error_at),
        "last_error": s.last_error,
        "polls": s.polls,  # how many polls ran (a run of identical ones is one stored row)
        "first_poll_at": iso(s.first_poll_at),
    }


def poll_json(r: PollResult) -> dict[str, Any]:
    """A poll just run (`poll --json`), with its changes."""
    return {
        "poll_id": r.poll_id,
        "source": r.source,
        "kind": r.kind,
        "outcome": r.outcome,
        "started_at": iso(r.started_at),
        "previous_poll_at": iso(r.previous_poll_at),
        "symbols": r.symbols,
        "baseline": r.baseline,
        "error": r.error,
        "error_kind": r.error_kind,
        "retry_at": iso(r.retry_at),
        "warnings": list(r.warnings),
        "changes": [change_json(StoredChange(r.started_at, r.previous_poll_at, c)) for c in r.changes],
    }


def poll_info_json(p: PollInfo) -> dict[str, Any]:
    """A recorded poll or import (`polls --json`)."""
    return {
        "id": p.id,
        "source": p.source,
        "kind": p.kind,
        "started_at": iso(p.started_at),
        "duration_ms": round(p.duration_ms, 1),
        "outcome": p.outcome,
        "provenance": p.provenance,
        "symbols": p.symbols,
        "symbols_changed": p.symbols_changed,
        "changes": p.changes,
        "error": p.error,
        "error_kind": p.error_kind,
        "retry_at": iso(p.retry_at),
        "repeats": p.repeats,  # the polls this row counts: a run of identical outcomes
        "last_at": iso(p.ended_at),  # when the last of them started
    }


# -- positions and their risk (SQLModel and the risk room, imported inside) --------------------------------


def figures_json(a: Assessment | None) -> dict[str, Any]:
    f = a.figures if a else None
    return {
        "tier": f.tier.tier if f and f.tier else None,
        "current_tier": f.current_tier.tier if f else None,
        "maintenance_margin_rate": f.maintenance_margin_rate if f else None,
        "maintenance_amount": f.maintenance_amount if f else None,
        "maintenance_margin": f.maintenance_margin if f else None,
        "notional": f.notional if f else None,
        "reference_price": f.reference_price if f else None,
        "liquidation_price": f.liquidation_price if f else None,
        "liquidated_at_mark": f.liquidated_at_mark if f else None,
        "distance": f.distance if f else None,
        "buffer_adr": f.buffer_adr if f else None,
        "violation": f.violation if f else None,
        "headroom_notional": f.headroom_notional if f else None,
        "headroom_liquidation_price": f.headroom_liquidation_price if f else None,
        "not_computed": a.not_computed if a else "not assessed",
        "reasons": dict(a.reasons) if a else {},
    }


def position_json(p: Position | Any, a: Assessment | None, journal: JournalRecords | None = None) -> dict[str, Any]:
    """The `positions --json` shape of a logged position (a `Position` or a row of its table), with its
    journal: the `entry` and `exit` records and the `events`."""
    from monitor.journal.shapes import journal_json

    return {
        "id": p.id,
        "source": p.source,
        "symbol": p.symbol,
        "side": p.side,
        "entry_price": p.entry_price,
        "size": p.size,
        "size_unit": "contracts" if is_inverse(p.source) else "base",
        "size_input": p.size_input,
        "contract_size": p.contract_size,
        "mode": p.mode,
        "margin": p.margin,
        "note": p.note,
        "opened_at": iso(p.opened_at),
        "closed_at": iso(p.closed_at),
        "mark_price": a.mark if a else None,
        "adr": a.adr if a else None,
        "adr_source": a.adr_source if a else None,
        **figures_json(a),
        **journal_json(journal),
    }


def positions(
    conn: Any, settings: Settings, now: datetime, *, include_closed: bool = False, journal: bool = True
) -> list[dict[str, Any]]:
    """`positions list --json`: the logged positions (open ones, or all) in id order, the open ones with
    their current figures, and their journals (`journal=False`: `entry`, `exit` and `events` left empty,
    for the human table that does not show them). `conn` is a `snapshots.reader.Reader` (the CLI's
    sqlite3 one) or a SQLAlchemy connection or session: plain queries either way, no ORM objects."""
    from monitor.journal.records import listed_records
    from monitor.risk.current import assess_current, read_positions
    from snapshots.reader import reader_of

    reader = reader_of(conn)
    rows = read_positions(reader, include_closed=include_closed)
    open_ = [p for p in rows if p.closed_at is None]
    found = assess_current(reader, open_, settings, now) if open_ else {}
    journals = listed_records(reader, include_closed=include_closed) if journal and rows else {}
    return [position_json(p, found.get(p.id), journals.get(p.id)) for p in rows]


def position(session: Session, settings: Settings, position_id: int, now: datetime) -> dict[str, Any]:
    """`positions show --json`: one position, its figures and its impacts (`NotFound` for an unknown id)."""
    from monitor.journal.records import records_for
    from monitor.risk.impacts import assess_now
    from monitor.risk.positions import priced_with
    from monitor.store.models import Position
    from snapshots.errors import NotFound

    found = session.get(Position, position_id)
    if found is None:
        raise NotFound(f"no position with id {position_id}")
    # A cross position is priced with the rest of its account, exactly as `positions list` prices it.
    assessed = assess_now(session, priced_with(session, found), settings, now) if found.closed_at is None else {}
    data = position_json(found, assessed.get(position_id), records_for(session, [position_id]).get(position_id))
    data["impacts"] = impacts(session, position_id=position_id)
    return data


IMPACT_FIELDS = (
    "old_tier", "new_tier", "old_rate", "new_rate", "old_amount", "new_amount", "old_liquidation_price",
    "new_liquidation_price", "old_distance", "new_distance", "old_buffer_adr", "new_buffer_adr", "mark_price", "adr",
    "newly_violates", "crosses_tier", "violation",
)  # fmt: skip


def impacts(session: Session, *, since: datetime | None = None, position_id: int | None = None) -> list[dict[str, Any]]:
    """`impacts --json`: what tier changes did to positions, oldest first (of one position, or since a time)."""
    from sqlmodel import col, select

    from monitor.store.models import Impact

    stmt = select(Impact).order_by(col(Impact.detected_at), col(Impact.id))
    if since is not None:
        stmt = stmt.where(col(Impact.detected_at) >= since)
    if position_id is not None:
        stmt = stmt.where(Impact.position_id == position_id)
    return [
        {
            "id": r.id,
            "position_id": r.position_id,
            "detected_at": iso(r.detected_at),
            "source": r.source,
            "symbol": r.symbol,
            "changes": json.loads(r.changes),
            **{k: getattr(r, k) for k in IMPACT_FIELDS},
            "reasons": json.loads(r.reasons) if r.reasons else {},
        }
        for r in session.exec(stmt)
    ]


def alert_json(d: Any, a: Any, now: datetime | None = None) -> dict[str, Any]:
    """One delivery of one alert (`alerts list --json`). The stored error was redacted when it was written;
    no channel's URL, token or password is part of the shape. `held` says why a pending delivery waits
    ("quiet" hours or the "digest" interval) while its hold lasts (at `now`, default the current time)."""
    from alerts.model import Severity
    from snapshots.reader import as_utc

    now = now or datetime.now(UTC)
    waiting = d.status == "pending" and d.hold is not None and (as_utc(d.next_attempt_at) or now) > now
    return {
        "alert_id": a.id,
        "created_at": iso(a.created_at),
        "kind": a.kind,
        "severity": Severity(a.severity).label,
        "source": a.source,
        "symbol": a.symbol,
        "title": a.title,
        "channel": d.channel,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at) if d.status == "pending" else None,
        "sent_at": iso(d.sent_at),
        "last_error": d.last_error,
        "held": d.hold if waiting else None,  # "quiet" | "digest": held back until next_attempt_at
        "group_id": d.group_id,
    }


def alerts(session: Session, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """`alerts list --json`: deliveries, newest alert first, at most `limit`, of one status or all."""
    from sqlmodel import col, select

    from alerts.db import AlertRecord, Delivery

    stmt = (
        select(Delivery, AlertRecord)
        .join(AlertRecord, col(AlertRecord.id) == col(Delivery.alert_id))
        .order_by(col(AlertRecord.created_at).desc(), col(Delivery.id).desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(Delivery.status == status)
    return [alert_json(d, a) for d, a in session.exec(stmt)]


def market_json(r: MarketData) -> dict[str, Any]:
    from snapshots.reader import as_utc

    return {
        "source": r.source,
        "symbol": r.symbol,
        "mark_price": r.mark_price,
        "mark_at": iso(as_utc(r.mark_at)),  # SQLite gives naive UTC back
        "adr": r.adr,
        "adr_days": r.adr_days,
        "adr_at": iso(as_utc(r.adr_at)),
        "error": r.error,
        "error_at": iso(as_utc(r.error_at)),
    }


# -- the `liq` calculator ---------------------------------------------------------------------------------


def liq(
    conn: Any, settings: Settings, item: PositionInput, when: datetime, *, mark: float | None, adr: float | None
) -> dict[str, Any]:
    """`liq --json` of an isolated what-if position under the table in force at `when` (the API's `liq`).
    `item.margin` is required; a bad amount, source or symbol raises the CLI's one-line errors."""
    check_liq_amounts(mark=mark, adr=adr, margin=item.margin)
    return liq_json(settings, item, *whatif(conn, item, when), mark=mark, adr=adr)


def check_liq_amounts(**amounts: float | None) -> None:
    """One line for a `liq` amount that is not a positive finite number (a wallet balance may be 0)."""
    from monitor.risk.positions import check_amount

    for key, value in amounts.items():
        if value is not None:
            name = {"mark": "mark price", "adr": "ADR", "wallet_balance": "wallet balance"}.get(key, key)
            check_amount(name, value, zero_ok=key == "wallet_balance")


def liq_json(
    settings: Settings,
    item: PositionInput,
    spec: Any,
    table: TierTable,
    info: VersionInfo,
    warnings: list[str],
    *,
    mark: float | None,
    adr: float | None,
    cross: Any = None,
    market: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `liq --json` shape: the engine's figures of `spec` under `table`, with the cross account behind
    it (`--mode cross`) and, for `--journal`, the market an entry would take (its mark, ADR and reasons)."""
    from monitor.risk.figures import Assessment
    from monitor.risk.liquidation import liquidation

    if market is not None:
        mark, adr = market["mark_price"], market["adr"]
    threshold = settings.violation_threshold_adr
    figures = liquidation(spec, table, mark=mark, adr=adr, threshold_adr=threshold, cross=cross)
    data = {
        "source": item.source,
        "symbol": table.symbol,
        "side": spec.side,
        "entry_price": spec.entry_price,
        "size": spec.size,
        "margin": spec.margin,
        "mode": spec.margin_mode,
        "mark_price": mark,
        "adr": adr,
        "table_valid_from": iso(info.valid_from),
        "threshold_adr": threshold,
        **figures_json(Assessment(0, figures, None, mark, adr, "input" if adr else None, liq_reasons(figures))),
        "warnings": warnings,
    }
    del data["not_computed"]
    if market is not None:
        data["adr_days"], data["adr_source"] = market["adr_days"], market["adr_source"]
        data["reasons"] = {**market["unknown"], **data["reasons"]}
    return data


def liq_reasons(figures: Any) -> dict[str, str]:
    """The engine's reasons, worded for the calculator: there a missing mark or ADR is an option not given."""
    from monitor.risk.liquidation import NO_ADR, NO_MARK

    wording = {NO_MARK: "no mark price given (--mark)", NO_ADR: "no ADR given (--adr)"}
    out = {}
    for key, why in figures.reasons.items():
        for engine_text, ours in wording.items():
            why = why.replace(engine_text, ours)
        out[key] = why
    return out


def whatif(conn: Any, item: PositionInput, when: datetime) -> tuple[Any, TierTable, VersionInfo, list[str]]:
    """The engine's inputs for `liq`: the position, the table in force at `when`, and margin warnings."""
    from monitor.risk.liquidation import PositionSpec
    from monitor.risk.positions import size_of
    from snapshots.history import check_source, resolve_symbol, table_at

    check_source(item.source)
    symbol = resolve_symbol(conn, item.source, item.symbol)
    table, info = table_at(conn, item.source, symbol, when)
    size, _, cs = size_of(item, symbol)
    spec = PositionSpec(
        side=item.side,  # type: ignore[arg-type]
        entry_price=item.entry,
        size=size,
        margin=item.margin or 0.0,
        margin_mode=item.mode,  # type: ignore[arg-type]
        inverse=is_inverse(item.source),
        contract_size=cs,
    )
    notional = size * cs / item.entry if spec.inverse else size * item.entry
    tier = table.tier_for(notional)
    warnings = []
    if spec.margin_mode == "isolated" and spec.margin < notional / tier.max_leverage:
        warnings.append(
            f"leverage {notional / spec.margin:.1f}× exceeds tier {tier.tier}'s maximum of {tier.max_leverage:g}×: "
            "the exchange would not accept this position"
        )
    return spec, table, info, warnings
