"""Errors of fetching a tier table from an exchange, and their translation from ccxt and httpx.

    TierdriftError                  (snapshots.errors)
     └─ FetchError                  fetching a source failed; `str()` is one line, secrets redacted
         ├─ FetchTimeout            no answer within `settings.http_timeout`             (retryable)
         ├─ RateLimited             HTTP 429/418, Bybit 403 or retCode 10006             (retryable)
         ├─ ExchangeUnavailable     HTTP 5xx, connection refused or reset                (retryable)
         │   └─ UnderMaintenance    the exchange says it is in maintenance
         ├─ AuthFailed              bad key or signature, clock skew
         ├─ Truncated               a page chain that loops or never ends
         ├─ Malformed               not JSON, or JSON not shaped like the endpoint's answer
         └─ EmptyResult             a well-formed answer without a single table

A payload that is well formed JSON but holds an invalid table raises `snapshots.errors.PayloadError` /
`InvalidTable` from the parser instead; those name the symbol.

ccxt puts the request URL into its messages, and a signed Binance URL carries `signature=` (domain doc
§7). Every message built here goes through `redact`, and the ccxt/httpx exception is never chained
(`from None`), so a traceback cannot leak it either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar
from urllib.parse import quote

from snapshots.errors import TierdriftError

_MAX_DETAIL = 200

# `signature=…`, `apiKey: '…'`, `"X-MBX-APIKEY": "…"` and the like: the name, a separator, an optional
# quote, then the value up to the next delimiter.
_SECRET_FIELD = re.compile(
    r"""(?P<name>signature|apiKey|api_key|api-key|X-MBX-APIKEY|secret)(?P<sep>['"]?\s*[=:]\s*['"]?)"""
    r"""(?P<value>[^&\s'",;}\]]+)""",
    re.IGNORECASE,
)
# A standalone HTTP status in a ccxt message such as "bybit GET http://… 503 Service Unavailable …".
_STATUS = re.compile(r"(?<!\S)([1-5]\d\d)(?!\S)")


class FetchError(TierdriftError):
    """Fetching one source failed. `str(err)` is the one-line reason that the poll records."""

    #: Whether repeating the same request later may succeed (Bybit's page loop retries only these).
    retryable: ClassVar[bool] = False

    def again(self, retries: int) -> FetchError:
        """The same error, noting that `retries` retries were spent on it."""
        return type(self)(f"{self}: gave up after {retries} {'retry' if retries == 1 else 'retries'}")


class FetchTimeout(FetchError):
    retryable = True


class RateLimited(FetchError):
    retryable = True


class ExchangeUnavailable(FetchError):
    retryable = True


class UnderMaintenance(ExchangeUnavailable):
    retryable = False  # maintenance lasts minutes to hours: retrying within one poll only adds load


class AuthFailed(FetchError):
    pass


class Truncated(FetchError):
    pass


class Malformed(FetchError):
    pass


class EmptyResult(FetchError):
    pass


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


def one_line(text: str, secrets: Iterable[str] = ()) -> str:
    """A redacted, single-line, bounded excerpt of an exchange or library message."""
    flat = " ".join(redact(text, secrets).split())
    return flat if len(flat) <= _MAX_DETAIL else flat[: _MAX_DETAIL - 1] + "…"


def _seconds(timeout: float) -> str:
    return f"{timeout:g}s"


def _status_reason(status: int | None, default: str) -> str:
    return f"HTTP {status} from exchange" if status is not None else default


def from_ccxt(exc: Exception, *, timeout: float, secrets: Iterable[str] = ()) -> FetchError:
    """Translate a ccxt exception (domain doc §7 table) into a `FetchError` with a redacted message."""
    # Imported here, not at module level: `import ccxt` costs 0.3 s and 78 MB, and this module is
    # imported by commands that never talk to an exchange. When a ccxt error exists, ccxt is loaded.
    import ccxt

    detail = one_line(str(exc), secrets)
    match = _STATUS.search(detail)
    status = int(match.group(1)) if match else None
    if isinstance(exc, ccxt.RequestTimeout):
        return FetchTimeout(f"timeout after {_seconds(timeout)}")
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):  # siblings in ccxt 4.5
        return RateLimited(f"rate limited ({_status_reason(status, 'exchange throttle')})")
    if isinstance(exc, ccxt.OnMaintenance):
        return UnderMaintenance(f"exchange under maintenance: {detail}")
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        if status is not None and 400 <= status < 500:
            # ccxt files some plain client errors (Binance: any 400 without a JSON body) here; they are
            # not outages, retrying will not help, and the body is the only clue.
            return FetchError(f"HTTP {status} from exchange: {detail}")
        return ExchangeUnavailable(_status_reason(status, f"exchange unavailable: {detail}"))
    if isinstance(exc, ccxt.InvalidNonce):
        return AuthFailed(f"request rejected for clock skew (check the system clock): {detail}")
    if isinstance(exc, ccxt.AuthenticationError):
        return AuthFailed(f"authentication failed: {detail}")
    if isinstance(exc, ccxt.BadResponse):
        return Malformed(f"malformed response: {detail}")
    if isinstance(exc, ccxt.NetworkError):
        return ExchangeUnavailable(f"network error: {detail}")
    return FetchError(f"exchange error: {detail}")


def from_httpx(exc: Exception, *, timeout: float) -> FetchError:
    """Translate an httpx exception from one of the project's own requests into a `FetchError`."""
    import httpx  # lazily, like ccxt: only polling needs an HTTP client

    if isinstance(exc, httpx.TimeoutException):
        return FetchTimeout(f"timeout after {_seconds(timeout)}")
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (418, 429):
            return RateLimited(f"rate limited (HTTP {status} from exchange)")
        if status >= 500:
            return ExchangeUnavailable(f"HTTP {status} from exchange")
        return FetchError(f"HTTP {status} from exchange")
    if isinstance(exc, httpx.TransportError):
        return ExchangeUnavailable(f"network error: {one_line(str(exc)) or type(exc).__name__}")
    return FetchError(f"HTTP client error: {one_line(str(exc)) or type(exc).__name__}")
