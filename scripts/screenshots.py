"""The README's screenshots of the dashboard, taken from the demo's data in a real Chromium.

    PYTHONPATH=. python3 scripts/screenshots.py [OUTPUT_FOLDER]      (default: docs/screenshots)

It runs `tierdrift demo`'s scenario (a fake Binance on loopback, a logged position, a tightened tier
table, the impact and its alerts) into a throwaway SQLite file, serves the dashboard over it on
127.0.0.1, and saves what a trader sees at 1280×800: the overview, a symbol with its chart and diff, and
the position; plus the overview at a phone's width. Needs Debian's `chromium` and `pip install playwright`.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serving(database_url: str) -> Iterator[str]:
    """The dashboard over `database_url`, served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    from monitor.config.settings import Settings
    from monitor.web.app import create_app

    app = create_app(Settings(database_url=database_url, sources=["binance-usdm"]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("error: the dashboard did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.engine.dispose()


def shoot(base: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from monitor.service.demo import SOURCE
    from monitor.web.pages import symbol_url

    saved: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            saved.append(_shot(page, f"{base}/", out / "overview.png"))
            page.goto(f"{base}{symbol_url(SOURCE, 'BTC/USDT:USDT')}")
            page.wait_for_selector("#tier-chart svg.main-svg")
            page.evaluate("document.getElementById('chart-section').scrollIntoView()")
            saved.append(_save(page, out / "symbol.png"))
            page.evaluate("document.getElementById('diff').scrollIntoView()")
            saved.append(_save(page, out / "symbol-diff.png"))
            saved.append(_shot(page, f"{base}/positions/1", out / "position.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=1)
            saved.append(_shot(phone, f"{base}/", out / "phone-overview.png"))
        finally:
            browser.close()
    return saved


def _shot(page: Any, url: str, path: Path) -> Path:
    page.goto(url)
    page.wait_for_load_state("load")
    return _save(page, path)


def _save(page: Any, path: Path) -> Path:
    page.wait_for_timeout(300)  # plotly's transitions
    page.screenshot(path=str(path))
    return path


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "screenshots"
    if not CHROMIUM.exists():
        print(f"error: no Chromium at {CHROMIUM}; install it with `apt-get install chromium`", file=sys.stderr)
        return 1
    from monitor.service.demo import run_demo

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tierdrift-shots-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        if not run_demo(lambda line: None, lambda title, body: None, database=url):
            print("error: the demo scenario did not complete; no screenshots taken", file=sys.stderr)
            return 1
        with serving(url) as base:
            for path in shoot(base, out):
                print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
