"""The values the fake serves (tiers, tables, candles, markets), and realistic scenarios of them."""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from monitor.fake_exchange.endpoints import check_source

_DAY = timedelta(days=1)

# -- scenario values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeTier:
    """One tier as the fake serves it; units follow the source (quote notional, or coin for inverse)."""

    floor: float
    cap: float
    rate: float
    amount: float
    max_leverage: float


@dataclass(frozen=True, slots=True)
class FakeTable:
    """The tiers of one symbol, keyed by exchange id (`BTCUSDT`, `BTCUSD_PERP`, `BTCUSD`, `BTCPERP`)."""

    tiers: tuple[FakeTier, ...]
    #: Binance's per-account multiplier, served by the signed endpoints only (domain doc §1).
    notional_coef: float | None = None
    #: False: served in tier tables but missing from the market list, like a brand-new listing.
    listed: bool = True


@dataclass(frozen=True, slots=True)
class FakeCandle:
    """One daily mark-price candle; `opened_at` is the start of its UTC day."""

    opened_at: datetime
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class FakeMarket:
    """What the market-data endpoints serve for one symbol: its mark price and daily candles."""

    mark: float
    candles: tuple[FakeCandle, ...] = ()


# -- realistic scenarios ----------------------------------------------------------------------------

_MAJORS = (
    "BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "TRX", "LINK", "AVAX", "DOT", "LTC", "BCH", "NEAR",
    "UNI", "ATOM", "ETC", "FIL", "APT", "ARB", "OP", "SUI", "INJ", "AAVE", "XLM", "XMR", "XTZ", "HBAR",
)  # fmt: skip
_FIRST_CAPS_QUOTE = (5_000, 10_000, 25_000, 50_000, 100_000, 250_000)
_FIRST_CAPS_COIN = (1, 5, 10, 25, 50, 100)
_FIRST_RATES = ("0.004", "0.005", "0.0065", "0.01", "0.015", "0.02", "0.025")
_CAP_STEPS = (2, Decimal("2.5"), 4, 5)
_RATE_STEPS = (Decimal("1.25"), Decimal("1.5"), 2)
_TOP_RATE = Decimal("0.5")


def base_names(n: int) -> list[str]:
    """`n` distinct base-coin names: real majors first, then synthetic ones (`ZAA`, `ZAB`, …)."""
    names = list(_MAJORS[:n])
    letters = string.ascii_uppercase
    width = 2
    while len(names) < n:
        for i in range(len(letters) ** width):
            if len(names) == n:
                break
            code, tag = i, ""
            for _ in range(width):
                code, r = divmod(code, len(letters))
                tag = letters[r] + tag
            name = "Z" + tag
            if "USD" not in name and name not in names:
                names.append(name)
        width += 1
    return names


def exchange_id(source: str, base: str) -> str:
    """The id of `base`'s perpetual on `source`: BTCUSDT, BTCUSD_PERP, BTCUSDT or BTCUSD."""
    check_source(source)
    return {
        "binance-usdm": f"{base}USDT",
        "binance-coinm": f"{base}USD_PERP",
        "bybit-linear": f"{base}USDT",
        "bybit-inverse": f"{base}USD",
    }[source]


def random_tiers(rng: random.Random, *, coin: bool = False) -> tuple[FakeTier, ...]:
    """5–12 well-formed tiers (domain doc §1) shaped like real ones; amounts follow the recurrence.

    Floors start at 0 and caps grow 2–5× a tier; the maintenance rate grows 1.25–2× a tier up to 50 %;
    max leverage is 1/(2r), as on Binance (0.4 % → 125×). `coin` gives caps in coin (COIN-M, inverse).
    """
    count = rng.randint(5, 12)
    cap = Decimal(rng.choice(_FIRST_CAPS_COIN if coin else _FIRST_CAPS_QUOTE))
    rate = Decimal(rng.choice(_FIRST_RATES))
    floor = amount = Decimal(0)
    previous_rate = rate
    tiers = []
    for _ in range(count):
        # A_n = A_{n-1} + floor_n × (r_n − r_{n-1}) keeps maintenance margin continuous at each floor.
        amount += floor * (rate - previous_rate)
        leverage = max(1, int(1 / (2 * rate)))
        tiers.append(FakeTier(float(floor), float(cap), float(rate), float(amount), float(leverage)))
        previous_rate = rate
        floor, cap = cap, (cap * rng.choice(_CAP_STEPS)).to_integral_value()
        rate = min(_TOP_RATE, (rate * rng.choice(_RATE_STEPS)).quantize(Decimal("0.0001")))
    return tuple(tiers)


def generate_tables(source: str, n: int, *, seed: int = 0) -> dict[str, FakeTable]:
    """`n` symbols' tables for `source`, the same for the same arguments (each symbol has its own stream)."""
    coin = source in ("binance-coinm", "bybit-inverse")
    out = {}
    for base in base_names(n):
        ident = exchange_id(source, base)
        rng = random.Random(f"{seed}:{source}:{ident}")  # noqa: S311 - scenario data, not cryptography
        out[ident] = FakeTable(random_tiers(rng, coin=coin))
    return out


def daily_candles(
    mark: float, ranges: Sequence[float], *, today: date, open_range: float | None = None
) -> tuple[FakeCandle, ...]:
    """Completed days with the given ranges (oldest first, the last one the day before `today`), centred
    on `mark`, then the still-open day `today` with `open_range` (default three times the largest range)."""
    first = datetime(today.year, today.month, today.day, tzinfo=UTC) - len(ranges) * _DAY
    widths = [*ranges, open_range if open_range is not None else 3 * max(ranges, default=mark / 100)]
    return tuple(
        FakeCandle(first + n * _DAY, mark, mark + width / 2, mark - width / 2, mark) for n, width in enumerate(widths)
    )


def default_scenario(n_symbols: int = 700, *, seed: int = 0) -> dict[str, dict[str, FakeTable]]:
    """Tables for every source, sized like the real exchanges: `n_symbols` linear, a 20th as many inverse."""
    inverse = max(1, n_symbols // 20)
    sizes = {"binance-usdm": n_symbols, "binance-coinm": inverse, "bybit-linear": n_symbols, "bybit-inverse": inverse}
    return {source: generate_tables(source, size, seed=seed) for source, size in sizes.items()}
