"""An HTTP endpoint that receives one JSON POST per alert: our own schema, or Slack/Discord messages.

The body is `alerts.render.render_json` (format "json") or `render_chat` (formats "slack", "discord").
With a secret configured, requests carry the Standard Webhooks headers (alerts.signing), with
`webhook-id` = the alert id on every attempt, so that receivers can de-duplicate resends.

Outcomes, as `SendResult`: 2xx ok; 410 gone (disable the channel); 408, 429 and 5xx retryable, honouring
`Retry-After`; other 3xx/4xx not retryable; timeouts and connection errors retryable. The URL may carry
a token (Slack and Discord put it in the path), so it is only ever shown as `scheme://host[:port]/…`.

One bad receiver must cost little: each attempt has a total deadline (`attempt_deadline`), enforced by an
`alerts.channels.watchdog.Watchdog` that cuts the connection off however slowly the receiver drip-feeds
its headers or body (httpx's timeouts bound each read, not the attempt); the response is streamed, a 2xx
body is never read, and of an error body only the first few KiB. Connections are not kept alive: each
attempt opens its own, so that the watchdog always knows the socket it has to cut.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from urllib.parse import unquote

import httpx

from alerts.channels.base import SendResult
from alerts.channels.httpsend import (
    USER_AGENT,
    make_client,
    parse_retry_after,
    post,
    read_body,
    redact_url,
)
from alerts.channels.watchdog import Watchdog
from alerts.config import WebhookConfig
from alerts.model import Alert
from alerts.render import render_chat, render_json
from alerts.signing import secret_key, sign

#: Characters of a failed response's body kept in the error (Slack and Discord explain failures there).
_BODY_SNIPPET = 200


def _retryable_status(status: int) -> bool:
    # 408: the receiver timed out reading our request, which a later attempt may not; 429 and 5xx: the
    # receiver is overloaded or broken for now.
    return status in (408, 429) or status >= 500


class WebhookChannel:
    """POSTs each alert to `config.url`. `client` (an injected `httpx.Client`) lets tests and callers share
    a transport (the deadline is then only checked between reads of the body, the watchdog knowing no
    socket of it); otherwise the channel owns one and `close()` closes it. `clock` returns Unix seconds and
    stamps `webhook-timestamp` and dates in `Retry-After`.

    Raises `ValueError` (naming no secret) when the URL is not http(s) or the secret is not valid base64:
    a configuration error should stop start-up, not fail each delivery.
    """

    kind = "webhook"

    def __init__(
        self, config: WebhookConfig, *, client: httpx.Client | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = config.name
        self._config = config
        self._url = httpx.URL(config.url.get_secret_value())
        if self._url.scheme not in ("http", "https") or not self._url.host:
            raise ValueError(f"webhook channel {config.name!r}: the URL must be http:// or https:// with a host")
        self._secret = config.secret.get_secret_value() if config.secret else None
        if self._secret is not None:
            secret_key(self._secret)  # fail now on a malformed secret
        self._where = redact_url(self._url)
        self._owns_client = client is None
        self.deadline = config.attempt_deadline
        # Redirects are not followed: a hook that moved must be reconfigured, and the POST must not be
        # replayed (with its signature) to wherever a redirect points.
        self._client = client if client is not None else make_client(self._url)
        self._clock = clock

    def describe(self) -> str:
        signed = ", signed" if self._secret else ""
        return f"POST {self._where} ({self._config.format}{signed})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def body(self, alert: Alert) -> bytes:
        """The exact bytes POSTed for `alert` (and signed): compact UTF-8 JSON."""
        fmt = self._config.format
        payload = render_json(alert) if fmt == "json" else render_chat(alert, fmt)
        # default=str: `data` is JSON-ready by contract; a stray datetime must not stop the alert.
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    def headers(self, alert: Alert, body: bytes) -> dict[str, str]:
        """Request headers; with a secret, the Standard Webhooks trio signed at the current clock."""
        # identity: an error body is read raw and only its first bytes, which a compressed body would garble.
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, "accept-encoding": "identity"}
        if self._secret is not None:
            timestamp = int(self._clock())
            headers["webhook-id"] = alert.id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self._secret, alert.id, timestamp, body)
        return headers

    def send(self, alert: Alert) -> SendResult:
        """POST `alert` once, within `deadline` seconds in all, and classify the outcome; never raises for a
        delivery failure."""
        body = self.body(alert)
        headers = self.headers(alert, body)
        return post(self._client, self._url, body, headers, self._config.timeout, self.deadline, self._where,
                    self._scrub, self._classify)  # fmt: skip

    def _classify(self, response: httpx.Response, dog: Watchdog) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return SendResult.success()  # the body is never read: closing the stream drops the connection
        error = f"HTTP {status} {response.reason_phrase} from {self._where}"
        snippet = self._snippet(response, dog)
        if snippet:
            error += f": {snippet}"
        if status == 410:
            return SendResult(ok=False, error=error, retryable=False, gone=True)
        if _retryable_status(status):
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            return SendResult(ok=False, error=error, retryable=True, retry_after=retry_after)
        if 300 <= status < 400:
            error += " (redirects are not followed: configure the final URL)"
        return SendResult(ok=False, error=error, retryable=False)

    def _snippet(self, response: httpx.Response, dog: Watchdog) -> str:
        """The start of an error body, on one line, scrubbed: at most `BODY_READ` bytes are read."""
        text, truncated = read_body(response, dog)
        if truncated:
            # A secret cut in two at the end would escape the scrubbing: drop as much as the longest could be.
            text = text[: max(0, len(text) - self._longest_piece)]
        return self._scrub(" ".join(text.split()))[:_BODY_SNIPPET]

    def _scrub(self, text: str) -> str:
        """`text` on one line with every secret-bearing piece of the URL, and the signing secret, replaced:
        receivers and exception messages sometimes echo the URL or a path segment."""
        out = " ".join(text.split())
        for piece in self._secret_pieces():
            out = out.replace(piece, "…")
        return out

    def _secret_pieces(self) -> list[str]:
        url = self._url
        raw_path = url.raw_path.decode("ascii", "replace")
        pieces = [str(url), raw_path, url.path, url.query.decode("ascii", "replace"), url.userinfo.decode()]
        pieces += [seg for seg in url.path.split("/") if len(seg) >= 4]
        pieces += [unquote(p) for part in raw_path.split("?", 1)[1:] for p in re.split(r"[&=]", part) if len(p) >= 4]
        if self._secret:
            pieces.append(self._secret)
        # Longest first, so that the whole URL goes before its parts; "/" alone would mangle every message.
        return sorted({p for p in pieces if len(p) > 1}, key=len, reverse=True)

    @property
    def _longest_piece(self) -> int:
        return max((len(p) for p in self._secret_pieces()), default=0)
