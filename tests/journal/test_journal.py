"""The journal's records through the real CLI on a real database: entry, edits, exit, export and import.

The tables are the 2020–21 BTCUSDT/ETHUSDT tables of domain doc §3 (tests/risk/test_positions.py), in
force from 2021-05-01; past market data comes from the loopback fake exchange.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from monitor.cli import app
from monitor.fake_exchange import FAPI_MARK_KLINES, MARK_KLINE, FakeExchange
from monitor.fake_exchange.scenarios import FakeCandle
from monitor.store.database import open_engine
from monitor.store.models import MarkCandle, Position, PositionRecord
from tests.conftest import point_at_fake
from tests.risk.test_positions import cli, db, fails, set_market

__all__ = ["db"]  # the fixture, shared with tests/risk/test_positions.py

SEED = ["-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "67000"]
OPENED = datetime(2021, 6, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeExchange]:
    """Every test talks to the loopback exchange, never a real one (a past `--opened-at` or `--at` fetches
    candles); it lists only the symbols a test gives a market."""
    with FakeExchange() as server:
        point_at_fake(server, monkeypatch, tmp_path)
        yield server


def add(db_url: str, *args: str) -> str:
    out: str = cli(db_url, "positions", "add", *SEED, *args)
    return out


def position(db_url: str, pid: int = 1) -> dict[str, Any]:
    found: dict[str, Any] = cli(db_url, "positions", "show", str(pid), "--json")
    return found


def test_the_seed_example_is_the_entry_journal_line(db: str) -> None:
    out = add(db, "--notional", "40000", "--margin", "6700")
    assert "position 1 logged" in out
    assert "tier 1 | MMR 0.4% | amount 0 | LP 56,001.51 |" in out
    assert "table 2021-05-01" in out  # the table in force at the entry
    entry = position(db)["entry"]
    assert round(entry["liquidation_price"], 2) == 56001.51
    assert entry["tier"] == 1 and entry["maintenance_margin_rate"] == 0.004
    assert entry["price"] == 67000 and entry["recomputed"] is False
    assert entry["mark_price"] is None and "mark" in entry["unknown"]  # no market data cached: unknown, why
    assert entry["violation"] is None
    assert position(db)["exit"] is None and position(db)["events"] == []


def test_the_scaled_seed_example_in_the_pre_trade_check(db: str) -> None:
    """500,000 notional on 6,700 margin is beyond tier 3's 50× (`positions add` refuses it as the exchange
    would); the pre-trade check prints its journal line, with the warning."""
    out = cli(db, "liq", *SEED, "--notional", "500000", "--margin", "6700", "--journal")
    assert "tier 3 | MMR 1% | amount 1,300.00 | LP 66,593.94 |" in out
    assert "exceeds tier 3" in out
    small = cli(db, "liq", *SEED, "--notional", "40000", "--margin", "6700", "--journal")
    assert "LP 56,001.51" in small
    assert cli(db, "positions", "list", "--all", "--json") == []  # writes nothing


def test_a_violating_entry_is_loud_and_strict_refuses_it(db: str) -> None:
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 60000.0, 3000.0)  # buffer about 1.33 ADR
    out = add(db, "--notional", "40000", "--margin", "6700")
    assert "MARGIN-RISK VIOLATION: buffer 1.33 ADR, below the 2 ADR rule" in out
    entry = position(db)["entry"]
    assert entry["violation"] is True and entry["adr"] == 3000 and entry["adr_days"] == 14
    assert entry["adr_source"] == "market" and entry["mark_price"] == 60000
    line = fails(db, "positions", "add", *SEED, "--notional", "40000", "--margin", "6700", "--strict")
    assert "not logged (--strict)" in line and "1.33 ADR" in line
    assert len(cli(db, "positions", "list", "--all", "--json")) == 1  # nothing written by the refused one
    ok = add(db, "--notional", "40000", "--margin", "20000", "--strict")  # a wider buffer passes
    assert "logged" in ok and "| ok" in ok  # (PostgreSQL does not reuse the refused id)


def test_liq_journal_takes_the_market_an_entry_would(db: str) -> None:
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 60000.0, 3000.0)
    data = cli(db, "liq", *SEED, "--notional", "40000", "--margin", "6700", "--journal", "--json")
    assert data["mark_price"] == 60000 and data["adr"] == 3000 and data["violation"] is True
    add(db, "--notional", "40000", "--margin", "6700")
    entry = position(db)["entry"]
    for key in ("tier", "liquidation_price", "buffer_adr", "distance", "headroom_notional", "violation"):
        assert data[key] == entry[key], key


# -- past entries: daily mark candles from the exchange, cached ------------------------------------------


def candles(first: datetime, ranges: list[float], opens: float) -> list[FakeCandle]:
    return [
        FakeCandle(first + timedelta(days=i), opens, opens + r / 2, opens - r / 2, opens) for i, r in enumerate(ranges)
    ]


@pytest.mark.parametrize(
    ("source", "path", "since", "until"),
    [("binance-usdm", FAPI_MARK_KLINES, "startTime", "endTime"), ("bybit-linear", MARK_KLINE, "start", "end")],
)
def test_a_past_entry_uses_the_mark_candles_up_to_then(
    db: str, fake: FakeExchange, source: str, path: str, since: str, until: str
) -> None:
    day = datetime(2021, 6, 10, tzinfo=UTC)
    ranges = [1000.0 + 100 * i for i in range(14)] + [9999.0]  # 14 completed days, then the entry's own day
    fake.set_market(source, "BTCUSDT", mark=1.0, candles=candles(day - timedelta(days=14), ranges, 66000.0))
    args = ["positions", "add", "-s", source, *SEED[2:], "--notional", "40000", "--margin", "6700"]
    cli(db, *args, "--opened-at", OPENED.isoformat())
    entry = position(db)["entry"]
    assert entry["mark_price"] == 66000.0  # the opening mark of the entry's day
    assert entry["adr"] == pytest.approx(1650.0) and entry["adr_days"] == 14  # the entry's day is left out
    assert entry["buffer_adr"] == pytest.approx((66000.0 - entry["liquidation_price"]) / 1650.0)
    assert entry["violation"] is False and entry["unknown"] == {}
    (request,) = fake.requests_to(path)
    assert request.query[since] == str(int((day - timedelta(days=14)).timestamp() * 1000))
    assert request.query[until] == str(int(OPENED.timestamp() * 1000))
    engine = open_engine(db)
    with Session(engine) as s:
        assert len(list(s.exec(select(MarkCandle)))) == 15  # every completed day, kept for good
    engine.dispose()
    cli(db, *args, "--opened-at", OPENED.isoformat())
    assert len(fake.requests_to(path)) == 1  # the second entry read the cache
    assert position(db, 2)["entry"]["adr"] == entry["adr"]


def test_a_past_entry_without_candles_says_why_and_guesses_nothing(db: str, fake: FakeExchange) -> None:
    fake.set_market("binance-usdm", "BTCUSDT", mark=1.0, candles=[])
    out = add(db, "--notional", "40000", "--margin", "6700", "--opened-at", OPENED.isoformat())
    entry = position(db)["entry"]
    assert entry["mark_price"] is None and entry["adr"] is None and entry["buffer_adr"] is None
    assert "no daily mark candle for 2021-06-10" in entry["unknown"]["mark"]
    assert "ADR(14)" in entry["unknown"]["adr"]
    assert round(entry["liquidation_price"], 2) == 56001.51  # what does not need the market is still there
    assert "mark unknown: no daily mark candle" in out


# -- while open, and the exit -----------------------------------------------------------------------------


def test_edits_are_events_and_move_the_figures(db: str) -> None:
    add(db, "--qty", "1", "--margin", "6700", "--opened-at", "2026-01-01T00:00:00Z")
    assert "not in the market list" in position(db)["entry"]["unknown"]["mark"]  # the fake does not list it
    before = position(db)["liquidation_price"]
    out = cli(db, "positions", "edit", "1", "--add-margin", "1000", "--at", "2026-01-02T00:00:00Z")
    assert "margin added 1,000" in out and "margin 7,700.00" in out
    assert position(db)["liquidation_price"] < before  # more margin: further from liquidation
    out = cli(db, "positions", "edit", "1", "--reduce-size", "0.25", "--price", "71000", "--at", "2026-01-03T00:00:00Z")
    assert "realised PnL 1,000.00" in out  # 0.25 × (71,000 − 67,000)
    cli(db, "positions", "edit", "1", "--add-size", "0.25", "--price", "63000", "--at", "2026-01-04T00:00:00Z")
    cli(db, "positions", "edit", "1", "--note", "trimmed and re-added", "--at", "2026-01-04T00:00:00Z")
    data = position(db)
    kinds = [e["kind"] for e in data["events"]]
    assert kinds == ["margin_added", "size_reduced", "size_added", "note"]
    reduced, added = data["events"][1], data["events"][2]
    assert reduced["pnl"] == pytest.approx(1000.0) and reduced["size_after"] == 0.75
    assert reduced["margin_after"] == pytest.approx(7700 * 0.75)
    assert added["entry_price_after"] == pytest.approx((0.75 * 67000 + 0.25 * 63000) / 1.0)
    assert data["size"] == pytest.approx(1.0) and data["note"] == "trimmed and re-added"
    assert data["entry"]["size"] == 1 and data["entry"]["margin"] == 6700  # the entry stays as it was


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add-size", "1"], "needs --price"),
        (["--reduce-size", "1", "--price", "70000"], "use `positions close`"),
        (["--remove-margin", "6700"], "cannot remove 6700"),
        (["--add-margin", "1", "--remove-margin", "1"], "give one of"),
        ([], "nothing to edit"),
        (["--note", "x", "--at", "2020-01-01T00:00:00Z"], "before position 1 was opened"),
    ],
)
def test_edits_that_cannot_be_are_one_line_and_write_nothing(db: str, args: list[str], message: str) -> None:
    add(db, "--qty", "1", "--margin", "6700")
    assert message in fails(db, "positions", "edit", "1", *args)
    assert position(db)["events"] == [] and position(db)["margin"] == 6700


def test_close_stores_the_exit_with_the_holding_period(db: str) -> None:
    add(db, "--qty", "1", "--margin", "6700", "--opened-at", "2026-01-01T00:00:00Z")
    out = cli(db, "positions", "close", "1", "--price", "69500", "--at", "2026-01-05T00:00:00Z")
    assert "position 1 closed" in out and "exit: table 2021-05-01" in out
    data = cli(db, "positions", "list", "--all", "--json")[0]
    exit_ = data["exit"]
    assert exit_["price"] == 69500 and exit_["pnl"] == pytest.approx(2500.0)
    assert exit_["at"].startswith("2026-01-05") and data["closed_at"].startswith("2026-01-05")
    assert exit_["period"]["table_changes"] == [] and exit_["period"]["impacts"] == 0
    assert [e["kind"] for e in data["events"]] == ["closed"]
    assert "already closed" in fails(db, "positions", "close", "1", "--price", "1")


def test_close_without_a_price_records_the_exit_with_price_unknown(db: str) -> None:
    add(db, "--qty", "1", "--margin", "6700")
    out = cli(db, "positions", "close", "1")
    assert "PnL unknown" in out
    exit_ = cli(db, "positions", "list", "--all", "--json")[0]["exit"]
    assert exit_["price"] is None and exit_["pnl"] is None
    assert "no exit price given" in exit_["unknown"]["pnl"]


def test_a_tier_change_while_open_is_in_the_exit_record(db: str, tmp_path: Path) -> None:
    from monitor.service.importer import import_files, plan
    from tests.risk.test_positions import BTC_ERA, ETH_ERA, archive

    add(db, "--notional", "40000", "--margin", "6700", "--opened-at", "2021-05-02T00:00:00Z")
    tighter = [(f, r * 1.5, lev) for f, r, lev in BTC_ERA]
    later = archive(tmp_path, "2021-06-01_usdm.json", {"BTC/USDT:USDT": tighter, "ETH/USDT:USDT": ETH_ERA}, 500e6)
    engine = open_engine(db)
    import_files(engine, "binance-usdm", plan([later]))
    engine.dispose()
    cli(db, "positions", "close", "1", "--price", "60000", "--at", "2021-07-01T00:00:00Z")
    data = cli(db, "positions", "list", "--all", "--json")[0]
    assert data["exit"]["period"]["table_changes"] == [data["exit"]["table_valid_from"]]
    assert data["exit"]["period"]["tier_change_records"] == 10 + 9  # every rate, every amount but tier 1's 0
    assert data["exit"]["maintenance_margin_rate"] == pytest.approx(0.006)  # the table in force at the exit
    assert data["entry"]["maintenance_margin_rate"] == 0.004
    assert data["exit"]["pnl"] == pytest.approx(40000 / 67000 * (60000 - 67000))


# -- positions logged before the journal, export and import -----------------------------------------------


def test_positions_logged_before_the_journal_get_a_recomputed_entry(db: str) -> None:
    engine = open_engine(db)
    with Session(engine) as s:  # as a database migrated from 0006 holds it: a position, no record
        s.add(
            Position(
                source="binance-usdm", symbol="BTC/USDT:USDT", side="long", entry_price=67000, size=40000 / 67000,
                size_input="notional=40000", margin=6700, opened_at=datetime(2021, 6, 1, tzinfo=UTC),
            )
        )  # fmt: skip
        s.commit()
    engine.dispose()
    assert position(db)["entry"] is None
    add(db, "--qty", "1", "--margin", "6700")  # the first journal write fills it in
    entry = position(db)["entry"]
    assert entry["recomputed"] is True and round(entry["liquidation_price"], 2) == 56001.51
    assert entry["at"].startswith("2021-06-01") and "no daily mark candles cached" in entry["unknown"]["mark"]
    assert position(db, 2)["entry"]["recomputed"] is False


def test_export_then_import_gives_the_same_journal(db: str, tmp_path: Path) -> None:
    from monitor.service.importer import import_files, plan
    from tests.risk.test_positions import BTC_ERA, ETH_ERA, archive

    set_market(db, "binance-usdm", "BTC/USDT:USDT", 60000.0, 3000.0)
    add(db, "--notional", "40000", "--margin", "6700", "--note", '=HYPERLINK("x"), a "quoted" note')
    cli(db, "positions", "edit", "1", "--reduce-size", "0.1", "--price", "68000")
    cli(db, "positions", "close", "1", "--price", "66000")
    cli(db, "positions", "add", "-s", "binance-coinm", "--symbol", "BTCUSD_PERP", "--side", "short",
        "--entry", "40000", "--contracts", "10", "--margin", "0.1")  # fmt: skip
    first = tmp_path / "journal.csv"
    cli(db, "positions", "export", "--output", str(first))
    header = first.read_text().splitlines()[0].split(",")
    assert ',"\'=HYPERLINK(""x""), a ""quoted"" note",' in first.read_text()  # no formula
    assert {"entry_liquidation_price", "exit_pnl", "events", "entry_buffer_adr"} <= set(header)

    fresh = f"sqlite:///{tmp_path / 'other.db'}"  # the same history, another database (ids differ)
    engine = open_engine(fresh)

    usdm = archive(tmp_path, "2021-05-01_usdm.json", {"BTC/USDT:USDT": BTC_ERA, "ETH/USDT:USDT": ETH_ERA}, 500e6)
    import_files(engine, "binance-usdm", plan([usdm]))
    coinm = archive(tmp_path, "2021-05-01_coinm.json", {"BTC/USD:BTC": [(0, 0.004, 125), (5, 0.005, 100)]}, 100)
    import_files(engine, "binance-coinm", plan([coinm]))
    engine.dispose()
    assert "imported 2 position(s)" in cli(fresh, "positions", "import", str(first))
    second = tmp_path / "again.csv"
    cli(fresh, "positions", "export", "--output", str(second))
    assert second.read_text() == first.read_text()
    as_json = json.loads(CliRunner().invoke(app, ["--db", fresh, "positions", "export", "--format", "json"]).stdout)
    assert as_json[0]["exit_pnl"] == pytest.approx((40000 / 67000 - 0.1) * (66000 - 67000))
    assert as_json[0]["events"][0]["kind"] == "size_reduced"
    assert as_json[0]["note"] == '=HYPERLINK("x"), a "quoted" note'  # JSON keeps the text as it is


def test_an_import_of_a_plain_csv_computes_the_entries(db: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "plain.csv"
    csv_file.write_text(
        "source,symbol,side,entry,notional,margin,opened_at\nbinance-usdm,BTCUSDT,long,67000,40000,6700,2021-06-01\n"
    )
    cli(db, "positions", "import", str(csv_file))
    entry = position(db)["entry"]
    assert round(entry["liquidation_price"], 2) == 56001.51 and entry["recomputed"] is True


def test_a_record_is_unique_per_position_and_kind(db: str) -> None:
    add(db, "--qty", "1", "--margin", "6700")
    engine = open_engine(db)
    with Session(engine) as s:
        (entry,) = s.exec(select(PositionRecord))
        s.add(PositionRecord(**{**entry.model_dump(), "id": None}))
        with pytest.raises(Exception, match=r"(?i)unique"):
            s.commit()
    engine.dispose()


def test_liq_cross_uses_the_account_and_its_other_cross_positions(db: str) -> None:
    """The domain doc's cross example: BTC held in cross, the ETH leg as a what-if, to the cent."""
    cli(db, "positions", "add", "--source", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long",
        "--entry", "32481.98", "--qty", "109.488", "--mode", "cross")  # fmt: skip
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 31967.27, 1000.0)
    eth = ["-s", "binance-usdm", "--symbol", "ETHUSDT", "--side", "long", "--entry", "1456.84", "--qty", "3683.979",
           "--mode", "cross", "--mark", "1335.18", "--json"]  # fmt: skip
    assert "no cross wallet balance" in fails(db, "liq", *eth)
    data = cli(db, "liq", *eth, "--wallet-balance", "1535443.01")
    assert round(data["liquidation_price"], 2) == 1153.26 and data["mode"] == "cross"
    cli(db, "account", "set", "--source", "binance-usdm", "--wallet-balance", "1535443.01")
    assert round(cli(db, "liq", *eth)["liquidation_price"], 2) == 1153.26  # the stored wallet
    assert "has no margin of its own" in fails(db, "liq", *eth, "--margin", "10")
    isolated = [a for a in eth if a not in ("--mode", "cross")]
    assert "needs --margin" in fails(db, "liq", *isolated)


