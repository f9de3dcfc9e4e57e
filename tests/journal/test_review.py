"""`tierdrift review`: the seed example's numbers in the trade and scaling lines, every tier change of the
traded symbols over real Binance history (against a count made from the raw files with plain json), and
every format parsed or rendered with outside text escaped."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config.settings import load_settings
from monitor.journal import log as journal
from monitor.journal.figures import record_at
from monitor.journal.review import direction
from monitor.risk.impacts import ImpactContext, make_hook
from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from monitor.store.models import MarkCandle, Position, Watch
from snapshots.errors import TierdriftError
from snapshots.model import Change
from tests.conftest import BINANCE_HISTORY, ccxt_tiers, write_archive

# The 2020–21 BTCUSDT table of domain doc §3, as (floor, rate, max leverage).
BTC_ERA = [
    (0, 0.004, 125), (50_000, 0.005, 100), (250_000, 0.01, 50), (1_000_000, 0.025, 20), (5_000_000, 0.05, 10),
    (20_000_000, 0.10, 5), (50_000_000, 0.125, 4), (100_000_000, 0.15, 3), (200_000_000, 0.25, 2),
    (300_000_000, 0.5, 1),
]  # fmt: skip
HOSTILE = '<script>alert(1)</script> =HYPERLINK("x") *bold* | # [a](b)\x1b[31m'

runner = CliRunner()


def cli(db_url: str, *args: str) -> str:
    result = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(db_url: str, *args: str) -> str:
    result = runner.invoke(app, ["--db", db_url, *args], catch_exceptions=True)
    assert isinstance(result.exception, TierdriftError), result.output
    return str(result.exception)


def log_trade(
    db_url: str, tmp_path: Path, symbol: str, notional: float, entry: float, margin: float, opened: str,
    closed: str | None = None, note: str | None = None, exit_price: float | None = None,
) -> None:  # fmt: skip
    """A position with its entry record computed by the journal from the table in force at `opened`."""
    (tmp_path / "empty.toml").write_text("")
    settings = load_settings(tmp_path / "empty.toml")
    engine = open_engine(db_url)
    with Session(engine) as s:
        p = Position(source="binance-usdm", symbol=symbol, side="long", entry_price=entry, size=notional / entry,
                     size_input=f"notional={notional:g}", margin=margin, note=note,
                     opened_at=datetime.fromisoformat(opened).replace(tzinfo=UTC))  # fmt: skip
        s.add(p)
        s.flush()
        s.add(record_at(s, p, p.opened_at, settings, now=datetime.now(UTC)))
        s.flush()
        if closed:
            assert p.id is not None
            at = datetime.fromisoformat(closed).replace(tzinfo=UTC)
            journal.close(s, p.id, price=exit_price, at=at, settings=settings, now=datetime.now(UTC))
        s.commit()
    engine.dispose()


@pytest.fixture
def seed(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    engine = open_engine(db_url)
    payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ERA, top=500e6)}
    import_files(engine, "binance-usdm", plan([write_archive(tmp_path / "2021-05-01_usdm.json", payload)]))
    engine.dispose()
    log_trade(db_url, tmp_path, "BTC/USDT:USDT", 40_000, 67_000, 6_700, "2021-05-10", "2021-05-20", note=HOSTILE,
              exit_price=60_300)  # fmt: skip
    log_trade(db_url, tmp_path, "BTC/USDT:USDT", 500_000, 67_000, 6_700, "2021-05-12")
    return db_url


PERIOD = ("--from", "2021-05-01", "--to", "2021-06-30")


def test_the_seed_example_in_the_trade_and_scaling_lines(seed: str) -> None:
    text = cli(seed, "review", *PERIOD)
    lines = text.splitlines()
    trade1 = lines.index(next(line for line in lines if "trade #1 long notional=40000" in line))
    assert "entry: LP 56,001.51 (tier 1, 0.4%)" in lines[trade1 + 1]
    assert "exit at 60,300.00, PnL -4,000.00: LP 56,001.51" in lines[trade1 + 2]  # 0.597015 BTC × −6,700
    trade2 = lines.index(next(line for line in lines if "trade #2 long notional=500000" in line))
    assert "entry: LP 66,593.94 (tier 3, 1%)" in lines[trade2 + 1]
    usual = next(line for line in lines if "scaling, usual size" in line)
    assert "40,000.00 notional at 67,000.00 with margin 6,700.00: tier 1" in usual
    assert "at 80% of tier 2's floor 50,000.00 (headroom 10,000.00); LP 56,001.51, one tier up LP 58,255.02" in usual
    largest = next(line for line in lines if "scaling, largest size" in line)
    assert "500,000.00 notional" in largest and "LP 66,593.94" in largest
    assert "tier changes: none in the period" in text
    assert "\x1b" not in text and "\\x1b[31m" in text  # the hostile note, escaped for the terminal


def test_review_json_is_the_contract(seed: str) -> None:
    (item,) = json.loads(cli(seed, "review", *PERIOD, "--format", "json"))
    assert {"source", "symbol", "changes", "trades", "scaling"} <= set(item)
    assert (item["source"], item["symbol"]) == ("binance-usdm", "BTC/USDT:USDT")
    t1, t2 = item["trades"]
    assert round(t1["entry"]["liquidation_price"], 2) == 56001.51 and t1["entry"]["tier"] == 1
    assert round(t2["entry"]["liquidation_price"], 2) == 66593.94 and t2["entry"]["tier"] == 3
    assert t1["closed_at"] == "2021-05-20T00:00:00Z" and t2["closed_at"] is None
    assert t1["exit"]["price"] == 60_300 and t1["exit"]["pnl"] == pytest.approx(-4_000)
    assert t2["exit"] is None and t1["violation_at_entry"] is None  # no ADR then: unknown, not guessed
    assert round(item["scaling"]["usual"]["liquidation_price"], 2) == 56001.51
    assert item["scaling"]["usual"]["headroom_notional"] == pytest.approx(10_000)
    # One tier up: scaled to tier 2's floor (50,000) at 67,000 with 6,700; at its LP the notional is back in tier 1.
    up = (50_000 - 6_700) / (50_000 / 67_000 * (1 - 0.004))
    assert item["scaling"]["usual"]["next_tier_liquidation_price"] == pytest.approx(up)
    assert round(item["scaling"]["largest"]["liquidation_price"], 2) == 66593.94
    assert item["changes"]["count"] == 0


@pytest.mark.parametrize(
    ("kind", "field", "old", "new", "way"),
    [
        ("tier_changed", "maintenance_margin_rate", 0.004, 0.005, 1),
        ("tier_changed", "maintenance_margin_rate", 0.005, 0.004, -1),
        ("tier_changed", "max_leverage", 125, 100, 1),
        ("tier_changed", "max_leverage", 100, 125, -1),
        ("tier_changed", "cap", 50_000, 25_000, 1),
        ("tier_changed", "cap", 25_000, 50_000, -1),
        ("tier_changed", "maintenance_amount", 50, 25, 0),  # follows the rates
        ("tier_changed", "floor", 50_000, 25_000, 0),  # follows the cap below it
        ("tier_removed", None, None, None, 1),
        ("tier_added", None, None, None, -1),
        ("symbol_listed", None, None, None, 0),
    ],
)
def test_direction_of_a_change(kind: str, field: str | None, old: float | None, new: float | None, way: int) -> None:
    assert direction(Change("binance-usdm", "BTC/USDT:USDT", kind, 2, field, old, new)) == way


def test_a_tier_change_during_a_trade_moves_its_lp_in_the_review(seed: str, tmp_path: Path) -> None:
    # Tier 1's rate 0.4% → 0.45%: tier 3's amount follows (1,300 → 1,275), so the open 500,000 trade moves.
    tighter = [(0, 0.0045, 100), *BTC_ERA[1:]]
    engine = open_engine(seed)
    payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", tighter, top=500e6)}
    new = write_archive(tmp_path / "2021-05-25_usdm.json", payload)
    import_files(engine, "binance-usdm", plan([new]), hooks=[make_hook(ImpactContext(2.0))])
    engine.dispose()
    (item,) = json.loads(cli(seed, "review", *PERIOD, "--format", "json"))
    t1, t2 = item["trades"]
    lp = (500_000 - 6_700 - 1_275) / (500_000 / 67_000 * (1 - 0.01))
    assert t1["during"]["impacts"] == 0  # closed on 2021-05-20, before the change
    assert t2["during"]["impacts"] == 1
    assert round(t2["during"]["liquidation_price_before"], 2) == 66593.94
    assert t2["during"]["liquidation_price_after"] == pytest.approx(lp)
    assert t2["during"]["liquidation_price_move"] == pytest.approx(lp - 66593.94, abs=0.01)
    ch = item["changes"]
    assert (ch["count"], ch["tightening"], ch["loosening"]) == (1, 1, 0)
    assert ch["events"][0]["at"] == "2021-05-25T00:00:00Z"
    jump = ch["largest_rate_jump"]  # at the traded sizes: 40,000 sits in tier 1
    assert (jump["notional"], jump["old"], jump["new"]) == (pytest.approx(40_000), 0.004, 0.0045)
    text = cli(seed, "review", *PERIOD)
    assert f"during: 1 impact(s), LP 66,593.94 → {lp:,.2f}" in text
    assert "during: no tier change touched it" in text
    assert "largest maintenance-rate change at a traded size: 0.4% → 0.45% at 40,000.00 notional" in text


def test_a_violation_at_entry_is_said(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With daily mark candles cached (range 6,000 a day, opening at 67,000), the 40,000 entry has a buffer
    of (67,000 − 56,001.51) / 6,000 = 1.83 ADR: below 2, a margin-risk violation at entry."""
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    engine = open_engine(db_url)
    payload = {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ERA, top=500e6)}
    import_files(engine, "binance-usdm", plan([write_archive(tmp_path / "2021-04-01_usdm.json", payload)]))
    with Session(engine) as s:
        for day in range(20):
            opened = datetime(2021, 4, 21, tzinfo=UTC) + timedelta(days=day)
            s.add(MarkCandle(source="binance-usdm", symbol="BTC/USDT:USDT", opened_at=opened, open=67_000,
                             high=70_000, low=64_000, close=67_000, fetched_at=opened))  # fmt: skip
        s.commit()
    engine.dispose()
    log_trade(db_url, tmp_path, "BTC/USDT:USDT", 40_000, 67_000, 6_700, "2021-05-05")
    (item,) = json.loads(cli(db_url, "review", *PERIOD, "--format", "json"))
    (t,) = item["trades"]
    assert t["entry"]["unknown"] == {}, t["entry"]["unknown"]
    assert t["entry"]["adr"] == pytest.approx(6_000) and t["entry"]["mark_price"] == 67_000
    assert t["entry"]["buffer_adr"] == pytest.approx((67_000 - 56_001.51) / 6_000, abs=1e-5)
    assert t["violation_at_entry"] is True
    text = cli(db_url, "review", *PERIOD)
    assert "entry: LP 56,001.51 (tier 1, 0.4%), mark 67,000.00, buffer 1.83 ADR, violation YES" in text
    assert "MARGIN-RISK VIOLATION AT ENTRY" in text
    assert '<li class="bad">MARGIN-RISK VIOLATION AT ENTRY</li>' in cli(db_url, "review", *PERIOD, "--format", "html")


