"""Errors of fetching a tier table from an exchange, and their translation from ccxt and httpx.

    TierdriftError                  (snapshots.errors)
     └─ FetchError                  fetching a source failed; `str()` is one line, secrets redacted
         ├─ FetchTimeout            no answer within `settings.http_timeout`, HTTP 408/504 (retryable)
         ├─ RateLimited             HTTP 429/418, Bybit 403 or retCode 10006/10018        (retryable)
         ├─ ExchangeUnavailable     HTTP 5xx, a bot challenge, Bybit retCode 10016/10002,
         │                          connection refused or reset                           (retryable)
         │   └─ UnderMaintenance    the exchange says it is in maintenance
         ├─ GeoBlocked              HTTP 451: the exchange refuses this machine's location
         ├─ AuthFailed              bad key or signature, clock skew
         ├─ Truncated               a page chain that loops or never ends
         ├─ Malformed               not JSON, or JSON not shaped like the endpoint's answer
         └─ EmptyResult             a well-formed answer without a single table

A payload that is well formed JSON but holds an invalid table raises `snapshots.errors.PayloadError` /
`InvalidTable` from the parser instead; those name the symbol.

Messages read `<cause>[: <the exchange's own message>]`, e.g. `HTTP 503 Service Unavailable: busy` or
`exchange error (retCode 10001): params error`; the fetchers prefix the host (`FetchError.at`), so a
poll failure reads `fapi.binance.com: HTTP 503 Service Unavailable: busy`. The exchange's message is
kept whole on one line, up to `MAX_EXCHANGE_MESSAGE` characters, and cut at a sentence or word beyond.

ccxt puts the request URL into its messages, and a signed Binance URL carries `signature=` (domain doc
§7). The URL is never repeated (the host says where), every message goes through `redact`, and the
ccxt/httpx exception is never chained (`from None`), so a traceback cannot leak it either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from snapshots.errors import TierdriftError

#: Longest exchange message quoted whole; Binance's 451 text is about 210 characters.
MAX_EXCHANGE_MESSAGE = 500
#: Longest line `one_line` returns.
MAX_LINE = 1000
#: How long a source rests after HTTP 451. A geo-block is permanent for the machine (domain doc §8):
#: polling every few minutes only repeats refused requests from a restricted location, while one try an
#: hour still notices a move (VPN, new host) on its own.
GEO_BLOCK_REST_SECONDS = 3600.0

# `signature=…`, `apiKey: '…'`, `"X-MBX-APIKEY": "…"` and the like: the name, a separator, an optional
# quote, then the value up to the next delimiter.
_SECRET_FIELD = re.compile(
    r"""(?P<name>signature|apiKey|api_key|api-key|X-MBX-APIKEY|secret)(?P<sep>['"]?\s*[=:]\s*['"]?)"""
    r"""(?P<value>[^&\s'",;}\]]+)""",
    re.IGNORECASE,
)
# ccxt's messages: `<id> <METHOD> <url> <status> <reason> <body>` for an HTTP status it maps,
# `<id> <status> <reason> <body>` for Binance's 418/429, `<id> <body>` for an error code in the body, and
# `<id> <METHOD> <url>` for transport failures (the cause is chained).
_CCXT = re.compile(
    r"^(?P<id>[a-z][a-z0-9]*)(?: (?:GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) (?P<url>\S+))?"
    r"(?: (?P<status>[1-5]\d\d)(?=\s|$))?\s?(?P<rest>.*)$",
    re.DOTALL,
)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")
#: Keys of the exchanges' error envelopes: Binance `{code, msg}`, Bybit `{retCode, retMsg}`, the web
#: endpoint `{code: "000002", message, success: false}`.
_CODE_KEYS = ("retCode", "ret_code", "code")
_MESSAGE_KEYS = ("msg", "retMsg", "ret_msg", "message")
#: Codes that mean success in those envelopes.
_OK_CODES = frozenset({"", "0", "000000", "200"})


class FetchError(TierdriftError):
    """Fetching one source failed. `str(err)` is the one-line reason that the poll records."""

    #: Whether repeating the same request later may succeed (Bybit's page loop retries only these).
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, rest_seconds: float | None = None) -> None:
        super().__init__(message)
        #: When set, the exchange asked clients not to call again for this many seconds (Bybit's HTTP 403
        #: IP limit: at least 10 minutes; domain doc §8). The poll records it and the source rests; the
        #: fetchers never retry such an error within the poll.
        self.rest_seconds = rest_seconds

    def again(self, retries: int) -> FetchError:
        """The same error, noting that `retries` retries were spent on it."""
        noun = "retry" if retries == 1 else "retries"
        return type(self)(f"{self}: gave up after {retries} {noun}", rest_seconds=self.rest_seconds)

    def at(self, host: str) -> FetchError:
        """The same error, its message prefixed with the host that failed (once)."""
        if not host or str(self).startswith(f"{host}: "):
            return self
        return type(self)(f"{host}: {self}", rest_seconds=self.rest_seconds)