def test_show_prints_the_journal_lines(db: str) -> None:
    add(db, "--notional", "40000", "--margin", "6700")
    cli(db, "positions", "close", "1", "--price", "66000")
    out = cli(db, "positions", "show", "1")
    assert "entry: table 2021-05-01" in out and "exit: table 2021-05-01" in out and "LP 56,001.51" in out
    assert "events: 1" in out


def test_a_past_entry_is_checked_against_the_table_then(db: str, tmp_path: Path) -> None:
    from monitor.service.importer import import_files, plan
    from tests.risk.test_positions import BTC_ERA, ETH_ERA, archive

    capped = [(f, r, min(lev, 20)) for f, r, lev in BTC_ERA]  # from 2021-06-01 at most 20×
    later = archive(tmp_path, "2021-06-01_usdm.json", {"BTC/USDT:USDT": capped, "ETH/USDT:USDT": ETH_ERA}, 500e6)
    engine = open_engine(db)
    import_files(engine, "binance-usdm", plan([later]))
    engine.dispose()
    at_100x = ["--notional", "40000", "--margin", "400"]
    assert "max 20×" in fails(db, "positions", "add", *SEED, *at_100x)
    add(db, *at_100x, "--opened-at", "2021-05-15T00:00:00Z")  # 125× was allowed then
    entry = position(db)["entry"]
    assert entry["table_valid_from"].startswith("2021-05-01") and entry["margin"] == 400


