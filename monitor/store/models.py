"""Tables of the monitor: logged positions, cross accounts, cached market data, and impact records.

Amounts follow the contract: quote for linear contracts, coin for inverse (margins and maintenance
amounts). Datetimes are aware UTC, as in `snapshots.db`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
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


class PositionRecord(SQLModel, table=True):
    """The journal's risk column of one position: its figures at entry or at exit (monitor.journal).

    The figure columns carry the key names of `liq --json`; a figure that could not be had is None with
    its reason in `unknown` (JSON object {figure: reason}). `price` is the entry or the exit price.
    `recomputed`: computed later from the stored history, not at the time (positions logged before the
    journal existed). An exit adds `pnl` and `period` (JSON: what changed while it was open)."""

    __tablename__ = "position_record"
    __table_args__ = (UniqueConstraint("position_id", "kind", name="uq_position_record_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    position_id: int = Field(foreign_key="position.id")
    kind: str  # entry | exit
    at: datetime
    table_version_id: int | None = Field(default=None, foreign_key="table_version.id")
    table_valid_from: datetime | None = None
    source: str
    symbol: str
    size: float  # the position's size then (base quantity, or contracts for inverse)
    margin: float | None = None
    notional: float | None = None
    tier: int | None = None
    maintenance_margin_rate: float | None = None
    maintenance_amount: float | None = None
    liquidation_price: float | None = None
    mark_price: float | None = None
    adr: float | None = None
    adr_days: int | None = None
    adr_source: str | None = None  # override | market | history | None
    distance: float | None = None
    buffer_adr: float | None = None
    violation: bool | None = None
    headroom_notional: float | None = None
    unknown: str = "{}"  # JSON object: why a figure is unknown
    price: float | None = None  # the entry price, or the exit price (None: not given)
    pnl: float | None = None  # exit only: realised PnL of the price move (quote; coin for inverse)
    period: str | None = None  # exit only: JSON object, what changed during the holding period
    recomputed: bool = False


class PositionEvent(SQLModel, table=True):
    """One thing a trader did to an open position, with its time and the position's size and margin after it."""

    __tablename__ = "position_event"
    __table_args__ = (Index("ix_position_event_position", "position_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    position_id: int = Field(foreign_key="position.id")
    at: datetime
    kind: str  # margin_added | margin_removed | size_added | size_reduced | note | closed
    amount: float | None = None  # margin (quote; coin for inverse) or size (base; contracts for inverse)
    price: float | None = None
    pnl: float | None = None  # size_reduced and closed: realised PnL of that part
    note: str | None = None
    size_after: float
    margin_after: float | None = None
    entry_price_after: float  # adding size moves the average entry price


class Watch(SQLModel, table=True):
    """An instrument a trader watches without (necessarily) a position: alerts and the review take it in."""

    __tablename__ = "watch"
    __table_args__ = (UniqueConstraint("source", "symbol", name="uq_watch_symbol"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    symbol: str
    size_notional: float | None = None
    added_at: datetime
    note: str | None = None


class MarkCandle(SQLModel, table=True):
    """One daily mark-price candle, fetched for a past `--opened-at` (never changes once its day is over)."""

    __tablename__ = "mark_candle"

    source: str = Field(primary_key=True)
    symbol: str = Field(primary_key=True)
    opened_at: datetime = Field(primary_key=True)  # start of its UTC day
    open: float
    high: float
    low: float
    close: float
    fetched_at: datetime
