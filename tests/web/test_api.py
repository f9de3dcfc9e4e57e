"""The JSON API through the test client on a database with real history (both backends)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from snapshots.model import CHANGE_KINDS
from tests.web.conftest import HOSTILE_NOTE, HOSTILE_SYMBOL


def ok(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def error(client: TestClient, path: str, expected: int, **params: Any) -> str:
    r = client.get(path, params=params)
    assert r.status_code == expected, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    return str(body["error"])


def test_tiers_of_a_symbol_in_ccxt_form_and_by_exchange_id(client: TestClient) -> None:
    by_ccxt = ok(client, "/api/v1/tiers", source="binance-usdm", symbol="BTC/USDT:USDT")
    assert by_ccxt == ok(client, "/api/v1/tiers", source="binance-usdm", symbol="BTCUSDT")
    assert [t["tier"] for t in by_ccxt] == list(range(1, len(by_ccxt) + 1))
    assert by_ccxt[0]["floor"] == 0 and by_ccxt[0]["max_leverage"] > 1


def test_tiers_at_a_time_before_any_history_is_404_and_a_bad_time_400(client: TestClient) -> None:
    assert "BTC" in error(client, "/api/v1/tiers", 404, source="binance-usdm", symbol="BTCUSDT", at="2001-01-01")
    assert error(client, "/api/v1/tiers", 400, source="binance-usdm", symbol="BTCUSDT", at="yesterday").startswith(
        "at: invalid timestamp"
    )


def test_unknown_source_and_symbol_are_404(client: TestClient) -> None:
    assert "unknown source 'kraken'" in error(client, "/api/v1/tiers", 404, source="kraken", symbol="BTCUSDT")
    assert "unknown symbol 'NOPE'" in error(client, "/api/v1/history", 404, source="binance-usdm", symbol="NOPE")
    assert "unknown source" in error(client, "/api/v1/changes", 404, source="kraken")
    assert "no position with id 999" in error(client, "/api/v1/positions/999", 404)


def test_validation_errors_are_one_json_line_with_400(client: TestClient) -> None:
    assert error(client, "/api/v1/tiers", 400, source="binance-usdm").startswith("bad parameter symbol:")
    assert error(client, "/api/v1/changes", 400, limit=0).startswith("bad parameter limit:")
    assert error(client, "/api/v1/changes", 400, kind="tier_exploded").startswith("bad parameter kind:")
    assert error(client, "/api/v1/changes", 400, symbol="BTCUSDT") == "symbol: needs source"
    assert error(client, "/api/v1/positions/abc", 400).startswith("bad parameter position_id:")
    assert error(client, "/api/v1/alerts", 400, status="lost").startswith("bad parameter status:")


def test_changes_page_through_the_whole_feed_with_the_cursor(client: TestClient) -> None:
    everything = ok(client, "/api/v1/changes", limit=1000, source="binance-usdm", kind="tier_changed")
    assert len(everything["items"]) >= 2 and all(c["kind"] == "tier_changed" for c in everything["items"])
    # Several pages whatever the history holds (the shared data's thousands, or the fixtures' few).
    size = max(1, min(97, len(everything["items"]) // 3))
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": size, "source": "binance-usdm", "kind": "tier_changed"}
        if cursor:
            params["cursor"] = cursor
        page = ok(client, "/api/v1/changes", **params)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == size
    flat = [c for p in pages for c in p]
    if len(everything["items"]) < 1000:
        assert flat == everything["items"]
    assert len(pages) > 1
    times = [c["detected_at"] for c in flat]
    assert times == sorted(times)


def test_changes_filters(client: TestClient) -> None:
    rows = ok(client, "/api/v1/changes", source="binance-usdm", field="maintenance_margin_rate", limit=50)["items"]
    assert rows and {r["field"] for r in rows} == {"maintenance_margin_rate"}
    listed = ok(client, "/api/v1/changes", source="binance-usdm", symbol=HOSTILE_SYMBOL)["items"]
    assert [r["kind"] for r in listed] == ["symbol_listed"]
    since = ok(client, "/api/v1/changes", since=listed[0]["detected_at"], limit=1000)["items"]
    assert since and all(r["detected_at"] >= listed[0]["detected_at"] for r in since)
    until = ok(client, "/api/v1/changes", until="2000-01-01")
    assert until == {"items": [], "next_cursor": None}
    assert set(CHANGE_KINDS) >= {r["kind"] for r in since}


@pytest.mark.parametrize("cursor", ["nonsense", base64.urlsafe_b64encode(b"2026-01-01|0").decode(), "%%%", "fA"])
def test_a_cursor_the_api_did_not_give_out_is_400(client: TestClient, cursor: str) -> None:
    assert error(client, "/api/v1/changes", 400, cursor=cursor).startswith("cursor: not a cursor")


def test_history_sources_and_polls(client: TestClient) -> None:
    versions = ok(client, "/api/v1/history", source="binance-usdm", symbol="ETHUSDT")
    assert versions and versions[-1]["valid_to"] is None and versions[0]["provenance"].startswith("import:")
    sources = ok(client, "/api/v1/sources")
    assert [s["source"] for s in sources][:1] == ["binance-usdm"] and sources[0]["symbols"] > 1
    polls = ok(client, "/api/v1/polls", limit=3)
    assert len(polls) == 3 and polls[0]["started_at"] > polls[1]["started_at"]


def test_positions_impacts_and_alerts(client: TestClient) -> None:
    positions = ok(client, "/api/v1/positions")
    assert [p["id"] for p in positions] == [1, 2, 3]
    assert positions[0]["liquidation_price"] is not None and positions[0]["mark_price"] == 64_000.0
    assert positions[1]["note"] == HOSTILE_NOTE  # data, as stored; the pages escape it
    shown = ok(client, "/api/v1/positions/3")
    impacts = ok(client, "/api/v1/impacts")
    assert shown["impacts"] == [i for i in impacts if i["position_id"] == 3]
    alerts = ok(client, "/api/v1/alerts")
    assert {a["status"] for a in alerts} == {"pending", "sent", "failed"}
    assert [a["status"] for a in ok(client, "/api/v1/alerts", status="failed")] == ["failed"]


def test_liq_takes_the_liq_options_as_parameters(client: TestClient) -> None:
    base = {"source": "binance-usdm", "symbol": "BTCUSDT", "side": "long", "entry": 60_000, "margin": 1_000}
    got = ok(client, "/api/v1/liq", **base, qty=0.5, mark=61_000, adr=2_000)
    assert got["symbol"] == "BTC/USDT:USDT" and 0 < got["liquidation_price"] < 60_000
    assert got["buffer_adr"] is not None and got["warnings"] == []
    assert "margin" in error(client, "/api/v1/liq", 400, **{**base, "margin": -1}, qty=1)
    assert "bad parameter side" in error(client, "/api/v1/liq", 400, **{**base, "side": "up"}, qty=1)


def test_openapi_document_lists_every_endpoint(client: TestClient) -> None:
    paths = set(ok(client, "/openapi.json")["paths"])
    expected = {"tiers", "changes", "history", "sources", "polls", "positions", "impacts", "alerts", "liq"}
    assert {f"/api/v1/{name}" for name in expected} <= paths


def test_unknown_paths_and_methods_are_json_errors_too(client: TestClient) -> None:
    assert error(client, "/api/v1/nothing-here", 404) == "Not Found"
    r = client.post("/api/v1/sources")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"} and r.headers["allow"] == "GET"


def test_the_api_over_a_real_socket(live_server: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(live_server + "/api/v1/sources", timeout=10) as r:
        assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"
        assert json.loads(r.read())[0]["source"] == "binance-usdm"


@pytest.mark.parametrize("raw", [b"9999-12-31T23:00:00-05:00|3", b"2026-03-01T00:00:00|9223372036854775808"])
def test_a_forged_cursor_out_of_range_is_400_not_500(client: TestClient, raw: bytes) -> None:
    cursor = base64.urlsafe_b64encode(raw).decode()
    assert error(client, "/api/v1/changes", 400, cursor=cursor).startswith("cursor: not a cursor")


def test_a_naive_cursor_time_means_utc(client: TestClient) -> None:
    first = ok(client, "/api/v1/changes", limit=2)
    at = first["items"][0]["detected_at"].rstrip("Z")
    naive = base64.urlsafe_b64encode(f"{at}|1".encode()).decode()
    assert ok(client, "/api/v1/changes", limit=1, cursor=naive)["items"] == first["items"][1:2]


def test_a_position_id_beyond_the_id_column_is_400(client: TestClient) -> None:
    assert error(client, f"/api/v1/positions/{2**31}", 400).startswith("bad parameter position_id:")
