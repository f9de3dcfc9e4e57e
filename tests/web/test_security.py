"""The dashboard's port: loopback by default, a token anywhere else, bearer or login cookie, CSRF, headers,
outside text as data, and a token that never comes back out."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from monitor.cli import run
from monitor.web.security import CSRF_COOKIE, SESSION_COOKIE, is_loopback, safe_next, session_value
from tests.web.conftest import BASE_URL, HOSTILE_SYMBOL, create_app_on, free_port

TOKEN = "tok-Zq81-very-secret-4711"


@pytest.fixture
def guarded(web_db_url: str) -> Iterator[TestClient]:
    """A client of an app with a token, as `tierdrift web --host 0.0.0.0` would serve it."""
    app = create_app_on(web_db_url, web_token=TOKEN, web_host="0.0.0.0")
    with TestClient(app, base_url=BASE_URL) as c:
        yield c
    app.state.engine.dispose()


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("TIERDRIFT_WEB_TOKEN", raising=False)


# -- where it may listen ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("dashboard.example.com", False)],
)  # fmt: skip
def test_loopback_is_127_slash_8_ipv6_loopback_and_localhost(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_web_on_all_addresses_without_a_token_refuses_in_one_line(
    web_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--db", web_db_url, "web", "--host", "0.0.0.0", "--port", "0"]) == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: web server: refusing to serve on 0.0.0.0 (--host) without a token")
    assert "TIERDRIFT_WEB_TOKEN" in err


def test_run_on_a_lan_address_without_a_token_refuses_before_the_database_or_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERDRIFT_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("TIERDRIFT_WEB_PORT", str(free_port()))
    db = tmp_path / "tierdrift.db"
    assert run(["--db", f"sqlite:///{db}", "run"]) == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: web server: refusing to serve on 0.0.0.0 (web_host) without a token")
    assert not db.exists() and not Path(f"{db}.lock").exists()


def test_a_web_port_in_use_fails_run_in_one_line_before_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("TIERDRIFT_WEB_PORT", str(port))
        db = tmp_path / "tierdrift.db"
        assert run(["--db", f"sqlite:///{db}", "run"]) == 1
    err = one_line(capsys.readouterr().err)
    assert err == (
        f"error: web server: 127.0.0.1:{port} is already in use (another process listens there; choose another"
        " web_port)"
    )
    assert not db.exists()


def test_web_serves_loopback_by_default_and_stops_on_sigterm(web_db_url: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--db", web_db_url, "web", "--port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "TIERDRIFT_CONFIG": str(tmp_path / "absent.toml"), "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/) \(read-only, no daemon", line)
        assert found, line
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(found.group(1) + "api/v1/sources", timeout=5) as r:
                    assert r.status == 200 and b"binance-usdm" in r.read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


# -- who may read it --------------------------------------------------------------------------------------


def test_loopback_without_a_token_is_open_but_only_under_its_own_name(client: TestClient) -> None:
    assert client.get("/api/v1/sources").status_code == 200
    assert client.get("/api/v1/sources", headers={"host": "localhost:8470"}).status_code == 200
    rebound = client.get("/api/v1/sources", headers={"host": "attacker.example:8470"})
    assert rebound.status_code == 421 and "Host" in rebound.json()["error"]
    assert client.get("/healthz", headers={"host": "10.0.0.7:8470"}).status_code == 200  # probes: any name


def test_bearer_token_right_wrong_and_missing(guarded: TestClient) -> None:
    assert guarded.get("/api/v1/sources", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):  # fmt: skip
        r = guarded.get("/api/v1/sources", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "authentication needed: send Authorization: Bearer <web_token>"}
    assert guarded.get("/openapi.json").status_code == 401
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/readyz").status_code == 503


def test_a_page_without_the_token_sends_the_browser_to_the_login_form(guarded: TestClient) -> None:
    r = guarded.get("/changes?source=binance-usdm", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fchanges%3Fsource%3Dbinance-usdm"


def login_form(client: TestClient) -> str:
    page = client.get("/login?next=/alerts")
    assert page.status_code == 200 and 'name="token"' in page.text and 'value="/alerts"' in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf and client.cookies.get(CSRF_COOKIE) == csrf.group(1)
    return csrf.group(1)


def test_login_sets_an_httponly_strict_cookie_holding_an_hmac_not_the_token(guarded: TestClient) -> None:
    csrf = login_form(guarded)
    r = guarded.post("/login", data={"token": TOKEN, "csrf": csrf, "next": "/alerts"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie and session_value(TOKEN) in cookie
    assert guarded.get("/api/v1/sources").status_code == 200  # the cookie alone now opens the API
    other = create_app_on(
        str(guarded.app.state.settings.database_url), web_token=TOKEN + "-rotated", web_host="0.0.0.0"
    )  # type: ignore[attr-defined]
    with TestClient(other, base_url=BASE_URL, cookies={SESSION_COOKIE: session_value(TOKEN)}) as rotated:
        assert rotated.get("/api/v1/sources").status_code == 401  # a new token logs every device out
    other.state.engine.dispose()


def test_login_with_a_wrong_token_shows_the_form_again(guarded: TestClient) -> None:
    csrf = login_form(guarded)
    r = guarded.post("/login", data={"token": "guess", "csrf": csrf, "next": "/"}, follow_redirects=False)
    assert r.status_code == 401 and "wrong token" in r.text and SESSION_COOKIE not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("attack", ["no csrf cookie", "csrf mismatch", "foreign origin"])
def test_login_post_needs_its_csrf_token_and_a_same_site_origin(guarded: TestClient, attack: str) -> None:
    csrf = login_form(guarded)
    headers = {"origin": "https://evil.example"} if attack == "foreign origin" else {}
    if attack == "no csrf cookie":
        guarded.cookies.delete(CSRF_COOKIE)
    sent = "forged" if attack == "csrf mismatch" else csrf
    r = guarded.post("/login", data={"token": TOKEN, "csrf": sent}, headers=headers, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_login_from_the_same_origin_is_accepted(guarded: TestClient) -> None:
    csrf = login_form(guarded)
    r = guarded.post(
        "/login", data={"token": TOKEN, "csrf": csrf}, headers={"origin": BASE_URL}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil.example", "", "alerts"])
def test_login_never_redirects_to_another_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_logout_clears_the_session(guarded: TestClient) -> None:
    csrf = login_form(guarded)
    guarded.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
    assert guarded.get("/api/v1/sources").status_code == 200
    r = guarded.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert guarded.get("/api/v1/sources").status_code == 401


# -- headers, outside text, secrets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/sources", "/api/v1/tiers?source=kraken&symbol=x", "/api/v1/changes?limit=0", "/healthz",
             "/metrics", "/nowhere", "/openapi.json"],
)  # fmt: skip
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    csp = r.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_a_refused_request_carries_them_too(guarded: TestClient) -> None:
    r = guarded.get("/api/v1/sources")
    assert r.status_code == 401 and r.headers["x-frame-options"] == "DENY" and "content-security-policy" in r.headers


def test_a_hostile_symbol_comes_back_as_json_data(client: TestClient) -> None:
    r = client.get("/api/v1/history", params={"source": "binance-usdm", "symbol": HOSTILE_SYMBOL})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()[0]["symbol"] == HOSTILE_SYMBOL
    missing = client.get("/api/v1/history", params={"source": "binance-usdm", "symbol": "<img src=x onerror=1>"})
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
    assert "<img src=x onerror=1>" in missing.json()["error"]  # data inside JSON, which no browser renders


def test_the_token_never_appears_in_responses_or_logs(
    guarded: TestClient, web_db_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ["/api/v1/sources", "/api/v1/alerts", "/api/v1/positions", "/openapi.json", "/metrics", "/nope",
                 "/api/v1/tiers?source=binance-usdm&symbol=" + TOKEN]:  # fmt: skip
        r = guarded.get(path, headers=auth)
        seen.append(r.text + str(r.headers))
    csrf = login_form(guarded)
    r = guarded.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
    seen.append(r.text + str(r.headers))
    r = guarded.post("/login", data={"token": TOKEN[:-1], "csrf": login_form(guarded)}, follow_redirects=False)
    seen.append(r.text + str(r.headers))
    # the one echo of outside text: a symbol the user typed comes back in its 404, as it was sent
    assert sum(TOKEN in text for text in seen) == 1
    monkeypatch.setenv("TIERDRIFT_WEB_TOKEN", TOKEN)
    assert run(["--db", web_db_url, "config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and '"web_token": "***"' in out
    server_side = [rec for rec in caplog.records if rec.name != "httpx"]  # httpx logs the test client's own URLs
    assert all(TOKEN not in rec.getMessage() for rec in server_side)


def test_the_token_is_redacted_from_the_daemon_log(web_db_url: str) -> None:
    from monitor.config.settings import Settings

    assert TOKEN in Settings(database_url=web_db_url, web_token=TOKEN).secrets()


def test_the_app_has_no_cdn_swagger_page(web_app: FastAPI, client: TestClient) -> None:
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").json()["info"]["title"] == "tierdrift"
