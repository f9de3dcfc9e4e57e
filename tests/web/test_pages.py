"""The dashboard's pages through the framework's test client, on a database with real history.

What a page shows is checked against the read functions behind it (`table_at`, `versions`,
`list_changes`, `diff_tables`) and the CLI's own `liq --json`, never against numbers written here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from monitor.web.charts import data_block
from monitor.web.pages import symbol_url
from snapshots.diff import diff_tables
from snapshots.history import list_changes, source_status, table_at, versions
from snapshots.numbers import leverage, num, pct
from snapshots.tables import load_tables
from snapshots.timefmt import iso, utcnow
from tests.web.conftest import HOSTILE_NOTE, HOSTILE_SYMBOL
from tests.web.html_tables import body_rows, chart_data

SOURCE = "binance-usdm"
BTC = "BTC/USDT:USDT"


def _tier_texts(tier: Any) -> list[str]:
    return [
        str(tier.tier), num(tier.floor), num(tier.cap), pct(tier.maintenance_margin_rate),
        num(tier.maintenance_amount), leverage(tier.max_leverage),
    ]  # fmt: skip


def _changed_symbol(url: str) -> tuple[str, int, int]:
    """A symbol with at least two versions whose last transition changed tier fields: (symbol, old id, new id)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT symbol FROM change_record WHERE kind = 'tier_changed' AND symbol LIKE '%/USDT:USDT'"
                " GROUP BY symbol ORDER BY COUNT(DISTINCT tier) DESC, symbol LIMIT 1"
            )
        ).first()
        assert row is not None, "the fixture's history has no tier change"
        vs = versions(conn, SOURCE, row[0])
    engine.dispose()
    return str(row[0]), vs[-2].id, vs[-1].id


def _notice(html: str) -> str:
    found = re.search(r'<p class="notice bad" role="alert"[^>]*>(.*?)</p>', html, re.S)
    assert found, "no error line on the page"
    return unescape(found.group(1))