class FetchTimeout(FetchError):
    retryable = True


class RateLimited(FetchError):
    retryable = True


class ExchangeUnavailable(FetchError):
    retryable = True


class UnderMaintenance(ExchangeUnavailable):
    retryable = False  # maintenance lasts minutes to hours: retrying within one poll only adds load


class GeoBlocked(FetchError):
    """HTTP 451: the exchange serves no client from this machine's location (domain doc §8)."""


class AuthFailed(FetchError):
    pass


class Truncated(FetchError):
    pass


class Malformed(FetchError):
    pass


class EmptyResult(FetchError):
    pass


# -- text ------------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with signature/API-key values and every given secret (raw or URL-encoded) replaced by `***`.

    Empty secrets are ignored. Replacement is literal and case-sensitive for the secrets themselves, so
    a secret that happens to be a common word hides that word too: safety wins over readability.
    """
    out = _SECRET_FIELD.sub(lambda m: f"{m['name']}{m['sep']}***", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe="")}:
            out = out.replace(form, "***")
    return out


def one_line(text: str, secrets: Iterable[str] = (), *, limit: int = MAX_LINE) -> str:
    """`text` redacted, on one line, and at most `limit` characters (cut at a sentence or word, then `…`)."""
    return _capped(" ".join(redact(text, secrets).split()), limit)


def _capped(flat: str, limit: int) -> str:
    if len(flat) <= limit:
        return flat
    room = flat[: limit - 1]
    for stop in (". ", " "):  # a whole sentence if a long enough one fits, else a whole word
        cut = room.rfind(stop)
        if cut >= limit // 2:
            return room[: cut + 1].rstrip() + " …"
    return room + "…"


def host_of(url: str) -> str:
    """The `host[:port]` of a base URL, as messages name it; never its user or password."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = parts.hostname or url
    try:
        port = parts.port
    except ValueError:  # a malformed port: name the host alone
        port = None
    if ":" in host:  # IPv6: brackets keep the port readable
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header, if present and sane (HTTP dates are ignored)."""
    value = header(headers, "Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """The value of header `name` (any case) as text, or None."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if str(key).lower() == wanted:
            return str(value)
    return None


# -- what the exchange said ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Said:
    """What a failed request's answer says: its HTTP status and the exchange's own code and words."""

    status: int | None = None
    #: The exchange's error code (`-1121`, `10016`, `000002`), None when it gave none or a success code.
    code: str | None = None
    #: What the exchange calls it: "code" (Binance) or "retCode" (Bybit).
    code_name: str = "code"
    #: The exchange's message, redacted, on one line and capped; "" when it gave none.
    message: str = ""

    def cause(self, head: str) -> str:
        """`head`, the code in parentheses if any, then `: message` if any."""
        code = f" ({self.code_name} {self.code})" if self.code else ""
        return f"{head}{code}: {self.message}" if self.message else f"{head}{code}"


def read_body(text: str | None, status: int | None = None, secrets: Iterable[str] = ()) -> Said:
    """What an answer body says: the code and message of a JSON error envelope, else the plain text.

    An HTML page says nothing (its markup is no message), nor does text that only repeats the status.
    """
    raw = (text or "").strip()
    envelope = _json_object(raw)
    if envelope is not None:
        return _from_envelope(envelope, status, secrets)
    if raw.startswith("<") or raw.casefold() in _status_words(status):
        raw = ""
    return Said(status=status, message=one_line(raw, secrets, limit=MAX_EXCHANGE_MESSAGE))


def _json_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        found, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _from_envelope(envelope: Mapping[str, Any], status: int | None, secrets: Iterable[str]) -> Said:
    code_name = next((k for k in _CODE_KEYS if k in envelope), "code")
    code = envelope.get(code_name)
    code_text = None if code is None or isinstance(code, bool) or str(code) in _OK_CODES else str(code)
    words = next((envelope[k] for k in _MESSAGE_KEYS if isinstance(envelope.get(k), str) and envelope[k]), "")
    message = one_line(words, secrets, limit=MAX_EXCHANGE_MESSAGE)
    return Said(status=status, code=code_text, code_name=code_name.replace("ret_code", "retCode"), message=message)


def _status_words(status: int | None) -> set[str]:
    phrase = _phrase(status)
    return {"", phrase.casefold(), f"{status} {phrase}".casefold()} if status else {""}


def _phrase(status: int | None) -> str:
    try:
        return HTTPStatus(status).phrase if status is not None else ""
    except ValueError:
        return ""


def read_ccxt(exc: Exception, secrets: Iterable[str] = ()) -> Said:
    """What a ccxt error message says the exchange answered (the formats above `_CCXT`)."""
    match = _CCXT.match(str(exc))
    if match is None:
        return Said(message=one_line(str(exc), secrets, limit=MAX_EXCHANGE_MESSAGE))
    status = int(match["status"]) if match["status"] else None
    rest = match["rest"]
    phrase = _phrase(status)
    if phrase and rest.casefold().startswith(phrase.casefold()):
        rest = rest[len(phrase) :]  # ccxt repeats the status line's reason before the body
    return read_body(rest, status, secrets)


