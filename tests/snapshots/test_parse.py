"""Parsing and validation of every payload shape (domain doc §1, §7)."""

from __future__ import annotations

from typing import Any

import pytest

from snapshots.errors import InvalidTable, PayloadError
from snapshots.model import Unit
from snapshots.parse import (
    number,
    parse_binance_brackets,
    parse_binance_web,
    parse_bybit_risk_limits,
    parse_ccxt_tiers,
)
from snapshots.symbols import canonical_symbol
from snapshots.validate import RowIn, build_table
from tests.conftest import BTC_ROWS, ccxt_tiers


def rows(*spec: tuple[float, float, float, float | None, float]) -> list[RowIn]:
    return [RowIn(i + 1, f, c, r, a, lev) for i, (f, c, r, a, lev) in enumerate(spec)]


GOOD = [(0, 50_000, 0.004, 0.0, 125), (50_000, 250_000, 0.005, 50.0, 100), (250_000, 1e6, 0.01, 1300.0, 50)]


def test_a_good_table_keeps_every_field() -> None:
    t = build_table("binance-usdm", "BTC/USDT:USDT", Unit.QUOTE, rows(*GOOD))
    assert [x.maintenance_amount for x in t.tiers] == [0.0, 50.0, 1300.0]
    assert t.tiers[1].floor == 50_000 and t.tiers[1].cap == 250_000
    assert t.warnings == ()


def test_missing_amounts_are_derived_from_the_recurrence() -> None:
    spec = [(f, c, r, None, lev) for f, c, r, _, lev in GOOD]
    t = build_table("bybit-linear", "X", Unit.QUOTE, rows(*spec))
    assert [x.maintenance_amount for x in t.tiers] == pytest.approx([0.0, 50.0, 1300.0])
    assert t.warnings == ()


def test_a_mismatching_amount_is_kept_with_a_warning() -> None:
    spec = list(GOOD)
    spec[2] = (250_000, 1e6, 0.01, 1400.0, 50)
    t = build_table("binance-usdm", "X", Unit.QUOTE, rows(*spec))
    assert t.tiers[2].maintenance_amount == 1400.0
    assert len(t.warnings) == 1 and "tier 3" in t.warnings[0] and "1300" in t.warnings[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "no tiers"),
        ([(10, 50, 0.01, 0, 20)], "first floor is 10"),
        ([(0, 50, 0.01, 0, 20), (60, 90, 0.02, 0.6, 10)], "not contiguous"),
        ([(0, 50, 0.02, 0, 20), (50, 90, 0.01, 0, 10)], "maintenance rate falls"),
        ([(0, 50, 0.01, 0, 20), (50, 90, 0.02, 0.5, 25)], "max leverage rises"),
        ([(0, 50, 1.5, 0, 20)], "not in (0, 1)"),
        ([(0, 50, 0.01, 0, 0.5)], "below 1"),
        ([(0, 40, 0.01, 0, 20), (40, 30, 0.02, 0.4, 10)], "below floor"),
        ([(0, 50, 0.01, -1, 20)], "negative maintenance amount"),
        ([(0, 50, 0.01, 0, 20), (50, 50, 0.02, 0.5, 10)], "top tier 2 is empty"),
    ],
)
def test_malformed_tables_are_rejected_with_the_reason(spec: list[Any], message: str) -> None:
    with pytest.raises(InvalidTable) as err:
        build_table("binance-usdm", "BAD/USDT:USDT", Unit.QUOTE, rows(*spec))
    assert message in str(err.value)
    assert str(err.value).startswith("BAD/USDT:USDT: ")


def test_an_empty_middle_tier_is_accepted_with_a_warning() -> None:
    # Binance published DEXEUSDT on 2025-11-20 with tier 7 = [500000, 500000].
    spec = [(0, 100, 0.01, 0, 20), (100, 100, 0.02, 1, 10), (100, 500, 0.05, 4, 5)]
    t = build_table("binance-usdm", "X", Unit.QUOTE, rows(*spec))
    assert "tier 2 is empty" in t.warnings[0]
    assert t.tier_for(100).tier == 3  # an empty tier never holds a notional


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.004", 0.004), (0.004, 0.004), ("4e-3", 0.004), (" 12 ", 12.0), (7, 7.0)],
)
def test_numbers_and_numeric_strings_are_the_same(value: Any, expected: float) -> None:
    assert number(value, "x") == expected


