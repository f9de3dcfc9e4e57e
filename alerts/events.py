"""Turn events into alerts: a position impact, a position's risk episode, one poll's tier-change digest, a
source's health.

Builders are pure: they take the event's figures and a clock reading and return an `Alert` whose `data`
keeps every number unformatted (the webhook payload) and whose `lines`/`rows` are for people.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from alerts.model import Alert, Severity
from snapshots.model import Change
from snapshots.numbers import adr, leverage, money, pct

#: Changes shown one by one in a digest; the rest are counted.
DIGEST_LINES = 30
#: Fields whose rise (or, for these, fall) tightens a table for traders.
_TIGHTER_IF_UP = {"maintenance_margin_rate", "maintenance_amount"}
_TIGHTER_IF_DOWN = {"max_leverage", "cap"}


def new_id() -> str:
    return f"alert_{uuid.uuid4().hex}"


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def impact_alert(
    impact: Mapping[str, Any], position: Mapping[str, Any], *, threshold_adr: float, now: datetime
) -> Alert:
    """An alert for one impact row (see monitor.risk.impacts) on one position."""
    new_violation = bool(impact.get("violation"))
    if impact.get("newly_violates"):
        severity = Severity.CRITICAL
    elif new_violation or impact.get("crosses_tier"):
        severity = Severity.WARNING
    else:
        severity = Severity.INFO
    symbol, side = impact["symbol"], position["side"]
    old_lp, new_lp = impact.get("old_liquidation_price"), impact.get("new_liquidation_price")
    title = f"{symbol} {side} #{position['id']}: liquidation price {money(old_lp)} → {money(new_lp)}"
    if new_violation:
        title += f" (buffer {adr(impact.get('new_buffer_adr'))}, below {threshold_adr:g})"
    lines = [
        f"{impact['source']} {symbol} {side} {position.get('size_input', '')} at {money(position.get('entry_price'))}"
        f" ({position.get('mode', 'isolated')})".strip(),
        f"mark {money(impact.get('mark_price'))}, ADR {money(impact.get('adr'))}",
    ]
    if impact.get("newly_violates"):
        lines.append(f"NEW MARGIN-RISK VIOLATION: buffer below {threshold_adr:g} ADR")
    if impact.get("crosses_tier"):
        lines.append(f"the position now liquidates in tier {impact.get('new_tier')} (was {impact.get('old_tier')})")
    changes = impact.get("changes") or []
    lines.extend(f"cause: {_change_line(symbol, c)}" for c in changes[:5])
    if len(changes) > 5:
        lines.append(f"cause: … and {len(changes) - 5} more changes")
    reasons = impact.get("reasons") or {}
    lines.extend(f"unknown {k}: {v}" for k, v in reasons.items())
    rows = (
        ("tier at liquidation", str(impact.get("old_tier") or "—"), str(impact.get("new_tier") or "—")),
        ("maintenance rate", pct(impact.get("old_rate")), pct(impact.get("new_rate"))),
        ("maintenance amount", money(impact.get("old_amount")), money(impact.get("new_amount"))),
        ("liquidation price", money(old_lp), money(new_lp)),
        ("distance from mark", pct(impact.get("old_distance")), pct(impact.get("new_distance"))),
        ("buffer", adr(impact.get("old_buffer_adr")), adr(impact.get("new_buffer_adr"))),
    )
    data = {"impact": dict(impact), "position": dict(position), "threshold_adr": threshold_adr}
    return Alert(new_id(), "position_impact", severity, now, title, impact["source"], symbol, tuple(lines), rows, data)


def watch_impact_alert(impact: Mapping[str, Any], *, now: datetime) -> Alert:
    """An alert for a table change on a watched size (monitor.journal.watch_impact): how a long and a short
    of that notional, entered at the mark with the old tier's maximum leverage, would see their
    liquidation prices move. Warning when the size's maintenance rate rises or its leverage is cut."""
    symbol, source, size = impact["symbol"], impact["source"], impact.get("size_notional")
    old_rate, new_rate = impact.get("old_rate"), impact.get("new_rate")
    old_lev, new_lev = impact.get("old_max_leverage"), impact.get("new_max_leverage")
    tighter = (old_rate is not None and new_rate is not None and new_rate > old_rate) or (
        old_lev is not None and new_lev is not None and new_lev < old_lev
    )
    long_old, long_new = impact.get("long_old_liquidation_price"), impact.get("long_new_liquidation_price")
    short_old, short_new = impact.get("short_old_liquidation_price"), impact.get("short_new_liquidation_price")
    title = (
        f"{symbol} watched at {money(size)}: liquidation price long {money(long_old)} → {money(long_new)},"
        f" short {money(short_old)} → {money(short_new)}"
    )
    lines = [
        f"{source} {symbol}: a watched size of {money(size)} notional (no position), priced as entered at the"
        f" mark {money(impact.get('entry_price'))} with {leverage(impact.get('leverage'))} isolated margin"
        f" {money(impact.get('margin'))}",
    ]
    if impact.get("note"):
        lines.append(f"note: {impact['note']}")
    changes = impact.get("changes") or []
    lines.extend(f"cause: {_change_line(symbol, c)}" for c in changes[:5])
    if len(changes) > 5:
        lines.append(f"cause: … and {len(changes) - 5} more changes")
    lines.extend(f"unknown {k}: {v}" for k, v in (impact.get("reasons") or {}).items())
    rows = (
        ("tier at this size", str(impact.get("old_tier") or "—"), str(impact.get("new_tier") or "—")),
        ("maintenance rate", pct(old_rate), pct(new_rate)),
        ("max leverage", leverage(old_lev), leverage(new_lev)),
        ("liquidation price, long", money(long_old), money(long_new)),
        ("liquidation price, short", money(short_old), money(short_new)),
    )
    severity = Severity.WARNING if tighter else Severity.INFO
    data = {"watch_impact": dict(impact)}
    return Alert(new_id(), "watch_impact", severity, now, title, source, symbol, tuple(lines), rows, data)


