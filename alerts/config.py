"""Channel configuration: the `[[channels]]` tables of the config file, and their filters.

Secrets (SMTP password, webhook secret, any token in a webhook URL) are `SecretStr`: they print as
`**********` and are only unwrapped by the channel that uses them.

Everything is checked when the settings load, so that a channel cannot fail later on a value that could
never have worked (a webhook URL without `https://`, an address without `@`, a timeout of `nan`): the
validators raise `ValueError`s whose text names the rule and never repeats a secret.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from alerts.model import KINDS, Alert, Severity
from alerts.signing import secret_key
from alerts.smtpurl import parse_smtp_url
from snapshots.model import SOURCES

#: Unknown keys are typos (the value would be silently ignored); inf and nan are never a sensible number.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
#: A channel that has not answered after this many seconds is down, not slow.
MAX_TIMEOUT = 600.0
# Plausibly an address: something, one @, a domain of dot-separated labels (or a [literal]). Full RFC 5322
# syntax is not the point; catching "alice.example.com" or "a@b@c" before the first alert is.
_ADDRESS = re.compile(
    r"[^@\s<>()\[\],;:\"]+@(?:[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*|\[[0-9A-Fa-f.:]+\])"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_http_url(url: str) -> str:
    """`url` if it is an http:// or https:// URL with a host, else `ValueError`. The message is a rule
    that names no URL: a Slack or Discord webhook URL is itself the credential."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL (is the port a number?)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if re.search(r"\s", url) or _CONTROL.search(url):
        raise ValueError("must not contain spaces or control characters (percent-encode them)")
    return url


def check_address(address: str) -> str:
    """`address` if it is plausibly shaped (`local@domain`), else `ValueError` quoting it (not a secret)."""
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"{address!r} is not an e-mail address like alice@example.com")
    return address


def check_whsec(secret: str) -> str:
    """`secret` if it is a Standard Webhooks `whsec_<base64>` secret; `ValueError` naming no secret."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret must be in the Standard Webhooks form whsec_<base64>")
    secret_key(secret)  # a clear error at start-up, naming no secret
    return secret


def _not_boolean(value: object) -> object:
    if isinstance(value, bool):  # pydantic would read `timeout = true` as 1 second
        raise ValueError("must be a number of seconds, not true or false")
    return value


def _check_name(value: str) -> str:
    if not value.strip() or len(value) > 64 or _CONTROL.search(value):
        raise ValueError("a channel name must be 1 to 64 printable characters")
    return value


class Filters(BaseModel):
    """Which alerts a channel takes. An empty list means "all"."""

    model_config = STRICT

    sources: list[str] = Field(default_factory=list)
    symbols: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    min_severity: str = "info"

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
        return value

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = [k for k in value if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown event kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
        return value

    @field_validator("min_severity")
    @classmethod
    def _severity(cls, value: str) -> str:
        Severity.parse(value)
        return value.lower()

    def accepts(self, alert: Alert) -> bool:
        if alert.kind == "test":
            return True  # `alerts test` must reach every channel whatever its filters
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.sources and alert.source not in self.sources:
            return False
        if self.symbols and alert.symbol not in self.symbols:
            return False
        return alert.severity >= Severity.parse(self.min_severity)


class WebhookConfig(BaseModel):
    """An HTTP endpoint that receives a JSON POST per alert."""

    model_config = STRICT

    type: Literal["webhook"] = "webhook"
    name: str = "webhook"
    url: SecretStr  # may carry a token (Slack, Discord): never shown
    secret: SecretStr | None = None  # Standard Webhooks signing secret, "whsec_<base64>"
    format: Literal["json", "slack", "discord"] = "json"
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  # seconds for each connect, write or read
    #: Seconds for a whole attempt, however slowly the receiver answers; None: 3 × timeout.
    deadline: float | None = Field(default=None, gt=0, le=3 * MAX_TIMEOUT)
    filters: Filters = Field(default_factory=Filters)

    @property
    def attempt_deadline(self) -> float:
        return self.deadline if self.deadline is not None else 3 * self.timeout

    _name = field_validator("name")(_check_name)
    _timeout = field_validator("timeout", mode="before")(_not_boolean)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        check_http_url(value.get_secret_value())
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_whsec(value.get_secret_value())
        return value


class EmailConfig(BaseModel):
    """SMTP delivery. `smtp_url`: `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465` (implicit TLS),
    or `smtp://host:25?tls=none` for a trusted local relay without TLS."""

    model_config = STRICT

    type: Literal["email"] = "email"
    name: str = "email"
    smtp_url: SecretStr
    to: list[str] = Field(min_length=1)
    sender: str = "tierdrift@localhost"
    ca_file: str | None = None  # extra CA bundle to trust (a private relay's certificate)
    timeout: float = Field(default=20.0, gt=0, le=MAX_TIMEOUT)  # seconds for each connect, write or read
    #: Seconds for a whole attempt, however slowly the receiver answers; None: 3 × timeout.
    deadline: float | None = Field(default=None, gt=0, le=3 * MAX_TIMEOUT)
    filters: Filters = Field(default_factory=Filters)

    @property
    def attempt_deadline(self) -> float:
        return self.deadline if self.deadline is not None else 3 * self.timeout

    _name = field_validator("name")(_check_name)
    _timeout = field_validator("timeout", mode="before")(_not_boolean)

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [check_address(a) for a in value]

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return check_address(value)

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"ca_file {value!r} is not a file")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr) -> SecretStr:
        parse_smtp_url(value.get_secret_value())  # raises ValueError without repeating the URL
        return value


ChannelConfig = Annotated[WebhookConfig | EmailConfig, Field(discriminator="type")]
