"""What a table change would do to a watched size: the impact-style figures of a watch with `--size`.

A watch has a notional but no position, so the what-if position is built from documented assumptions:

- entry at the current mark (the cached, fresh mark price: `monitor.risk.impacts.load_market`); with no
  fresh mark there is no price to put the position at, so the liquidation prices are unknown with that
  reason, and the maintenance rate and leverage at the size (which need no price) are still reported;
- isolated margin at the maximum leverage of the tier holding the size in the **old** table: the position
  a trader could have opened before the change, re-priced under the new table;
- both sides, long and short, since a watch does not say which the trader would take;
- inverse sources: the size is USD, priced as that many 1-USD contracts.

`watch_impacts` runs in the poll's transaction (a poll hook wired in `monitor.service.wiring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from monitor.journal.watch import sized_watches
from monitor.risk.figures import Market
from monitor.risk.impacts import Freshness, load_market
from monitor.risk.liquidation import PositionError, PositionSpec, liquidation, notional
from monitor.store.models import Watch
from snapshots.model import Change, Tier, TierTable, is_inverse
from snapshots.store import PollResult


def _tier_at(table: TierTable, amount: float) -> Tier | None:
    return next((t for t in table.tiers if t.holds(amount)), None)


def _unit_amount(source: str, size: float, mark: float | None) -> float | None:
    """The watch's size in its table's unit: the quote notional itself, or coins at the mark (inverse)."""
    if not is_inverse(source):
        return size
    return None if mark is None else size / mark


def _spec(source: str, side: str, size: float, mark: float, margin_tier: Tier) -> PositionSpec:
    inverse = is_inverse(source)
    probe = PositionSpec(side, mark, size if inverse else size / mark, 1.0, inverse=inverse)  # type: ignore[arg-type]
    margin = notional(probe, mark) / margin_tier.max_leverage
    return PositionSpec(side, mark, probe.size, margin, inverse=inverse)  # type: ignore[arg-type]


def _lps(
    source: str, size: float, mark: float | None, old: TierTable, new: TierTable, threshold: float, no_mark: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Long and short liquidation prices under `old` and `new`, and the reasons for those unknown."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    amount = _unit_amount(source, size, mark)
    margin_tier = None if amount is None else _tier_at(old, amount)
    if mark is None or margin_tier is None:
        why = f"no entry price: {no_mark}" if mark is None else "the size is beyond the old table's last tier"
        for side in ("long", "short"):
            out[f"{side}_old_liquidation_price"] = out[f"{side}_new_liquidation_price"] = None
            reasons[side] = why
        out["margin"] = None
        return out, reasons
    for side in ("long", "short"):
        try:
            spec = _spec(source, side, size, mark, margin_tier)
            before = liquidation(spec, old, mark=mark, adr=None, threshold_adr=threshold)
            after = liquidation(spec, new, mark=mark, adr=None, threshold_adr=threshold)
        except PositionError as exc:
            out[f"{side}_old_liquidation_price"] = out[f"{side}_new_liquidation_price"] = None
            reasons[side] = str(exc)
            continue
        out["margin"] = spec.margin
        out[f"{side}_old_liquidation_price"] = before.liquidation_price
        out[f"{side}_new_liquidation_price"] = after.liquidation_price
        out[f"{side}_old_distance"] = before.distance
        out[f"{side}_new_distance"] = after.distance
        if "liquidation_price" in after.reasons:
            reasons[side] = after.reasons["liquidation_price"]
    out["leverage"] = margin_tier.max_leverage
    return out, reasons


def watch_impact(
    w: Watch, old: TierTable, new: TierTable, changes: Sequence[Change], market: Market, threshold: float
) -> dict[str, Any]:
    """The impact of one change of `w`'s table on its size (see the module docstring for the assumptions)."""
    assert w.size_notional is not None
    size, mark = w.size_notional, market.mark
    amount = _unit_amount(w.source, size, mark)
    t_old = None if amount is None else _tier_at(old, amount)
    t_new = None if amount is None else _tier_at(new, amount)
    no_mark = market.reasons.get("mark", "mark price unknown")
    figures, reasons = _lps(w.source, size, mark, old, new, threshold, no_mark)
    return {
        "source": w.source,
        "symbol": w.symbol,
        "size_notional": size,
        "note": w.note,
        "entry_price": mark,
        "old_tier": t_old.tier if t_old else None,
        "new_tier": t_new.tier if t_new else None,
        "old_rate": t_old.maintenance_margin_rate if t_old else None,
        "new_rate": t_new.maintenance_margin_rate if t_new else None,
        "old_max_leverage": t_old.max_leverage if t_old else None,
        "new_max_leverage": t_new.max_leverage if t_new else None,
        **figures,
        "changes": [{"kind": c.kind, "tier": c.tier, "field": c.field, "old": c.old, "new": c.new} for c in changes],
        "reasons": reasons,
    }


def watch_impacts(
    session: Session, result: PollResult, *, threshold_adr: float, fresh: Freshness | None = None
) -> list[dict[str, Any]]:
    """One impact per sized watch on a symbol whose table this poll changed (none for a baseline, a
    failed poll, a listing or a delisting)."""
    changed = {u.symbol: u for u in result.updates if u.changes and u.old is not None and u.new is not None}
    if result.outcome != "ok" or result.baseline or not changed:
        return []
    watched = sized_watches(session, result.source, set(changed))
    if not watched:
        return []
    market = load_market(session, {(w.source, w.symbol) for w in watched}, result.started_at, fresh)
    out = []
    for w in watched:
        u = changed[w.symbol]
        assert u.old is not None
        assert u.new is not None
        out.append(watch_impact(w, u.old, u.new, u.changes, market[(w.source, w.symbol)], threshold_adr))
    return out