#: What each risk level is called, in titles and lines.
_RISK_WORDS = {
    "violation": "margin-risk violation",
    "near": "near liquidation",
    "beyond": "MARK BEYOND LIQUIDATION PRICE",
}
_RISK_SEVERITY = {"violation": Severity.WARNING, "near": Severity.CRITICAL, "beyond": Severity.CRITICAL}


def _buffer_text(buffer: float | None) -> str:
    """A signed buffer as people read it: `1.80 ADR`, or plainly that the mark is past the LP (no number)."""
    if buffer is not None and buffer <= 0:
        return "mark beyond LP"
    return adr(buffer)


def _distance_text(distance: float | None, buffer: float | None) -> str:
    return f"past by {pct(distance)}" if buffer is not None and buffer <= 0 and distance is not None else pct(distance)


def _moved(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What changed since the last check, said in words: the mark, the ADR, or neither (then the tier table
    or the position did)."""
    parts = [
        f"{label} {money(before.get(key))} → {money(after.get(key))}"
        for key, label in (("mark_price", "mark"), ("adr", "ADR"))
        if before.get(key) is not None and before.get(key) != after.get(key)
    ]
    if before.get("mark_price") is None:
        return "first check of this position at a market refresh"
    if not parts:
        return "mark and ADR unchanged since the last check: the tier table or the position changed"
    return "moved: " + ", ".join(parts)


def risk_alert(
    event: Mapping[str, Any],
    position: Mapping[str, Any],
    *,
    threshold_adr: float,
    near_adr: float,
    now: datetime,
) -> Alert:
    """An alert for one position entering, escalating or leaving a risk episode at a market refresh
    (monitor.risk.episodes). `event` has `event` (entered | escalated | recovered), `level`,
    `previous_level`, `worst`, `since`, `source`, `symbol`, and `before`/`after` figures (`mark_price`,
    `adr`, `liquidation_price`, `distance`, `buffer_adr` signed, `tier`).

    Severity: violation warning, near and beyond critical, a recovery info. A mark beyond the liquidation
    price is said plainly, never as a buffer."""
    kind, level = str(event["event"]), str(event["level"])
    before, after = event.get("before") or {}, event.get("after") or {}
    symbol, side, pid = event["symbol"], position.get("side", ""), position.get("id")
    buffer, lp, mark = after.get("buffer_adr"), after.get("liquidation_price"), after.get("mark_price")
    head = f"{symbol} {side} #{pid}"
    if kind == "recovered":
        severity = Severity.INFO
        title = f"{head}: risk recovered, buffer {adr(buffer)} (back above {threshold_adr:g} ADR)"
    elif level == "beyond":
        severity = Severity.CRITICAL
        title = f"{head}: MARK BEYOND LIQUIDATION PRICE (mark {money(mark)}, liquidation price {money(lp)})"
    elif level == "near":
        severity = Severity.CRITICAL
        title = f"{head}: near liquidation, {adr(buffer)} from liquidation price {money(lp)}"
    else:
        severity = _RISK_SEVERITY.get(level, Severity.WARNING)
        title = f"{head}: margin-risk violation, buffer {adr(buffer)} below {threshold_adr:g} ADR"
    lines = [
        f"{event['source']} {symbol} {side} {position.get('size_input', '')} at {money(position.get('entry_price'))}"
        f" ({position.get('mode', 'isolated')})".strip(),
        _moved(before, after),
    ]
    if kind == "recovered":
        worst = _RISK_WORDS.get(str(event.get("worst")), "?")
        lines.append(f"episode since {event.get('since') or '?'} is over (worst: {worst})")
    elif kind == "escalated":
        lines.append(f"worse: {_RISK_WORDS.get(str(event.get('previous_level')), '?')} → {_RISK_WORDS[level]}")
    if level == "beyond" and kind != "recovered":
        lines.append("the mark is at or past the liquidation price: the position may be liquidated now")
    elif level == "near" and kind != "recovered":
        lines.append(f"within {near_adr:g} ADR of the liquidation price")
    rows = (
        ("mark", money(before.get("mark_price")), money(mark)),
        ("ADR", money(before.get("adr")), money(after.get("adr"))),
        ("liquidation price", money(before.get("liquidation_price")), money(lp)),
        (
            "distance from mark",
            _distance_text(before.get("distance"), before.get("buffer_adr")),
            _distance_text(after.get("distance"), buffer),
        ),
        ("buffer", _buffer_text(before.get("buffer_adr")), _buffer_text(buffer)),
        ("tier at liquidation", str(before.get("tier") or "—"), str(after.get("tier") or "—")),
    )
    data = {"risk": dict(event), "position": dict(position), "threshold_adr": threshold_adr, "near_adr": near_adr}
    return Alert(
        new_id(), "position_risk", severity, now, title, str(event["source"]), symbol, tuple(lines), rows, data
    )


def _change_line(symbol: str, c: Mapping[str, Any]) -> str:
    kind = c.get("kind")
    if kind in ("symbol_listed", "symbol_delisted"):
        return f"{symbol} {str(kind).replace('_', ' ')}"
    if kind != "tier_changed":
        return f"{symbol} tier {c.get('tier')} {str(kind).split('_')[1]}"
    field = str(c.get("field"))
    fmt = value_formatter(field)
    return f"{symbol} tier {c.get('tier')} {field.replace('_', ' ')} {fmt(c.get('old'))} → {fmt(c.get('new'))}"


def value_formatter(field: str) -> Callable[[float | None], str]:
    """How a changed tier field reads: rates in %, leverage as 20×, amounts and notionals as money."""
    return {"maintenance_margin_rate": pct, "max_leverage": leverage}.get(field, money)


def _tightens(c: Change) -> bool:
    if c.kind in ("tier_removed", "symbol_delisted"):
        return True
    if c.kind != "tier_changed" or c.old is None or c.new is None:
        return False
    return (c.field in _TIGHTER_IF_UP and c.new > c.old) or (c.field in _TIGHTER_IF_DOWN and c.new < c.old)


#: How a traded or watched instrument is marked in a digest's rows.
MARK = "★ "


def digest_alert(
    source: str,
    changes: Sequence[Change],
    *,
    detected_at: datetime,
    previous_poll_at: datetime | None,
    now: datetime,
    marked: Collection[str] = frozenset(),
) -> Alert:
    """All changes of one poll of one source, as one message; a large batch is summarised. `marked` are the
    symbols of this source that are traded or watched: they are named first, starred, and listed in
    `data["marked"]`."""
    symbols = sorted({c.symbol for c in changes})
    hits = [s for s in symbols if s in marked]
    # Changes on traded symbols first, so that a large batch never hides them below the shown rows.
    changes = sorted(changes, key=lambda c: c.symbol not in marked)
    kinds = Counter(c.kind for c in changes)
    tighter = sum(1 for c in changes if _tightens(c))
    severity = Severity.WARNING if tighter else Severity.INFO
    title = f"{source}: {len(changes)} tier change(s) on {len(symbols)} symbol(s)"
    window = (
        f"between {_iso(previous_poll_at)} and {_iso(detected_at)}" if previous_poll_at else f"at {_iso(detected_at)}"
    )
    lines = [f"detected {window}", ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))]
    if tighter:
        lines.append(f"{tighter} change(s) tighten margin requirements")
    if hits:
        lines.append(f"{MARK}traded or watched: {', '.join(hits)}")
    shown = [c for c in changes if c.kind == "tier_changed"][:DIGEST_LINES]
    rows = tuple(
        (
            f"{MARK if c.symbol in marked else ''}{c.symbol} tier {c.tier} {str(c.field).replace('_', ' ')}",
            value_formatter(str(c.field))(c.old),
            value_formatter(str(c.field))(c.new),
        )
        for c in shown
    )
    others = [c for c in changes if c.kind != "tier_changed"][:DIGEST_LINES]
    lines.extend(
        f"{MARK if c.symbol in marked else ''}{_change_line(c.symbol, {'kind': c.kind, 'tier': c.tier})}"
        for c in others
    )
    hidden = len(changes) - len(shown) - len(others)
    if hidden > 0:
        lines.append(f"… and {hidden} more change(s): tierdrift changes --source {source} --since {_iso(detected_at)}")
    data = {
        "source": source,
        "detected_at": _iso(detected_at),
        "previous_poll_at": _iso(previous_poll_at) if previous_poll_at else None,
        "counts": dict(kinds),
        "symbols": symbols[:200],
        "symbols_total": len(symbols),
        "changes_total": len(changes),
        "tightening": tighter,
    }
    if hits:
        data["marked"] = hits
    return Alert(new_id(), "tier_changes", severity, now, title, source, None, tuple(lines), rows, data)


HEALTH_STATES = ("failing", "stale", "quarantined", "recovered")


def health_alert(source: str, state: str, *, since: datetime, reason: str | None, now: datetime) -> Alert:
    """A source is failing, stale or quarantined (warning/critical), or has recovered (info)."""
    assert state in HEALTH_STATES, state
    severity = {"failing": Severity.CRITICAL, "stale": Severity.CRITICAL, "quarantined": Severity.WARNING}.get(
        state, Severity.INFO
    )
    minutes = max(0, int((now - since).total_seconds() // 60))
    titles = {
        "failing": f"{source}: polls failing for {minutes} min",
        "stale": f"{source}: no successful poll for {minutes} min",
        "quarantined": f"{source}: poll quarantined, tables not applied",
        "recovered": f"{source}: recovered after {minutes} min",
    }
    lines = [f"since {_iso(since)}"] + ([f"reason: {reason}"] if reason else [])
    if state != "recovered":
        lines.append("tier changes on this source are not being seen until it recovers")
    data = {"source": source, "state": state, "since": _iso(since), "reason": reason}
    return Alert(new_id(), "source_health", severity, now, titles[state], source, None, tuple(lines), (), data)


def sample_alert(now: datetime) -> Alert:
    """The sample `alerts test` sends through every channel."""
    return Alert(
        new_id(),
        "test",
        Severity.INFO,
        now,
        "tierdrift test alert: this channel works",
        lines=("If you can read this, tierdrift can reach you here.",),
        rows=(("example liquidation price", "56,001.51", "66,593.94"),),
        data={"test": True},
    )
