"""The dashboard in a real Chromium (Debian's `chromium`, driven by Playwright) against a live server.

Every page must open without a console error (a Content Security Policy violation is one), its charts
must be drawn (plotly's SVG exists), filters, pages and the diff are clicked through as a trader would,
and the hostile symbol and note must render as text without any dialog opening. Screenshots go to the
test's tmp_path. Skipped, with the reason, where Chromium or Playwright is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.web.pages import symbol_url
from tests.web.conftest import HOSTILE_NOTE, HOSTILE_SYMBOL
from tests.web.test_pages import _changed_symbol

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

SOURCE = "binance-usdm"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors, uncaught exceptions and dialogs are all recorded (dialogs dismissed)."""

    def __init__(self, browser: Any, base: str, shots: Path, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, **context)
        self.page = self.context.new_page()
        self.base, self.shots = base, shots
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        self.page.wait_for_load_state("load")
        return self.page

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5_000
        return path

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs


@pytest.fixture
def watched(browser: Any, live_server: str, tmp_path: Path) -> Iterator[Watched]:
    w = Watched(browser, live_server, tmp_path)
    yield w
    w.context.close()


def _chart_drawn(page: Any, chart_id: str) -> None:
    page.wait_for_selector(f"#{chart_id} svg.main-svg", timeout=15_000)
    assert page.locator(f"#{chart_id} .scatterlayer .trace").count() >= 2


@pytest.mark.parametrize(
    ("name", "path", "chart"),
    [
        ("overview", "/", None),
        ("changes", "/changes", None),
        ("alerts", "/alerts", None),
        ("symbol", symbol_url(SOURCE, "BTC/USDT:USDT"), "tier-chart"),
        ("position", "/positions/1", None),
    ],
)
def test_every_page_opens_cleanly(watched: Watched, name: str, path: str, chart: str | None) -> None:
    page = watched.open(path)
    assert page.locator("h1").first.is_visible()
    if chart:
        _chart_drawn(page, chart)
    watched.shot(name)
    watched.clean()


def test_changes_filters_and_pages(watched: Watched) -> None:
    page = watched.open("/changes?limit=4")  # small pages, so that there are several whatever the history
    page.select_option("select[name=source]", SOURCE)
    page.select_option("select[name=kind]", "tier_changed")
    page.click("#change-filters button[type=submit]")
    page.wait_for_url("**/changes?*kind=tier_changed*")
    assert page.locator("#change-feed tbody tr").count() == 4  # the page size survives the filter form
    kinds = page.locator("#change-feed tbody tr td:nth-child(4)").all_inner_texts()
    assert kinds and set(kinds) == {"tier changed"}
    first = page.locator("#change-feed tbody tr").first.inner_text()
    page.click("#next-page")
    page.wait_for_url("**cursor=*")
    assert set(page.locator("#change-feed tbody tr td:nth-child(4)").all_inner_texts()) == {"tier changed"}
    assert page.locator("#change-feed tbody tr").first.inner_text() != first
    assert page.locator("select[name=kind]").input_value() == "tier_changed"  # the filters stay on
    page.click("#first-page")
    assert page.locator("#change-feed tbody tr").first.inner_text() == first
    page.select_option("select[name=field]", "maintenance_margin_rate")
    page.click("#change-filters button[type=submit]")
    fields = page.locator("#change-feed tbody tr td:nth-child(6)").all_inner_texts()
    assert fields and set(fields) == {"maintenance margin rate"}
    watched.shot("changes-filtered")
    watched.clean()


def test_diff_of_two_versions_and_its_chart(watched: Watched, web_db_url: str) -> None:
    symbol, old_id, new_id = _changed_symbol(web_db_url)
    page = watched.open(symbol_url(SOURCE, symbol, at="2001-01-01"))  # no default pair before its history
    assert page.locator("#not-in-force").is_visible()
    page.check(f"input[name=a][value='{old_id}']")
    page.check(f"input[name=b][value='{new_id}']")
    page.click("#compare-button")
    page.wait_for_url(f"**b={new_id}*")
    assert page.locator("#diff h2").inner_text() == f"Version {old_id} → version {new_id}"
    assert page.locator("#diff-new td.changed").count() > 0
    assert page.locator("#diff-old td.changed").count() == page.locator("#diff-new td.changed").count()
    _chart_drawn(page, "tier-chart")
    watched.shot("symbol-diff")
    watched.clean()


def test_hostile_symbol_and_note_stay_text(watched: Watched) -> None:
    page = watched.open(symbol_url(SOURCE, HOSTILE_SYMBOL))
    assert page.locator("h1").inner_text().startswith(HOSTILE_SYMBOL)
    assert page.locator("script:not([src]):not([type='application/json'])").count() == 0
    _chart_drawn(page, "tier-chart")
    watched.shot("hostile-symbol")
    page = watched.open("/positions/2")
    assert page.locator("#note").inner_text() == HOSTILE_NOTE
    assert page.locator("img").count() == 0
    page = watched.open("/changes?kind=symbol_listed")
    assert page.get_by_text(HOSTILE_SYMBOL).count() >= 1
    watched.clean()


def test_whatif_form_computes_on_the_page(watched: Watched) -> None:
    page = watched.open("/positions/1")
    page.fill("input[name=margin]", "2500")
    page.click("#whatif-form button[type=submit]")
    page.wait_for_selector("#whatif-result")
    assert "liquidation price" in page.locator("#whatif-result").inner_text()
    page.fill("input[name=entry]", "not a price")
    page.click("#whatif-form button[type=submit]")
    assert "bad parameter entry" in page.locator("#whatif-error").inner_text()
    watched.errors = [e for e in watched.errors if "400" not in e]  # the 400 answer itself is logged
    watched.clean()


def test_overview_fits_a_phone(browser: Any, live_server: str, tmp_path: Path) -> None:
    phone = Watched(browser, live_server, tmp_path, is_mobile=True, has_touch=True)
    phone.page.set_viewport_size({"width": 390, "height": 844})
    try:
        for path in ("/", symbol_url(SOURCE, "BTC/USDT:USDT"), "/positions/1"):
            page = phone.open(path)
            # Wide tables scroll inside their own box; the page itself never scrolls sideways.
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        phone.shot("phone")
        phone.clean()
    finally:
        phone.context.close()


def test_position_history_chart_is_drawn(watched: Watched, web_db_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(web_db_url)
    with engine.connect() as conn:
        position_id = conn.execute(text("SELECT position_id FROM impact ORDER BY id LIMIT 1")).scalar_one()
    engine.dispose()
    page = watched.open(f"/positions/{position_id}")
    _chart_drawn(page, "history-chart")
    assert page.locator("#impacts-table tbody tr").count() >= 1
    watched.shot("position-history")
    watched.clean()


def test_the_watch_catches_a_csp_violation(watched: Watched) -> None:
    """The other tests' "no console error" means something: an inline script is refused, and seen."""
    page = watched.open("/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.ran") is None
    assert any("Content Security Policy" in e for e in watched.errors), watched.errors
