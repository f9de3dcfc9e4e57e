"""An ntfy topic (ntfy.sh or a self-hosted server) that receives each alert as a push notification.

One `POST` of the plain-text body (`alerts.render.render_text`, cut at a line boundary to ntfy's 4096-byte
message limit: a longer body would become an attachment) to the topic URL, with the headers of
docs.ntfy.sh/publish: `Title` (the alert title, printable, one line, RFC 2047 `=?UTF-8?B?…?=` when it is
not ASCII, which ntfy decodes), `Priority` from the severity (info 3 default, warning 4 high, critical 5
urgent) and `Tags` (emoji short codes). Authentication: an access token as `Authorization: Bearer`, or a
user name and password as Basic auth.

With `web_public_url` set, a `Click` header opens the dashboard page of the alert's position
(`/positions/<id>`) or symbol (`/symbols/<source>/<symbol>`) when the notification is tapped
(`alerts.render.alert_link`).

Outcomes, as `SendResult`: 2xx ok; 429 retryable honouring `Retry-After`; 401/403 not retryable (bad
credentials or no write access to the topic); 408 and 5xx retryable; other 4xx not retryable; timeouts and
connection errors retryable; every attempt bounded by `deadline`. The topic URL (on a public server an
unguessable topic name is the credential), the token and the password are never shown: the URL as
`scheme://host[:port]/…` only.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

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
from alerts.config import NtfyConfig
from alerts.model import Alert, Severity
from alerts.render import alert_link, fit_lines, more_hint, render_text
from snapshots.printable import printable

#: Bytes of a message body ntfy shows as a message (larger ones become attachments; docs.ntfy.sh/config).
NTFY_LIMIT = 4096
#: Characters of a title kept (a notification shows far fewer).
_TITLE_MAX = 250
_PRIORITY = {Severity.INFO: "3", Severity.WARNING: "4", Severity.CRITICAL: "5"}
_TAGS = {Severity.INFO: "information_source", Severity.WARNING: "warning", Severity.CRITICAL: "rotating_light"}
_SNIPPET = 200


def header_text(text: str) -> str:
    """`text` as a safe header value: printable, one line, clipped, and RFC 2047 encoded (UTF-8, base64)
    when it is not plain ASCII."""
    line = printable(" ".join(text.split()))
    line = line if len(line) <= _TITLE_MAX else line[: _TITLE_MAX - 3] + "..."  # ASCII: no encoding for a cut
    if line.isascii():
        return line
    return "=?UTF-8?B?" + base64.b64encode(line.encode("utf-8")).decode("ascii") + "?="


def ntfy_body(alert: Alert, limit: int = NTFY_LIMIT) -> bytes:
    """`render_text(alert)` in UTF-8, at most `limit` bytes: lines dropped from the end (the footer kept),
    with a `… N more lines (…)` line saying where to read the rest."""
    text = render_text(alert).rstrip("\n")
    lines = text.split("\n")
    # Title, underline and blank line stay; so does the footer from its "--" on.
    cut = lines.index("--") if "--" in lines else len(lines)
    if cut > 3 and lines[cut - 1] == "":
        cut -= 1  # the blank line before the footer belongs to it
    head, body, foot = lines[:3], lines[3:cut], lines[cut:]
    clipped = [line if len(line) <= 500 else line[:499] + "…" for line in body]
    fitted = fit_lines(head, clipped, foot, limit, lambda s: len(s.encode("utf-8")), more_hint(alert))
    # The fallback (the title alone) is clipped in characters: never cut a UTF-8 sequence in two.
    return fitted.encode("utf-8")[:limit].decode("utf-8", "ignore").encode("utf-8")


class NtfyChannel:
    """Publishes each alert to `config.url`. `client` as for `alerts.channels.webhook.WebhookChannel`;
    `public_url` (the `web_public_url` setting) is the base of the `Click` link."""

    kind = "ntfy"

    def __init__(
        self,
        config: NtfyConfig,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        public_url: str | None = None,
    ) -> None:
        self.name = config.name
        self._public_url = public_url
        self._config = config
        self._url = httpx.URL(config.url.get_secret_value())
        if self._url.scheme not in ("http", "https") or not self._url.host:
            raise ValueError(f"ntfy channel {config.name!r}: the URL must be http:// or https:// with a host")
        self._where = redact_url(self._url)
        self._auth: str | None = None
        if config.token is not None:
            self._auth = f"Bearer {config.token.get_secret_value()}"
        elif config.username is not None and config.password is not None:
            pair = f"{config.username}:{config.password.get_secret_value()}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode("ascii")
        self.deadline = config.attempt_deadline
        self._owns_client = client is None
        self._client = client if client is not None else make_client(self._url)
        self._clock = clock

    def describe(self) -> str:
        auth = ", token" if self._config.token else f", user {self._config.username}" if self._config.username else ""
        return f"ntfy topic at {self._where}{auth}"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def headers(self, alert: Alert) -> dict[str, str]:
        headers = {
            "content-type": "text/plain; charset=utf-8",
            "user-agent": USER_AGENT,
            "accept-encoding": "identity",
            "title": header_text(alert.title),
            "priority": _PRIORITY.get(alert.severity, "3"),
            "tags": f"{_TAGS.get(alert.severity, 'information_source')},tierdrift",
        }
        link = alert_link(alert, self._public_url)
        if link is not None:
            headers["click"] = link  # ASCII: alert_link percent-encodes the symbol
        if self._auth is not None:
            headers["authorization"] = self._auth
        return headers

    def send(self, alert: Alert) -> SendResult:
        """Publish `alert` once, within `deadline` seconds in all; never raises for a delivery failure."""
        body = ntfy_body(alert)
        headers = self.headers(alert)
        return post(self._client, self._url, body, headers, self._config.timeout, self.deadline, self._where,
                    self._scrub, self._classify)  # fmt: skip

    def _classify(self, response: httpx.Response, dog: Watchdog) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return SendResult.success()  # the body is never read
        text, truncated = read_body(response, dog)
        error = f"HTTP {status} {self._scrub(response.reason_phrase)} from {self._where}"
        detail = _error_text(text) if not truncated else ""
        if detail:
            error += f": {self._scrub(detail)[:_SNIPPET]}"
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            return SendResult(ok=False, error=error, retryable=True, retry_after=retry_after)
        if status in (401, 403):
            error += " (check the token, or the username and password, and their access to the topic)"
        elif 300 <= status < 400:
            error += " (redirects are not followed: configure the final topic URL)"
        return SendResult(ok=False, error=error, retryable=False)

    def _scrub(self, text: str) -> str:
        """`text` on one line without the topic URL, its path, the token, the password or the Basic pair."""
        out = " ".join(text.split())
        pieces = [str(self._url), self._url.path, self._url.raw_path.decode("ascii", "replace")]
        pieces += [seg for seg in self._url.path.split("/") if len(seg) >= 3]
        for secret in (self._config.token, self._config.password):
            if secret is not None:
                pieces.append(secret.get_secret_value())
        if self._auth is not None:
            pieces.append(self._auth.split(" ", 1)[1])
        for piece in sorted({p for p in pieces if len(p) > 1}, key=len, reverse=True):
            out = out.replace(piece, "…")
        return out


def _error_text(text: str) -> str:
    """ntfy's JSON error (`{"code": 40101, "http": 401, "error": "unauthorized", …}`): its `error`; else the
    start of the body, on one line."""
    try:
        value = json.loads(text)
    except ValueError:
        return " ".join(text.split())
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    return " ".join(text.split())
