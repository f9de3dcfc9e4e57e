"""The channel contract: send one alert, and say precisely how it went.

A channel never retries by itself and never raises for a delivery failure: it returns a `SendResult`,
and the outbox (alerts.outbox) decides about retries, backoff and giving up. Messages in results are one
line and never contain a secret.

A send is bounded in time: the real channels give up after their `deadline` (seconds, an attribute the
delivery loop also reads to size its claims) however slowly the receiver answers, and cut off at once when
the `alerts.channels.watchdog.Abort` they run under is aborted (a stopping daemon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from alerts.model import Alert


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None
    retryable: bool = True  # False: retrying the same message cannot succeed (e.g. 400, bad address)
    retry_after: float | None = None  # seconds the receiver asked us to wait (HTTP Retry-After)
    gone: bool = False  # the endpoint is gone for good (HTTP 410, a Telegram chat gone): disable the channel

    @classmethod
    def success(cls) -> SendResult:
        return cls(ok=True)


class Channel(Protocol):
    """A configured destination. `name` is unique among the configured channels."""

    name: str
    kind: str  # "webhook" | "email" | "telegram" | "ntfy" | "apprise"

    def send(self, alert: Alert) -> SendResult: ...

    def describe(self) -> str:
        """Where it delivers, with every secret redacted (for logs and `alerts list`)."""
        ...

    def close(self) -> None: ...