def test_a_trade_outside_the_period_is_left_out(seed: str) -> None:
    assert (
        json.loads(cli(seed, "review", "--from", "2021-05-21", "--to", "2021-05-25", "--format", "json"))[0]["trades"][
            0
        ]["id"]
        == 2
    )
    assert json.loads(cli(seed, "review", "--from", "2021-04-01", "--to", "2021-05-05", "--format", "json")) == []
    assert "nothing traded or watched" in cli(seed, "review", "--from", "2021-04-01", "--to", "2021-05-05")


def test_csv_parses_with_formulas_defused(seed: str) -> None:
    rows = list(csv.DictReader(io.StringIO(cli(seed, "review", *PERIOD, "--format", "csv"))))
    assert [r["trade_id"] for r in rows] == ["1", "2"]
    assert round(float(rows[0]["entry_liquidation_price"]), 2) == 56001.51
    assert round(float(rows[1]["entry_liquidation_price"]), 2) == 66593.94
    assert rows[0]["note"].startswith("<script>")  # not a formula: kept
    assert rows[0]["usual_tier"] == "1" and rows[0]["violation_at_entry"] in ("", "false", "true")


def _watch_hostile(db_url: str) -> None:
    engine = open_engine(db_url)
    with Session(engine) as s:
        s.add(Watch(source="binance-usdm", symbol="BTC/USDT:USDT", added_at=datetime(2021, 5, 2, tzinfo=UTC),
                    note="</h2><img src=x onerror=alert(2)> _x_"))  # fmt: skip
        s.commit()
    engine.dispose()


