"""A Telegram chat that a bot posts each alert to, through the Bot API's `sendMessage`.

`POST {api_url}/bot{token}/sendMessage` with JSON `{"chat_id", "text", "parse_mode": "HTML",
"disable_web_page_preview": true}`; the text is `alerts.render.render_telegram` (Telegram's HTML subset,
every outside string escaped, at most 4096 characters: one alert is one message, so that a resend after a
crash is again exactly one message).

Outcomes, as `SendResult` (core.telegram.org/bots/api#making-requests: every answer is JSON with `ok`,
and on failure `error_code`, `description` and sometimes `parameters`):
`{"ok": true}` ok; 429 retryable after `parameters.retry_after`; 400 "chat not found" and 403 "bot was
blocked by the user" / "bot was kicked" gone (the channel is disabled with the reason); other 4xx not
retryable (a 400 "group chat was upgraded" names the new chat id); 5xx, timeouts and connection errors
retryable. The whole attempt is bounded by `deadline` (alerts.channels.watchdog), as for webhooks.

The bot token is part of the URL path: it is only ever shown as `scheme://host[:port]/…`, and scrubbed
from every error (a server or proxy may echo the path).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from alerts.channels.base import SendResult
from alerts.channels.httpsend import (
    MAX_RETRY_AFTER,
    USER_AGENT,
    make_client,
    parse_retry_after,
    post,
    read_body,
    redact_url,
)
from alerts.channels.watchdog import Watchdog
from alerts.config import TelegramConfig
from alerts.model import Alert
from alerts.render import alert_link, render_telegram

#: Characters of the server's `description` kept in an error.
_DESCRIPTION = 200
#: Descriptions (lower case) that mean this chat will never take a message from this bot again.
_GONE = ("chat not found", "bot was blocked by the user", "bot was kicked")
#: The start of a success too long to read whole (Telegram echoes the message sent).
_SAYS_OK = re.compile(r'\s*\{\s*"ok"\s*:\s*true\b')


class TelegramChannel:
    """Sends each alert to `config.chat_id` as the bot of `config.token`. `client` as for
    `alerts.channels.webhook.WebhookChannel`; `clock` (Unix seconds) reads dates in `Retry-After`;
    `public_url` (the `web_public_url` setting) adds a link to the alert's dashboard page."""

    kind = "telegram"

    def __init__(
        self,
        config: TelegramConfig,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        public_url: str | None = None,
    ) -> None:
        self.name = config.name
        self._public_url = public_url
        self._config = config
        self._token = config.token.get_secret_value()
        base = httpx.URL(config.api_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"telegram channel {config.name!r}: api_url must be http:// or https:// with a host")
        self._url = httpx.URL(f"{config.api_url.rstrip('/')}/bot{self._token}/sendMessage")
        self._where = redact_url(base)
        self.deadline = config.attempt_deadline
        self._owns_client = client is None
        self._client = client if client is not None else make_client(self._url)
        self._clock = clock

    def describe(self) -> str:
        return f"Telegram sendMessage via {self._where} to chat {self._config.chat_id}"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body of the `sendMessage` request for `alert`."""
        return {
            "chat_id": self._config.chat_id,
            "text": render_telegram(alert, link=alert_link(alert, self._public_url)),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }

    def send(self, alert: Alert) -> SendResult:
        """Send `alert` once, within `deadline` seconds in all; never raises for a delivery failure."""
        body = json.dumps(self.payload(alert), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, "accept-encoding": "identity"}
        return post(self._client, self._url, body, headers, self._config.timeout, self.deadline, self._where,
                    self._scrub, self._classify)  # fmt: skip

    def _classify(self, response: httpx.Response, dog: Watchdog) -> SendResult:
        status = response.status_code
        # A success echoes the whole message (up to 4096 characters and its entities): read a bounded part.
        text, truncated = read_body(response, dog, 65536 if 200 <= status < 300 else 4096)
        answer = _json(text)
        if 200 <= status < 300:
            if answer.get("ok") is True or (truncated and _SAYS_OK.match(text)):
                return SendResult.success()
            if answer.get("ok") is not False:
                return SendResult(ok=False, error=f"HTTP {status} from {self._where} is not a Bot API answer")
            status = _int(answer.get("error_code")) or 400
        description = self._scrub(str(answer.get("description") or "").strip())[:_DESCRIPTION]
        error = f"Telegram {status} from {self._where}" + (f": {description}" if description else "")
        if not answer:
            error = f"HTTP {status} {self._scrub(response.reason_phrase)} from {self._where} (not a Bot API answer)"
        given = answer.get("parameters")
        parameters: dict[str, Any] = given if isinstance(given, dict) else {}
        lowered = description.lower()
        if status in (400, 403) and any(phrase in lowered for phrase in _GONE):
            return SendResult(ok=False, error=error, retryable=False, gone=True)
        if status == 429 or status == 408 or status >= 500:
            after = _int(parameters.get("retry_after"))
            retry_after = (
                float(min(max(after, 0), MAX_RETRY_AFTER))
                if after is not None
                else parse_retry_after(response.headers.get("retry-after"), self._clock())
            )
            return SendResult(ok=False, error=error, retryable=True, retry_after=retry_after)
        migrated = _int(parameters.get("migrate_to_chat_id"))
        if migrated is not None:
            error += f" (the group is now the supergroup {migrated}: set chat_id = {migrated})"
        elif status in (401, 404):
            error += " (is the bot token right?)"
        elif 300 <= status < 400:
            error += " (redirects are not followed: configure the final api_url)"
        return SendResult(ok=False, error=error, retryable=False)

    def _scrub(self, text: str) -> str:
        """`text` on one line without the token, whole or its secret half (after the colon)."""
        out = " ".join(text.split())
        secret = self._token.split(":", 1)[-1]
        for piece in (self._token, self._token.replace(":", "%3A"), self._token.replace(":", "%3a"), secret):
            out = out.replace(piece, "…")
        return out


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
