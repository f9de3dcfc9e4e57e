"""Channel configuration: the `[[channels]]` tables of the config file, and their filters.

Secrets (SMTP password, webhook secret, any token in a webhook URL) are `SecretStr`: they print as
`**********` and are only unwrapped by the channel that uses them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from alerts.model import KINDS, Alert, Severity
from alerts.signing import secret_key
from alerts.smtpurl import parse_smtp_url


class Filters(BaseModel):
    """Which alerts a channel takes. An empty list means "all"."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(default_factory=list)
    symbols: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    min_severity: str = "info"

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

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"] = "webhook"
    name: str = "webhook"
    url: SecretStr  # may carry a token (Slack, Discord): never shown
    secret: SecretStr | None = None  # Standard Webhooks signing secret, "whsec_<base64>"
    format: Literal["json", "slack", "discord"] = "json"
    timeout: float = Field(default=10.0, gt=0)
    filters: Filters = Field(default_factory=Filters)

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            if not value.get_secret_value().startswith("whsec_"):
                raise ValueError("a webhook secret must be in the Standard Webhooks form whsec_<base64>")
            secret_key(value.get_secret_value())  # a clear error at start-up, naming no secret
        return value


class EmailConfig(BaseModel):
    """SMTP delivery. `smtp_url`: `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465` (implicit TLS),
    or `smtp://host:25?tls=none` for a trusted local relay without TLS."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["email"] = "email"
    name: str = "email"
    smtp_url: SecretStr
    to: list[str] = Field(min_length=1)
    sender: str = "tierdrift@localhost"
    ca_file: str | None = None  # extra CA bundle to trust (a private relay's certificate)
    timeout: float = Field(default=20.0, gt=0)
    filters: Filters = Field(default_factory=Filters)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr) -> SecretStr:
        parse_smtp_url(value.get_secret_value())  # raises ValueError without repeating the URL
        return value


ChannelConfig = Annotated[WebhookConfig | EmailConfig, Field(discriminator="type")]
