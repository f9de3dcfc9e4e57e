"""Exchanges as they really fail (domain doc §8), through the real ccxt and httpx stacks against the fake.

Each fault is served by `monitor.fake_exchange` as the real endpoint answers it, and the fake's answers
are checked against real recorded ones (`../shared/data/real-responses`, skipped when absent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ccxt
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from monitor.cli import app
from monitor.cli.output import TEXT_LIMIT
from monitor.config.settings import Settings
from monitor.exchanges import fetch_snapshot
from monitor.exchanges.bybit import IP_BAN_REST_MAX_SECONDS, IP_BAN_REST_SECONDS
from monitor.exchanges.errors import (
    GEO_BLOCK_REST_SECONDS,
    MAX_EXCHANGE_MESSAGE,
    ExchangeUnavailable,
    FetchError,
    GeoBlocked,
    RateLimited,
    from_ccxt,
    read_body,
)
from monitor.fake_exchange import (
    BAPI_ILLEGAL_PARAMETER,
    DAPI_BRACKETS,
    FAPI_BRACKETS,
    FAPI_EXCHANGE_INFO,
    FAPI_PREMIUM_INDEX,
    GEO_BLOCK_BODY,
    INSTRUMENTS,
    RISK_LIMIT,
    TICKERS,
    WEB_COINM,
    WEB_USDM,
    FakeExchange,
    FakeTable,
    FakeTier,
    Fault,
    Shapes,
    generate_tables,
)
from monitor.risk.marketdata import fetch_quote
from snapshots.model import SOURCES, Unit
from tests.conftest import SHARED_DATA, point_at_fake

KEY = "faultKey-0123456789abcdef"
SECRET = "faultSecret-fedcba9876543210"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
REAL = SHARED_DATA / "real-responses"
GEO_MESSAGE = json.loads(GEO_BLOCK_BODY)["msg"]


def now() -> datetime:
    return NOW


class Sleeps(list[float]):
    """An injected `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(api_key=KEY, api_secret=SECRET, page_size=15) as server:
        for source in SOURCES:
            server.set_tables(source, generate_tables(source, 20))
        yield server


def host(fake: FakeExchange) -> str:
    return fake.url.removeprefix("http://")


def settings_for(fake: FakeExchange, *, keyed: bool = False, **overrides: Any) -> Settings:
    binance = {"api_key": KEY, "api_secret": SECRET} if keyed else {}
    return Settings(endpoints=fake.endpoints(), binance=binance, **{"http_timeout": 2.0, **overrides})


def fetch_error(fake: FakeExchange, source: str, sleeps: Sleeps | None = None, **overrides: Any) -> FetchError:
    """The `FetchError` of fetching `source` from `fake`, which must fail."""
    settings = settings_for(fake, **overrides)
    with pytest.raises(FetchError) as info:
        fetch_snapshot(source, settings, now=now, sleep=sleeps if sleeps is not None else Sleeps())
    return info.value


def real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"recorded answers not available: {path} is missing")
    return path


def assert_one_line(err: FetchError, fake: FakeExchange) -> str:
    text = str(err)
    assert "\n" not in text and "\r" not in text
    assert text.startswith(f"{host(fake)}: ")
    assert "http://" not in text  # the host names the place; no URL (and no signature) is repeated
    assert KEY not in text and SECRET not in text
    return text


# -- Bybit: HTTP 403 is the IP limit, rested as Bybit asks ------------------------------------------


@pytest.mark.parametrize(
    ("reset_ms", "rest"),
    [
        (NOW_MS, IP_BAN_REST_SECONDS),  # the reset header is "now": Bybit's 10 minutes
        (NOW_MS + 900_000, 900.0),  # a later reset is honoured
        (NOW_MS + 10 * 86_400_000, IP_BAN_REST_MAX_SECONDS),  # a clock days off is capped
    ],
)
def test_bybit_403_rests_the_source_after_exactly_one_request(fake: FakeExchange, reset_ms: int, rest: float) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_ip_limit(reset_ms=reset_ms), times=10)
    sleeps = Sleeps()

    err = fetch_error(fake, "bybit-linear", sleeps, bybit_page_retries=4)

    assert type(err) is RateLimited
    assert err.rest_seconds == pytest.approx(rest)
    text = assert_one_line(err, fake)
    assert text.startswith(f"{host(fake)}: HTTP 403 Forbidden: access too frequent; ")
    assert text.endswith("Bybit says this IP is over its request limit and must pause at least 10 minutes")
    assert len(fake.requests_to(RISK_LIMIT)) == 1  # no retry storm
    assert sleeps == []


def test_bybit_403_without_reset_header_rests_ten_minutes(fake: FakeExchange) -> None:
    fake.inject(RISK_LIMIT, Fault.http(403), times=10)

    err = fetch_error(fake, "bybit-inverse")

    assert type(err) is RateLimited and err.rest_seconds == IP_BAN_REST_SECONDS
    assert str(err).startswith(f"{host(fake)}: HTTP 403 Forbidden; Bybit says this IP is over its request limit")
    assert len(fake.requests_to(RISK_LIMIT)) == 1


def test_bybit_403_on_the_market_list_is_the_only_request(fake: FakeExchange) -> None:
    fake.inject(INSTRUMENTS, Fault.bybit_ip_limit(reset_ms=NOW_MS), times=10)

    err = fetch_error(fake, "bybit-linear")

    assert isinstance(err, RateLimited) and err.rest_seconds == IP_BAN_REST_SECONDS
    assert len(fake.requests) == 1


def test_bybit_403_headers_are_the_real_ones_and_no_retry_after(fake: FakeExchange) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_ip_limit(reset_ms=NOW_MS))

    answer = httpx.get(fake.url + RISK_LIMIT, params={"category": "linear"})

    assert answer.status_code == 403
    assert answer.headers["X-Bapi-Limit-Reset-Timestamp"] == str(NOW_MS)
    assert {"x-bapi-limit", "x-bapi-limit-status"} <= set(answer.headers)
    assert "retry-after" not in answer.headers


# -- Bybit: transient retCodes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (10016, "System error. Please try again later."),
        (10002, "invalid request, please check your server timestamp or recv_window param"),
    ],
)
def test_bybit_transient_retcodes_are_retried_then_succeed(fake: FakeExchange, code: int, words: str) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_error(code), after=1)
    sleeps = Sleeps()

    snap = fetch_snapshot("bybit-linear", settings_for(fake), now=now, sleep=sleeps)

    assert len(snap.tables) == 20
    assert sleeps == [0.5]
    assert [r.query.get("cursor", "") for r in fake.requests_to(RISK_LIMIT)] == ["", "c15", "c15"]


@pytest.mark.parametrize("code", [10016, 10002])
def test_bybit_persistent_transient_retcode_gives_up_as_unavailable(fake: FakeExchange, code: int) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_error(code), times=10)
    sleeps = Sleeps()

    err = fetch_error(fake, "bybit-linear", sleeps, bybit_page_retries=2)

    assert type(err) is ExchangeUnavailable and err.retryable and err.rest_seconds is None
    text = assert_one_line(err, fake)
    assert text.startswith(f"{host(fake)}: temporary exchange error (retCode {code}): ")
    assert text.endswith(": gave up after 2 retries")
    assert sleeps == [0.5, 1.0]
    assert len(fake.requests_to(RISK_LIMIT)) == 3


def test_bybit_10006_stays_a_rate_limit_retried_with_backoff(fake: FakeExchange) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_error(10006), times=10)
    sleeps = Sleeps()

    err = fetch_error(fake, "bybit-linear", sleeps, bybit_page_retries=1)

    assert type(err) is RateLimited and err.rest_seconds is None
    assert str(err) == f"{host(fake)}: rate limited (retCode 10006): Too many visits!: gave up after 1 retry"
    assert sleeps == [0.5]


def test_bybit_other_retcode_keeps_its_message_and_is_not_retried(fake: FakeExchange) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_error(10001, "params error: cursor"))
    sleeps = Sleeps()

    err = fetch_error(fake, "bybit-linear", sleeps)

    assert type(err) is FetchError
    assert str(err) == f"{host(fake)}: exchange error (retCode 10001): params error: cursor"
    assert sleeps == []


# -- Binance: HTTP 451 from a restricted location --------------------------------------------------


def assert_geo_line(err: FetchError, fake: FakeExchange) -> None:
    assert type(err) is GeoBlocked and not err.retryable
    assert err.rest_seconds == GEO_BLOCK_REST_SECONDS
    text = assert_one_line(err, fake)
    # Who refuses and what to do, then Binance's message quoted whole: short enough for every output.
    assert (
        text
        == f'{host(fake)}: HTTP 451: Binance refuses this location; remove this source from `sources`: "{GEO_MESSAGE}"'
    )
    assert GEO_MESSAGE.endswith("received this message in error.")
    assert len(text.replace(host(fake), "fapi.binance.com")) <= TEXT_LIMIT


def test_binance_signed_451_is_one_line_that_says_what_to_do(fake: FakeExchange) -> None:
    fake.inject(FAPI_EXCHANGE_INFO, Fault.geo_blocked(), times=10)

    err = fetch_error(fake, "binance-usdm", keyed=True)

    assert_geo_line(err, fake)
    assert len(fake.requests) == 1  # the market list: the bracket endpoint is never asked


def test_binance_coinm_brackets_451(fake: FakeExchange) -> None:
    fake.inject(DAPI_BRACKETS, Fault.geo_blocked())

    err = fetch_error(fake, "binance-coinm", keyed=True)

    assert_geo_line(err, fake)
    assert len(fake.requests_to(DAPI_BRACKETS)) == 1


def test_binance_web_451(fake: FakeExchange) -> None:
    fake.inject(WEB_USDM, Fault.geo_blocked())

    err = fetch_error(fake, "binance-usdm")

    assert_geo_line(err, fake)


@pytest.mark.parametrize(
    ("exchange_class", "url"),
    [
        ("binanceusdm", "https://fapi.binance.com/fapi/v1/leverageBracket?timestamp=1&signature=abc123"),
        ("binancecoinm", "https://dapi.binance.com/dapi/v2/leverageBracket?timestamp=1&signature=abc123"),
    ],
)
def test_451_mapping_with_the_real_hostnames(exchange_class: str, url: str) -> None:
    # ccxt adds product-specific codes on the real hosts only (domain doc §8): run its real error path there.
    exchange = getattr(ccxt, exchange_class)()
    reason = "Unavailable For Legal Reasons"
    # The body's code 0 is no error to ccxt's body check: it falls through to the status map, as in fetch().
    assert (
        exchange.handle_errors(451, reason, url, "GET", {}, GEO_BLOCK_BODY, json.loads(GEO_BLOCK_BODY), {}, None)
        is None
    )
    with pytest.raises(ccxt.BaseError) as raised:
        exchange.handle_http_status_code(451, reason, url, "GET", GEO_BLOCK_BODY)

    err = from_ccxt(raised.value, timeout=15.0, secrets=[KEY])

    assert type(err) is GeoBlocked
    assert str(err).endswith(f'"{GEO_MESSAGE}"')
    assert "abc123" not in str(err) and "binance.com/fapi" not in str(err) and "binance.com/dapi" not in str(err)


def test_binance_418_rests_as_long_as_retry_after_says(fake: FakeExchange) -> None:
    body = '{"code":-1003,"msg":"Way too many requests; IP banned until 1767323045000."}'
    fake.inject(FAPI_BRACKETS, Fault.http(418, retry_after=120, body=body))

    err = fetch_error(fake, "binance-usdm", keyed=True)

    assert type(err) is RateLimited and err.rest_seconds == 120
    assert str(err) == (
        f"{host(fake)}: HTTP 418 I'm a Teapot (code -1003): Way too many requests; IP banned until 1767323045000."
    )


# -- Binance keyless web endpoint --------------------------------------------------------------------


def test_web_400_keeps_the_exchange_message(fake: FakeExchange) -> None:
    fake.inject(WEB_USDM, Fault.bapi_error())

    err = fetch_error(fake, "binance-usdm")

    assert type(err) is FetchError and not err.retryable
    assert str(err) == f"{host(fake)}: HTTP 400 Bad Request (code 000002): illegal parameter"
    assert len(fake.requests_to(WEB_USDM)) == 1


def test_web_200_with_success_false_is_an_exchange_error_not_an_invalid_table(fake: FakeExchange) -> None:
    fake.inject(WEB_COINM, Fault.bapi_error(status=200))

    err = fetch_error(fake, "binance-coinm")

    assert type(err) is FetchError
    assert str(err) == f"{host(fake)}: exchange error (code 000002): illegal parameter"


def test_web_bot_challenge_is_transient(fake: FakeExchange) -> None:
    fake.inject(WEB_USDM, Fault.bot_challenge())

    err = fetch_error(fake, "binance-usdm")

    assert type(err) is ExchangeUnavailable and err.retryable
    assert str(err) == f"{host(fake)}: HTTP 202 Accepted with an empty body: a bot challenge, not the tables"


def test_web_endpoint_answers_get_like_post(fake: FakeExchange) -> None:
    posted = httpx.post(fake.url + WEB_COINM, json={}).json()
    got = httpx.get(fake.url + WEB_COINM).json()

    for body in (posted, got):
        for entry in body["data"]["brackets"]:
            entry["updateTime"] = 0
    assert got == posted
    assert [r.method for r in fake.requests_to(WEB_COINM)] == ["POST", "GET"]


# -- messages --------------------------------------------------------------------------------------


def test_a_long_exchange_message_is_capped_at_a_sentence() -> None:
    sentence = "The exchange explains this at length and in detail. "
    said = read_body(json.dumps({"code": -1, "msg": sentence * 40}), 400)

    assert len(said.message) <= MAX_EXCHANGE_MESSAGE
    assert said.message.endswith("in detail. …")
    assert said.code == "-1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", ""),  # markup is not a message
        ("502 Bad Gateway", ""),  # the status line repeated says nothing new
        ("upstream\nreset\tby peer", "upstream reset by peer"),
        ('{"retCode":10016,"retMsg":"System error. Please try again later."}', "System error. Please try again later."),
    ],
)
def test_read_body(body: str, message: str) -> None:
    assert read_body(body, 502).message == message


@given(st.text(), st.sampled_from([None, 400, 451, 503]))
def test_read_body_is_always_one_bounded_redacted_line(text: str, status: int | None) -> None:
    for body in (text, json.dumps({"code": -1, "msg": f"{text} {SECRET} {text}"})):
        message = read_body(body, status, secrets=[SECRET]).message
        assert message == " ".join(message.split())  # one line, no stray whitespace
        assert len(message) <= MAX_EXCHANGE_MESSAGE
        assert SECRET not in message


# -- market data shares the mapping ----------------------------------------------------------------


def test_market_data_geo_block_and_ip_limit_map_like_the_tables(fake: FakeExchange) -> None:
    fake.set_market("binance-usdm", "BTCUSDT", mark=90_000.0)
    fake.set_market("bybit-linear", "BTCUSDT", mark=90_000.0)
    fake.inject(FAPI_PREMIUM_INDEX, Fault.geo_blocked())
    fake.inject(TICKERS, Fault.bybit_ip_limit(reset_ms=NOW_MS + 1_200_000))
    settings = settings_for(fake)

    with pytest.raises(GeoBlocked) as geo:
        fetch_quote("binance-usdm", "BTC/USDT:USDT", settings, now=NOW, days=14, want_adr=False)
    with pytest.raises(RateLimited) as limited:
        fetch_quote("bybit-linear", "BTC/USDT:USDT", settings, now=NOW, days=14, want_adr=False)

    assert_geo_line(geo.value, fake)
    assert limited.value.rest_seconds == 1200.0
    assert str(limited.value).startswith(f"{host(fake)}: HTTP 403 Forbidden: access too frequent; ")


def test_market_data_transient_retcode_is_unavailable(fake: FakeExchange) -> None:
    fake.set_market("bybit-inverse", "BTCUSD", mark=90_000.0)
    fake.inject(TICKERS, Fault.bybit_error(10016))

    with pytest.raises(ExchangeUnavailable) as info:
        fetch_quote("bybit-inverse", "BTC/USD:BTC", settings_for(fake), now=NOW, days=14, want_adr=False)

    assert str(info.value) == (
        f"{host(fake)}: temporary exchange error (retCode 10016): System error. Please try again later."
    )


# -- the fake's answers against real recorded ones --------------------------------------------------


def fake_tiers(risk_brackets: list[dict[str, Any]]) -> tuple[FakeTier, ...]:
    return tuple(
        FakeTier(
            b["bracketNotionalFloor"],
            b["bracketNotionalCap"],
            b["bracketMaintenanceMarginRate"],
            b["cumFastMaintenanceAmount"],
            b["maxOpenPosLeverage"],
        )
        for b in risk_brackets
    )


def test_fake_web_answer_is_the_recorded_coinm_answer(fake: FakeExchange) -> None:
    recorded = json.loads(real("komekome_binance_cm_web_brackets_excerpt.json").read_text())
    entries = recorded["data"]["brackets"]
    fake.set_tables("binance-coinm", {e["symbol"]: FakeTable(fake_tiers(e["riskBrackets"])) for e in entries})

    served = httpx.post(fake.url + WEB_COINM, json={}).json()

    times = {e["symbol"]: e["updateTime"] for e in entries}
    for entry in served["data"]["brackets"]:
        entry["updateTime"] = times[entry["symbol"]]
    # Key order, envelope, minOpenPosLeverage and notionalLimit included: the same JSON, byte for byte.
    assert json.dumps(served["data"]["brackets"]) == json.dumps(sorted(entries, key=lambda e: e["symbol"]))
    assert list(served) == list(recorded)
    assert {k: v for k, v in served.items() if k != "data"} == {k: v for k, v in recorded.items() if k != "data"}
    assert list(served["data"]) == list(recorded["data"])


def test_fake_web_entry_is_byte_for_byte_the_recorded_btcusd_perp(fake: FakeExchange) -> None:
    text = real("komekome_binance_cm_web_BTCUSD_PERP.json").read_text()
    entry = json.loads(text)
    fake.set_tables("binance-coinm", {"BTCUSD_PERP": FakeTable(fake_tiers(entry["riskBrackets"]))})

    body = httpx.get(fake.url + WEB_COINM).content.decode()

    served = body[body.index('{"symbol"') : body.rindex("]}]}") + 2]
    start = served.index('"updateTime":') + len('"updateTime":')
    served = served[:start] + str(entry["updateTime"]) + served[served.index(",", start) :]
    assert served == "".join(text.split("\n"))


def test_fake_web_tables_parse_in_coin_through_the_fetcher(fake: FakeExchange) -> None:
    recorded = json.loads(real("komekome_binance_cm_web_brackets_excerpt.json").read_text())
    entries = recorded["data"]["brackets"]
    fake.set_tables("binance-coinm", {e["symbol"]: FakeTable(fake_tiers(e["riskBrackets"])) for e in entries})

    snap = fetch_snapshot("binance-coinm", settings_for(fake), now=now)

    assert len(snap.tables) == len(entries)
    assert all(t.unit is Unit.BASE for t in snap.tables.values())


def test_fake_error_bodies_are_the_recorded_ones(fake: FakeExchange) -> None:
    lines = real("komekome_bapi_error_envelopes.txt").read_text().splitlines()
    after_400 = lines[next(i for i, line in enumerate(lines) if line.endswith("-> 400")) + 1]
    after_451 = lines[next(i for i, line in enumerate(lines) if "-> 451" in line) + 1]
    fake.inject(WEB_USDM, Fault.bapi_error())
    fake.inject(WEB_COINM, Fault.bot_challenge())

    refused = httpx.get(fake.url + WEB_USDM)
    challenged = httpx.get(fake.url + WEB_COINM)

    assert (refused.status_code, refused.text) == (400, after_400) == (400, BAPI_ILLEGAL_PARAMETER)
    assert (challenged.status_code, challenged.content) == (202, b"")
    # The log flattened the 451 body's newlines and cut it short: what it kept is the fake's start.
    assert GEO_BLOCK_BODY.replace("\n", " ").startswith(after_451)


def signed_samples() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(real("docs_binance_signed_samples.json").read_text())
    return loaded


def replayed(fake: FakeExchange, path: str) -> Any:
    """The fake's answer again to the signed request for `path` just made (its signature is still fresh)."""
    (request,) = fake.requests_to(path)
    return httpx.get(f"{fake.url}{path}?{request.raw_query}", headers={"X-MBX-APIKEY": KEY}).json()


@pytest.mark.parametrize(("shapes", "sample"), [(Shapes(), "dapi_v2_leverageBracket_docs"),
                                                (Shapes(coinm_floor="qtyFloor"), "ccxt_coinm_comment")])  # fmt: skip
def test_fake_coinm_signed_keys_follow_the_docs_and_ccxt_spellings(
    fake: FakeExchange, shapes: Shapes, sample: str
) -> None:
    expected = signed_samples()[sample][0]
    fake.set_shapes(shapes)

    snap = fetch_snapshot("binance-coinm", settings_for(fake, keyed=True), now=now)

    answer = replayed(fake, DAPI_BRACKETS)
    assert list(answer[0]["brackets"][0]) == list(expected["brackets"][0])
    served = fake.tables("binance-coinm")["BTCUSD_PERP"].tiers
    assert [(t.floor, t.cap) for t in snap.tables["BTC/USD:BTC"].tiers] == [(t.floor, t.cap) for t in served]


def test_fake_usdm_signed_keys_follow_the_docs(fake: FakeExchange) -> None:
    expected = signed_samples()["fapi_v1_leverageBracket_docs"][0]
    table = fake.tables("binance-usdm")["BTCUSDT"]
    fake.set_table("binance-usdm", "BTCUSDT", FakeTable(table.tiers, notional_coef=1.5))

    fetch_snapshot("binance-usdm", settings_for(fake, keyed=True), now=now)

    btc = next(e for e in replayed(fake, FAPI_BRACKETS) if e["symbol"] == "BTCUSDT")
    assert list(btc) == list(expected)
    assert list(btc["brackets"][0]) == list(expected["brackets"][0])


def bybit_samples() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(real("docs_bybit_risk_limit.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("shapes", "sample"),
    [(Shapes(), "docs_inverse_example"), (Shapes(bybit_mm_deduction=False), "ccxt_comment")],
)
def test_fake_bybit_rows_follow_the_docs_and_ccxt_shapes(fake: FakeExchange, shapes: Shapes, sample: str) -> None:
    expected = bybit_samples()[sample]
    fake.set_shapes(shapes)
    fake.set_tables("bybit-inverse", {"BTCUSD": fake.tables("bybit-inverse")["BTCUSD"]})

    answer = httpx.get(fake.url + RISK_LIMIT, params={"category": "inverse"}).json()

    assert list(answer) == list(expected)
    assert list(answer["result"]) == list(expected["result"])  # one page: no nextPageCursor, as in the docs
    row, sample_row = answer["result"]["list"][0], expected["result"]["list"][0]
    assert list(row) == list(sample_row)
    assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in sample_row.items()}


def test_bybit_rows_without_mm_deduction_get_derived_amounts(fake: FakeExchange) -> None:
    fake.set_shapes(Shapes(bybit_mm_deduction=False))

    snap = fetch_snapshot("bybit-linear", settings_for(fake), now=now)

    assert len(snap.tables) == 20
    for ident, table in fake.tables("bybit-linear").items():
        parsed = snap.tables[f"{ident.removesuffix('USDT')}/USDT:USDT"]
        assert [t.maintenance_amount for t in parsed.tiers] == pytest.approx([t.amount for t in table.tiers])
    assert all("mmDeduction" not in row for table in snap.tables.values() for row in table.raw)


@pytest.mark.parametrize("last_cursor", [False, True])
def test_bybit_pages_end_with_or_without_next_page_cursor(fake: FakeExchange, last_cursor: bool) -> None:
    fake.set_shapes(Shapes(bybit_last_cursor=last_cursor))

    snap = fetch_snapshot("bybit-linear", settings_for(fake), now=now)

    assert len(snap.tables) == 20
    last = httpx.get(fake.url + RISK_LIMIT, params={"category": "linear", "cursor": "c15"}).json()
    first = httpx.get(fake.url + RISK_LIMIT, params={"category": "linear"}).json()
    assert ("nextPageCursor" in last["result"]) is last_cursor
    assert first["result"]["nextPageCursor"] == "c15"


# -- `tierdrift poll`: one line each ----------------------------------------------------------------


def poll_lines(
    fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, source: str
) -> list[str]:
    point_at_fake(fake, monkeypatch, tmp_path, page_retries=3)
    result = CliRunner().invoke(app, ["--db", db_url, "poll", "--source", source])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1, result.output
    assert "warning: no alert channel is configured" in result.stderr  # the tests configure none
    return result.stdout.splitlines()


def test_cli_poll_geo_blocked_prints_one_line(
    fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    fake.inject(WEB_USDM, Fault.geo_blocked(), times=10)

    (line,) = poll_lines(fake, tmp_path, monkeypatch, db_url, "binance-usdm")

    assert line.startswith(f"binance-usdm: FAILED: {host(fake)}: HTTP 451: Binance refuses this location; ")
    assert f'remove this source from `sources`: "{GEO_MESSAGE}"' in line  # Binance's message is not cut
    assert len(fake.requests_to(WEB_USDM)) == 1
    (recorded,) = json.loads(CliRunner().invoke(app, ["--db", db_url, "polls", "--json"]).stdout)
    assert f'"{GEO_MESSAGE}"' in recorded["error"]  # stored whole


def test_cli_poll_bybit_ip_limit_prints_one_line(
    fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    fake.inject(RISK_LIMIT, Fault.bybit_ip_limit(), times=10)

    (line,) = poll_lines(fake, tmp_path, monkeypatch, db_url, "bybit-linear")

    assert line.startswith(f"bybit-linear: FAILED: {host(fake)}: HTTP 403 Forbidden: access too frequent; ")
    assert "must pause at least 10 minutes" in line
    assert len(fake.requests_to(RISK_LIMIT)) == 1