# -- every page -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/changes",
        "/changes?source=binance-usdm&kind=tier_changed&field=cap",
        "/alerts",
        "/alerts?status=failed",
        f"/symbols/binance-usdm/{quote(BTC, safe='')}",
        "/symbols/binance-usdm/BTCUSDT",
        f"/symbols/binance-usdm/{BTC}",
        "/positions/1",
        "/positions/2",
    ],
)
def test_every_page_renders_as_html(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    assert "<nav" in r.text and "</html>" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text.replace("<script src=", "")  # our own scripts are files, never inline


def test_symbol_page_forms_of_a_symbol_are_one_page(client: TestClient) -> None:
    pages = [client.get(p).text for p in (symbol_url(SOURCE, BTC), "/symbols/binance-usdm/BTCUSDT")]
    assert body_rows(pages[0], "tiers")[0].texts == body_rows(pages[1], "tiers")[0].texts
    assert "<h1>BTC/USDT:USDT" in pages[1]


def test_symbol_table_is_the_table_in_force(client: TestClient, web_db_url: str) -> None:
    symbol, old_id, _ = _changed_symbol(web_db_url)
    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        (first, last) = versions(conn, SOURCE, symbol)[-2:]
        now_table, _ = table_at(conn, SOURCE, symbol, utcnow())
        then = first.valid_from + (last.valid_from - first.valid_from) / 2
        then_table, then_info = table_at(conn, SOURCE, symbol, then)
    engine.dispose()
    rows = body_rows(client.get(symbol_url(SOURCE, symbol)).text, "tiers")
    assert [r.texts for r in rows] == [_tier_texts(t) for t in now_table.tiers]
    page = client.get(symbol_url(SOURCE, symbol, at=iso(then))).text
    assert [r.texts for r in body_rows(page, "tiers")] == [_tier_texts(t) for t in then_table.tiers]
    assert f"Version {then_info.id}," in page
    assert then_info.id == old_id


def test_symbol_before_its_history_says_so(client: TestClient) -> None:
    r = client.get(symbol_url(SOURCE, BTC, at="2001-01-01"))
    assert r.status_code == 200
    assert "before its history begins" in r.text and 'id="tiers"' not in r.text


def test_diff_marks_exactly_the_changed_cells(client: TestClient, web_db_url: str) -> None:
    symbol, old_id, new_id = _changed_symbol(web_db_url)
    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        loaded = load_tables(conn, [old_id, new_id])
        new_from = next(v.valid_from for v in versions(conn, SOURCE, symbol) if v.id == new_id)
        stored = list_changes(conn, source=SOURCE, symbol=symbol, since=new_from, until=new_from)
    engine.dispose()
    records = diff_tables(loaded[old_id], loaded[new_id])
    page = client.get(symbol_url(SOURCE, symbol, a=old_id, b=new_id)).text
    marked: set[tuple[int, str]] = set()
    states: dict[str, set[int]] = {"added": set(), "removed": set()}
    for side in ("diff-old", "diff-new"):
        for row in body_rows(page, side):
            tier = int(row.cells[0].text) if row.cells[0].text.isdigit() else None
            for state in states:
                if state in row.classes and tier is not None:
                    states[state].add(tier)
            marked |= {(int(row.cells[0].text), c.attrs["data-field"]) for c in row.cells if "changed" in c.classes}
    expected = {(c.tier, c.field) for c in records if c.kind == "tier_changed"}
    assert expected, "the pair picked has no changed field"
    assert marked == expected
    assert states["added"] == {c.tier for c in records if c.kind == "tier_added"}
    assert states["removed"] == {c.tier for c in records if c.kind == "tier_removed"}
    # What the page marks is what the changes feed stored for that poll.
    assert {(c.change.tier, c.change.field) for c in stored if c.change.kind == "tier_changed"} == expected


def test_default_diff_is_the_last_change_and_the_chart_overlays_both(client: TestClient, web_db_url: str) -> None:
    symbol, old_id, new_id = _changed_symbol(web_db_url)
    page = client.get(symbol_url(SOURCE, symbol)).text
    assert f"Version {old_id} → version {new_id}" in page
    figure = chart_data(page, "tier-chart")
    names = [t["name"] for t in figure["data"]]
    assert names[:4] == [f"maint. rate, v{old_id}", f"max leverage, v{old_id}", f"maint. rate, v{new_id}",
                         f"max leverage, v{new_id}"]  # fmt: skip
    assert all(t["line"]["shape"] == "hv" for t in figure["data"][:4])
    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        new = load_tables(conn, [new_id])[new_id]
    engine.dispose()
    rate = figure["data"][2]
    assert rate["y"] == [t.maintenance_margin_rate * 100 for t in new.tiers] + [
        new.tiers[-1].maintenance_margin_rate * 100
    ]
    assert rate["x"][1:] == [t.floor for t in new.tiers[1:]] + [new.tiers[-1].cap]


def test_chart_marks_the_positions_on_the_symbol(client: TestClient) -> None:
    page = client.get(symbol_url(SOURCE, BTC)).text
    marks = next(t for t in chart_data(page, "tier-chart")["data"] if t["name"] == "positions")
    ids = sorted(int(r.cells[0].text[1:]) for r in body_rows(page, "positions-table"))
    assert sorted(int(t.split()[0][1:]) for t in marks["text"]) == ids and 1 in ids
    assert all(x > 0 for x in marks["x"])


# -- changes ----------------------------------------------------------------------------------------


def _feed(client: TestClient, url: str) -> tuple[list[list[str]], list[str]]:
    """Every row of the feed from `url` on, following its "older" links, and the URLs visited."""
    rows, seen = [], []
    next_url: str | None = url
    while next_url:
        seen.append(next_url)
        page = client.get(next_url)
        assert page.status_code == 200, page.text[:300]
        rows += [r.texts for r in body_rows(page.text, "change-feed") if len(r.cells) == 8]
        found = re.search(r'<a href="([^"]+)" id="next-page"', page.text)
        next_url = found.group(1).replace("&amp;", "&") if found else None
        assert len(seen) < 200
    return rows, seen


def _expected(changes: list[Any]) -> list[list[str]]:
    out = []
    for c in changes:
        ch = c.change
        fmt = pct if ch.field == "maintenance_margin_rate" else leverage if ch.field == "max_leverage" else num
        out.append(
            [
                c.detected_at.strftime("%Y-%m-%d %H:%M:%S"), ch.source, ch.symbol, ch.kind.replace("_", " "),
                "" if ch.tier is None else str(ch.tier), (ch.field or "").replace("_", " "),
                "" if ch.old is None else fmt(ch.old), "" if ch.new is None else fmt(ch.new),
            ]
        )  # fmt: skip
    return out


def test_changes_feed_pages_through_every_change_newest_first(client: TestClient, web_db_url: str) -> None:
    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        everything = list_changes(conn, source=SOURCE, kind="tier_changed")
    engine.dispose()
    size = min(500, max(2, len(everything) // 3))  # three pages or more, whatever the history holds
    rows, seen = _feed(client, f"/changes?source=binance-usdm&kind=tier_changed&limit={size}")
    assert rows == _expected(everything[::-1])
    assert len(everything) >= 6 and len(seen) == -(-len(everything) // size)


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        ("symbol=BTCUSDT", {"symbol": BTC}),
        ("field=maintenance_margin_rate&source=binance-usdm", {"field": "maintenance_margin_rate", "source": SOURCE}),
        ("kind=symbol_listed", {"kind": "symbol_listed"}),
        ("kind=symbol_delisted&since=2026-04-01", {"kind": "symbol_delisted", "since": "2026-04-01"}),
        ("until=2026-03-01T00:00:00", {"until": "2026-03-01T00:00:00"}),
    ],
)
def test_changes_feed_filters_as_list_changes(
    client: TestClient, web_db_url: str, query: str, filters: dict[str, str]
) -> None:
    from snapshots.timefmt import parse_ts

    args: dict[str, Any] = {k: parse_ts(v) if k in ("since", "until") else v for k, v in filters.items()}
    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        wanted = list_changes(conn, **args)
    engine.dispose()
    rows, _ = _feed(client, f"/changes?{query}&limit=500")
    assert rows == _expected(wanted[::-1])


def test_change_rows_link_to_the_symbol_right_after_the_change(client: TestClient) -> None:
    """Following a row of the feed shows the diff of that very poll, with the row's cell marked."""
    page = client.get("/changes?kind=tier_changed&limit=5").text
    links = re.findall(r'<td class="text"><a href="(/symbols/[^"]+)">', page)
    rows = body_rows(page, "change-feed")
    assert len(links) == len(rows) == 5
    for link, row in zip(links, rows, strict=True):
        target = link.replace("&amp;", "&")
        assert "at" in parse_qs(urlsplit(target).query)
        symbol_page = client.get(target)
        assert symbol_page.status_code == 200
        tier, field = int(row.cells[4].text), row.cells[5].text.replace(" ", "_")
        marked = {
            (int(r.cells[0].text), c.attrs["data-field"])
            for r in body_rows(symbol_page.text, "diff-new")
            for c in r.cells
            if "changed" in c.classes
        }
        assert (tier, field) in marked


# -- overview and alerts -----------------------------------------------------------------------------


def test_overview_shows_sources_positions_changes_and_the_open_outbox(client: TestClient, web_db_url: str) -> None:
    page = client.get("/").text
    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        status = source_status(conn, SOURCE)
        latest = list_changes(conn)[-1]
    engine.dispose()
    row = next(r for r in body_rows(page, "sources-table") if r.cells[0].text == SOURCE)
    assert row.cells[2].text == str(status.symbols)
    assert row.cells[3].text.startswith(status.last_poll_at.strftime("%Y-%m-%d %H:%M:%S"))
    order = [int(r.cells[0].text[1:]) for r in body_rows(page, "positions-table")]
    assert order == _by_risk(web_db_url) and len(order) >= 3
    assert 'class="violation"' in page
    outbox = page.split('id="outbox"', 1)[1]
    assert ">pending<" in outbox and ">failed<" in outbox and ">sent<" not in outbox
    assert latest.change.kind.replace("_", " ") in page.split('id="changes"', 1)[1]


def _by_risk(url: str) -> list[int]:
    """Open position ids as `positions list` prices them, violations first, then the smallest buffer."""
    from sqlmodel import Session

    from monitor.risk.impacts import assess_now
    from monitor.risk.positions import open_positions
    from monitor.store.database import open_engine
    from tests.web.conftest import web_settings

    engine = open_engine(url)
    with Session(engine) as session:
        found = assess_now(session, open_positions(session), web_settings(url), utcnow())
    engine.dispose()

    def risk(a: Any) -> tuple[bool, float]:
        f = a.figures
        return (not (f and f.violation), f.buffer_adr if f and f.buffer_adr is not None else float("inf"))

    assert any(a.figures and a.figures.violation for a in found.values()), "the fixture has no violation"
    return [a.position_id for a in sorted(found.values(), key=lambda a: (*risk(a), a.position_id))]


def test_alerts_page_filters_by_status(client: TestClient) -> None:
    everything = client.get("/alerts").text
    failed = client.get("/alerts?status=failed").text
    assert ">sent<" in everything and ">pending<" in everything and ">failed<" in everything
    listed = failed.split("</form>", 1)[1]
    assert ">failed<" in listed and ">sent<" not in listed and ">pending<" not in listed
    assert "HTTP 500 from hooks.example.com" in failed


# -- position and what-if ---------------------------------------------------------------------------


def test_position_page_shows_inputs_and_current_figures(client: TestClient) -> None:
    page = client.get("/positions/1").text
    assert "notional=50000" in page and "entry price" in page
    assert "liquidation price" in page and "buffer" in page and "headroom" in page
    assert "<strong>" + "—" not in page  # a liquidation price is computed for this isolated long


def test_whatif_agrees_with_the_liq_command(
    client: TestClient, web_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from monitor.cli import app

    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("TIERDRIFT_DATABASE_URL", web_db_url)
    opts = {"side": "long", "entry": "60000", "margin": "4000", "notional": "200000", "mark": "61000", "adr": "1500"}
    cli = CliRunner().invoke(
        app, ["liq", "--source", SOURCE, "--symbol", "BTCUSDT", *[x for k, v in opts.items() for x in (f"--{k}", v)],
              "--json"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    want = json.loads(cli.stdout)
    page = client.get("/positions/1", params={"whatif": "1", **opts}).text
    result = page.split('id="whatif-result"', 1)[1]
    assert f"<strong>{num(want['liquidation_price'])}</strong>" in result
    assert pct(want["maintenance_margin_rate"]) in result and f"{want['buffer_adr']:.2f} ADR" in result
    assert pct(want["distance"]) in result and num(want["headroom_notional"]) in result


@pytest.mark.parametrize(
    ("params", "line"),
    [
        ({"side": "long", "entry": "60000", "margin": "5000"}, "give exactly one of"),
        ({"side": "long", "entry": "abc", "margin": "5000", "qty": "1"}, "bad parameter entry"),
        ({"side": "sideways", "entry": "1", "margin": "5000", "qty": "1"}, "bad parameter side"),
        ({"side": "long", "entry": "60000", "margin": "-1", "qty": "1"}, "margin must be"),
        ({"side": "long", "entry": "60000", "margin": "5000", "qty": "1", "at": "1999-01-01"}, "before its history"),
    ],
)
def test_whatif_refuses_bad_inputs_with_one_line(client: TestClient, params: dict[str, str], line: str) -> None:
    r = client.get("/positions/1", params={"whatif": "1", **params})
    assert r.status_code == 400
    assert line in _notice(r.text) and "\n" not in _notice(r.text)
    assert 'id="inputs"' in r.text  # the page is still there, with the form to fix it


# -- escaping, errors, assets -------------------------------------------------------------------------


def test_hostile_symbol_and_note_render_as_text(client: TestClient) -> None:
    pages = {
        "symbol": client.get(symbol_url(SOURCE, HOSTILE_SYMBOL)),
        "overview": client.get("/"),
        "changes": client.get("/changes?kind=symbol_listed&limit=500"),
        "position": client.get("/positions/2"),
    }
    for name, r in pages.items():
        assert r.status_code == 200, name
        assert "<script>alert(1)</script>" not in r.text, name
        assert "<img src=x" not in r.text, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/USDT:USDT" in pages["symbol"].text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["changes"].text
    assert str(escape(HOSTILE_NOTE)) in pages["position"].text
    # In links the symbol is one percent-encoded path segment: no quote or bracket reaches the attribute.
    assert f'href="/symbols/binance-usdm/{quote(HOSTILE_SYMBOL, safe="")}' in pages["changes"].text


def test_json_blocks_cannot_end_their_script_element() -> None:
    hostile = {"name": "</script><script>alert(1)</script><!-- & \u2028", "n": [1.5, None]}
    block = str(data_block({"data": [hostile]}))
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block) == {"data": [hostile]}


@pytest.mark.parametrize(
    ("path", "status", "line"),
    [
        ("/symbols/nowhere/BTCUSDT", 404, "unknown source 'nowhere'"),
        ("/symbols/binance-usdm/NOSUCHCOIN", 404, "unknown symbol 'NOSUCHCOIN' for binance-usdm"),
        ("/positions/9999", 404, "no position with id 9999"),
        ("/symbols/binance-usdm/BTCUSDT?a=1&b=999999", 404, "has no version"),
        (f"/symbols/binance-usdm/BTCUSDT?a=1&b={2**40}", 400, "bad parameter b: give a whole number from 1 to"),
        ("/positions/abc", 400, "bad position id 'abc'"),
        ("/positions/-1", 400, "bad position id"),
        ("/positions/²", 400, "bad position id"),
        ("/changes?limit=²", 400, "bad parameter limit"),
        ("/symbols/binance-usdm/BTCUSDT?at=yesterday", 400, "bad parameter at: invalid timestamp"),
        ("/symbols/binance-usdm/BTCUSDT?a=1", 400, "give both versions"),
        ("/symbols/binance-usdm/BTCUSDT?a=x&b=2", 400, "bad parameter a"),
        ("/changes?kind=exploded", 400, "bad parameter kind: choose one of"),
        ("/changes?source=kraken", 400, "bad parameter source"),
        ("/changes?limit=0", 400, "bad parameter limit"),
        ("/changes?cursor=garbage", 400, "bad parameter cursor"),
        (f"/changes?cursor=2026-01-01T00:00:00Z~{2**64}", 400, "bad parameter cursor"),
        ("/symbols/binance-usdm/" + "A" * 5000, 404, "unknown symbol 'AAAA"),
        ("/changes?since=2024-13-45", 400, "bad parameter since"),
        ("/changes?symbol=NOSUCHCOIN", 404, "unknown symbol 'NOSUCHCOIN'"),
        ("/alerts?status=lost", 400, "bad parameter status"),
        ("/symbols?source=binance-usdm", 400, "bad parameter symbol"),
    ],
)
def test_bad_requests_get_a_page_of_one_line(client: TestClient, path: str, status: int, line: str) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert line in _notice(r.text) and len(_notice(r.text)) <= 300


def test_symbol_lookup_redirects_to_the_symbol_page(client: TestClient) -> None:
    r = client.get("/symbols?source=binance-usdm&symbol=btcusdt", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == symbol_url(SOURCE, BTC)


#: Every query parameter a page reads.
PARAMS = ("source", "symbol", "kind", "field", "since", "until", "limit", "cursor", "at", "a", "b", "status", "whatif",
          "side", "entry", "margin", "qty", "mark", "adr")  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/changes", "/alerts", "/symbols/binance-usdm/BTCUSDT", "/positions/1", "/"]),
    params=st.dictionaries(
        st.sampled_from(PARAMS),
        st.text(max_size=12) | st.integers(-5, 10**6).map(str) | st.just("2026-01-01"),
        max_size=5,
    ),
)
def test_no_query_string_makes_a_page_fail(client: TestClient, path: str, params: dict[str, str]) -> None:
    r = client.get(path, params=params)
    assert r.status_code in (200, 400, 404), (path, params, r.text[:300])
    assert r.headers["content-type"].startswith("text/html")


def test_plotly_is_served_from_the_installed_package(client: TestClient) -> None:
    from importlib.metadata import version

    page = client.get(symbol_url(SOURCE, BTC)).text
    url = f"/static/plotly-{version('plotly')}.min.js"
    assert f'<script src="{url}"></script>' in page and "cdn" not in page.lower()
    shipped = (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.content == shipped
    assert "max-age=31536000" in plain.headers["cache-control"]
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(shipped) / 2 and zipped.content == shipped  # httpx unzips
    assert client.get(url, headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
    assert client.get("/static/plotly-1.0.0.min.js").status_code == 404  # an old page's version is not served


def test_only_our_own_assets_are_served(client: TestClient) -> None:
    assert client.get("/static/tierdrift.css").headers["content-type"].startswith("text/css")
    assert "Plotly.newPlot" in client.get("/static/charts.js").text
    for name in ("../pages.py", "..%2Fpages.py", "views.py", "nothing.js"):
        assert client.get(f"/static/{name}").status_code == 404


def test_times_are_shown_to_the_second_in_utc() -> None:
    from monitor.web.pages import ago, when

    at = datetime(2026, 1, 31, 12, 0, 5, 999, tzinfo=UTC)
    assert when(at) == "2026-01-31 12:00:05"
    assert ago(at, at + timedelta(minutes=5, seconds=3)) == "5 min ago"
    assert ago(at + timedelta(hours=3), at) == "in 3 h"


@pytest.mark.parametrize("few", [0, 20])
def test_pages_price_positions_as_the_cli_does(web_db_url: str, monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    """The pages load only the tables their positions need (one by one, or whole snapshots beyond
    FEW_SYMBOLS); either way the figures are those of `positions list`."""
    from sqlmodel import Session

    from monitor.risk.impacts import assess_now
    from monitor.risk.positions import open_positions
    from monitor.store.database import open_engine
    from monitor.web import position_views as views
    from tests.web.conftest import web_settings

    monkeypatch.setattr(views, "FEW_SYMBOLS", few)
    engine = open_engine(web_db_url)
    now, settings = utcnow(), web_settings(web_db_url)
    with Session(engine) as session:
        positions = open_positions(session)
        ours = views.assess_now(session, positions, settings, now)
        assert ours == assess_now(session, positions, settings, now)
    engine.dispose()
    assert len(ours) == len(positions) >= 3 and any(a.figures for a in ours.values())


def test_overview_shows_the_daemons_next_poll(web_db_url: str) -> None:
    from tests.web.conftest import BASE_URL, create_app_on

    app = create_app_on(web_db_url)
    soon = utcnow() + timedelta(minutes=4, seconds=30)
    app.state.status = lambda: {
        "ready": True,
        "reason": "writer",
        "next_poll": {SOURCE: iso(soon), "bybit-linear": None},
    }
    with TestClient(app, base_url=BASE_URL) as client:
        page = client.get("/").text
    app.state.engine.dispose()
    row = next(r for r in body_rows(page, "sources-table") if r.cells[0].text == SOURCE)
    assert row.cells[6].text == f"{soon.strftime('%Y-%m-%d %H:%M:%S')}in 4 min"  # a line break between
    assert "no daemon runs here" not in page


def test_whatif_without_market_data_says_which_field_to_fill(client: TestClient) -> None:
    params = {"whatif": "1", "side": "short", "entry": "60000", "margin": "6000", "qty": "1"}
    result = client.get("/positions/1", params=params).text.split('id="whatif-result"', 1)[1]
    assert "no mark price given (fill in the mark price)" in result and "--mark" not in result


def test_overview_lists_the_recent_polls(client: TestClient, web_db_url: str) -> None:
    from snapshots.history import recent_polls

    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        polls = recent_polls(conn, limit=15)
    engine.dispose()
    rows = body_rows(client.get("/").text, "polls-table")
    assert [(r.cells[0].text, r.cells[1].text, r.cells[3].text, r.cells[7].text) for r in rows] == [
        (p.started_at.strftime("%Y-%m-%d %H:%M:%S"), p.source, p.outcome, str(p.changes)) for p in polls
    ]


def test_overview_lists_the_riskiest_positions_first_and_counts_the_rest(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.web import pages

    every = [r.cells[0].text for r in body_rows(client.get("/").text, "positions-table")]
    monkeypatch.setattr(pages, "OVERVIEW_POSITIONS", 1)
    page = client.get("/").text
    assert [r.cells[0].text for r in body_rows(page, "positions-table")] == every[:1]
    assert f"and {len(every) - 1} more" in page


def test_symbol_page_links_to_its_changes(client: TestClient) -> None:
    page = client.get(symbol_url(SOURCE, HOSTILE_SYMBOL)).text
    link = re.search(r'<a id="symbol-changes" href="([^"]+)"', page)
    assert link
    feed = client.get(unescape(link.group(1)))
    assert feed.status_code == 200
    rows = body_rows(feed.text, "change-feed")
    assert rows and {r.cells[2].text for r in rows} == {HOSTILE_SYMBOL}
