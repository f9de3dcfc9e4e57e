"""Canonical, immutable value types for tier tables.

Everything downstream (storage, diff, liquidation math, alerts) works on these types and never on
exchange payloads. A `TierTable` is built only by `snapshots.parse` after validation, so holding one
means holding a well-formed table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

SOURCES: tuple[str, ...] = ("binance-usdm", "binance-coinm", "bybit-linear", "bybit-inverse")

#: The fields a `tier_changed` record can name, in display order (the `changes --json` contract).
TIER_FIELDS: tuple[str, ...] = (
    "floor",
    "cap",
    "maintenance_margin_rate",
    "maintenance_amount",
    "max_leverage",
)


class Unit(StrEnum):
    """What a tier's floor and cap measure."""

    QUOTE = "quote"  # notional in the quote/settle asset (USDT, USDC): USDⓈ-M and Bybit linear
    BASE = "base"  # quantity of the base coin: Binance COIN-M and Bybit inverse


def unit_for(source: str) -> Unit:
    """The floor/cap unit of a source (domain doc §1: COIN-M and inverse tables are in coin)."""
    return Unit.BASE if source in ("binance-coinm", "bybit-inverse") else Unit.QUOTE


def is_inverse(source: str) -> bool:
    return source in ("binance-coinm", "bybit-inverse")


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier: notional (or coin quantity) in [floor, cap) uses this rate and amount."""

    tier: int
    floor: float
    cap: float
    maintenance_margin_rate: float
    maintenance_amount: float
    max_leverage: float
    initial_margin_rate: float | None = None

    def holds(self, amount: float) -> bool:
        return self.floor <= amount < self.cap

    def as_dict(self) -> dict[str, float | int]:
        """The `tiers --json` contract shape."""
        return {
            "tier": self.tier,
            "floor": self.floor,
            "cap": self.cap,
            "maintenance_margin_rate": self.maintenance_margin_rate,
            "maintenance_amount": self.maintenance_amount,
            "max_leverage": self.max_leverage,
        }


def _num(x: float) -> str:
    # repr() of a float is the shortest string that round-trips, so "0.0040", "4e-3" and 0.004 all
    # canonicalise to the same text: formatting never changes a hash.
    return repr(float(x))


def content_hash(unit: Unit, tiers: tuple[Tier, ...]) -> str:
    """Hash of everything that makes two tables different for a trader.

    The raw record, the provenance and the warnings are deliberately left out: a version that differs
    only in formatting or in where it came from is the same table.
    """
    parts = [unit.value]
    for t in tiers:
        parts.append(
            ",".join(
                (
                    str(t.tier),
                    _num(t.floor),
                    _num(t.cap),
                    _num(t.maintenance_margin_rate),
                    _num(t.maintenance_amount),
                    _num(t.max_leverage),
                )
            )
        )
    import hashlib  # here, not at the top: 3 ms of start-up that reading a stored table never needs

    return hashlib.blake2b(";".join(parts).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class TierTable:
    """The validated tier table of one symbol of one source."""

    source: str
    symbol: str
    unit: Unit
    tiers: tuple[Tier, ...]
    raw: str = ""  # the exchange's record for this symbol, as compact JSON text
    warnings: tuple[str, ...] = ()
    notional_coef: float | None = None  # Binance per-account multiplier (domain doc §1)
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", content_hash(self.unit, self.tiers))

    def tier_for(self, amount: float) -> Tier:
        """The tier whose [floor, cap) holds `amount`; the top tier beyond the last cap."""
        for t in self.tiers:
            if amount < t.cap:
                return t
        return self.tiers[-1]

    def next_tier(self, tier: Tier) -> Tier | None:
        idx = self.tiers.index(tier)
        return self.tiers[idx + 1] if idx + 1 < len(self.tiers) else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every table of one source, as fetched (or imported) at one moment."""

    source: str
    taken_at: datetime  # aware UTC
    provenance: str  # e.g. "binance-fapi", "binance-web", "bybit-v5", "import:FILE"
    tables: dict[str, TierTable]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """One semantic change between two versions of a symbol's table."""

    source: str
    symbol: str
    kind: str  # symbol_listed | symbol_delisted | tier_added | tier_removed | tier_changed
    tier: int | None = None
    field: str | None = None
    old: float | None = None
    new: float | None = None


CHANGE_KINDS: tuple[str, ...] = (
    "symbol_listed",
    "symbol_delisted",
    "tier_added",
    "tier_removed",
    "tier_changed",
)
