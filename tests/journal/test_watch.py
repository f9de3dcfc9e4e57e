"""The watchlist: its commands, what counts as traded, the `symbols = "traded"` channel filter on a real
outbox, the digest's marks, and the what-if alert of a watched size when its table changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from alerts.config import Filters
from alerts.db import AlertRecord, Delivery
from alerts.model import Alert, Severity
from monitor.cli import app
from monitor.config.settings import load_settings
from monitor.journal.watch import traded
from monitor.service.importer import import_files, plan
from monitor.service.wiring import poll_hooks
from monitor.store.database import open_engine
from monitor.store.models import MarketData, Position, Watch
from snapshots.errors import TierdriftError
from tests.conftest import ccxt_tiers, write_archive

# The 2020–21 BTCUSDT table's first tiers (domain doc §3) and two others, as (floor, rate, max leverage).
BTC = [(0, 0.004, 125), (50_000, 0.005, 100), (250_000, 0.01, 50), (1_000_000, 0.025, 20)]
BTC_TIGHTER = [(0, 0.004, 125), (50_000, 0.0075, 75), (250_000, 0.01, 50), (1_000_000, 0.025, 20)]
ETH = [(0, 0.005, 100), (10_000, 0.0065, 75), (100_000, 0.01, 50)]
SOL = [(0, 0.01, 50), (5_000, 0.02, 25), (50_000, 0.05, 10)]
SOL_LOOSER = [(0, 0.01, 50), (10_000, 0.02, 25), (50_000, 0.05, 10)]

runner = CliRunner()


def cli(db_url: str, *args: str) -> Any:
    result = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def fails(db_url: str, *args: str) -> str:
    result = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=True)
    assert isinstance(result.exception, TierdriftError), result.output
    return str(result.exception)


def archive(tmp_path: Path, day: str, tables: dict[str, list[tuple[float, float, float]]]) -> Path:
    payload = {sym: ccxt_tiers(sym, rows, top=500e6) for sym, rows in tables.items()}
    return write_archive(tmp_path / f"{day}_usdm.json", payload)


BASE = {"BTC/USDT:USDT": BTC, "ETH/USDT:USDT": ETH, "SOL/USDT:USDT": SOL}


@pytest.fixture
def db(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", plan([archive(tmp_path, "2021-05-01", BASE)]))
    engine.dispose()
    return db_url


def test_watch_add_list_update_remove(db: str) -> None:
    out = cli(db, "watch", "add", "BTCUSDT", "--source", "binance-usdm", "--size", "100000", "--note", "breakout")
    assert "watching BTC/USDT:USDT on binance-usdm with size 100,000.00" in out
    (w,) = cli(db, "watch", "list", "--json")
    assert (w["source"], w["symbol"], w["size_notional"], w["note"]) == (
        "binance-usdm", "BTC/USDT:USDT", 100_000, "breakout"
    )  # fmt: skip
    assert w["added_at"].endswith("Z")
    assert "updated watch on BTC/USDT:USDT" in cli(db, "watch", "add", "BTC/USDT:USDT", "-s", "binance-usdm")
    (w,) = cli(db, "watch", "list", "--json")
    assert w["size_notional"] is None and w["note"] is None
    assert "BTC/USDT:USDT" in cli(db, "watch", "list")
    assert "no longer watching BTC/USDT:USDT" in cli(db, "watch", "remove", "BTCUSDT", "-s", "binance-usdm")
    assert cli(db, "watch", "list", "--json") == []
    assert "no watches" in cli(db, "watch", "list")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "NOPEUSDT", "-s", "binance-usdm"], "unknown symbol 'NOPEUSDT' for binance-usdm"),
        (["add", "BTCUSDT", "-s", "kraken"], "unknown source 'kraken'"),
        (["add", "BTCUSDT", "-s", "binance-usdm", "--size", "-5"], "--size must be a notional above 0, not -5"),
        (["remove", "ETHUSDT", "-s", "binance-usdm"], "ETH/USDT:USDT on binance-usdm is not watched"),
    ],
)
def test_bad_watches_are_one_line(db: str, args: list[str], message: str) -> None:
    msg = fails(db, "watch", *args)
    assert message in msg and "\n" not in msg
    assert cli(db, "watch", "list", "--json") == []


def _position(session: Session, symbol: str, opened: str, closed: str | None) -> None:
    session.add(
        Position(source="binance-usdm", symbol=symbol, side="long", entry_price=2000.0, size=1.0,
                 size_input="qty=1", margin=200.0, opened_at=datetime.fromisoformat(opened),
                 closed_at=datetime.fromisoformat(closed) if closed else None)
    )  # fmt: skip


def test_traded_means_open_recently_closed_or_watched(engine: Engine) -> None:
    now = datetime(2021, 6, 1, tzinfo=UTC)
    with Session(engine) as s:
        _position(s, "ETH/USDT:USDT", "2021-05-01T00:00+00:00", None)
        _position(s, "SOL/USDT:USDT", "2021-04-01T00:00+00:00", "2021-05-10T00:00+00:00")  # 22 days ago
        _position(s, "XRP/USDT:USDT", "2021-03-01T00:00+00:00", "2021-04-20T00:00+00:00")  # 42 days ago
        s.add(Watch(source="bybit-linear", symbol="BTC/USDT:USDT", added_at=now))
        s.commit()
        assert traded(s, now) == {
            ("binance-usdm", "ETH/USDT:USDT"),
            ("binance-usdm", "SOL/USDT:USDT"),
            ("bybit-linear", "BTC/USDT:USDT"),
        }


def _alert(symbol: str | None, data: dict[str, Any] | None = None) -> Alert:
    return Alert("a", "tier_changes", Severity.INFO, datetime(2021, 6, 1, tzinfo=UTC), "t", "binance-usdm", symbol,
                 data=data or {})  # fmt: skip


def test_traded_filter_takes_traded_symbols_and_digests_naming_them() -> None:
    f = Filters(symbols="traded")
    mine = {("binance-usdm", "BTC/USDT:USDT")}
    assert f.accepts(_alert("BTC/USDT:USDT"), mine)
    assert not f.accepts(_alert("BTC/USDT:USDT"))  # nothing is traded
    assert not f.accepts(_alert("ETH/USDT:USDT"), mine)
    assert f.accepts(_alert(None, {"symbols": ["ETH/USDT:USDT", "BTC/USDT:USDT"]}), mine)
    assert not f.accepts(_alert(None, {"symbols": ["ETH/USDT:USDT"]}), mine)
    assert Filters(symbols=["ETH/USDT:USDT"]).accepts(_alert("ETH/USDT:USDT"))  # the list form is unchanged


CONFIG = """
[[channels]]
type = "webhook"
name = "everything"
url = "https://hooks.example.com/all"

