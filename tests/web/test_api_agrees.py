"""One serialiser: every API endpoint answers exactly what the CLI's `--json` prints on the same database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from monitor.cli import run
from tests.web.conftest import HOSTILE_SYMBOL

CASES: list[tuple[list[str], str, dict[str, Any]]] = [
    (["tiers", "BTCUSDT", "-s", "binance-usdm"], "/api/v1/tiers", {"source": "binance-usdm", "symbol": "BTCUSDT"}),
    (
        ["tiers", "ETH/USDT:USDT", "-s", "binance-usdm", "--at", "2026-02-10"],
        "/api/v1/tiers",
        {"source": "binance-usdm", "symbol": "ETH/USDT:USDT", "at": "2026-02-10"},
    ),
    (
        ["history", HOSTILE_SYMBOL, "-s", "binance-usdm"],
        "/api/v1/history",
        {"source": "binance-usdm", "symbol": HOSTILE_SYMBOL},
    ),
    (["sources"], "/api/v1/sources", {}),
    (["polls", "--limit", "50"], "/api/v1/polls", {"limit": 50}),
    (["positions", "list"], "/api/v1/positions", {}),
    (["positions", "show", "3"], "/api/v1/positions/3", {}),
    (["impacts"], "/api/v1/impacts", {}),
    (["impacts", "--since", "2026-03-01"], "/api/v1/impacts", {"since": "2026-03-01"}),
    (["alerts", "list"], "/api/v1/alerts", {}),
    (["alerts", "list", "--status", "pending"], "/api/v1/alerts", {"status": "pending"}),
    (
        ["liq", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "short", "--entry", "60000", "--margin", "900",
         "--notional", "120000", "--mark", "59000"],
        "/api/v1/liq",
        {"source": "binance-usdm", "symbol": "BTCUSDT", "side": "short", "entry": 60000, "margin": 900,
         "notional": 120000, "mark": 59000},
    ),
]  # fmt: skip


def cli_json(url: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    assert run(["--db", url, *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(("args", "path", "params"), CASES, ids=[" ".join(c[0][:2]) for c in CASES])
def test_endpoint_equals_cli_json(
    web_db_url: str, client: TestClient, capsys: pytest.CaptureFixture[str], args: list[str], path: str, params: Any
) -> None:
    expected = cli_json(web_db_url, args, capsys)
    got = client.get(path, params=params)
    assert got.status_code == 200, got.text
    assert got.json() == expected
    assert expected  # an empty list on both sides would prove nothing


@pytest.mark.parametrize(
    ("args", "params"),
    [
        (["-s", "binance-usdm", "--symbol", "BTCUSDT"], {"source": "binance-usdm", "symbol": "BTCUSDT"}),
        (["--since", "2026-03-01", "--until", "2026-03-20", "--limit", "40"],
         {"since": "2026-03-01", "until": "2026-03-20", "limit": 40}),
    ],
)  # fmt: skip
def test_changes_items_equal_cli_json(
    web_db_url: str, client: TestClient, capsys: pytest.CaptureFixture[str], args: list[str], params: Any
) -> None:
    expected = cli_json(web_db_url, ["changes", *args], capsys)
    got = client.get("/api/v1/changes", params=params)
    assert got.status_code == 200, got.text
    assert got.json()["items"] == expected
