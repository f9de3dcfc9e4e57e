"""Positions, accounts, the liq calculator and impacts, through the CLI on a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from monitor.cli import app
from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from monitor.store.models import MarketData
from snapshots.errors import TierdriftError
from tests.conftest import ccxt_tiers, write_archive

# The 2020–21 tables of domain doc §3, as (floor, rate, max leverage); amounts follow the recurrence.
BTC_ERA = [
    (0, 0.004, 125), (50_000, 0.005, 100), (250_000, 0.01, 50), (1_000_000, 0.025, 20), (5_000_000, 0.05, 10),
    (20_000_000, 0.10, 5), (50_000_000, 0.125, 4), (100_000_000, 0.15, 3), (200_000_000, 0.25, 2),
    (300_000_000, 0.5, 1),
]  # fmt: skip
ETH_ERA = [
    (0, 0.005, 100), (10_000, 0.0065, 75), (100_000, 0.01, 50), (500_000, 0.02, 25), (1_000_000, 0.05, 10),
    (2_000_000, 0.10, 5), (5_000_000, 0.125, 4), (10_000_000, 0.15, 3), (20_000_000, 0.25, 2),
]  # fmt: skip

runner = CliRunner()


def cli(db_url: str, *args: str) -> Any:
    result = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def fails(db_url: str, *args: str) -> str:
    result = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=True)
    assert isinstance(result.exception, TierdriftError) or result.exit_code != 0, result.output
    return str(result.exception) if isinstance(result.exception, TierdriftError) else result.output


def archive(tmp_path: Path, name: str, tables: dict[str, list[tuple[float, float, float]]], top: float) -> Path:
    payload = {sym: ccxt_tiers(sym, rows, top=top) for sym, rows in tables.items()}
    return write_archive(tmp_path / name, payload)


@pytest.fixture
def db(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    engine = open_engine(db_url)
    usdm = archive(tmp_path, "2021-05-01_usdm.json", {"BTC/USDT:USDT": BTC_ERA, "ETH/USDT:USDT": ETH_ERA}, 500e6)
    import_files(engine, "binance-usdm", plan([usdm]))
    bybit = archive(tmp_path, "2021-05-01_bybit.json", {"BTC/USDT:USDT": BTC_ERA}, 500e6)
    import_files(engine, "bybit-linear", plan([bybit]))
    coinm = archive(tmp_path, "2021-05-01_coinm.json", {"BTC/USD:BTC": [(0, 0.004, 125), (5, 0.005, 100)]}, 100)
    import_files(engine, "binance-coinm", plan([coinm]))
    engine.dispose()
    return db_url


def set_market(db_url: str, source: str, symbol: str, mark: float | None, adr: float | None) -> None:
    engine = open_engine(db_url)
    now = datetime.now(UTC)
    with Session(engine) as s:
        s.merge(
            MarketData(source=source, symbol=symbol, mark_price=mark, mark_at=now, adr=adr, adr_days=14, adr_at=now)
        )
        s.commit()
    engine.dispose()


def test_binance_cross_example_to_the_cent(db: str) -> None:
    cli(db, "account", "set", "--source", "binance-usdm", "--wallet-balance", "1535443.01")
    cli(db, "positions", "add", "--source", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long",
        "--entry", "32481.98", "--qty", "109.488", "--mode", "cross")  # fmt: skip
    cli(db, "positions", "add", "--source", "binance-usdm", "--symbol", "ETHUSDT", "--side", "long",
        "--entry", "1456.84", "--qty", "3683.979", "--mode", "cross")  # fmt: skip
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 31967.27, 1000.0)
    set_market(db, "binance-usdm", "ETH/USDT:USDT", 1335.18, 80.0)
    rows = {r["symbol"]: r for r in cli(db, "positions", "list", "--json")}
    assert round(rows["BTC/USDT:USDT"]["liquidation_price"], 2) == 26316.89
    assert round(rows["ETH/USDT:USDT"]["liquidation_price"], 2) == 1153.26
    assert rows["BTC/USDT:USDT"]["maintenance_amount"] == 16300
    assert round(rows["BTC/USDT:USDT"]["maintenance_margin"], 5) == 71200.81144


def test_cross_needs_marks_of_all_account_positions(db: str) -> None:
    cli(db, "account", "set", "--source", "binance-usdm", "--wallet-balance", "100000")
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000",
        "--qty", "1", "--mode", "cross")  # fmt: skip
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "ETHUSDT", "--side", "short", "--entry", "2000",
        "--qty", "10", "--mode", "cross")  # fmt: skip
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 30000, 1000)
    rows = cli(db, "positions", "list", "--json")
    assert all(r["liquidation_price"] is None for r in rows)
    assert all("mark price of cross position" in r["not_computed"] for r in rows)


def test_bybit_cross_is_kept_but_not_computed(db: str) -> None:
    cli(db, "positions", "add", "-s", "bybit-linear", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000",
        "--qty", "1", "--mode", "cross")  # fmt: skip
    (row,) = cli(db, "positions", "list", "--json")
    assert row["liquidation_price"] is None
    assert "account-level" in row["not_computed"] and "not computed" in row["not_computed"]


def test_isolated_figures_with_and_without_market_data(db: str) -> None:
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "BTC/USDT:USDT", "--side", "long",
        "--entry", "67000", "--notional", "40000", "--margin", "6700", "--note", "brief")  # fmt: skip
    (row,) = cli(db, "positions", "list", "--json")
    assert round(row["liquidation_price"], 2) == 56001.51
    assert row["buffer_adr"] is None and "mark" in json.dumps(row["reasons"])
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 60000.0, 3000.0)
    (row,) = cli(db, "positions", "list", "--json")
    assert row["distance"] == pytest.approx((60000 - row["liquidation_price"]) / 60000)
    assert row["buffer_adr"] == pytest.approx((60000 - row["liquidation_price"]) / 3000)
    assert row["violation"] is True  # about 1.33 ADR < 2
    assert row["size_input"] == "notional=40000" and row["adr_source"] == "market"


def test_the_size_is_kept_and_shown_as_typed(db: str) -> None:
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "ETH/USDT:USDT", "--side", "long",
        "--entry", "1456.84", "--qty", "3683.979", "--margin", "2000000")  # fmt: skip
    (row,) = cli(db, "positions", "list", "--json")
    assert row["size_input"] == "qty=3683.979" and row["size"] == 3683.979


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--side", "sideways", "--qty", "1", "--margin", "100"], "side must be long or short"),
        (["--side", "long", "--qty", "0", "--margin", "100"], "qty must be > 0"),
        (["--side", "long", "--qty", "-1", "--margin", "100"], "qty must be > 0"),
        (["--side", "long", "--qty", "1", "--notional", "5", "--margin", "100"], "exactly one of"),
        (["--side", "long", "--qty", "1"], "needs --margin"),
        (["--side", "long", "--qty", "10", "--margin", "100"], "does not fit"),
        (["--side", "long", "--qty", "1", "--margin", "0"], "margin must be > 0"),
        (["--side", "long", "--contracts", "3", "--margin", "100"], "linear"),
        (["--side", "long", "--qty", "1", "--mode", "cross", "--margin", "5"], "no margin of its own"),
    ],
)
def test_bad_positions_are_refused(db: str, args: list[str], message: str) -> None:
    base = ["positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--entry", "30000"]
    assert message in fails(db, *base, *args)
    assert cli(db, "positions", "list", "--json") == []


def test_unknown_symbol_and_inverse_cross_are_refused(db: str) -> None:
    msg = fails(db, "positions", "add", "-s", "binance-usdm", "--symbol", "NOPEUSDT", "--side", "long",
                "--entry", "1", "--qty", "1", "--margin", "1")  # fmt: skip
    assert "unknown symbol" in msg
    msg = fails(db, "positions", "add", "-s", "binance-coinm", "--symbol", "BTCUSD_PERP", "--side", "long",
                "--entry", "30000", "--contracts", "10", "--mode", "cross")  # fmt: skip
    assert "cannot be computed" in msg


def test_inverse_position_in_contracts(db: str) -> None:
    cli(db, "positions", "add", "-s", "binance-coinm", "--symbol", "BTCUSD_PERP", "--side", "long",
        "--entry", "30000", "--contracts", "30", "--margin", "0.05")  # fmt: skip
    (row,) = cli(db, "positions", "list", "--json")
    assert row["contract_size"] == 100 and row["size"] == 30
    # C·CS·(1+r) / ((M + A) + C·CS/EP) with tier 1 (3000 USD is 0.1 BTC at entry: tier 1, r 0.4%, A 0).
    assert row["liquidation_price"] == pytest.approx(3000 * 1.004 / (0.05 + 3000 / 30000))


def test_csv_import_is_all_or_nothing(db: str, tmp_path: Path) -> None:
    good = "source,symbol,side,entry,qty,notional,margin,mode,note\n"
    good += "binance-usdm,BTCUSDT,long,30000,0.5,,1000,isolated,a\n"
    good += "binance-usdm,ETHUSDT,short,2000,,4000,400,isolated,b\n"
    bad = good + "binance-usdm,BTCUSDT,up,30000,1,,1000,isolated,c\n" + "binance-usdm,DOGEUSDT,long,1,1,,1,,d\n"
    (tmp_path / "bad.csv").write_text(bad)
    msg = fails(db, "positions", "import", str(tmp_path / "bad.csv"))
    assert "line 4: side must be long or short" in msg and "line 5: unknown symbol" in msg
    assert "2 bad row(s), nothing imported" in msg
    assert cli(db, "positions", "list", "--json") == []
    (tmp_path / "good.csv").write_text(good)
    cli(db, "positions", "import", str(tmp_path / "good.csv"))
    rows = cli(db, "positions", "list", "--json")
    assert [(r["symbol"], r["side"], r["note"]) for r in rows] == [
        ("BTC/USDT:USDT", "long", "a"),
        ("ETH/USDT:USDT", "short", "b"),
    ]
    assert rows[1]["size"] == pytest.approx(2.0)


def test_close_removes_figures(db: str) -> None:
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000",
        "--qty", "1", "--margin", "3000")  # fmt: skip
    cli(db, "positions", "close", "1")
    assert cli(db, "positions", "list", "--json") == []
    assert cli(db, "positions", "list", "--all", "--json")[0]["closed_at"] is not None
    assert "already closed" in fails(db, "positions", "close", "1")


def test_liq_matches_the_briefs_corrected_example(db: str) -> None:
    base = [
        "liq",
        "-s",
        "binance-usdm",
        "--symbol",
        "BTCUSDT",
        "--side",
        "long",
        "--entry",
        "67000",
        "--margin",
        "6700",
    ]
    small = cli(db, *base, "--notional", "40000", "--json")
    big = cli(db, *base, "--notional", "500000", "--json")
    keys = {"tier", "maintenance_margin_rate", "maintenance_amount", "maintenance_margin", "liquidation_price",
            "distance", "buffer_adr", "violation", "headroom_notional"}  # fmt: skip
    assert keys <= set(small)
    assert round(small["liquidation_price"], 2) == 56001.51 and small["tier"] == 1
    assert round(big["liquidation_price"], 2) == 66593.94 and big["tier"] == 3
    assert big["maintenance_amount"] == 1300 and "exceeds tier 3" in big["warnings"][0]
    assert big["buffer_adr"] is None and "no mark price given (--mark)" in big["reasons"]["buffer_adr"]
    with_mark = cli(db, *base, "--notional", "40000", "--mark", "66000", "--adr", "2500", "--json")
    assert with_mark["buffer_adr"] == pytest.approx((66000 - with_mark["liquidation_price"]) / 2500)
    assert with_mark["violation"] is False


def test_a_tier_change_records_an_impact(db: str, tmp_path: Path) -> None:
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "ETHUSDT", "--side", "long", "--entry", "2000",
        "--notional", "90000", "--margin", "4500")  # fmt: skip
    set_market(db, "binance-usdm", "ETH/USDT:USDT", 2000.0, 50.0)
    before = cli(db, "positions", "list", "--json")[0]
    tighter = [(0, 0.005, 100), (10_000, 0.0065, 75), (50_000, 0.02, 20), *ETH_ERA[4:]]
    new = archive(tmp_path, "2021-06-01_usdm.json", {"BTC/USDT:USDT": BTC_ERA, "ETH/USDT:USDT": tighter}, 500e6)
    cli(db, "import", str(new), "--source", "binance-usdm")
    (impact,) = cli(db, "impacts", "--json")
    assert impact["position_id"] == 1 and impact["symbol"] == "ETH/USDT:USDT"
    assert impact["old_liquidation_price"] == pytest.approx(before["liquidation_price"])
    assert impact["new_liquidation_price"] > impact["old_liquidation_price"]
    assert (impact["old_tier"], impact["new_tier"]) == (2, 3)
    assert impact["old_rate"] == 0.0065 and impact["new_rate"] == 0.02
    assert impact["crosses_tier"] is True
    assert impact["newly_violates"] == (impact["new_buffer_adr"] < 2 <= impact["old_buffer_adr"])
    assert {c["kind"] for c in impact["changes"]} >= {"tier_changed"}
    after = cli(db, "positions", "list", "--json")[0]
    assert after["liquidation_price"] == pytest.approx(impact["new_liquidation_price"])
    assert cli(db, "impacts", "--since", "2021-06-02", "--json") == []


def test_list_shows_the_first_rows_and_counts_the_rest_while_json_lists_all(db: str) -> None:
    for entry in ("30000", "31000", "32000", "33000"):
        cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", entry,
            "--qty", "1", "--margin", "300")  # fmt: skip
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 30000, 1000)
    shown = cli(db, "positions", "list", "--limit", "2")
    assert "… 2 more (2 of them violating the margin rule)" in shown and "--limit 0 for all" in shown
    assert "31,000" in shown and "32,000" not in shown
    everything = cli(db, "positions", "list", "--limit", "0")
    assert "33,000" in everything and "more" not in everything
    assert len(cli(db, "positions", "list", "--limit", "2", "--json")) == 4