[[channels]]
type = "webhook"
name = "mine"
url = "https://hooks.example.com/mine"
filters = { symbols = "traded" }
"""


def test_a_config_with_a_bad_symbols_string_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    assert load_settings(cfg).all_channels()[1].filters.symbols == "traded"
    cfg.write_text(CONFIG.replace('symbols = "traded"', 'symbols = "BTC"'))
    with pytest.raises(TierdriftError) as info:
        load_settings(cfg)
    assert "filters of [[channels]] #2: a list of symbols, or \"traded\" (not 'BTC')" in str(info.value)
    assert "\n" not in str(info.value)


def _deliveries(engine: Engine) -> dict[str, list[tuple[str, str | None, str]]]:
    out: dict[str, list[tuple[str, str | None, str]]] = {}
    with Session(engine) as s:
        for d, a in s.exec(select(Delivery, AlertRecord).where(Delivery.alert_id == AlertRecord.id)):
            out.setdefault(d.channel, []).append((a.kind, a.symbol, a.title))
    return out


def test_watched_size_alert_and_traded_channel_on_real_imports(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    settings = load_settings(cfg)
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", plan([archive(tmp_path, "2021-05-01", BASE)]))
    at = datetime(2021, 6, 2, tzinfo=UTC)
    with Session(engine) as s:
        s.add(Watch(source="binance-usdm", symbol="BTC/USDT:USDT", size_notional=100_000, added_at=at, note="<b>x"))
        s.add(Watch(source="binance-usdm", symbol="ETH/USDT:USDT", size_notional=50_000, added_at=at))
        s.add(MarketData(source="binance-usdm", symbol="BTC/USDT:USDT", mark_price=50_000.0, mark_at=at))
        s.commit()
    hooks = poll_hooks(settings, lambda: at)
    # 2021-06-01: only SOL (neither traded nor watched) changes.
    loose = archive(tmp_path, "2021-06-01", {**BASE, "SOL/USDT:USDT": SOL_LOOSER})
    import_files(engine, "binance-usdm", plan([loose]), hooks=hooks)
    first = _deliveries(engine)
    assert [k for k, _, _ in first["everything"]] == ["tier_changes"]
    assert "mine" not in first
    # 2021-06-02: BTC's tier 2 tightens: the watch's size (tier 2) gets its what-if alert, the digest is marked.
    tight = archive(tmp_path, "2021-06-02", {**BASE, "BTC/USDT:USDT": BTC_TIGHTER, "SOL/USDT:USDT": SOL_LOOSER})
    import_files(engine, "binance-usdm", plan([tight]), hooks=hooks)
    now = _deliveries(engine)
    assert sorted(k for k, _, _ in now["mine"]) == ["tier_changes", "watch_impact"]
    with Session(engine) as s:
        rec = s.exec(select(AlertRecord).where(AlertRecord.kind == "watch_impact")).one()
        digest = s.exec(select(AlertRecord).where(AlertRecord.kind == "tier_changes")).all()[-1]
    body = json.loads(rec.body)
    impact = body["data"]["watch_impact"]
    # Entered at the mark 50,000 with tier 2's 100× of 100,000: margin 1,000, Q = 2; A = 50 → 175 (recurrence).
    assert impact["margin"] == pytest.approx(1_000)
    assert impact["long_old_liquidation_price"] == pytest.approx((100_000 - 1_000 - 50) / (2 * (1 - 0.005)))
    assert impact["long_new_liquidation_price"] == pytest.approx((100_000 - 1_000 - 175) / (2 * (1 - 0.0075)))
    assert impact["short_new_liquidation_price"] == pytest.approx((100_000 + 1_000 + 175) / (2 * (1 + 0.0075)))
    assert (impact["old_rate"], impact["new_rate"], impact["old_max_leverage"], impact["new_max_leverage"]) == (
        0.005, 0.0075, 100, 75
    )  # fmt: skip
    assert rec.severity == int(Severity.WARNING)
    assert "liquidation price long 49,723.62 → 49,785.89" in rec.title
    assert ["maintenance rate", "0.5%", "0.75%"] in body["rows"]
    assert "note: <b>x" in body["lines"]  # kept as data here; every renderer escapes it
    marked = json.loads(digest.body)
    assert marked["data"]["marked"] == ["BTC/USDT:USDT"]
    assert "★ traded or watched: BTC/USDT:USDT" in marked["lines"]
    assert marked["rows"][0][0].startswith("★ BTC/USDT:USDT tier 2")
    assert not any(r[0].startswith("★ SOL") for r in marked["rows"])
    engine.dispose()


def test_watched_size_without_a_mark_says_why(tmp_path: Path, db_url: str) -> None:
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", plan([archive(tmp_path, "2021-05-01", BASE)]))
    at = datetime(2021, 6, 2, tzinfo=UTC)
    with Session(engine) as s:
        s.add(Watch(source="binance-usdm", symbol="BTC/USDT:USDT", size_notional=100_000, added_at=at))
        s.commit()
    (tmp_path / "empty.toml").write_text("")
    settings = load_settings(tmp_path / "empty.toml")
    tight = archive(tmp_path, "2021-06-02", {**BASE, "BTC/USDT:USDT": BTC_TIGHTER})
    import_files(engine, "binance-usdm", plan([tight]), hooks=poll_hooks(settings, lambda: at))
    with Session(engine) as s:
        rec = s.exec(select(AlertRecord).where(AlertRecord.kind == "watch_impact")).one()
    impact = json.loads(rec.body)["data"]["watch_impact"]
    assert impact["long_new_liquidation_price"] is None and impact["margin"] is None
    assert impact["reasons"]["long"] == "no entry price: no market data fetched yet"
    assert (impact["old_rate"], impact["new_rate"]) == (0.005, 0.0075)  # needs no price
    engine.dispose()


def test_traded_recent_days_is_a_setting(tmp_path: Path, db_url: str) -> None:
    """A digest marks a symbol closed 10 days before the poll with the default 30 days, not with 7."""
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", plan([archive(tmp_path, "2021-05-01", BASE)]))
    with Session(engine) as s:
        _position(s, "BTC/USDT:USDT", "2021-05-01T00:00+00:00", "2021-05-23T00:00+00:00")
        s.commit()
    at = datetime(2021, 6, 2, tzinfo=UTC)
    marks = []
    for day, days in (("2021-06-02", 30), ("2021-06-03", 7)):
        cfg = tmp_path / f"c{days}.toml"
        cfg.write_text(f"traded_recent_days = {days}\n")
        rows = BTC_TIGHTER if days == 30 else BTC
        import_files(engine, "binance-usdm", plan([archive(tmp_path, day, {**BASE, "BTC/USDT:USDT": rows})]),
                     hooks=poll_hooks(load_settings(cfg), lambda: at))  # fmt: skip
        with Session(engine) as s:
            digest = s.exec(select(AlertRecord).where(AlertRecord.kind == "tier_changes")).all()[-1]
        marks.append(json.loads(digest.body)["data"].get("marked"))
    assert marks == [["BTC/USDT:USDT"], None]
    engine.dispose()