def test_html_is_self_contained_and_escaped(seed: str, tmp_path: Path) -> None:
    _watch_hostile(seed)
    out = tmp_path / "review.html"
    assert "written to" in cli(seed, "review", *PERIOD, "--format", "html", "--output", str(out))
    page = out.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "watched (&lt;/h2&gt;&lt;img src=x onerror=alert(2)&gt; _x_)</h2>" in page
    assert "<svg" in page and "LP 56,001.51" in page and "LP 66,593.94" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert not list(tmp_path.glob(".*.tmp"))


def test_markdown_escapes_outside_text(seed: str) -> None:
    _watch_hostile(seed)
    md = cli(seed, "review", *PERIOD, "--format", "md")
    assert "watched (\\</h2\\>\\<img src=x onerror=alert\\(2\\)\\> \\_x\\_)" in md
    assert "## BTC/USDT:USDT on binance-usdm" in md
    note = next(line for line in md.splitlines() if "note:" in line)
    assert "\\*bold\\*" in note and "\\[a\\]\\(b\\)" in note and "\\<script\\>" in note and "\\|" in note


def test_period_options_are_checked(seed: str) -> None:
    assert "--since 'soon' is not a length like 90d" in fails(seed, "review", "--since", "soon")
    assert "either --since or --from/--to" in fails(seed, "review", "--since", "90d", "--from", "2021-01-01")
    assert "is after --to" in fails(seed, "review", "--from", "2021-06-01", "--to", "2021-05-01")
    result = runner.invoke(app, ["--db", seed, "review", "--format", "pdf"])
    assert result.exit_code == 2