def test_a_past_cross_entry_says_the_account_then_is_not_known(db: str) -> None:
    cli(db, "account", "set", "--source", "binance-usdm", "--wallet-balance", "10000")
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000",
        "--qty", "1", "--mode", "cross", "--opened-at", "2021-06-01")  # fmt: skip
    entry = position(db)["entry"]
    assert entry["liquidation_price"] is None and entry["table_valid_from"].startswith("2021-05-01")
    assert (
        "wallet balance and the account's other positions then are not stored" in entry["unknown"]["liquidation_price"]
    )
    set_market(db, "binance-usdm", "BTC/USDT:USDT", 30000.0, 1000.0)
    cli(db, "positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "30000",
        "--qty", "1", "--mode", "cross")  # fmt: skip
    assert position(db, 2)["entry"]["liquidation_price"] is not None  # now: the account as it stands


def test_export_to_stdout_and_a_file_that_cannot_be_written(db: str, tmp_path: Path) -> None:
    add(db, "--notional", "40000", "--margin", "6700")
    rows = json.loads(cli(db, "positions", "export", "--format", "json"))
    assert rows[0]["entry_tier"] == 1 and rows[0]["notional"] is None and rows[0]["exit_at"] is None
    assert cli(db, "positions", "export").splitlines()[0].startswith("id,source,symbol,side,entry,")
    target = tmp_path / "missing-folder" / "out.csv"
    line = fails(db, "positions", "export", "--output", str(target))
    assert "cannot write" in line and "\n" not in line.strip()
    assert not target.parent.exists()
    assert "expected csv or json" in fails(db, "positions", "export", "--format", "xlsx")
