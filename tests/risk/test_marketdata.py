"""Mark prices and ADRs: the pure ADR rules, and fetching and caching them through the real ccxt stack
against `monitor.fake_exchange` on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from monitor.cli import context as cli_context
from monitor.cli.market import market_app
from monitor.config.settings import Settings
from monitor.exchanges.errors import FetchError, Malformed
from monitor.fake_exchange import (
    DAPI_MARK_KLINES,
    DAPI_PREMIUM_INDEX,
    FAPI_EXCHANGE_INFO,
    FAPI_MARK_KLINES,
    FAPI_PREMIUM_INDEX,
    MARK_KLINE,
    TICKERS,
    FakeCandle,
    FakeExchange,
    FakeTable,
    FakeTier,
    Fault,
)
from monitor.risk.marketdata import (
    Candle,
    MarketDataError,
    Quote,
    RefreshResult,
    adr,
    adr_due,
    candles_from_ccxt,
    fetch_quote,
    refresh_market,
    symbols_with_open_positions,
)
from monitor.store.models import MarketData, Position
from snapshots.db import Poll

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TODAY = datetime(2026, 1, 2, tzinfo=UTC)
KEY = "kEy-AbCdEf0123456789"
SECRET = "sEcReT-ZyXwVu9876543210"
#: Twenty completed days, oldest first: ADR(14) is the mean of the last fourteen (7..20 → 13.5 × 10).
RANGES = [float(10 * n) for n in range(1, 21)]
ADR14 = sum(RANGES[-14:]) / 14

# (source, exchange id, unified symbol, mark path, candle path)
SOURCES = [
    ("binance-usdm", "BTCUSDT", "BTC/USDT:USDT", FAPI_PREMIUM_INDEX, FAPI_MARK_KLINES),
    ("binance-coinm", "BTCUSD_PERP", "BTC/USD:BTC", DAPI_PREMIUM_INDEX, DAPI_MARK_KLINES),
    ("bybit-linear", "BTCUSDT", "BTC/USDT:USDT", TICKERS, MARK_KLINE),
    ("bybit-inverse", "BTCUSD", "BTC/USD:BTC", TICKERS, MARK_KLINE),
]


def day(n: int) -> datetime:
    """The start of the UTC day `n` days after TODAY (negative: before)."""
    return TODAY + timedelta(days=n)


def candle(n: int, rng: float) -> Candle:
    return Candle(day(n), 100.0 + rng, 100.0)


# -- ADR (pure) ------------------------------------------------------------------------------------

ASCENDING = [candle(-3, 1), candle(-2, 2), candle(-1, 3), candle(0, 1_000)]


@pytest.mark.parametrize(
    ("candles", "days", "now", "expected"),
    [
        pytest.param(ASCENDING, 3, NOW, 2.0, id="open-day-left-out"),
        pytest.param(ASCENDING[::-1], 3, NOW, 2.0, id="newest-first-like-bybit"),
        pytest.param(ASCENDING, 2, NOW, 2.5, id="only-the-last-n"),
        pytest.param(ASCENDING, 4, day(1), 251.5, id="closed-at-midnight-counts"),
        pytest.param([*ASCENDING, candle(1, 9_999)], 3, NOW, 2.0, id="future-candle-left-out"),
        pytest.param([candle(-1, 0)], 1, NOW, 0.0, id="flat-day"),
    ],
)
def test_adr_averages_completed_days_only(candles: list[Candle], days: int, now: datetime, expected: float) -> None:
    assert adr(candles, days, now) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("candles", "days", "message"),
    [
        pytest.param(ASCENDING, 4, "only 3 completed daily candles; ADR(4) needs 4", id="newly-listed"),
        pytest.param([candle(0, 5)], 1, "only 0 completed daily candles; ADR(1) needs 1", id="open-day-only"),
        pytest.param([], 14, "only 0 completed daily candles; ADR(14) needs 14", id="none"),
        pytest.param([candle(-1, 1), candle(-1, 2)], 2, "two candles for the same day", id="duplicate-day"),
        pytest.param([Candle(day(-1), 99.0, 100.0)], 1, "high 99.0 and low 100.0", id="high-below-low"),
    ],
)
def test_adr_refuses_to_average_what_it_cannot(candles: list[Candle], days: int, message: str) -> None:
    with pytest.raises(MarketDataError) as info:
        adr(candles, days, NOW)

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_adr_needs_a_day() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        adr(ASCENDING, 0, NOW)


@pytest.mark.parametrize(
    ("row", "days", "due"),
    [
        pytest.param(MarketData(source="s", symbol="x"), 14, True, id="never-fetched"),
        pytest.param(MarketData(source="s", symbol="x", adr=5, adr_days=14, adr_at=NOW), 14, False, id="fresh"),
        pytest.param(
            MarketData(source="s", symbol="x", adr=5, adr_days=14, adr_at=NOW - timedelta(hours=23, minutes=59)),
            14,
            False,
            id="23h59",
        ),
        pytest.param(
            MarketData(source="s", symbol="x", adr=5, adr_days=14, adr_at=NOW - timedelta(hours=24)), 14, True, id="24h"
        ),
        pytest.param(MarketData(source="s", symbol="x", adr=5, adr_days=20, adr_at=NOW), 14, True, id="other-n"),
        pytest.param(
            MarketData(source="s", symbol="x", adr=5, adr_days=14, adr_at=NOW.replace(tzinfo=None)),
            14,
            False,
            id="naive-from-sqlite",
        ),
        pytest.param(MarketData(source="s", symbol="x", adr_days=14, adr_at=NOW), 14, True, id="no-value"),
    ],
)
def test_adr_due(row: MarketData, days: int, due: bool) -> None:
    assert adr_due(row, days, NOW) is due


@pytest.mark.parametrize(
    "rows",
    [None, [[1767225600000, 1.0, None, 0.5, 1.0, 0.0]], [[1767225600000, 1.0, float("nan"), 0.5, 1.0]], [["x"]]],
)
def test_candles_from_ccxt_rejects_incomplete_rows(rows: Any) -> None:
    with pytest.raises(Malformed):
        candles_from_ccxt(rows)


def test_candles_from_ccxt_reads_time_high_low() -> None:
    assert candles_from_ccxt([[1767225600000, 1.0, 2.0, 0.5, 1.5, None]]) == [Candle(day(-1), 2.0, 0.5)]


# -- fetching through ccxt -------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(api_key=KEY, api_secret=SECRET) as server:
        yield server


def settings_for(fake: FakeExchange, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"http_timeout": 0.5, **overrides}
    return Settings(endpoints=fake.endpoints(), **values)


@pytest.mark.parametrize(("source", "exchange_id", "symbol", "mark_path", "candle_path"), SOURCES)
def test_fetch_quote_returns_what_the_exchange_served(
    fake: FakeExchange, source: str, exchange_id: str, symbol: str, mark_path: str, candle_path: str
) -> None:
    fake.set_market(source, exchange_id, mark=67_012.5, daily_ranges=RANGES, today=TODAY.date())

    quote = fetch_quote(source, symbol, settings_for(fake), now=NOW, days=14, want_adr=True)

    assert quote.mark == 67_012.5
    assert quote.adr == pytest.approx(ADR14)
    assert quote.adr_error is None
    (marks,) = fake.requests_to(mark_path)
    (candles,) = fake.requests_to(candle_path)
    assert marks.query["symbol"] == exchange_id
    assert candles.query["symbol"] == exchange_id
    assert candles.query["limit"] == "16"  # N completed, the open day, one spare
    if source.startswith("bybit-"):
        assert candles.query["category"] == marks.query["category"] == source.removeprefix("bybit-")


def test_fetch_quote_without_adr_asks_for_no_candles(fake: FakeExchange) -> None:
    fake.set_market("bybit-linear", "ETHUSDT", mark=3_000.25, daily_ranges=RANGES, today=TODAY.date())

    quote = fetch_quote("bybit-linear", "ETH/USDT:USDT", settings_for(fake), now=NOW, days=14, want_adr=False)

    assert quote == Quote(3_000.25)
    assert fake.requests_to(MARK_KLINE) == []


def test_fetch_quote_stays_keyless_when_a_key_is_configured(fake: FakeExchange) -> None:
    fake.set_market("binance-usdm", "BTCUSDT", mark=50_000, daily_ranges=RANGES, today=TODAY.date())
    settings = settings_for(fake, binance={"api_key": KEY, "api_secret": SECRET})

    quote = fetch_quote("binance-usdm", "BTC/USDT:USDT", settings, now=NOW, days=14, want_adr=True)

    assert quote.mark == 50_000
    assert quote.adr == pytest.approx(ADR14)
    assert fake.requests  # the calls went to the fake …
    for request in fake.requests:  # … without a key, a signature, or a wallet call
        assert "x-mbx-apikey" not in request.headers
        assert "signature" not in request.query
    assert {r.path for r in fake.requests} == {FAPI_EXCHANGE_INFO, FAPI_PREMIUM_INDEX, FAPI_MARK_KLINES}


def test_fetch_quote_reports_too_few_candles_beside_a_good_mark(fake: FakeExchange) -> None:
    fake.set_market("binance-coinm", "SOLUSD_PERP", mark=150.5, daily_ranges=[1.0, 2.0, 3.0], today=TODAY.date())

    quote = fetch_quote("binance-coinm", "SOL/USD:SOL", settings_for(fake), now=NOW, days=14, want_adr=True)

    assert quote.mark == 150.5
    assert quote.adr is None
    assert quote.adr_error == "only 3 completed daily candles; ADR(14) needs 14"


def test_fetch_quote_uses_explicit_candles_in_any_order(fake: FakeExchange) -> None:
    rows = [FakeCandle(day(n), 10.0, 10.0 + abs(n), 10.0, 10.0) for n in (-1, -3, 0, -2)]
    fake.set_market("bybit-inverse", "ETHUSD", mark=10.0, candles=rows)

    quote = fetch_quote("bybit-inverse", "ETH/USD:ETH", settings_for(fake), now=NOW, days=3, want_adr=True)

    assert quote.adr == pytest.approx(2.0)  # days −3, −2, −1; today's range 0 is not a completed day


def test_fetch_quote_symbol_missing_from_markets(fake: FakeExchange) -> None:
    fake.set_market("binance-usdm", "BTCUSDT", mark=1.0)

    with pytest.raises(MarketDataError) as info:
        fetch_quote("binance-usdm", "NOPE/USDT:USDT", settings_for(fake), now=NOW, days=14, want_adr=True)

    assert str(info.value) == "NOPE/USDT:USDT is not in the market list of binance-usdm"
    assert fake.requests_to(FAPI_PREMIUM_INDEX) == []


@pytest.mark.parametrize(
    ("source", "exchange_id", "symbol", "text"),
    [
        ("binance-usdm", "ETHUSDT", "ETH/USDT:USDT", "Invalid symbol"),
        ("bybit-linear", "ETHUSDT", "ETH/USDT:USDT", "Not supported symbols"),
    ],
)
def test_fetch_quote_symbol_the_exchange_rejects(
    fake: FakeExchange, source: str, exchange_id: str, symbol: str, text: str
) -> None:
    # Listed (it has a tier table) but without market data: the fake answers like the real exchange.
    fake.set_table(source, exchange_id, FakeTable((FakeTier(0, 1e6, 0.01, 0, 50),)))

    with pytest.raises(FetchError) as info:
        fetch_quote(source, symbol, settings_for(fake), now=NOW, days=14, want_adr=True)

    assert text in str(info.value)
    assert "\n" not in str(info.value)


# -- the fake's own answers ------------------------------------------------------------------------


def test_fake_answers_like_the_exchanges_for_unknown_symbols(fake: FakeExchange) -> None:
    binance = httpx.get(fake.url + FAPI_PREMIUM_INDEX, params={"symbol": "NOPEUSDT"})
    bybit = httpx.get(fake.url + TICKERS, params={"category": "linear", "symbol": "NOPEUSDT"})

    assert (binance.status_code, binance.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert bybit.status_code == 200
    assert (bybit.json()["retCode"], bybit.json()["retMsg"]) == (10001, "Not supported symbols")


def test_fake_serves_bybit_klines_newest_first_and_binance_oldest_first(fake: FakeExchange) -> None:
    fake.set_market("bybit-linear", "BTCUSDT", mark=100.0, daily_ranges=[1.0, 2.0], today=TODAY.date())
    fake.set_market("binance-coinm", "BTCUSD_PERP", mark=100.0, daily_ranges=[1.0, 2.0], today=TODAY.date())

    bybit = httpx.get(fake.url + MARK_KLINE, params={"category": "linear", "symbol": "BTCUSDT", "interval": "D"})
    binance = httpx.get(fake.url + DAPI_PREMIUM_INDEX, params={"symbol": "BTCUSD_PERP"})
    klines = httpx.get(fake.url + DAPI_MARK_KLINES, params={"symbol": "BTCUSD_PERP", "interval": "1d", "limit": 2})

    opened = [int(row[0]) for row in bybit.json()["result"]["list"]]
    assert opened == sorted(opened, reverse=True) and len(opened) == 3
    assert isinstance(binance.json(), list)  # COIN-M answers a list even for one symbol
    assert [row[0] for row in klines.json()] == [int(day(-1).timestamp() * 1000), int(TODAY.timestamp() * 1000)]


# -- refreshing the cache --------------------------------------------------------------------------


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


def stored(session: Session, source: str, symbol: str) -> MarketData:
    row = session.get(MarketData, (source, symbol))
    assert row is not None
    return row


def two_symbols(fake: FakeExchange, *, mark: float = 1_000.0, today: datetime = TODAY) -> None:
    for exchange_id in ("BTCUSDT", "ETHUSDT"):
        fake.set_market("binance-usdm", exchange_id, mark=mark, daily_ranges=RANGES, today=today.date())


SYMBOLS = ["ETH/USDT:USDT", "BTC/USDT:USDT"]


def refresh(session: Session, fake: FakeExchange, now: datetime, **overrides: Any) -> list[RefreshResult]:
    return refresh_market(session, "binance-usdm", SYMBOLS, settings_for(fake, **overrides), now=now)


def test_refresh_stores_marks_and_adrs(session: Session, fake: FakeExchange) -> None:
    two_symbols(fake, mark=1_234.5)

    results = refresh(session, fake, NOW)

    assert [(r.symbol, r.ok, r.mark_refreshed, r.adr_refreshed) for r in results] == [
        ("BTC/USDT:USDT", True, True, True),
        ("ETH/USDT:USDT", True, True, True),
    ]
    row = stored(session, "binance-usdm", "ETH/USDT:USDT")
    assert (row.mark_price, row.mark_at, row.adr_days, row.adr_at, row.error) == (1_234.5, NOW, 14, NOW, None)
    assert row.adr == pytest.approx(ADR14)


def test_adr_is_fetched_once_a_day_but_the_mark_every_time(session: Session, fake: FakeExchange) -> None:
    two_symbols(fake, mark=1_000.0)
    refresh(session, fake, NOW)
    two_symbols(fake, mark=1_010.0)

    later = refresh(session, fake, NOW + timedelta(hours=23))

    assert all(r.ok and r.mark_refreshed and not r.adr_refreshed for r in later)
    assert len(fake.requests_to(FAPI_PREMIUM_INDEX)) == 4
    assert len(fake.requests_to(FAPI_MARK_KLINES)) == 2
    row = stored(session, "binance-usdm", "BTC/USDT:USDT")
    assert (row.mark_price, row.mark_at, row.adr_at) == (1_010.0, NOW + timedelta(hours=23), NOW)

    next_day = NOW + timedelta(hours=24)
    two_symbols(fake, mark=1_020.0, today=next_day)
    refresh(session, fake, next_day)

    assert len(fake.requests_to(FAPI_MARK_KLINES)) == 4
    assert stored(session, "binance-usdm", "BTC/USDT:USDT").adr_at == next_day


def test_changing_adr_days_refetches_the_adr(session: Session, fake: FakeExchange) -> None:
    two_symbols(fake)
    refresh(session, fake, NOW)

    refresh(session, fake, NOW + timedelta(minutes=5), adr_days=20)

    row = stored(session, "binance-usdm", "BTC/USDT:USDT")
    assert row.adr_days == 20
    assert row.adr == pytest.approx(sum(RANGES) / 20)
    assert len(fake.requests_to(FAPI_MARK_KLINES)) == 4


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.http(503), "HTTP 503 Service Unavailable"),
        (Fault.malformed(), "malformed"),
        (Fault.empty(), "malformed response: mark price is None"),
        (Fault.raw('{"code":-1121,"msg":"Invalid symbol."}', status=400), "Invalid symbol"),
    ],
)
def test_a_failing_symbol_keeps_its_good_values_and_spares_the_others(
    session: Session, fake: FakeExchange, fault: Fault, reason: str
) -> None:
    two_symbols(fake, mark=1_000.0)
    refresh(session, fake, NOW)
    before = stored(session, "binance-usdm", "ETH/USDT:USDT").model_dump()
    two_symbols(fake, mark=2_000.0)
    fake.inject(FAPI_PREMIUM_INDEX, fault, after=1)  # BTC is asked first, ETH second
    later = NOW + timedelta(hours=25)

    results = refresh(session, fake, later)

    btc, eth = results
    assert (btc.ok, eth.ok, eth.mark_refreshed) == (True, False, False)
    assert eth.reason is not None and reason in eth.reason and "\n" not in eth.reason
    row = stored(session, "binance-usdm", "ETH/USDT:USDT").model_dump()
    assert (row["error"], row["error_at"]) == (eth.reason, later)
    assert {k: v for k, v in row.items() if not k.startswith("error")} == {
        k: v for k, v in before.items() if not k.startswith("error")
    }
    assert stored(session, "binance-usdm", "BTC/USDT:USDT").mark_price == 2_000.0


def test_a_failed_adr_keeps_the_old_adr_and_stores_the_new_mark(session: Session, fake: FakeExchange) -> None:
    two_symbols(fake, mark=1_000.0)
    refresh(session, fake, NOW)
    old_adr = stored(session, "binance-usdm", "BTC/USDT:USDT").adr
    two_symbols(fake, mark=1_500.0)
    fake.inject(FAPI_MARK_KLINES, Fault.http(502), times=2)
    later = NOW + timedelta(days=2)

    results = refresh(session, fake, later)

    assert all(not r.ok and r.mark_refreshed and not r.adr_refreshed for r in results)
    row = stored(session, "binance-usdm", "BTC/USDT:USDT")
    assert (row.mark_price, row.mark_at) == (1_500.0, later)
    assert (row.adr, row.adr_at) == (old_adr, NOW)
    assert row.error == f"ADR(14) not refreshed: {fake.url.removeprefix('http://')}: HTTP 502 Bad Gateway"
    assert row.error_at == later


def test_a_newly_listed_symbol_gets_a_mark_and_no_invented_adr(session: Session, fake: FakeExchange) -> None:
    fake.set_market("bybit-linear", "NEWUSDT", mark=0.125, daily_ranges=[0.01] * 5, today=TODAY.date())

    (result,) = refresh_market(session, "bybit-linear", ["NEW/USDT:USDT"], settings_for(fake), now=NOW)

    assert (result.ok, result.mark_refreshed) == (False, True)
    row = stored(session, "bybit-linear", "NEW/USDT:USDT")
    assert (row.mark_price, row.adr, row.adr_at) == (0.125, None, None)
    assert row.error == "ADR(14) not refreshed: only 5 completed daily candles; ADR(14) needs 14"


def test_timeouts_are_bounded(session: Session, fake: FakeExchange) -> None:
    fake.set_market("bybit-inverse", "BTCUSD", mark=90_000, daily_ranges=RANGES, today=TODAY.date())
    fake.inject(TICKERS, Fault.slow(3))
    started = time.monotonic()

    (result,) = refresh_market(session, "bybit-inverse", ["BTC/USD:BTC"], settings_for(fake, http_timeout=0.3), now=NOW)

    assert time.monotonic() - started < 2
    assert result.reason == f"{fake.url.removeprefix('http://')}: timeout after 0.3s"
    assert stored(session, "bybit-inverse", "BTC/USD:BTC").mark_price is None


def test_refresh_redacts_a_configured_key_echoed_by_the_exchange(session: Session, fake: FakeExchange) -> None:
    fake.set_market("binance-usdm", "BTCUSDT", mark=1_000.0, daily_ranges=RANGES, today=TODAY.date())
    fake.inject(FAPI_PREMIUM_INDEX, Fault.http(400, body=f"rejected {KEY} {SECRET}"))
    settings = settings_for(fake, binance={"api_key": KEY, "api_secret": SECRET})

    (result,) = refresh_market(session, "binance-usdm", ["BTC/USDT:USDT"], settings, now=NOW)

    assert result.reason is not None and "rejected" in result.reason
    assert KEY not in result.reason and SECRET not in result.reason


def test_refresh_does_not_commit(engine: Engine, fake: FakeExchange) -> None:
    two_symbols(fake)
    with Session(engine) as session:
        refresh(session, fake, NOW)
        session.rollback()

    with Session(engine) as session:
        assert session.get(MarketData, ("binance-usdm", "BTC/USDT:USDT")) is None


def test_refresh_loads_the_market_list_once_per_call(session: Session, fake: FakeExchange) -> None:
    two_symbols(fake)

    results = refresh(session, fake, NOW)

    assert all(r.ok for r in results)
    assert len(fake.requests_to(FAPI_PREMIUM_INDEX)) == 2
    assert len(fake.requests_to(FAPI_EXCHANGE_INFO)) == 1


def test_a_failing_market_list_fails_each_symbol_and_keeps_them_all(session: Session, fake: FakeExchange) -> None:
    two_symbols(fake)
    fake.inject(FAPI_EXCHANGE_INFO, Fault.http(503), times=5)

    results = refresh(session, fake, NOW)

    assert [r.reason for r in results] == [f"{fake.url.removeprefix('http://')}: HTTP 503 Service Unavailable"] * 2
    assert len(fake.requests_to(FAPI_EXCHANGE_INFO)) == 2  # tried again for the second symbol
    assert stored(session, "binance-usdm", "ETH/USDT:USDT").mark_price is None


def test_refresh_rejects_an_invalid_mark_from_any_fetch(session: Session) -> None:
    def fetch(source: str, symbol: str, settings: Settings, /, **_: Any) -> Quote:
        return Quote(float("nan"), 5.0)

    (result,) = refresh_market(session, "bybit-linear", ["X/USDT:USDT"], Settings(), now=NOW, fetch=fetch)

    assert result.reason == "malformed response: mark price is nan"
    assert stored(session, "bybit-linear", "X/USDT:USDT").adr is None


# -- open positions and the CLI --------------------------------------------------------------------


def position(source: str, symbol: str, *, closed: bool = False) -> Position:
    return Position(
        source=source, symbol=symbol, side="long", entry_price=100.0, size=1.0, size_input="qty=1",
        opened_at=NOW - timedelta(days=3), closed_at=NOW if closed else None,
    )  # fmt: skip


def test_symbols_with_open_positions(session: Session) -> None:
    session.add_all(
        [
            position("binance-usdm", "BTC/USDT:USDT"),
            position("binance-usdm", "BTC/USDT:USDT"),
            position("binance-usdm", "ETH/USDT:USDT", closed=True),
            position("bybit-inverse", "BTC/USD:BTC"),
        ]
    )
    session.flush()

    assert symbols_with_open_positions(session) == {
        "binance-usdm": {"BTC/USDT:USDT"},
        "bybit-inverse": {"BTC/USD:BTC"},
    }


def invoke(engine: Engine, fake: FakeExchange, *args: str) -> Any:
    obj = cli_context.Context(_settings=settings_for(fake), _engine=engine)
    return CliRunner().invoke(market_app, list(args), obj=obj)


def test_cli_refresh_commits_and_show_prints_the_cache(engine: Engine, fake: FakeExchange) -> None:
    fake.set_market("binance-usdm", "BTCUSDT", mark=64_000.0, daily_ranges=RANGES, today=TODAY.date())
    with Session(engine) as s:
        s.add_all([position("binance-usdm", "BTC/USDT:USDT"), position("bybit-linear", "ETH/USDT:USDT")])
        s.commit()

    only_binance = invoke(engine, fake, "refresh", "--source", "binance-usdm")
    everything = invoke(engine, fake, "refresh")
    shown = invoke(engine, fake, "show", "--json")

    assert only_binance.exit_code == 0, only_binance.output
    assert "binance-usdm BTC/USDT:USDT: ok" in only_binance.output
    assert everything.exit_code == 1  # ETH has no market on the fake's Bybit
    assert "bybit-linear ETH/USDT:USDT: FAILED:" in everything.output
    rows = {r["symbol"]: r for r in json.loads(shown.stdout)}
    assert set(rows["BTC/USDT:USDT"]) == {
        "source", "symbol", "mark_price", "mark_at", "adr", "adr_days", "adr_at", "error", "error_at"
    }  # fmt: skip
    assert rows["BTC/USDT:USDT"]["mark_price"] == 64_000.0
    assert rows["BTC/USDT:USDT"]["mark_at"].endswith("Z")
    assert rows["ETH/USDT:USDT"]["mark_price"] is None
    assert rows["ETH/USDT:USDT"]["error"]


def test_a_ban_stops_the_refresh_of_the_remaining_symbols(session: Session, fake: FakeExchange) -> None:
    # Bybit's 403 asks for a pause of at least 10 minutes (domain doc §8): asking for each remaining symbol
    # would only lengthen the ban.
    for exchange_id in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        fake.set_market("bybit-linear", exchange_id, mark=100.0, daily_ranges=RANGES, today=TODAY.date())
    fake.inject(TICKERS, Fault.bybit_ip_limit(reset_ms=int(NOW.timestamp() * 1000) + 1_200_000), times=3)
    symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
    fake.clear_requests()

    results = refresh_market(session, "bybit-linear", symbols, settings_for(fake), now=NOW)

    assert len(fake.requests_to(TICKERS)) == 1
    assert [r.ok for r in results] == [False, False, False]
    assert "403" in (results[0].reason or "")
    assert all((r.reason or "").startswith("not asked: ") and "403" in (r.reason or "") for r in results[1:])
    assert stored(session, "bybit-linear", "SOL/USDT:USDT").error == results[2].reason


def test_a_resting_source_asks_no_market_data_either(session: Session, fake: FakeExchange) -> None:
    # The ban is per IP and host: the poll that was told to rest speaks for the market endpoints too.
    fake.set_market("bybit-linear", "BTCUSDT", mark=1_000.0, daily_ranges=RANGES, today=TODAY.date())
    reason = "api.bybit.com: HTTP 403 Forbidden: access too frequent; resting until 2026-12-01T22:40:05Z"
    session.add(
        Poll(
            source="bybit-linear",
            started_at=NOW,
            outcome="failed",
            error=reason,
            error_kind="rate_limited",
            retry_at=NOW + timedelta(minutes=10),
        )
    )
    session.flush()
    fake.clear_requests()

    (during,) = refresh_market(session, "bybit-linear", ["BTC/USDT:USDT"], settings_for(fake), now=NOW)
    (after,) = refresh_market(
        session, "bybit-linear", ["BTC/USDT:USDT"], settings_for(fake), now=NOW + timedelta(minutes=11)
    )

    assert during.reason == f"not asked: {reason}"
    assert (after.ok, after.mark_refreshed, after.reason) == (True, True, None)
    assert len(fake.requests_to(TICKERS)) == 1
