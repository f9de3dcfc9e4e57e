"""The daemon's fetch (`Clients`) keeps one client, its markets and its parse cache per source across polls.

Counted on the loopback fake, which records every request it serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config.settings import Settings
from monitor.exchanges.clients import Clients
from monitor.exchanges.errors import FetchError
from monitor.fake_exchange import (
    FAPI_BRACKETS,
    INSTRUMENTS,
    RISK_LIMIT,
    WEB_USDM,
    FakeExchange,
    Fault,
    generate_tables,
)
from monitor.fake_exchange.endpoints import FAPI_EXCHANGE_INFO

KEY = "kEy-AbCdEf0123456789"
SECRET = "sEcReT-ZyXwVu9876543210"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(api_key=KEY, api_secret=SECRET, page_size=15) as server:
        server.set_tables("bybit-linear", generate_tables("bybit-linear", 40, seed=3))
        server.set_tables("binance-usdm", generate_tables("binance-usdm", 30, seed=3))
        yield server


def settings_for(fake: FakeExchange, *, keyed: bool = True) -> Settings:
    binance = {"api_key": KEY, "api_secret": SECRET} if keyed else {}
    return Settings(endpoints=fake.endpoints(), binance=binance, http_timeout=2.0, bybit_page_retries=0)


def linear_markets(fake: FakeExchange) -> int:
    """How many times the linear markets were loaded (ccxt asks for the pre-launch ones in a second request)."""
    asked = [r for r in fake.requests_to(INSTRUMENTS) if r.query.get("category") == "linear"]
    return sum(1 for r in asked if r.query.get("status") != "PreLaunch")


def test_bybit_polls_reuse_the_client_and_its_markets(fake: FakeExchange) -> None:
    settings, clock = settings_for(fake), Clock()
    clients = Clients(now=clock)
    snaps = []
    for _ in range(4):
        snaps.append(clients("bybit-linear", settings))
        clock.at += timedelta(minutes=5)

    assert all(len(s.tables) == 40 for s in snaps)
    assert snaps[0].tables == snaps[3].tables
    assert linear_markets(fake) == 1  # the markets once, not once per poll
    assert len(fake.requests_to(RISK_LIMIT)) == 4 * 3  # three pages per poll, nothing else
    kept = clients.kept["bybit-linear"]
    assert (kept.builds, kept.market_loads) == (1, 1)
    assert kept.cache.hits == 3 * 40  # after the first poll no table was parsed again
    clients.close()
    assert kept.client is None


def test_bybit_markets_reload_after_a_day_and_for_a_new_listing(fake: FakeExchange) -> None:
    settings, clock = settings_for(fake), Clock()
    clients = Clients(now=clock)
    clients("bybit-linear", settings)
    clock.at += timedelta(hours=23)
    clients("bybit-linear", settings)
    assert linear_markets(fake) == 1

    clock.at += timedelta(hours=1)  # a day after the load
    clients("bybit-linear", settings)
    assert linear_markets(fake) == 2

    new = generate_tables("bybit-linear", 41, seed=3)
    fake.set_tables("bybit-linear", new)  # one more symbol, in the market list too
    snap = clients("bybit-linear", settings)
    assert linear_markets(fake) == 3  # named through fresh markets, not by its id's shape
    assert len(snap.tables) == 41 and not snap.warnings
    clients("bybit-linear", settings)
    assert linear_markets(fake) == 3
    clients.close()


def test_an_id_missing_from_the_markets_reloads_them_once_not_every_poll(fake: FakeExchange) -> None:
    tables = generate_tables("bybit-linear", 40, seed=3)
    settings, clock = settings_for(fake), Clock()
    clients = Clients(now=clock)
    clients("bybit-linear", settings)
    first = next(iter(tables))
    fake.set_table("bybit-linear", "ZZZUSDT", tables[first].__class__(tables[first].tiers, listed=False))
    for _ in range(3):
        snap = clients("bybit-linear", settings)
    assert linear_markets(fake) == 2
    assert any("ZZZUSDT" in w for w in snap.warnings)  # still named by its shape, and said so
    clients.close()


def test_a_failed_poll_drops_the_client_and_the_next_builds_a_new_one(fake: FakeExchange) -> None:
    settings, clock = settings_for(fake), Clock()
    clients = Clients(now=clock)
    clients("bybit-linear", settings)
    fake.inject(RISK_LIMIT, Fault.http(500))
    with pytest.raises(FetchError):
        clients("bybit-linear", settings)
    kept = clients.kept["bybit-linear"]
    assert kept.client is None

    snap = clients("bybit-linear", settings)
    assert len(snap.tables) == 40
    assert (kept.builds, kept.market_loads) == (2, 2)  # a new client loads its own markets
    assert linear_markets(fake) == 2
    clients.close()


def test_binance_signed_polls_load_the_markets_once(fake: FakeExchange) -> None:
    settings, clock = settings_for(fake), Clock()
    clients = Clients(now=clock)
    for _ in range(3):
        snap = clients("binance-usdm", settings)
        clock.at += timedelta(minutes=5)
    assert len(snap.tables) == 30
    assert len(fake.requests_to(FAPI_EXCHANGE_INFO)) == 1
    assert len(fake.requests_to(FAPI_BRACKETS)) == 3
    clients.close()


def test_binance_web_polls_share_one_http_client(fake: FakeExchange) -> None:
    settings, clock = settings_for(fake, keyed=False), Clock()
    clients = Clients(now=clock)
    snaps = [clients("binance-usdm", settings) for _ in range(3)]
    assert snaps[0].tables == snaps[2].tables and len(snaps[0].tables) == 30
    kept = clients.kept["binance-usdm"]
    assert kept.cache.hits == 2 * 30  # a new updateTime alone does not make an entry new
    client = kept.client
    assert kept.builds == 1 and client is not None
    assert len(fake.requests_to(WEB_USDM)) == 3
    clients.close()
    assert client.is_closed


def test_a_one_off_fetch_closes_its_client(fake: FakeExchange) -> None:
    from monitor.exchanges import fetch_snapshot
    from monitor.exchanges.kept import Kept

    kept = Kept()
    fetch_snapshot("binance-usdm", settings_for(fake, keyed=False), now=Clock(), kept=kept)
    client = kept.client
    kept.drop()
    assert client.is_closed and kept.client is None


@pytest.mark.parametrize("source", ["bybit-linear", "binance-usdm"])
def test_kept_clients_hold_only_the_symbols_of_their_markets(fake: FakeExchange, source: str) -> None:
    """The kept client never holds ccxt's market structures, and names every id as `load_markets` would."""
    from monitor.exchanges.bybit import _exchange
    from monitor.exchanges.clients import CLASSES, public_client

    settings = settings_for(fake)
    clients = Clients(now=Clock())
    snap = clients(source, settings)
    kept = clients.kept[source]
    assert kept.client.markets is None and kept.client.markets_by_id is None
    loaded = _exchange(settings, "linear") if source.startswith("bybit-") else public_client(source, settings)
    assert CLASSES[source][0] == loaded.id
    loaded.load_markets()
    assert kept.symbols == {i: ms[0]["symbol"] for i, ms in loaded.markets_by_id.items()}
    assert {t.symbol for t in snap.tables.values()} <= set(kept.symbols.values()) and len(snap.tables) > 0
    clients.close()
    assert kept.symbols == {}


def test_market_symbols_puts_spot_first_like_ccxt() -> None:
    from monitor.exchanges.kept import market_symbols

    markets = [
        {"id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "spot": False},
        {"id": "BTCUSDT", "symbol": "BTC/USDT", "spot": True},
        {"id": "ETHUSD", "symbol": "ETH/USD:ETH", "spot": False},
        {"id": "ETHUSD", "symbol": "ETH/USD:ETH-261225", "spot": False},
    ]
    assert market_symbols(markets) == {"BTCUSDT": "BTC/USDT", "ETHUSD": "ETH/USD:ETH"}