@pytest.mark.parametrize("value", [None, True, "abc", "nan", "inf", [], {}])
def test_non_numbers_are_rejected(value: Any) -> None:
    with pytest.raises(PayloadError):
        number(value, "field")


def test_formatting_does_not_change_the_hash() -> None:
    as_strings = parse_ccxt_tiers("binance-usdm", {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)})
    as_numbers = parse_ccxt_tiers(
        "binance-usdm", {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS, strings=False)}
    )
    assert as_strings["BTC/USDT:USDT"].hash == as_numbers["BTC/USDT:USDT"].hash
    assert as_strings["BTC/USDT:USDT"].raw != as_numbers["BTC/USDT:USDT"].raw


def test_ccxt_archives_with_old_key_names_parse() -> None:
    tiers = ccxt_tiers("BTC/USDT", BTC_ROWS)
    for t in tiers:  # the 2022-02-05 shape
        t["notionalFloor"] = t.pop("minNotional")
        t["notionalCap"] = t.pop("maxNotional")
        t["maintenanceMarginRatio"] = t.pop("maintenanceMarginRate")
    out = parse_ccxt_tiers("binance-usdm", {"BTC/USDT": tiers})
    assert list(out) == ["BTC/USDT:USDT"]
    assert out["BTC/USDT:USDT"].tiers[3].maintenance_amount == 16_300


def test_a_bad_entry_is_named() -> None:
    tiers = ccxt_tiers("ETH/USDT:USDT", BTC_ROWS)
    tiers[2]["maintenanceMarginRate"] = "oops"
    with pytest.raises(PayloadError) as err:
        parse_ccxt_tiers("binance-usdm", {"ETH/USDT:USDT": tiers})
    assert "ETH/USDT:USDT tier 3" in str(err.value) and "'oops'" in str(err.value)


@pytest.mark.parametrize(
    ("source", "key", "expected"),
    [
        ("binance-usdm", "BTC/USDT", "BTC/USDT:USDT"),
        ("binance-usdm", "BTC/USDT:USDT", "BTC/USDT:USDT"),
        ("binance-usdm", "BTCUSDT", "BTC/USDT:USDT"),
        ("binance-usdm", "BTCUSDT_220624", "BTC/USDT:USDT-220624"),
        ("binance-usdm", "1000PEPEUSDC", "1000PEPE/USDC:USDC"),
        ("binance-coinm", "BTCUSD_PERP", "BTC/USD:BTC"),
        ("binance-coinm", "ETHUSD_250627", "ETH/USD:ETH-250627"),
        ("binance-coinm", "BNBUSD_PERP", "BNB/USD:BNB"),
        ("binance-usdm", "BNBBUSD", "BNB/BUSD:BUSD"),
        ("bybit-linear", "SOLUSDT", "SOL/USDT:USDT"),
        ("bybit-inverse", "BTCUSD", "BTC/USD:BTC"),
        ("binance-usdm", "币安人生/USDT:USDT", "币安人生/USDT:USDT"),
        ("bybit-linear", "WEIRD", "WEIRD"),
    ],
)
def test_symbols_are_canonical(source: str, key: str, expected: str) -> None:
    assert canonical_symbol(source, key) == expected


def binance_entry(symbol: str = "BTCUSDT", coef: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "symbol": symbol,
        "brackets": [
            {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0,
             "maintMarginRatio": 0.004, "cum": 0.0},
            {"bracket": 2, "initialLeverage": 100, "notionalCap": 250000, "notionalFloor": 50000,
             "maintMarginRatio": 0.005, "cum": 50.0},
        ],
    }  # fmt: skip
    if coef is not None:
        entry["notionalCoef"] = coef
    return entry


def test_binance_signed_payload_keeps_cum_and_notional_coef() -> None:
    out = parse_binance_brackets("binance-usdm", [binance_entry(coef=1.5)])
    t = out["BTC/USDT:USDT"]
    assert t.notional_coef == 1.5
    assert t.tiers[1].maintenance_amount == 50.0
    assert '"cum":50.0' in t.raw


