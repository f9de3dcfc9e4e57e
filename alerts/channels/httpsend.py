"""What the HTTP channels other than the webhook share: one POST under a watchdog, a bounded read of the
answer, and the same one-line outcomes for transport failures (alerts.channels.webhook is the model).

The channels that use it (Telegram, ntfy) hold a secret in the URL or the headers: every message built
here goes through the channel's `scrub` before it is returned.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from alerts.channels.base import SendResult
from alerts.channels.watchdog import Watchdog
from alerts.channels.webhook import USER_AGENT, redact_url, tracked_transport

__all__ = ["USER_AGENT", "Expired", "cut_off", "make_client", "read_body", "redact_url", "transport_failure"]

#: Bytes of an answer read at most, however large it is.
BODY_READ = 4096


class Expired(Exception):
    """The deadline passed between two reads of a body (an injected client, whose sockets are unknown)."""


def make_client(url: httpx.URL) -> httpx.Client:
    """A client whose connections the attempt's watchdog can cut off; redirects are never followed (the
    request, with its credentials, must not be replayed to wherever a redirect points)."""
    return httpx.Client(follow_redirects=False, transport=tracked_transport(url))


def read_body(response: httpx.Response, dog: Watchdog, limit: int = BODY_READ) -> tuple[str, bool]:
    """The start of `response`'s body as text (at most `limit` bytes read) and whether there was more.
    A compressed body (we ask for identity) is not decoded: ("", True)."""
    if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        return "", True
    raw = bytearray()
    for chunk in response.iter_raw():
        if dog.check():
            raise Expired
        raw += chunk
        if len(raw) > limit:
            break
    truncated = len(raw) > limit
    data = bytes(raw[:limit])
    try:
        return data.decode(response.charset_encoding or "utf-8", "replace"), truncated
    except LookupError:  # an unknown charset
        return data.decode("utf-8", "replace"), truncated


def cut_off(dog: Watchdog, deadline: float, where: str) -> SendResult:
    if dog.reason == "aborted":
        return SendResult(ok=False, error=f"abandoned while waiting for {where}: stopping")
    return SendResult(ok=False, error=f"no complete answer within {deadline:g} s from {where}")


def transport_failure(exc: httpx.TransportError, timeout: float, where: str, scrub: Callable[[str], str]) -> SendResult:
    if isinstance(exc, httpx.TimeoutException):
        return SendResult(ok=False, error=f"timed out after {timeout:g}s posting to {where}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return SendResult(ok=False, error=f"unsupported URL scheme for {where}", retryable=False)
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return SendResult(ok=False, error=f"could not reach {where}: {scrub(reason)}")
