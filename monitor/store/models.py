"""Tables of the monitor: logged positions, cross accounts, cached market data, and impact records.

Amounts follow the contract: quote for linear contracts, coin for inverse (margins and maintenance
amounts). Datetimes are aware UTC, as in `snapshots.db`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class Position(SQLModel, table=True):
    """One perpetual position a trader logged. `size` is base quantity (linear) or contracts (inverse)."""

    __tablename__ = "position"
    __table_args__ = (Index("ix_position_open", "source", "symbol", "closed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    symbol: str
    side: str  # long | short
    entry_price: float
    size: float
    size_input: str  # what the user typed, e.g. "notional=40000", to show the inputs behind every figure
    contract_size: float = 1.0  # inverse: face value of one contract in quote
    mode: str = "isolated"  # isolated | cross
    margin: float | None = None  # isolated margin (quote for linear, coin for inverse)
    adr_override: float | None = None
    note: str | None = None
    opened_at: datetime
    closed_at: datetime | None = None


class Account(SQLModel, table=True):
    """The cross wallet balance of one source's account (domain doc §3)."""

    __tablename__ = "account"

    source: str = Field(primary_key=True)
    wallet_balance: float
    updated_at: datetime


class MarketData(SQLModel, table=True):
    """The last mark price and ADR seen for a symbol, or why they could not be had."""

    __tablename__ = "market_data"

    source: str = Field(primary_key=True)
    symbol: str = Field(primary_key=True)
    mark_price: float | None = None
    mark_at: datetime | None = None
    adr: float | None = None
    adr_days: int | None = None
    adr_at: datetime | None = None
    error: str | None = None
    error_at: datetime | None = None


class Impact(SQLModel, table=True):
    """What one poll's change did to one open position: figures under the old and the new table."""

    __tablename__ = "impact"
    __table_args__ = (Index("ix_impact_detected", "detected_at"), Index("ix_impact_position", "position_id"))

    id: int | None = Field(default=None, primary_key=True)
    position_id: int = Field(foreign_key="position.id")
    poll_id: int = Field(foreign_key="poll.id")
    detected_at: datetime
    source: str
    symbol: str
    changes: str  # JSON list of the change records that caused it
    old_tier: int | None = None
    new_tier: int | None = None
    old_rate: float | None = None
    new_rate: float | None = None
    old_amount: float | None = None
    new_amount: float | None = None
    old_liquidation_price: float | None = None
    new_liquidation_price: float | None = None
    old_distance: float | None = None
    new_distance: float | None = None
    old_buffer_adr: float | None = None
    new_buffer_adr: float | None = None
    mark_price: float | None = None
    adr: float | None = None
    newly_violates: bool = False
    crosses_tier: bool = False
    violation: bool | None = None
    reasons: str | None = None  # JSON object: why a figure is unknown


class SourceHealth(SQLModel, table=True):
    """Whether a source is healthy, and whether its trouble has been alerted (once per episode)."""

    __tablename__ = "source_health"

    source: str = Field(primary_key=True)
    state: str = "ok"  # ok | failing | stale | quarantined
    since: datetime | None = None  # start of the current trouble
    reason: str | None = None
    alerted_at: datetime | None = None  # when the trouble alert went out; None: not (yet) alerted


class RiskEpisode(SQLModel, table=True):
    """Where an open position stood at the last market check (monitor.risk.episodes): its risk level (`ok`,
    or in an episode: `violation`, `near`, `beyond`) and the figures then, to say what moved at the next.
    Written in the same transaction as the `position_risk` alert that a change of level causes."""

    __tablename__ = "risk_episode"

    position_id: int = Field(primary_key=True, foreign_key="position.id")
    level: str = "ok"  # ok | violation | near | beyond
    since: datetime | None = None  # when the current episode began; None at level ok
    worst: str | None = None  # the highest level of the current episode
    checked_at: datetime
    mark_price: float | None = None
    adr: float | None = None
    liquidation_price: float | None = None
    distance: float | None = None
    buffer_adr: float | None = None  # signed: negative once the mark is beyond the liquidation price
    tier: int | None = None
