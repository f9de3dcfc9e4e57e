"""What keeps the dashboard's port safe: where it may listen, who may read it, and the headers of every answer.

- Loopback only by default. Any other address needs `web_token`: `check_bind` refuses, in one line,
  to serve 0.0.0.0 (or a LAN address) without it, before anything listens.
- With a token, every request but `/healthz`, `/readyz`, `/login` and `/static/…` must show it: an
  `Authorization: Bearer <token>` header, or the session cookie that the login form sets. The cookie holds
  an HMAC of the token (never the token), is HttpOnly and SameSite=Strict, and stops working when the
  token changes. Every comparison is constant-time (`hmac.compare_digest`). The login POST is protected
  from cross-site requests twice: a double-submit CSRF token (a cookie and a form field that must agree)
  and, when the browser sends one, an `Origin` that must be this server.
- Without a token (loopback), requests must name a loopback host (or `web_public_url`'s) in `Host`:
  a web page elsewhere cannot point its own domain at 127.0.0.1 (DNS rebinding) and read the dashboard.
- Every response carries a Content-Security-Policy with no inline script (`script-src 'self'`; plotly
  sets inline styles, hence `style-src 'self' 'unsafe-inline'`), no framing, no sniffing, no referrer.

The token never appears in a response, a log line or an error: it is compared, and HMAC'd, nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from snapshots.errors import TierdriftError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from monitor.config.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "tierdrift_session"
CSRF_COOKIE = "tierdrift_csrf"
#: How long a login lasts on a device (a phone stays logged in; changing the token logs everyone out).
SESSION_DAYS = 30
#: Seconds a wrong token in the login form waits before the form comes back.
WRONG_TOKEN_DELAY = 0.5
#: Paths anyone may open, token or not: probes, the login form itself, and the static assets it needs.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})
OPEN_PREFIXES = ("/static/",)
PROBES = frozenset({"/healthz", "/readyz"})
#: Paths answered in JSON when the token is missing (the others redirect a browser to the login form).
API_PREFIXES = ("/api/", "/openapi.json", "/metrics")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # plotly.js positions its elements with inline styles
        "img-src 'self' data:",  # plotly's mode bar draws its icons as data: images
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class WebServerError(TierdriftError):
    """The web server cannot (or must not) listen where it was told to; the message says why, in one line."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings, setting: str = "web_host") -> None:
    """`WebServerError` unless serving on `host` is safe: loopback, or a token is set."""
    if settings.web_token is None and not is_loopback(host):
        raise WebServerError(
            f"web server: refusing to serve on {host} ({setting}) without a token: other machines could read"
            " your positions; set web_token (TIERDRIFT_WEB_TOKEN) or serve on 127.0.0.1"
        )


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC-SHA256 of the token, never the token itself. It stays valid
    across restarts and stops when the token changes."""
    return hmac.new(token.encode(), b"tierdrift web session v1", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings (a wrong guess costs as long as a right one)."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def safe_next(target: str | None) -> str:
    """Where the login form may send the browser afterwards: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:  # a malformed cookie header is as good as none
                continue
    return {k: m.value for k, m in jar.items()}


def header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def authorized(scope: Scope, token: str) -> bool:
    """The request shows the token: as a bearer header, or as the login form's session cookie."""
    auth = header(scope, b"authorization")
    if auth is not None:
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and same(given.strip(), token):
            return True
    cookie = cookies(scope).get(SESSION_COOKIE)
    return cookie is not None and same(cookie, session_value(token))


def origin_ok(scope: Scope, public_url: str | None) -> bool:
    """No `Origin` header (an old browser, a script), or one naming this server (its Host, or web_public_url)."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    host = header(scope, b"host") or ""
    allowed = {f"http://{host}", f"https://{host}"}
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin in allowed


class SecurityMiddleware:
    """The checks and headers above, as plain ASGI middleware (cheap: no request object is built)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.token = settings.web_token.get_secret_value() if settings.web_token else None
        self.public_url = settings.web_public_url
        self.hosts = _allowed_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in names]
                if b"cache-control" not in names and not scope["path"].startswith(OPEN_PREFIXES):
                    extra.append((b"cache-control", b"no-store"))  # positions are private: no proxy keeps them
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        refusal = self.refuse(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refuse(self, scope: Scope) -> ASGIApp | None:
        """The answer to a request that may not go on (None: it may)."""
        path: str = scope["path"]
        if path in PROBES:
            return None  # a container's health check may name any host; these two answer nothing private
        if self.token is None:
            host = (header(scope, b"host") or "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name) and name.strip("[]") not in self.hosts:
                return JSONResponse(
                    {"error": "this server answers only to its own address (Host); set web_public_url to add one"},
                    status_code=421,
                )
            return None
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or authorized(scope, self.token):
            return None
        if path.startswith(API_PREFIXES) or scope.get("method") not in ("GET", "HEAD"):
            return JSONResponse(
                {"error": "authentication needed: send Authorization: Bearer <web_token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _allowed_hosts(settings: Settings) -> set[str]:
    hosts = {"localhost", "127.0.0.1", "::1", settings.web_host.lower(), settings.health_host.lower()}
    if settings.web_public_url:
        hosts.add((urlsplit(settings.web_public_url).hostname or "").lower())
    return hosts


def install(app: FastAPI, settings: Settings) -> None:
    """The middleware on `app`, and the login form's routes: GET and POST `/login`, POST `/logout`."""
    app.add_middleware(SecurityMiddleware, settings=settings)
    _login_routes(app, settings)


def _login_routes(app: FastAPI, settings: Settings) -> None:
    token = settings.web_token.get_secret_value() if settings.web_token else None
    secure = bool(settings.web_public_url and settings.web_public_url.startswith("https:"))

    def form_page(request: Request, target: str, error: str | None = None, status: int = 200) -> Response:
        csrf = new_csrf()
        context = {"csrf": csrf, "next": target, "error": error}
        page = request.app.state.templates.TemplateResponse(request, "login.html", context, status_code=status)
        page.set_cookie(
            CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/login", secure=secure or _https(request)
        )
        return page  # type: ignore[no-any-return]

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        if token is None:
            return RedirectResponse(safe_next(next), status_code=303)  # open server: nothing to log in to
        return form_page(request, safe_next(next))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if token is None:
            return RedirectResponse("/", status_code=303)
        form = await request.form()
        target = safe_next(str(form.get("next") or "/"))
        sent, kept = str(form.get("csrf") or ""), request.cookies.get(CSRF_COOKIE, "")
        if not origin_ok(request.scope, settings.web_public_url) or not kept or not same(sent, kept):
            return JSONResponse({"error": "login refused: the form was not sent from this site (CSRF check)"}, 403)
        if not same(str(form.get("token") or ""), token):
            await asyncio.sleep(WRONG_TOKEN_DELAY)  # guessing through the form costs time
            return form_page(request, target, "wrong token", status=401)
        done = RedirectResponse(target, status_code=303)
        done.set_cookie(
            SESSION_COOKIE,
            session_value(token),
            max_age=SESSION_DAYS * 86400,
            httponly=True,
            samesite="strict",
            secure=secure or _https(request),
        )
        done.delete_cookie(CSRF_COOKIE, path="/login")
        return done

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        if not origin_ok(request.scope, settings.web_public_url):
            return JSONResponse({"error": "logout refused: the form was not sent from this site"}, 403)
        done = RedirectResponse("/login" if token else "/", status_code=303)
        done.delete_cookie(SESSION_COOKIE)
        return done


def _https(request: Request) -> bool:
    return bool(request.url.scheme == "https")