def exchange_name(ccxt_id: str) -> str:
    """ "Binance" for `binanceusdm`, "Bybit" for `bybit`: how a message names the exchange."""
    for prefix, name in (("binance", "Binance"), ("bybit", "Bybit")):
        if ccxt_id.startswith(prefix):
            return name
    return "the exchange"


# -- translation -----------------------------------------------------------------------------------


def http_failure(said: Said, *, exchange: str, retry_after: float | None = None) -> FetchError:
    """The `FetchError` of an answer with HTTP status `said.status` (set), whatever client got it.

    `retry_after` (seconds, from the answer's header) makes an HTTP 418 rest the source: Binance sends
    418 to an IP it banned for ignoring 429s, and the ban grows if the IP keeps calling.
    """
    status = said.status or 0
    head = f"HTTP {status} {_phrase(status)}".rstrip()
    if status == HTTPStatus.UNAVAILABLE_FOR_LEGAL_REASONS:
        return geo_blocked(said, exchange=exchange)
    if status in (HTTPStatus.TOO_MANY_REQUESTS, 418):
        return RateLimited(said.cause(head), rest_seconds=retry_after if status == 418 else None)
    if status in (HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.GATEWAY_TIMEOUT):
        return FetchTimeout(said.cause(head))
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.PROXY_AUTHENTICATION_REQUIRED):
        return AuthFailed(said.cause(head))
    if status >= 500:
        return ExchangeUnavailable(said.cause(head))
    return FetchError(said.cause(head))


def geo_blocked(said: Said, *, exchange: str) -> GeoBlocked:
    """HTTP 451: one line saying who refuses, what to do, then the exchange's message quoted whole.

    Kept short (about 290 characters with Binance's real message and host) so that the human outputs,
    which clip outside text at 300 characters, show it whole; what to do comes before the quote.
    """
    quoted = f': "{said.message}"' if said.message else ""
    return GeoBlocked(
        f"HTTP 451: {exchange} refuses this location; remove this source from `sources`{quoted}",
        rest_seconds=GEO_BLOCK_REST_SECONDS,
    )


def _seconds(timeout: float) -> str:
    return f"{timeout:g}s"


def from_ccxt(exc: Exception, *, timeout: float, secrets: Iterable[str] = ()) -> FetchError:
    """Translate a ccxt exception (domain doc §7 table) into a `FetchError` with a redacted message."""
    # Loaded here, not at module level: this module is imported by commands that never talk to an
    # exchange. When a ccxt error exists, ccxt is loaded; this loads only its errors (`lightccxt`).
    from monitor.exchanges.lightccxt import ccxt_package

    ccxt = ccxt_package()

    said = read_ccxt(exc, secrets)
    if isinstance(exc, ccxt.OnMaintenance):
        return UnderMaintenance(said.cause("exchange under maintenance"))
    if said.status is not None:
        match = _CCXT.match(str(exc))
        return http_failure(said, exchange=exchange_name(match["id"] if match else ""))
    if isinstance(exc, ccxt.RequestTimeout):
        return FetchTimeout(f"timeout after {_seconds(timeout)}")
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):  # siblings in ccxt 4.5
        return RateLimited(said.cause("rate limited"))
    if isinstance(exc, ccxt.InvalidNonce):
        return AuthFailed(said.cause("request rejected for clock skew (check the system clock)"))
    if isinstance(exc, ccxt.AuthenticationError):
        return AuthFailed(said.cause("authentication failed"))
    if isinstance(exc, ccxt.BadResponse):
        return Malformed(said.cause("malformed response"))
    if isinstance(exc, ccxt.NetworkError):
        return ExchangeUnavailable(f"network error: {_transport_cause(exc, said)}")
    return FetchError(said.cause("exchange error"))


def _transport_cause(exc: BaseException, said: Said) -> str:
    """Why a connection failed, from the chained library error (`[Errno 111] Connection refused`)."""
    if said.message:
        return said.message
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return type(exc).__name__
    found = _ERRNO.search(str(cause))
    return found.group(0).strip() if found else type(cause).__name__


def from_httpx(exc: Exception, *, timeout: float, exchange: str = "the exchange") -> FetchError:
    """Translate an httpx exception from one of the project's own requests into a `FetchError`."""
    import httpx  # lazily, like ccxt: only polling needs an HTTP client

    if isinstance(exc, httpx.TimeoutException):
        return FetchTimeout(f"timeout after {_seconds(timeout)}")
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return http_failure(read_body(response.text, response.status_code), exchange=exchange)
    if isinstance(exc, httpx.TransportError):
        return ExchangeUnavailable(f"network error: {one_line(str(exc)) or type(exc).__name__}")
    return FetchError(f"HTTP client error: {one_line(str(exc)) or type(exc).__name__}")
