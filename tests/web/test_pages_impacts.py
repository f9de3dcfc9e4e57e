"""The position page across tier changes, and secrets on the pages, on a database built here.

Three versions of a BTCUSDT table are imported through the real importer with the impact hook, around a
logged position, so that the position has impact records whose figures the page must show and chart.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import Session, col, select

from alerts.config import Filters, WebhookConfig
from alerts.events import sample_alert
from alerts.outbox import Route, enqueue
from monitor.risk.impacts import ImpactContext, make_hook
from monitor.risk.positions import PositionInput, validate
from monitor.service.importer import import_files, plan
from monitor.store.database import open_engine
from monitor.store.models import Impact, MarketData
from monitor.web.app import create_app
from snapshots.numbers import num
from snapshots.reader import as_utc
from snapshots.timefmt import iso, utcnow
from tests.conftest import BTC_ROWS, ccxt_tiers, write_archive
from tests.web.conftest import BASE_URL, web_settings
from tests.web.html_tables import body_rows, chart_data

SECRET = "whsec_c2VjcmV0LW5ldmVyLW9uLWEtcGFnZQ=="
HOOK_URL = "https://hooks.example.com/T0KEN-in-the-path"


def _rows(bumped_tier: int, factor: float) -> list[tuple[float, float, float]]:
    return [(f, r * factor if i + 1 >= bumped_tier else r, lev) for i, (f, r, lev) in enumerate(BTC_ROWS)]


@pytest.fixture
def impacts_db(db_url: str, tmp_path: Path) -> str:
    files = [
        write_archive(tmp_path / "2026-01-01.json", {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS)}),
        write_archive(tmp_path / "2026-02-01.json", {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", _rows(2, 1.6))}),
        write_archive(tmp_path / "2026-03-01.json", {"BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", _rows(1, 1.5))}),
    ]
    items = plan(files)
    engine = open_engine(db_url)
    import_files(engine, "binance-usdm", items[:1])
    now = utcnow()
    with Session(engine) as session:
        item = PositionInput(
            "binance-usdm", "BTCUSDT", "long", 60_000, qty=10, margin=40_000, opened_at=items[0].at + timedelta(days=1)
        )
        session.add(validate(session.connection(), item, now=now))
        market = MarketData(source="binance-usdm", symbol="BTC/USDT:USDT", mark_price=60_000.0, mark_at=now)
        market.adr, market.adr_days, market.adr_at = 1_600.0, 14, now
        session.add(market)
        session.commit()
    import_files(engine, "binance-usdm", items[1:], hooks=[make_hook(ImpactContext(2.0))])
    with Session(engine) as session:
        routes = [Route("ops-webhook", Filters())]
        enqueue(session, [sample_alert(now)], routes, now)
        session.commit()
        # A channel error that quoted the secrets (the channels scrub their own; the page must never rely on it).
        session.execute(
            text("UPDATE delivery SET status='failed', attempts=3, last_error=:e"),
            {"e": f"HTTP 401 from {HOOK_URL}: bad signature {SECRET}"},
        )
        session.commit()
    engine.dispose()
    return db_url


@pytest.fixture
def impacts_client(impacts_db: str) -> Iterator[TestClient]:
    channel = WebhookConfig(name="ops-webhook", url=SecretStr(HOOK_URL), secret=SecretStr(SECRET))
    app = create_app(web_settings(impacts_db, channels=[channel]))
    with TestClient(app, base_url=BASE_URL) as client:
        yield client
    app.state.engine.dispose()


def test_position_page_shows_every_impact_and_charts_them(impacts_client: TestClient, impacts_db: str) -> None:
    engine = open_engine(impacts_db)
    with Session(engine) as session:
        impacts = list(session.exec(select(Impact).order_by(col(Impact.detected_at))))
    engine.dispose()
    assert len(impacts) == 2
    page = impacts_client.get("/positions/1").text
    rows = body_rows(page, "impacts-table")
    assert len(rows) == 2  # newest first
    for row, impact in zip(rows, impacts[::-1], strict=True):
        assert row.cells[3].text == f"{num(impact.old_liquidation_price)} → {num(impact.new_liquidation_price)}"
        assert row.cells[5].text == f"{num(impact.old_buffer_adr, 3)} → {num(impact.new_buffer_adr, 3)}"
    figure = chart_data(page, "history-chart")
    lp, buffer = figure["data"]
    assert lp["line"]["shape"] == buffer["line"]["shape"] == "hv"
    assert lp["y"][:3] == [impacts[0].old_liquidation_price, impacts[0].new_liquidation_price,
                           impacts[1].new_liquidation_price]  # fmt: skip
    assert buffer["y"][:3] == [impacts[0].old_buffer_adr, impacts[0].new_buffer_adr, impacts[1].new_buffer_adr]
    assert lp["x"][1:3] == [iso(as_utc(i.detected_at)) for i in impacts]
    assert len(lp["x"]) == 4 and lp["text"][-1] == "now"  # the position is open: its figures now close the line


def test_position_without_impacts_has_no_chart(impacts_client: TestClient, impacts_db: str) -> None:
    engine = open_engine(impacts_db)
    with Session(engine) as session:
        item = PositionInput("binance-usdm", "BTCUSDT", "short", 60_000, qty=1, margin=6_000)
        session.add(validate(session.connection(), item, now=utcnow()))
        session.commit()
    engine.dispose()
    page = impacts_client.get("/positions/2").text
    assert "no tier change has touched this position yet" in page
    assert 'data-chart="history-chart"' not in page and "plotly.min.js" not in page


def test_secrets_never_reach_a_page(impacts_client: TestClient) -> None:
    for path in ("/", "/alerts", "/alerts?status=failed", "/positions/1", "/changes"):
        page = impacts_client.get(path).text
        assert SECRET not in page and "T0KEN-in-the-path" not in page, path
    assert "bad signature ***" in impacts_client.get("/alerts").text


def test_a_database_failing_under_a_page_is_a_503_page(tmp_path: Path) -> None:
    db = tmp_path / "gone.db"
    open_engine(f"sqlite:///{db}").dispose()
    app = create_app(web_settings(f"sqlite:///{db}"))
    db.write_bytes(b"this is no longer a database" * 200)  # the same file, overwritten while the app runs
    with TestClient(app, base_url=BASE_URL) as client:
        r = client.get("/changes")
    app.state.engine.dispose()
    assert r.status_code == 503
    assert f"database {db} is corrupt" in r.text and "Traceback" not in r.text


def test_a_closed_position_keeps_its_history_and_shows_no_current_figures(
    impacts_client: TestClient, impacts_db: str
) -> None:
    from monitor.risk.positions import close

    engine = open_engine(impacts_db)
    with Session(engine) as session:
        close(session, 1, utcnow())
        session.commit()
    engine.dispose()
    page = impacts_client.get("/positions/1").text
    assert "Closed at" in page and "not assessed" in page
    assert len(body_rows(page, "impacts-table")) == 2
    overview = impacts_client.get("/").text
    assert body_rows(overview, "positions-table")[0].texts[0].startswith("no open positions")


def test_overview_shows_a_quarantined_source_and_why(impacts_client: TestClient, impacts_db: str) -> None:
    from monitor.store.models import SourceHealth

    engine = open_engine(impacts_db)
    with Session(engine) as session:
        since = utcnow() - timedelta(minutes=20)
        reason = f"612 of 700 symbols vanished <b>at once</b>; token {SECRET}"
        session.add(SourceHealth(source="binance-usdm", state="quarantined", since=since, reason=reason))
        session.commit()
    engine.dispose()
    page = impacts_client.get("/").text
    row = next(r for r in body_rows(page, "sources-table") if r.cells[0].text == "binance-usdm")
    assert row.cells[1].text.startswith(f"quarantined since {since:%Y-%m-%d %H:%M:%S}")
    assert "612 of 700 symbols vanished <b>at once</b>; token ***" in row.cells[1].text  # text, redacted
    assert "violation" in row.classes and SECRET not in page


def test_an_empty_database_gives_empty_pages_that_say_what_to_do(db_url: str) -> None:
    open_engine(db_url).dispose()
    app = create_app(web_settings(db_url))
    with TestClient(app, base_url=BASE_URL) as client:
        pages = {path: client.get(path) for path in ("/", "/changes", "/alerts", "/symbols/binance-usdm/BTCUSDT")}
    app.state.engine.dispose()
    assert [r.status_code for r in pages.values()] == [200, 200, 200, 404]
    assert "no polls yet" in pages["/"].text and "no open positions" in pages["/"].text
    assert "no changes" in pages["/changes"].text and "nothing in the outbox" in pages["/alerts"].text
    assert "no history for binance-usdm yet" in pages["/symbols/binance-usdm/BTCUSDT"].text