# -- real history --------------------------------------------------------------------------------------

#: 2024-06-27 is the baseline; the period's versions follow it.
REAL_FILES = [
    "2024-06-27_5fa24163f", "2024-07-04_01506a2ad", "2024-07-11_d25c76698", "2024-07-20_8cd20f191",
    "2024-08-01_af554fc3f", "2024-08-08_9d0cd961b", "2024-08-15_77b32e94f", "2024-08-22_fd30edf2b",
    "2024-08-29_4c487d666", "2024-09-05_c6a66a8fa", "2024-09-12_d15921b3f", "2024-09-19_756169235",
    "2024-09-26_1d66ef2f2",
]  # fmt: skip
TRADED = ["SOL/USDT:USDT", "1000PEPE/USDT:USDT", "BTC/USDT:USDT"]
WATCHED = "XRP/USDT:USDT"


def _raw_tiers(tiers: list[dict[str, Any]]) -> list[tuple[float, ...]]:
    def f(t: dict[str, Any], key: str, info: str) -> float:
        return float(t["info"][info]) if info in t.get("info", {}) else float(t[key])

    return [
        (f(t, "minNotional", "notionalFloor"), f(t, "maxNotional", "notionalCap"),
         f(t, "maintenanceMarginRate", "maintMarginRatio"), f(t, "maxLeverage", "initialLeverage"),
         float(t["info"]["cum"]))
        for t in tiers
    ]  # fmt: skip


