"""`positions list` reads plain rows (monitor.risk.current, monitor.journal.records.listed_records) and
answers as the ORM path does, on a database of every kind of position.

The reference is `positions show ID --json` (an ORM `Position`, `assess_now` over the ORM market data and
wallets, `records_for`): each row of `positions list --json` must equal it without `impacts`. The fast
path (sqlite3, no Typer) and the Typer path must also write the same bytes for the table and `--json`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import Session

from monitor.cli import fast
from monitor.store.database import open_engine
from monitor.store.models import Position
from tests.cli.test_fast import same
from tests.journal.test_journal import fake
from tests.risk.test_positions import cli, db, set_market

__all__ = ["db", "fake"]  # fixtures

USDM, LINEAR, COINM = "binance-usdm", "bybit-linear", "binance-coinm"


def logged(db_url: str) -> None:
    """Positions of every kind: journal or not, cross and isolated, long and short, inverse, on an account-level
    cross source, closed with and without an exit price, edited, and on a symbol that has no table."""
    set_market(db_url, USDM, "BTC/USDT:USDT", 65_000, 2_400)
    set_market(db_url, USDM, "ETH/USDT:USDT", 3_300, None)  # no ADR: buffer and violation unknown
    set_market(db_url, COINM, "BTC/USD:BTC", 64_000, 2_000)
    cli(db_url, "account", "set", "--source", USDM, "--wallet-balance", "250000")
    add = ["positions", "add", "-s", USDM]
    cli(db_url, *add, "--symbol", "BTCUSDT", "--side", "long", "--entry", "67000", "--qty", "1", "--margin", "6700")
    cli(db_url, *add, "--symbol", "ETHUSDT", "--side", "short", "--entry", "3000", "--notional", "90000",
        "--mode", "cross", "--note", "hedge \x1b[31m red")  # fmt: skip
    cli(db_url, *add, "--symbol", "BTCUSDT", "--side", "long", "--entry", "60000", "--qty", "3", "--mode", "cross")
    cli(db_url, "positions", "add", "-s", LINEAR, "--symbol", "BTCUSDT", "--side", "short", "--entry", "66000",
        "--qty", "0.5", "--mode", "cross")  # fmt: skip
    cli(db_url, "positions", "add", "-s", COINM, "--symbol", "BTC/USD:BTC", "--side", "short", "--entry", "63000",
        "--contracts", "200", "--contract-size", "100", "--margin", "0.1", "--adr", "1500")  # fmt: skip
    cli(db_url, *add, "--symbol", "ETHUSDT", "--side", "long", "--entry", "3100", "--qty", "10", "--margin", "3000")
    cli(db_url, "positions", "edit", "6", "--add-margin", "500")
    cli(db_url, "positions", "edit", "1", "--reduce-size", "0.25", "--price", "66000")
    cli(db_url, "positions", "close", "6", "--price", "3200")
    cli(db_url, *add, "--symbol", "ETHUSDT", "--side", "short", "--entry", "3300", "--qty", "1", "--margin", "330")
    cli(db_url, "positions", "close", "7")  # no exit price: PnL unknown
    engine = open_engine(db_url)
    with Session(engine) as s:  # logged before the journal, on a table that is gone: no records, no figures
        for symbol, mode in (("GONE/USDT:USDT", "isolated"), ("BTC/USDT:USDT", "isolated")):
            s.add(
                Position(source=USDM, symbol=symbol, side="long", entry_price=10.0, size=5.0, size_input="qty=5",
                         mode=mode, margin=20.0, opened_at=datetime(2021, 6, 1, tzinfo=UTC))
            )  # fmt: skip
        s.commit()
    engine.dispose()


@pytest.fixture
def varied(db: str) -> str:
    logged(db)
    return db


def shown(db_url: str, pid: int) -> dict[str, Any]:
    data: dict[str, Any] = cli(db_url, "positions", "show", str(pid), "--json")
    del data["impacts"]
    return data


@pytest.mark.parametrize("closed", [False, True])
def test_each_listed_position_is_its_orm_show(varied: str, closed: bool) -> None:
    listed = cli(varied, "positions", "list", "--json", *(["--all"] if closed else []))
    assert [r["id"] for r in listed] == ([1, 2, 3, 4, 5, 6, 7, 8, 9] if closed else [1, 2, 3, 4, 5, 8, 9])
    for row in listed:
        assert row == shown(varied, row["id"]), row["id"]
    by_id = {r["id"]: r for r in listed}
    # What the database holds shows in the rows: the comparison covers each kind of position.
    assert by_id[1]["entry"]["price"] == 67000 and [e["kind"] for e in by_id[1]["events"]] == ["size_reduced"]
    assert by_id[2]["mode"] == "cross" and by_id[2]["liquidation_price"] is not None and by_id[2]["violation"] is None
    assert by_id[4]["not_computed"].startswith("account-level")
    assert by_id[5]["size_unit"] == "contracts" and by_id[5]["adr_source"] == "override"
    assert by_id[8]["entry"] is None and by_id[8]["not_computed"].startswith("no tier table for GONE/USDT:USDT")
    assert by_id[9]["entry"] is None and by_id[9]["liquidation_price"] is not None
    if closed:
        assert by_id[6]["exit"]["pnl"] is not None and by_id[6]["not_computed"] == "not assessed"
        assert by_id[7]["exit"]["price"] is None and by_id[7]["closed_at"] is not None


@pytest.mark.parametrize(
    "args",
    [
        ["positions", "list"],
        ["positions", "list", "--json"],
        ["positions", "list", "--all", "--json"],
        ["positions", "list", "--all", "--limit", "0"],
        ["positions", "list", "--limit", "2"],
    ],
)
def test_the_fast_path_writes_the_typer_paths_bytes(
    varied: str, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["--db", varied, *args]
    assert fast.parse(argv) is not None
    outcome = same(argv, monkeypatch)
    assert outcome.code == 0 and outcome.stdout and not outcome.stderr, outcome
    if "--limit" in args and "2" in args:
        assert "… 5 more (" in outcome.stdout