def test_binance_coinm_payload_is_in_coin() -> None:
    entry = {
        "symbol": "BTCUSD_PERP",
        "brackets": [
            {"bracket": 1, "initialLeverage": 125, "qtyCap": 5, "qtyFloor": 0, "maintMarginRatio": 0.004, "cum": 0},
            {"bracket": 2, "initialLeverage": 100, "qtyCap": 10, "qtyFloor": 5, "maintMarginRatio": 0.005,
             "cum": 0.005},
        ],
    }  # fmt: skip
    t = parse_binance_brackets("binance-coinm", [entry])["BTC/USD:BTC"]
    assert t.unit is Unit.BASE
    assert t.tiers[1].floor == 5


def test_binance_web_payload() -> None:
    payload = {
        "code": "000000",
        "success": True,
        "data": {
            "brackets": [
                {
                    "symbol": "ETHUSDT",
                    "riskBrackets": [
                        {"bracketSeq": 1, "bracketNotionalFloor": 0, "bracketNotionalCap": 10000,
                         "maxOpenPosLeverage": 100, "bracketMaintenanceMarginRate": 0.005,
                         "cumFastMaintenanceAmount": 0},
                        {"bracketSeq": 2, "bracketNotionalFloor": 10000, "bracketNotionalCap": 100000,
                         "maxOpenPosLeverage": 75, "bracketMaintenanceMarginRate": 0.0065,
                         "cumFastMaintenanceAmount": 15},
                    ],
                }
            ]
        },
    }  # fmt: skip
    t = parse_binance_web("binance-usdm", payload)["ETH/USDT:USDT"]
    assert [x.maintenance_amount for x in t.tiers] == [0, 15]
    with pytest.raises(PayloadError, match="success=false"):
        parse_binance_web("binance-usdm", {"success": False, "message": "busy"})


def bybit_rows(scale: float = 1.0, deduction: bool = True) -> list[dict[str, Any]]:
    # BTCUSDT's first tiers as recorded on 2026-02-26 (../shared/data/bybit-linear-risk-limits).
    caps = [2_000_000, 2_600_000, 3_200_000]
    mmr = [0.005, 0.0056, 0.0063]
    ded = ["", "1200", "3020"]
    lev = [100, 90, 80]
    return [
        {
            "id": i + 1,
            "symbol": "BTCUSDT",
            "riskLimitValue": str(caps[i]),
            "maintenanceMargin": f"{mmr[i] * scale:g}",
            "initialMargin": f"{scale / lev[i]:.10g}",
            "isLowestRisk": int(i == 0),
            "maxLeverage": f"{lev[i]:.2f}",
            "mmDeduction": ded[i] if deduction else "",
        }
        for i in range(3)
    ]


def test_bybit_fractions() -> None:
    t = parse_bybit_risk_limits("bybit-linear", bybit_rows())["BTC/USDT:USDT"]
    assert [x.floor for x in t.tiers] == [0, 2_000_000, 2_600_000]
    assert [x.maintenance_amount for x in t.tiers] == [0, 1200, 3020]
    assert t.tiers[0].initial_margin_rate == pytest.approx(0.01)
    assert t.warnings == ()


def test_bybit_percent_strings_are_normalised_explicitly() -> None:
    t = parse_bybit_risk_limits("bybit-linear", bybit_rows(scale=100))["BTC/USDT:USDT"]
    assert [x.maintenance_margin_rate for x in t.tiers] == pytest.approx([0.005, 0.0056, 0.0063])
    assert t.warnings == ()  # the recurrence holds only with fractions: the scale was right


def test_bybit_blank_deductions_are_derived() -> None:
    t = parse_bybit_risk_limits("bybit-linear", bybit_rows(deduction=False))["BTC/USDT:USDT"]
    assert [x.maintenance_amount for x in t.tiers] == pytest.approx([0, 1200, 3020])


def test_bybit_ambiguous_units_are_rejected() -> None:
    bad = bybit_rows()
    bad[1]["initialMargin"] = "0.5"
    with pytest.raises(PayloadError, match="units unknown"):
        parse_bybit_risk_limits("bybit-linear", bad)
