"""Fetching tier tables through the real ccxt and httpx stacks, against `monitor.fake_exchange` on 127.0.0.1.

respx stands in for the network only on the project's own httpx call (the Binance web endpoint).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import ccxt
import httpx
import pytest
import respx

from monitor.config.settings import Settings
from monitor.exchanges import FetchError, fetch_snapshot
from monitor.exchanges.binance import REAL_FAPI, rebased_urls
from monitor.exchanges.bybit import backoff, page_rows, retry_after
from monitor.exchanges.errors import (
    AuthFailed,
    EmptyResult,
    ExchangeUnavailable,
    FetchTimeout,
    Malformed,
    RateLimited,
    Truncated,
    UnderMaintenance,
    from_ccxt,
    redact,
)
from monitor.fake_exchange import (
    DAPI_BRACKETS,
    FAPI_BRACKETS,
    INSTRUMENTS,
    RISK_LIMIT,
    WEB_USDM,
    FakeExchange,
    FakeTable,
    FakeTier,
    Fault,
    generate_tables,
)
from snapshots.errors import InvalidTable
from snapshots.model import Snapshot, Unit

KEY = "kEy-AbCdEf0123456789"
SECRET = "sEcReT-ZyXwVu9876543210"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# (floor, rate, max leverage); caps are the next floor, amounts follow the recurrence of domain doc §1.
BTC_ROWS = [(0, 0.004, 125), (50_000, 0.005, 100), (250_000, 0.01, 50), (1_000_000, 0.025, 20)]
COIN_ROWS = [(0, 0.005, 125), (5, 0.01, 50), (50, 0.025, 20), (250, 0.05, 10)]


def tiers(
    rows: Sequence[tuple[float, float, float]], top: float, amounts: dict[int, float] | None = None
) -> tuple[FakeTier, ...]:
    """FakeTiers from rows; `amounts` overrides the maintenance amount of tier n (1-based)."""
    out, amount = [], 0.0
    for i, (floor, rate, lev) in enumerate(rows):
        if i:
            amount += floor * (rate - rows[i - 1][1])
        cap = rows[i + 1][0] if i + 1 < len(rows) else top
        out.append(FakeTier(floor, cap, rate, (amounts or {}).get(i + 1, amount), lev))
    return tuple(out)


def now() -> datetime:
    return NOW


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(api_key=KEY, api_secret=SECRET, page_size=15) as server:
        yield server


def host(fake: FakeExchange) -> str:
    """How failure messages name the fake: its `host:port`."""
    return fake.url.removeprefix("http://")


def settings_for(fake: FakeExchange, *, keyed: bool = True, **overrides: Any) -> Settings:
    binance = {"api_key": KEY, "api_secret": SECRET} if keyed else {}
    values: dict[str, Any] = {"http_timeout": 2.0, **overrides}
    return Settings(endpoints=fake.endpoints(), binance=binance, **values)


class Sleeps(list[float]):
    """An injected `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(fake: FakeExchange, source: str, sleeps: Sleeps | None = None, **overrides: Any) -> Snapshot:
    settings = settings_for(fake, **overrides)
    return fetch_snapshot(source, settings, now=now, sleep=sleeps if sleeps is not None else Sleeps())


# -- redaction and error translation (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "binanceusdm GET http://h/fapi/v1/leverageBracket?timestamp=1&recvWindow=10000&signature=ab12cd 400",
            "binanceusdm GET http://h/fapi/v1/leverageBracket?timestamp=1&recvWindow=10000&signature=*** 400",
        ),
        ("headers {'X-MBX-APIKEY': 'zzz999'} sent", "headers {'X-MBX-APIKEY': '***'} sent"),
        ('{"apiKey":"zzz999","x":1}', '{"apiKey":"***","x":1}'),
        ("key kEy-AbCdEf0123456789 and secret sEcReT-ZyXwVu9876543210", "key *** and secret ***"),
        ("url-encoded sEcReT%2FwITH%2Bslash", "url-encoded ***"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redact_hides_signatures_keys_and_secrets(text: str, expected: str) -> None:
    assert redact(text, [KEY, SECRET, "sEcReT/wITH+slash", ""]) == expected


def test_redact_ignores_empty_secrets() -> None:
    assert redact("abc", ["", ""]) == "abc"


SIGNED_URL = f"http://127.0.0.1:1/fapi/v1/leverageBracket?timestamp=1&signature=deadbeef&apiKey={KEY}"


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (ccxt.RequestTimeout(f"binanceusdm GET {SIGNED_URL}"), FetchTimeout, "timeout after 15s"),
        (
            ccxt.DDoSProtection("binanceusdm 429 Too Many Requests "),
            RateLimited,
            "HTTP 429 Too Many Requests",
        ),
        (ccxt.RateLimitExceeded('bybit {"retCode":10006}'), RateLimited, "rate limited (retCode 10006)"),
        (
            ccxt.ExchangeNotAvailable(f"bybit GET {SIGNED_URL} 503 Service Unavailable <html>"),
            ExchangeUnavailable,
            "HTTP 503 Service Unavailable",
        ),
        (ccxt.OnMaintenance("binanceusdm system maintenance"), UnderMaintenance, None),
        (ccxt.AuthenticationError('binanceusdm {"code":-1022}'), AuthFailed, None),
        (ccxt.InvalidNonce('binanceusdm {"code":-1021}'), AuthFailed, None),
        (ccxt.NetworkError(f"binanceusdm GET {SIGNED_URL}"), ExchangeUnavailable, None),
        (ccxt.ExchangeError(f"binanceusdm GET {SIGNED_URL} 400 Bad Request"), FetchError, None),
    ],
)
def test_ccxt_errors_map_to_fetch_errors_without_secrets(exc: Exception, kind: type, message: str | None) -> None:
    err = from_ccxt(exc, timeout=15.0, secrets=[KEY, SECRET])
    assert type(err) is kind
    if message is not None:
        assert str(err) == message
    text = str(err)
    assert "\n" not in text
    assert "deadbeef" not in text
    assert KEY not in text


# -- Binance signed --------------------------------------------------------------------------------


def test_signed_usdm_is_verified_and_keeps_cum_and_notional_coef(fake: FakeExchange) -> None:
    # Tier 3's cum is off the recurrence by 7: the exchange's own number must be kept (and flagged).
    btc = tiers(BTC_ROWS, 5_000_000, amounts={3: 1_307.0})
    fake.set_tables(
        "binance-usdm", {"BTCUSDT": FakeTable(btc, notional_coef=1.5), "ETHUSDT": FakeTable(tiers(BTC_ROWS, 1e7))}
    )

    snap = fetch(fake, "binance-usdm")

    assert snap.provenance == "binance-fapi-signed"
    assert snap.taken_at == NOW
    assert sorted(snap.tables) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    table = snap.tables["BTC/USDT:USDT"]
    assert [t.maintenance_amount for t in table.tiers] == pytest.approx([0, 50, 1_307, 16_300])
    assert table.notional_coef == 1.5
    assert any("tier 3" in w for w in table.warnings)
    assert snap.tables["ETH/USDT:USDT"].notional_coef is None
    (request,) = fake.requests_to(FAPI_BRACKETS)
    assert request.headers["x-mbx-apikey"] == KEY
    assert request.query["signature"] and request.query["timestamp"].isdigit()


def test_signed_coinm_uses_dapi_v2_and_coin_units(fake: FakeExchange) -> None:
    fake.set_tables("binance-coinm", {"BTCUSD_PERP": FakeTable(tiers(COIN_ROWS, 1_000), notional_coef=2.0)})

    snap = fetch(fake, "binance-coinm")

    assert snap.provenance == "binance-dapi-signed"
    table = snap.tables["BTC/USD:BTC"]
    assert table.unit is Unit.BASE
    assert [(t.floor, t.cap) for t in table.tiers] == [(0, 5), (5, 50), (50, 250), (250, 1_000)]
    assert table.tiers[1].maintenance_amount == pytest.approx(0.025)
    assert table.notional_coef == 2.0
    assert len(fake.requests_to(DAPI_BRACKETS)) == 1


def test_signed_symbol_missing_from_markets_is_kept_and_reported(fake: FakeExchange) -> None:
    fake.set_tables(
        "binance-usdm",
        {"BTCUSDT": FakeTable(tiers(BTC_ROWS, 5e6)), "NEWUSDT": FakeTable(tiers(BTC_ROWS, 5e6), listed=False)},
    )

    snap = fetch(fake, "binance-usdm")

    assert "NEW/USDT:USDT" in snap.tables
    assert len(snap.warnings) == 1
    assert "NEWUSDT" in snap.warnings[0]


def test_signed_wrong_secret_fails_authentication_without_leaking(fake: FakeExchange) -> None:
    fake.set_tables("binance-usdm", {"BTCUSDT": FakeTable(tiers(BTC_ROWS, 5e6))})
    wrong = "wrong-secret-0123456789"
    settings = Settings(endpoints=fake.endpoints(), binance={"api_key": KEY, "api_secret": wrong}, http_timeout=2)

    with pytest.raises(AuthFailed) as info:
        fetch_snapshot("binance-usdm", settings, now=now)

    text = str(info.value)
    assert "Signature for this request is not valid" in text
    assert wrong not in text
    assert KEY not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_signed_error_message_echoing_url_and_secrets_is_redacted(fake: FakeExchange) -> None:
    fake.set_tables("binance-usdm", {"BTCUSDT": FakeTable(tiers(BTC_ROWS, 5e6))})
    fake.inject(FAPI_BRACKETS, Fault.http(400, body=f"rejected key={KEY} secret {SECRET}"))

    with pytest.raises(FetchError) as info:
        fetch(fake, "binance-usdm")

    text = str(info.value)
    (request,) = fake.requests_to(FAPI_BRACKETS)
    assert text == f"{host(fake)}: HTTP 400 Bad Request: rejected key=*** secret ***"  # the host, not the URL
    assert request.query["signature"] not in text
    assert KEY not in text
    assert SECRET not in text


@pytest.mark.parametrize(
    ("fault", "kind", "message"),
    [
        (Fault.http(503), ExchangeUnavailable, "HTTP 503 Service Unavailable"),
        (Fault.http(429, retry_after=3), RateLimited, "HTTP 429 Too Many Requests"),
        (Fault.malformed(), Malformed, "malformed JSON"),
        (Fault.empty(), EmptyResult, "empty table list"),
        (Fault.raw('{"symbols": []}'), Malformed, "malformed response: expected a list of symbols, got dict"),
    ],
)
def test_signed_failures(fake: FakeExchange, fault: Fault, kind: type, message: str) -> None:
    fake.set_tables("binance-usdm", {"BTCUSDT": FakeTable(tiers(BTC_ROWS, 5e6))})
    fake.inject(FAPI_BRACKETS, fault)

    with pytest.raises(kind) as info:
        fetch(fake, "binance-usdm")

    assert str(info.value) == f"{host(fake)}: {message}"


def test_signed_timeout(fake: FakeExchange) -> None:
    fake.set_tables("binance-usdm", {"BTCUSDT": FakeTable(tiers(BTC_ROWS, 5e6))})
    fake.inject(FAPI_BRACKETS, Fault.slow(1.5))

    with pytest.raises(FetchTimeout) as info:
        fetch(fake, "binance-usdm", http_timeout=0.3)

    assert str(info.value) == f"{host(fake)}: timeout after 0.3s"


def test_signed_invalid_table_names_the_symbol(fake: FakeExchange) -> None:
    gap = list(tiers(BTC_ROWS, 5e6))
    gap[1] = FakeTier(60_000, gap[1].cap, gap[1].rate, gap[1].amount, gap[1].max_leverage)  # 50k..60k missing
    fake.set_tables("binance-usdm", {"BTCUSDT": FakeTable(tiers(BTC_ROWS, 5e6)), "ETHUSDT": FakeTable(tuple(gap))})

    with pytest.raises(InvalidTable) as info:
        fetch(fake, "binance-usdm")

    assert info.value.symbol == "ETH/USDT:USDT"
    assert str(info.value).startswith("ETH/USDT:USDT: ")


def test_signed_700_generated_symbols_parse_cleanly(fake: FakeExchange) -> None:
    fake.set_tables("binance-usdm", generate_tables("binance-usdm", 700))

    snap = fetch(fake, "binance-usdm")

    assert len(snap.tables) == 700
    assert all(5 <= len(t.tiers) <= 12 for t in snap.tables.values())
    assert not [w for t in snap.tables.values() for w in t.warnings]  # every cum satisfies the recurrence


def test_rebased_urls_moves_only_the_real_host() -> None:
    api = {"fapiPrivate": f"{REAL_FAPI}/fapi/v1", "public": "https://api.binance.com/api/v3", "x": None}
    assert rebased_urls(api, {REAL_FAPI: "http://127.0.0.1:9/"}) == {
        "fapiPrivate": "http://127.0.0.1:9/fapi/v1",
        "public": "https://api.binance.com/api/v3",
        "x": None,
    }


# -- the fake's own signature checks ---------------------------------------------------------------


def test_fake_rejects_unsigned_and_badly_signed_requests(fake: FakeExchange) -> None:
    url = fake.url + FAPI_BRACKETS
    missing_key = httpx.get(url, params={"timestamp": "1", "signature": "x"})
    bad_signature = httpx.get(url, params={"timestamp": "1", "signature": "x"}, headers={"X-MBX-APIKEY": KEY})

    assert missing_key.status_code == 401
    assert bad_signature.status_code == 400
    assert bad_signature.json() == {"code": -1022, "msg": "Signature for this request is not valid."}


# -- Binance keyless web endpoint ------------------------------------------------------------------

WEB_URL = "https://www.binance.com" + WEB_USDM


def web_payload(brackets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": "000000", "data": {"brackets": brackets}, "success": True}


BTC_WEB = {
    "symbol": "BTCUSDT",
    "riskBrackets": [
        {
            "bracketSeq": n + 1,
            "bracketNotionalFloor": t.floor,
            "bracketNotionalCap": t.cap,
            "bracketMaintenanceMarginRate": t.rate,
            "cumFastMaintenanceAmount": t.amount,
            "maxOpenPosLeverage": t.max_leverage,
        }
        for n, t in enumerate(tiers(BTC_ROWS, 5e6))
    ],
}


@respx.mock
def test_web_endpoint_posts_empty_json_without_key() -> None:
    route = respx.post(WEB_URL).mock(return_value=httpx.Response(200, json=web_payload([BTC_WEB])))

    snap = fetch_snapshot("binance-usdm", Settings(http_timeout=2), now=now)

    assert snap.provenance == "binance-web"
    assert snap.taken_at == NOW
    assert [t.maintenance_amount for t in snap.tables["BTC/USDT:USDT"].tiers] == pytest.approx([0, 50, 1_300, 16_300])
    request = route.calls.last.request
    assert json.loads(request.content) == {}
    assert "x-mbx-apikey" not in request.headers


@pytest.mark.parametrize(
    ("response", "kind", "message"),
    [
        (httpx.ReadTimeout("slow"), FetchTimeout, "timeout after 2s"),
        (httpx.ConnectError("refused"), ExchangeUnavailable, "network error: refused"),
        (httpx.Response(503, text="busy"), ExchangeUnavailable, "HTTP 503 Service Unavailable: busy"),
        (httpx.Response(429), RateLimited, "HTTP 429 Too Many Requests"),
        (httpx.Response(200, text="<html>not json"), Malformed, "malformed JSON"),
        (httpx.Response(200, json=web_payload([])), EmptyResult, "empty table list"),
    ],
)
@respx.mock
def test_web_endpoint_failures(response: httpx.Response | Exception, kind: type, message: str) -> None:
    route = respx.post(WEB_URL)
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)

    with pytest.raises(kind) as info:
        fetch_snapshot("binance-usdm", Settings(http_timeout=2), now=now)

    assert str(info.value) == f"www.binance.com: {message}"


def test_web_endpoint_through_loopback(fake: FakeExchange) -> None:
    fake.set_tables("binance-usdm", generate_tables("binance-usdm", 30))

    snap = fetch(fake, "binance-usdm", keyed=False)

    assert snap.provenance == "binance-web"
    assert len(snap.tables) == 30
    (request,) = fake.requests
    assert (request.method, request.path, request.body) == ("POST", WEB_USDM, b"{}")
    assert "x-mbx-apikey" not in request.headers


# -- Bybit -----------------------------------------------------------------------------------------


@pytest.fixture
def bybit40(fake: FakeExchange) -> FakeExchange:
    """40 linear symbols: three pages of 15."""
    fake.set_tables("bybit-linear", generate_tables("bybit-linear", 40))
    return fake


def test_bybit_paginates_until_the_cursor_is_empty(bybit40: FakeExchange) -> None:
    snap = fetch(bybit40, "bybit-linear")

    assert snap.provenance == "bybit-v5"
    assert len(snap.tables) == 40
    assert "BTC/USDT:USDT" in snap.tables
    pages = bybit40.requests_to(RISK_LIMIT)
    assert [r.query.get("cursor", "") for r in pages] == ["", "c15", "c30"]
    assert all(r.query["category"] == "linear" for r in pages)


def test_bybit_names_symbols_through_markets(fake: FakeExchange) -> None:
    usdc = FakeTable(tiers(BTC_ROWS, 5e6))
    fake.set_tables("bybit-linear", {"BTCPERP": usdc, "ETHUSDT": usdc})
    fake.set_tables("bybit-inverse", {"BTCUSD": FakeTable(tiers(COIN_ROWS, 1_000))})

    linear = fetch(fake, "bybit-linear")
    inverse = fetch(fake, "bybit-inverse")

    assert sorted(linear.tables) == ["BTC/USDC:USDC", "ETH/USDT:USDT"]  # BTCPERP's shape alone says nothing
    assert list(inverse.tables) == ["BTC/USD:BTC"]
    assert inverse.tables["BTC/USD:BTC"].unit is Unit.BASE
    assert {r.query["category"] for r in fake.requests_to(INSTRUMENTS)} == {"linear", "inverse"}


def test_bybit_429_honours_retry_after_then_succeeds(bybit40: FakeExchange) -> None:
    bybit40.inject(RISK_LIMIT, Fault.http(429, retry_after=7), after=1)
    sleeps = Sleeps()

    snap = fetch(bybit40, "bybit-linear", sleeps)

    assert sleeps == [7.0]
    assert len(snap.tables) == 40
    assert [r.query.get("cursor", "") for r in bybit40.requests_to(RISK_LIMIT)] == ["", "c15", "c15", "c30"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.http(503),
        Fault.raw('{"retCode":10006,"retMsg":"Too many visits!","result":{}}'),
    ],
)
def test_bybit_transient_failures_back_off_exponentially(bybit40: FakeExchange, fault: Fault) -> None:
    bybit40.inject(RISK_LIMIT, fault, times=2)
    sleeps = Sleeps()

    snap = fetch(bybit40, "bybit-linear", sleeps)

    assert sleeps == [0.5, 1.0]
    assert len(snap.tables) == 40


def test_bybit_persistent_5xx_gives_up(bybit40: FakeExchange) -> None:
    bybit40.inject(RISK_LIMIT, Fault.http(503), times=10)
    sleeps = Sleeps()

    with pytest.raises(ExchangeUnavailable) as info:
        fetch(bybit40, "bybit-linear", sleeps, bybit_page_retries=2)

    assert str(info.value) == f"{host(bybit40)}: HTTP 503 Service Unavailable: gave up after 2 retries"
    assert sleeps == [0.5, 1.0]
    assert len(bybit40.requests_to(RISK_LIMIT)) == 3


def test_bybit_market_list_is_retried_like_a_page(bybit40: FakeExchange) -> None:
    bybit40.inject(INSTRUMENTS, Fault.http(502))
    sleeps = Sleeps()

    snap = fetch(bybit40, "bybit-linear", sleeps)

    assert sleeps == [0.5]
    assert "BTC/USDT:USDT" in snap.tables


def test_bybit_timeout_is_retried_then_reported(bybit40: FakeExchange) -> None:
    bybit40.inject(RISK_LIMIT, Fault.slow(1.5), times=2, after=1)
    sleeps = Sleeps()

    with pytest.raises(FetchTimeout) as info:
        fetch(bybit40, "bybit-linear", sleeps, http_timeout=0.3, bybit_page_retries=1)

    assert str(info.value) == f"{host(bybit40)}: timeout after 0.3s: gave up after 1 retry"
    assert sleeps == [0.5]


@pytest.mark.parametrize(
    ("fault", "kind", "message"),
    [
        (Fault.malformed(), Malformed, "malformed JSON on page 2"),
        (Fault.raw('{"retCode":0,"retMsg":"OK","result":{}}'), Malformed, "malformed page 2: result.list missing"),
        (Fault.repeat_cursor(), Truncated, "truncated: page chain ended with a repeated cursor (page 2)"),
    ],
)
def test_bybit_broken_page_fails_without_retry(bybit40: FakeExchange, fault: Fault, kind: type, message: str) -> None:
    bybit40.inject(RISK_LIMIT, fault, after=1)
    sleeps = Sleeps()

    with pytest.raises(kind) as info:
        fetch(bybit40, "bybit-linear", sleeps)

    assert str(info.value) == f"{host(bybit40)}: {message}"
    assert sleeps == []
    assert len(bybit40.requests_to(RISK_LIMIT)) == 2


def test_bybit_error_retcode_is_not_retried(bybit40: FakeExchange) -> None:
    bybit40.inject(RISK_LIMIT, Fault.raw('{"retCode":10001,"retMsg":"params error","result":{}}'))
    sleeps = Sleeps()

    with pytest.raises(FetchError) as info:
        fetch(bybit40, "bybit-linear", sleeps)

    assert "params error" in str(info.value)
    assert sleeps == []


def test_bybit_too_many_pages(bybit40: FakeExchange) -> None:
    with pytest.raises(Truncated) as info:
        fetch(bybit40, "bybit-linear", bybit_max_pages=2)

    assert "more than 2 pages" in str(info.value)
    assert len(bybit40.requests_to(RISK_LIMIT)) == 2


def test_bybit_empty_list(bybit40: FakeExchange) -> None:
    bybit40.inject(RISK_LIMIT, Fault.empty())

    with pytest.raises(EmptyResult) as info:
        fetch(bybit40, "bybit-linear")

    assert str(info.value) == f"{host(bybit40)}: empty table list"


def test_bybit_invalid_table_names_the_symbol(fake: FakeExchange) -> None:
    good = tiers(BTC_ROWS, 5e6)
    falling = (*good[:2], FakeTier(250_000, 1e6, 0.001, 0.0, 50), good[3])  # rate drops in tier 3
    fake.set_tables("bybit-linear", {"BTCUSDT": FakeTable(good), "SOLUSDT": FakeTable(falling)})

    with pytest.raises(InvalidTable) as info:
        fetch(fake, "bybit-linear")

    assert info.value.symbol == "SOL/USDT:USDT"


def test_page_rows_strips_cursor_keys() -> None:
    body = {
        "retCode": 0,
        "result": {"list": [{"id": 1, "symbol": "BTCUSDT", "nextPageCursor": "c15"}], "nextPageCursor": "c15"},
    }

    rows, cursor = page_rows(body, 1)

    assert rows == [{"id": 1, "symbol": "BTCUSDT"}]
    assert cursor == "c15"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-1"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert retry_after(headers) == expected


@pytest.mark.parametrize(
    ("attempt", "after", "expected"), [(0, None, 0.5), (1, None, 1.0), (3, None, 4.0), (0, 2.0, 2.0), (0, 1e6, 60.0)]
)
def test_backoff(attempt: int, after: float | None, expected: float) -> None:
    assert backoff(attempt, after) == expected


# -- dispatch, import cost, scenarios --------------------------------------------------------------


def test_unknown_source() -> None:
    with pytest.raises(FetchError, match="unknown source"):
        fetch_snapshot("kraken-futures", Settings(), now=now)


def test_importing_the_package_and_the_fake_loads_neither_ccxt_nor_httpx() -> None:
    code = "import sys, monitor.exchanges, monitor.fake_exchange; print('ccxt' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_generated_tables_are_deterministic_and_well_formed() -> None:
    first = generate_tables("bybit-inverse", 50, seed=3)

    assert first == generate_tables("bybit-inverse", 50, seed=3)
    assert first != generate_tables("bybit-inverse", 50, seed=4)
    for table in first.values():
        t = table.tiers
        assert 5 <= len(t) <= 12
        assert t[0].floor == 0 and t[0].amount == 0
        for prev, cur in pairwise(t):
            assert cur.floor == prev.cap
            assert cur.rate >= prev.rate and cur.max_leverage <= prev.max_leverage
            assert cur.amount == pytest.approx(prev.amount + cur.floor * (cur.rate - prev.rate))