def independent_changes(symbol: str) -> tuple[list[str], int]:
    """From the raw files with plain json: the dates the symbol's tiers changed, and the changed fields
    (tier by tier, plus a tier added or removed for each difference in length)."""
    dates, fields = [], 0
    prev = None
    for name in REAL_FILES:
        with gzip.open(BINANCE_HISTORY / f"{name}.json.gz", "rt") as fh:
            tiers = _raw_tiers(json.load(fh)[symbol])
        if prev is not None and tiers != prev:
            dates.append(f"{name[:10]}T00:00:00Z")
            fields += sum(a != b for old, new in zip(prev, tiers, strict=False) for a, b in zip(old, new, strict=True))
            fields += abs(len(tiers) - len(prev))
        prev = tiers
    return dates, fields


def independent_rate_jump(symbol: str, size: float) -> tuple[str, float, float] | None:
    """From the raw files: the largest change of the maintenance rate at `size`, when and from what to what."""
    best: tuple[str, float, float] | None = None
    prev = None
    for name in REAL_FILES:
        with gzip.open(BINANCE_HISTORY / f"{name}.json.gz", "rt") as fh:
            tiers = _raw_tiers(json.load(fh)[symbol])
        rate = next(t[2] for t in tiers if t[0] <= size < t[1])
        if prev is not None and rate != prev and (best is None or abs(rate - prev) > abs(best[2] - best[1])):
            best = (f"{name[:10]}T00:00:00Z", prev, rate)
        prev = rate
    return best


@pytest.fixture
def real(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    if not BINANCE_HISTORY.is_dir():
        pytest.skip(f"the recorded Binance history is not at {BINANCE_HISTORY}")
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", plan([BINANCE_HISTORY / f"{n}.json.gz" for n in REAL_FILES]))
    with Session(engine) as s:
        s.add(Watch(source="binance-usdm", symbol=WATCHED, size_notional=250_000,
                    added_at=datetime(2024, 6, 30, tzinfo=UTC)))  # fmt: skip
        s.commit()
    engine.dispose()
    for symbol, entry in zip(TRADED, (140.0, 0.012, 60_000.0), strict=True):
        log_trade(db_url, tmp_path, symbol, 20_000, entry, 2_000, "2024-07-02", "2024-09-20")
    return db_url


def test_review_names_every_tier_change_of_the_traded_symbols(real: str) -> None:
    items = json.loads(cli(real, "review", "--from", "2024-07-01", "--to", "2024-09-30", "--format", "json"))
    assert sorted(i["symbol"] for i in items) == sorted([*TRADED, WATCHED])  # nothing else
    total = 0
    for item in items:
        dates, fields = independent_changes(item["symbol"])
        ch = item["changes"]
        assert [e["at"] for e in ch["events"]] == dates, item["symbol"]
        assert ch["count"] == len(dates)
        assert sum(len(e["records"]) for e in ch["events"]) == ch["records"] == fields, item["symbol"]
        jump = ch["largest_rate_jump"]
        expected = independent_rate_jump(item["symbol"], 20_000) if item["symbol"] in TRADED else None
        if expected is None:
            assert jump is None or item["symbol"] == WATCHED
        else:
            assert (jump["at"], jump["old"], jump["new"]) == expected
        assert ch["tightening"] + ch["loosening"] + ch["mixed"] + ch["neutral"] == ch["count"]
        total += ch["count"]
        if fields:
            assert ch["records"] > 0
    assert total == 5  # SOL 2, 1000PEPE 2, XRP 1, BTC 0 (counted from the raw files above)
    text = cli(real, "review", "--from", "2024-07-01", "--to", "2024-09-30")
    assert text.count("trade #") == 3
    assert "XRP/USDT:USDT on binance-usdm: 0 trade(s), watched size 250,000.00" in text
