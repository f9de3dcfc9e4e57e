"""What the HTTP channels (webhook, Telegram, ntfy) share: one POST under a watchdog that bounds the whole
attempt, connections the watchdog can cut, a bounded read of the answer, `Retry-After`, and the same
one-line outcomes for a cut-off or a transport failure.

Every channel holds a secret in its URL or headers: a message built here from outside text goes through
the channel's `scrub` before it is returned, and a URL is only ever shown by `redact_url`.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpcore
import httpx

from alerts.channels.base import SendResult
from alerts.channels.watchdog import Watchdog, track_socket

#: Bytes of an answer read at most, however large it is.
BODY_READ = 4096

try:
    _VERSION = version("tierdrift")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0+unknown"

USER_AGENT = f"tierdrift/{_VERSION}"
#: A receiver asking us to wait longer than this is capped: alerts are time-sensitive, and the outbox
#: (alerts.deliver.DeliveryPolicy.max_retry_after) ignores longer waits anyway.
MAX_RETRY_AFTER = 3600.0


def redact_url(url: httpx.URL) -> str:
    """`scheme://host[:port]/…`: the path, query, fragment and credentials may all hold tokens."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}/…"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP-date, RFC 9110 §10.2.3), between
    0 and `MAX_RETRY_AFTER`; None when absent or unparseable. `now` is Unix seconds, for HTTP-dates."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate returns naive for "-0000"
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


class _TrackedBackend(httpcore.SyncBackend):
    """httpcore's blocking network backend, registering each new socket with the attempt's watchdog."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = super().connect_tcp(host, port, timeout, local_address, socket_options)
        track_socket(stream.get_extra_info("socket"))
        return stream


def tracked_transport(url: httpx.URL) -> httpx.HTTPTransport:
    """A transport without keep-alive whose sockets the current watchdog can cut off. The proxy, if any, is
    the environment's (HTTPS_PROXY, NO_PROXY…), as httpx would pick it for a client without a transport."""
    proxies = urllib.request.getproxies_environment()
    proxy = None if urllib.request.proxy_bypass(url.host) else proxies.get(url.scheme) or proxies.get("all")
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0), proxy=proxy)
    # httpx builds its httpcore pool itself and takes no network backend: give the pool ours. Checked, so
    # that an httpx that changes this fails at start-up (and in tests/alerts/test_faults_delivery.py), not silently.
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version offers no way to cut a connection off (tierdrift needs 0.27 or 0.28)")
    pool._network_backend = _TrackedBackend()
    return transport


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


def post(
    client: httpx.Client,
    url: httpx.URL,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    deadline: float,
    where: str,
    scrub: Callable[[str], str],
    classify: Callable[[httpx.Response, Watchdog], SendResult],
) -> SendResult:
    """POST `content` once, streamed, within `deadline` seconds in all, and `classify` the answer (it may read
    the body with `read_body`); never raises for a delivery failure."""
    with Watchdog(deadline) as dog:
        try:
            with client.stream("POST", url, content=content, headers=headers, timeout=timeout) as response:
                return classify(response, dog)
        except httpx.TransportError as exc:
            return cut_off(dog, deadline, where) if dog.reason else transport_failure(exc, timeout, where, scrub)
        except Expired:
            return cut_off(dog, deadline, where)
