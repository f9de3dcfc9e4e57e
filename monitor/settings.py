"""Typed settings, built once at start-up from one TOML file plus `TIERDRIFT_*` environment overrides.

Precedence, highest first: explicit arguments, environment (`TIERDRIFT_DATABASE_URL`,
`TIERDRIFT_BINANCE__API_KEY`, …), the config file, the defaults. The file is `$TIERDRIFT_CONFIG`, or
`config.toml` in the user's config folder (`~/.config/tierdrift/config.toml` on Linux). No file is
needed: the defaults poll all four sources, Binance through its keyless web endpoint, into a SQLite file
in the user's data folder. Core code never reads `os.environ`; it receives a `Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from alerts.config import ChannelConfig, EmailConfig, WebhookConfig
from monitor.paths import ConfigError, default_config_file, default_database_url
from snapshots.model import SOURCES


class BinanceSettings(BaseModel):
    """A read-only key enables the official signed endpoints; without one the web endpoint is used."""

    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None

    @property
    def has_key(self) -> bool:
        return bool(self.api_key and self.api_secret)


class Endpoints(BaseModel):
    """Base URLs of the exchanges. Change them only to point at a test double or a proxy."""

    binance_fapi: str = "https://fapi.binance.com"
    binance_dapi: str = "https://dapi.binance.com"
    binance_web: str = "https://www.binance.com"
    bybit: str = "https://api.bybit.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TIERDRIFT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str = Field(default_factory=default_database_url)
    sources: list[str] = Field(default_factory=lambda: list(SOURCES))
    binance: BinanceSettings = Field(default_factory=BinanceSettings)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    #: Seconds before any single exchange request is abandoned.
    http_timeout: float = Field(default=15.0, gt=0)
    #: A poll in which more than this share of symbols vanishes is quarantined, not applied.
    quarantine_share: float = Field(default=0.10, ge=0, le=1)
    #: This many consecutive polls showing the same symbol set apply it anyway (a real mass delisting).
    quarantine_confirmations: int = Field(default=3, ge=1)
    #: A position whose buffer to liquidation is below this many ADRs is a margin-risk violation.
    violation_threshold_adr: float = Field(default=2.0, gt=0)
    #: Days of daily mark-price candles in the average daily range.
    adr_days: int = Field(default=14, ge=1, le=200)
    #: Alert channels (`[[channels]]` tables in the config file); see also the shortcuts below.
    channels: list[ChannelConfig] = Field(default_factory=list)
    #: Shortcut for containers: one webhook channel named "webhook" (TIERDRIFT_WEBHOOK_URL/_SECRET).
    webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    #: Shortcut for containers: one email channel named "email" (TIERDRIFT_SMTP_URL, TIERDRIFT_EMAIL_TO).
    smtp_url: SecretStr | None = None
    email_to: str | None = None  # comma-separated addresses
    email_from: str = "tierdrift@localhost"
    #: Alert when a source has failed for this many minutes (and again when it recovers).
    health_alert_after_minutes: float = Field(default=30.0, gt=0)
    #: A source without a successful poll for this many minutes is stale (`tierdrift check`, alerts).
    stale_after_minutes: float = Field(default=30.0, gt=0)
    #: Keep retrying an alert delivery for this long, then mark it failed.
    alert_max_age_hours: float = Field(default=24.0, gt=0)
    #: Daemon: seconds between polls of each source, with up to `poll_jitter_seconds` of random spread.
    poll_interval_seconds: float = Field(default=300.0, ge=5)
    poll_jitter_seconds: float = Field(default=30.0, ge=0)
    #: Per-source override of the poll interval, e.g. `[source_intervals]` `bybit-linear = 600`.
    source_intervals: dict[str, float] = Field(default_factory=dict)
    #: Daemon: seconds between outbox deliveries and between mark-price refreshes.
    deliver_interval_seconds: float = Field(default=5.0, ge=0.5)
    market_interval_seconds: float = Field(default=300.0, ge=10)
    #: A job that could not start on time still runs if it is at most this late (APScheduler misfire grace).
    misfire_grace_seconds: float = Field(default=60.0, ge=1)
    #: A standby replica (or a second daemon) tries to take the writer lock this often.
    standby_retry_seconds: float = Field(default=15.0, ge=0.1)
    #: Mark prices older than this, and ADRs older than that, are "unknown (stale)" in risk figures.
    mark_max_age_minutes: float = Field(default=15.0, gt=0)
    adr_max_age_hours: float = Field(default=48.0, gt=0)
    #: Health and metrics HTTP server on 127.0.0.1 (`/healthz`, `/readyz`, `/metrics`); None: off.
    health_port: int | None = Field(default=None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    #: Log lines as plain text or JSON objects.
    log_format: Literal["plain", "json"] = "plain"
    log_level: str = "INFO"
    #: Bybit pages: give up after this many (the whole linear list is about 60 pages in 2026).
    bybit_max_pages: int = Field(default=500, ge=1)
    #: Retries of one rate-limited or failing Bybit page before the poll fails.
    bybit_page_retries: int = Field(default=4, ge=0)

    @field_validator("channels")
    @classmethod
    def _unique_channel_names(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel name {dupes[0]!r} is used twice; give each channel its own name")
        return value

    @model_validator(mode="after")
    def _shortcut_channels_valid(self) -> Settings:
        try:
            self.all_channels()
        except ValidationError as exc:
            err = exc.errors()[0]
            where = (
                "webhook_secret"
                if err["loc"] == ("secret",)
                else "smtp_url"
                if err["loc"] == ("smtp_url",)
                else "email_to"
            )
            raise ValueError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
        return self

    def all_channels(self) -> list[ChannelConfig]:
        """The configured channels plus the environment shortcuts (skipped if their name is taken)."""
        out: list[ChannelConfig] = list(self.channels)
        taken = {c.name for c in out}
        if self.webhook_url and "webhook" not in taken:
            out.append(WebhookConfig(name="webhook", url=self.webhook_url, secret=self.webhook_secret))
        if self.smtp_url and self.email_to and "email" not in taken:
            to = [a.strip() for a in self.email_to.split(",") if a.strip()]
            out.append(EmailConfig(name="email", smtp_url=self.smtp_url, to=to, sender=self.email_from))
        return out

    @field_validator("source_intervals")
    @classmethod
    def _interval_sources(cls, value: dict[str, float]) -> dict[str, float]:
        for source, seconds in value.items():
            if source not in SOURCES:
                raise ValueError(f"unknown source {source!r} in source_intervals")
            if seconds < 5:
                raise ValueError(f"source_intervals.{source} must be at least 5 seconds")
        return value

    def interval_for(self, source: str) -> float:
        return self.source_intervals.get(source, self.poll_interval_seconds)

    def secrets(self) -> list[str]:
        """Every secret value, for redaction of log lines and error messages."""
        values = [self.binance.api_key, self.binance.api_secret, self.webhook_url, self.webhook_secret, self.smtp_url]
        for c in self.channels:
            values.extend([c.url, c.secret] if isinstance(c, WebhookConfig) else [c.smtp_url])
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
        return value

    def __repr_args__(self) -> Any:
        # A PostgreSQL URL can carry a password; SecretStr fields already print as '**********'.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "database_url" else value

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by "***" (for `config show`)."""
        data = self.model_dump(mode="json")
        data["database_url"] = redact_url(self.database_url)
        for key in ("api_key", "api_secret"):
            if data["binance"].get(key):
                data["binance"][key] = "***"
        for key in ("webhook_url", "webhook_secret", "smtp_url"):
            if data.get(key):
                data[key] = "***"
        for channel in data["channels"]:
            for key in ("url", "secret", "smtp_url"):
                if channel.get(key):
                    channel[key] = "***"
        return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once, from `config_file` (or the default file, if present) and the environment.

    A file named explicitly must exist. Any invalid value becomes one `ConfigError` line.
    """
    path = config_file or default_config_file()
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path))

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {where}: {message}" if where else f"invalid setting {message}") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read config file {path}: {str(exc).splitlines()[0]}") from None


def redact_url(url: str) -> str:
    """A database URL with its password hidden."""
    from sqlalchemy.engine.url import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "***"
