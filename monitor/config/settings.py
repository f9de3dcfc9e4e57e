"""Typed settings, built once at start-up from one TOML file plus `TIERDRIFT_*` environment overrides.

Precedence, highest first: explicit arguments, environment (`TIERDRIFT_DATABASE_URL`,
`TIERDRIFT_BINANCE__API_KEY`, …), the config file, the defaults. The file is `$TIERDRIFT_CONFIG`, or
`config.toml` in the user's config folder (`~/.config/tierdrift/config.toml` on Linux). No file is
needed: the defaults poll all four sources, Binance through its keyless web endpoint, into a SQLite file
in the user's data folder. Core code never reads `os.environ`; it receives a `Settings`.

Everything is checked here, once, so that nothing fails later on a value that could never have worked:
an unknown key in the file (a typo such as `apikey` would be silently ignored) and an impossible value
(`log_level = "LOUD"`, an interval of `inf`, a webhook URL without `https://`) are a `ConfigError` of one
line that names the key, its table and where it came from, and never repeats a secret
(monitor.config.check). Unknown `TIERDRIFT_*` variables cannot be told from other programs' settings, so
they are not an error: `warnings()` lists them (with a suggestion) for `run`, `check` and `config show`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from alerts.config import (
    STRICT,
    AppriseConfig,
    ChannelConfig,
    EmailConfig,
    NtfyConfig,
    TelegramConfig,
    WebhookConfig,
    check_address,
    check_bot_token,
    check_chat_id,
    check_http_url,
    check_whsec,
)
from alerts.smtpurl import parse_smtp_url
from monitor.config import check as config_check
from monitor.config.paths import (
    CONFIG_ENCODING,
    ConfigError,
    default_config_file,
    default_database_url,
    redact_url,
    require_file,
    url_secrets,
)
from snapshots.model import SOURCES

#: Variables with the prefix that are process switches, not settings (`TIERDRIFT_TEST_*`: the test suite).
_NOT_SETTINGS = ("CONFIG", "DEBUG", "TEST_")
ENV = config_check.ENV_PREFIX
_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"  # `_`: Docker and Compose service names
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_BOT_TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]{20,}")


class BinanceSettings(BaseModel):
    """A read-only key enables the official signed endpoints; without one the web endpoint is used."""

    model_config = STRICT

    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None

    @property
    def has_key(self) -> bool:
        return bool(self.api_key and self.api_secret)

    @model_validator(mode="after")
    def _both_or_neither(self) -> BinanceSettings:
        # Half a key would silently fall back to the unofficial web endpoint.
        if bool(self.api_key) != bool(self.api_secret):
            missing = "api_secret" if self.api_key else "api_key"
            raise ValueError(f"{missing} is missing: give both api_key and api_secret (a read-only key), or neither")
        return self


class Endpoints(BaseModel):
    """Base URLs of the exchanges. Change them only to point at a test double or a proxy."""

    model_config = STRICT

    binance_fapi: str = "https://fapi.binance.com"
    binance_dapi: str = "https://dapi.binance.com"
    binance_web: str = "https://www.binance.com"
    bybit: str = "https://api.bybit.com"

    @field_validator("*")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_http_url(value)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=config_check.ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        allow_inf_nan=False,
        validate_default=True,
    )

    # Bounds: what a trader could mean. Below them a value is a typo or a unit slip (minutes for seconds)
    # that would hammer an exchange or never fire; above them it would silently switch a feature off.
    database_url: str = Field(default_factory=default_database_url)
    sources: list[str] = Field(default_factory=lambda: list(SOURCES))
    binance: BinanceSettings = Field(default_factory=BinanceSettings)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    #: Seconds before any single exchange request is abandoned.
    http_timeout: float = Field(default=15.0, gt=0, le=600)
    #: A poll in which more than this share of symbols vanishes is quarantined, not applied.
    quarantine_share: float = Field(default=0.10, gt=0, le=1)
    #: This many consecutive polls showing the same symbol set apply it anyway (a real mass delisting).
    quarantine_confirmations: int = Field(default=3, ge=1, le=100)
    #: A position whose buffer to liquidation is below this many ADRs is a margin-risk violation.
    violation_threshold_adr: float = Field(default=2.0, gt=0, le=100)
    #: `position_risk` alerts after each market refresh: a position entering a margin-risk violation, coming
    #: within `risk_near_liquidation_adr` ADRs of its liquidation price, or with its mark beyond it ("on"/"off").
    risk_alerts: Literal["on", "off"] = "on"
    risk_near_liquidation_adr: float = Field(default=1.0, gt=0, le=100)
    #: An episode ends only when the buffer is this many ADRs above the level's bound (no flapping at 2.0).
    risk_hysteresis_adr: float = Field(default=0.25, ge=0, le=10)
    #: Days of daily mark-price candles in the average daily range.
    adr_days: int = Field(default=14, ge=1, le=200)
    #: A position closed within this many days still counts as traded (digest marks, `symbols = "traded"`).
    traded_recent_days: int = Field(default=30, ge=0, le=3650)
    #: Alert channels (`[[channels]]` tables in the config file); see also the shortcuts below.
    channels: list[ChannelConfig] = Field(default_factory=list)
    #: Shortcut for containers: one webhook channel named "webhook" (TIERDRIFT_WEBHOOK_URL/_SECRET).
    webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    #: Shortcut for containers: one email channel named "email" (TIERDRIFT_SMTP_URL, TIERDRIFT_EMAIL_TO).
    smtp_url: SecretStr | None = None
    email_to: str | None = None  # comma-separated addresses
    email_from: str = "tierdrift@localhost"
    #: Shortcut for containers: one Telegram channel named "telegram" (TIERDRIFT_TELEGRAM_TOKEN, _CHAT_ID).
    telegram_token: SecretStr | None = None
    telegram_chat_id: str | None = None  # a numeric chat id or @channelname
    #: Alert when a source has failed for this many minutes (and again when it recovers).
    health_alert_after_minutes: float = Field(default=30.0, gt=0, le=7 * _DAY / _MINUTE)
    #: A source without a successful poll for this many minutes is stale (`tierdrift check`, alerts).
    stale_after_minutes: float = Field(default=30.0, gt=0, le=7 * _DAY / _MINUTE)
    #: Keep retrying an alert delivery for this long, then mark it failed.
    alert_max_age_hours: float = Field(default=24.0, gt=0, le=30 * _DAY / _HOUR)
    #: Daemon: seconds between polls of each source, with up to `poll_jitter_seconds` of random spread.
    poll_interval_seconds: float = Field(default=300.0, ge=5, le=_DAY)
    poll_jitter_seconds: float = Field(default=30.0, ge=0, le=_HOUR)
    #: Per-source override of the poll interval, e.g. `[source_intervals]` `bybit-linear = 600`.
    source_intervals: dict[str, float] = Field(default_factory=dict)
    #: Daemon: seconds between outbox deliveries and between mark-price refreshes.
    deliver_interval_seconds: float = Field(default=5.0, ge=0.5, le=_HOUR)
    market_interval_seconds: float = Field(default=300.0, ge=10, le=_DAY)
    #: A job that could not start on time still runs if it is at most this late (APScheduler misfire grace).
    misfire_grace_seconds: float = Field(default=60.0, ge=1, le=_DAY)
    #: A standby replica (or a second daemon) tries to take the writer lock this often.
    standby_retry_seconds: float = Field(default=15.0, ge=0.1, le=_HOUR)
    #: Mark prices older than this, and ADRs older than that, are "unknown (stale)" in risk figures.
    mark_max_age_minutes: float = Field(default=15.0, gt=0, le=_DAY / _MINUTE)
    adr_max_age_hours: float = Field(default=48.0, gt=0, le=30 * _DAY / _HOUR)
    #: Health and metrics HTTP server on 127.0.0.1 (`/healthz`, `/readyz`, `/metrics`); None or 0: off.
    health_port: int | None = Field(default=None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    #: The web dashboard and read-only API (`tierdrift run`, `tierdrift web`); None or 0: off.
    web_port: int | None = Field(default=8470, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    #: Needed to serve on any address but loopback: a bearer token or a login form's password.
    web_token: SecretStr | None = None
    #: The dashboard's address as others reach it (behind a proxy), for links in alerts, e.g. ntfy's Click.
    web_public_url: str | None = None
    #: Log lines as plain text or JSON objects.
    log_format: Literal["plain", "json"] = "plain"
    #: debug, info, warning, error or critical, in any case.
    log_level: str = "INFO"
    #: Bybit pages: give up after this many (the whole linear list is about 60 pages in 2026).
    bybit_max_pages: int = Field(default=500, ge=1, le=10_000)
    #: Retries of one rate-limited or failing Bybit page before the poll fails.
    bybit_page_retries: int = Field(default=4, ge=0, le=20)

    #: What `load_settings` noticed but did not refuse (unknown `TIERDRIFT_*` variables).
    _notes: list[str] = PrivateAttr(default_factory=list)
    #: The config file `load_settings` looked for, and whether it was there.
    _config_file: tuple[Path, bool] | None = PrivateAttr(default=None)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic would read `health_port = true` as port 1; the one yes/no setting is spelled "on"/"off".
        if isinstance(value, bool):
            if info.field_name == "risk_alerts":
                raise ValueError('write "on" or "off" (a string), not true or false')
            raise ValueError("must not be true or false")
        return value

    @model_validator(mode="after")
    def _risk_bands(self) -> Settings:
        if self.risk_near_liquidation_adr >= self.violation_threshold_adr:
            raise ValueError(
                f"risk_near_liquidation_adr ({self.risk_near_liquidation_adr:g}) must be below "
                f"violation_threshold_adr ({self.violation_threshold_adr:g})"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme in ("postgres", "postgres+psycopg"):
            raise ValueError("write postgresql+psycopg://…: SQLAlchemy does not accept postgres://")
        if scheme.split("+", 1)[0] not in ("sqlite", "postgresql"):
            raise ValueError("must be a sqlite:///path or postgresql+psycopg://user@host/db URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        level = "WARNING" if level == "WARN" else level
        if level not in _LEVELS:
            raise ValueError(f"must be one of {', '.join(x.lower() for x in _LEVELS)} (any case)")
        return level

    @field_validator("health_host", "web_host")
    @classmethod
    def _health_host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.fullmatch(value):
                raise ValueError("must be a host name or an IP address such as 127.0.0.1 or 0.0.0.0") from None
        return value

    @field_validator("web_public_url")
    @classmethod
    def _web_public_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value.rstrip("/") if value else value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_http_url(value.get_secret_value())
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_whsec(value.get_secret_value())
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_smtp_url(value.get_secret_value())  # its errors never repeat the URL
        return value

    @field_validator("telegram_token")
    @classmethod
    def _telegram_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_bot_token(value.get_secret_value())  # its error never repeats the token
        return value

    @field_validator("telegram_chat_id", mode="before")
    @classmethod
    def _telegram_chat_id(cls, value: Any) -> Any:
        return str(check_chat_id(value)) if isinstance(value, int | str) else value

    @field_validator("email_to")
    @classmethod
    def _email_to(cls, value: str | None) -> str | None:
        if value is not None:
            addresses = [a.strip() for a in value.split(",") if a.strip()]
            if not addresses:
                raise ValueError("names no address; give comma-separated addresses such as a@example.com")
            for address in addresses:
                check_address(address)
        return value

    @field_validator("email_from")
    @classmethod
    def _email_from(cls, value: str) -> str:
        return check_address(value)

    @field_validator("channels")
    @classmethod
    def _unique_channel_names(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel name {dupes[0]!r} is used twice; give each channel its own name")
        return value

    def all_channels(self) -> list[ChannelConfig]:
        """The configured channels plus the environment shortcuts (skipped if their name is taken)."""
        out: list[ChannelConfig] = list(self.channels)
        taken = {c.name for c in out}
        if self.webhook_url and "webhook" not in taken:
            out.append(WebhookConfig(name="webhook", url=self.webhook_url, secret=self.webhook_secret))
        if self.smtp_url and self.email_to and "email" not in taken:
            to = [a.strip() for a in self.email_to.split(",") if a.strip()]
            out.append(EmailConfig(name="email", smtp_url=self.smtp_url, to=to, sender=self.email_from))
        if self.telegram_token and self.telegram_chat_id and "telegram" not in taken:
            out.append(
                TelegramConfig(name="telegram", token=self.telegram_token, chat_id=check_chat_id(self.telegram_chat_id))
            )
        return out

    @field_validator("source_intervals")
    @classmethod
    def _interval_sources(cls, value: dict[str, float]) -> dict[str, float]:
        for source, seconds in value.items():
            if source not in SOURCES:
                raise ValueError(f"unknown source {source!r} in source_intervals; choose from {', '.join(SOURCES)}")
            if not 5 <= seconds <= _DAY:
                raise ValueError(f"source_intervals.{source} must be between 5 and {_DAY:.0f} seconds")
        return value

    def interval_for(self, source: str) -> float:
        return self.source_intervals.get(source, self.poll_interval_seconds)

    @property
    def config_file(self) -> str | None:
        """Which config file these settings were read from, for the start-up summary (None: not loaded
        from one, e.g. built in code)."""
        if self._config_file is None:
            return None
        path, found = self._config_file
        return str(path) if found else f"{path} (not there: defaults and TIERDRIFT_* variables only)"

    @property
    def health_address(self) -> tuple[str, int] | None:
        """(host, port) of the health server, or None when it is off (`health_port` unset or 0)."""
        return (self.health_host, self.health_port) if self.health_port else None

    def secrets(self) -> list[str]:
        """Every secret value, for redaction of log lines and error messages (database passwords too)."""
        values = [self.binance.api_key, self.binance.api_secret, self.webhook_url, self.webhook_secret, self.smtp_url]
        values.extend([self.telegram_token, self.web_token])
        for c in self.channels:
            if isinstance(c, WebhookConfig):
                values.extend([c.url, c.secret])
            elif isinstance(c, EmailConfig):
                values.append(c.smtp_url)
            elif isinstance(c, TelegramConfig):
                values.append(c.token)
            elif isinstance(c, NtfyConfig):
                values.extend([c.url, c.token, c.password])
            elif isinstance(c, AppriseConfig):
                values.extend(c.urls)
        shown = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        # A bot token's secret half alone (after "123456:") must not survive redaction either.
        shown += [t.split(":", 1)[1] for t in list(shown) if _BOT_TOKEN_SHAPE.fullmatch(t)]
        return shown + url_secrets(self.database_url)

    def warnings(self) -> list[str]:
        """What will not work as the user probably expects, worst last: unknown variables, half-configured
        shortcuts, and above all no channel at all (alerts would be recorded and reach no one)."""
        out = list(self._notes)
        taken = {c.name for c in self.channels}
        no_telegram = "no Telegram message will be sent"
        halves = [
            (self.smtp_url, self.email_to, "smtp_url", "email_to", "no e-mail will be sent"),
            (self.email_to, self.smtp_url, "email_to", "smtp_url", "no e-mail will be sent"),
            (self.webhook_secret, self.webhook_url, "webhook_secret", "webhook_url", "nothing is signed or sent"),
            (self.telegram_token, self.telegram_chat_id, "telegram_token", "telegram_chat_id", no_telegram),
            (self.telegram_chat_id, self.telegram_token, "telegram_chat_id", "telegram_token", no_telegram),
        ]
        for given, needed, name, missing, effect in halves:
            if given and not needed:
                env = f"{ENV}{missing.upper()}"
                out.append(f"{ENV}{name.upper()} ({name}) is set but {env} ({missing}) is not: {effect}; set {env}")
        shortcuts = (
            (self.webhook_url, "webhook"),
            (self.smtp_url and self.email_to, "email"),
            (self.telegram_token and self.telegram_chat_id, "telegram"),
        )
        for value, name in shortcuts:
            if value and name in taken:
                out.append(f"the {name} shortcut is ignored: a [[channels]] table is already named {name!r}")
        if not self.all_channels():
            out.append(
                "no alert channel is configured: changes and margin-risk violations are recorded but NO ALERT "
                "WILL REACH ANYONE; set TIERDRIFT_WEBHOOK_URL, or TIERDRIFT_SMTP_URL and TIERDRIFT_EMAIL_TO, "
                "or TIERDRIFT_TELEGRAM_TOKEN and TIERDRIFT_TELEGRAM_CHAT_ID, or add a [[channels]] table to the "
                "config file"
            )
        return out

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
        if not value:
            raise ValueError(f"names no source; choose from {', '.join(SOURCES)}")
        twice = sorted({s for s in value if value.count(s) > 1})
        if twice:
            raise ValueError(f"names {twice[0]!r} twice")
        return value

    def __repr_name__(self) -> str:
        return "Settings"  # also for the subclass that `load_settings` builds

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
        for key in ("webhook_url", "webhook_secret", "smtp_url", "telegram_token", "web_token"):
            if data.get(key):
                data[key] = "***"
        for channel in data["channels"]:
            for key in ("url", "secret", "smtp_url", "token", "password"):
                if channel.get(key):
                    channel[key] = "***"
            if channel.get("urls"):
                channel["urls"] = ["***" for _ in channel["urls"]]
        return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once, from `config_file` (or the default file, if present) and the environment.

    A file named explicitly must exist. An unknown key in the file (or in a nested `TIERDRIFT_A__B`
    variable) and any invalid value become one `ConfigError` line naming the key and where it came from.
    """
    path = config_file or default_config_file()
    if config_file is not None:
        require_file(config_file)
    file_data = _read_file(path)
    env_data = _read_env()
    for origin, data in ((f"config file {path}", file_data), ("environment", env_data)):
        found = config_check.unknown_key(data, Settings)
        if found:
            where = config_check.env_var(found[0]) if origin == "environment" else origin
            raise ConfigError(f"{where}: {found[1]}")

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            given = (InitSettingsSource(settings_cls, data) for data in (env_data, file_data))
            return (init_settings, *given)

    try:
        settings = _Loaded(**overrides)
    except ValidationError as exc:
        origins = [("--db", overrides), ("environment", env_data), (f"config file {path}", file_data)]
        raise ConfigError(config_check.describe(exc.errors()[0], Settings, origins)) from None
    settings._notes = _unknown_variables()
    settings._config_file = (path, bool(file_data) or path.is_file())
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    """The config file's raw tables, {} when there is none (the default file is optional)."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding=CONFIG_ENCODING))
    except (OSError, ValueError, RecursionError) as exc:  # unreadable, not UTF-8, malformed or too deeply nested
        raise ConfigError(f"cannot read config file {path}: {(str(exc).splitlines() or ['?'])[0]}") from None


def _read_env() -> dict[str, Any]:
    """The `TIERDRIFT_*` settings of the environment, decoded as pydantic-settings does (JSON for lists)."""
    try:
        return EnvSettingsSource(Settings)()
    except SettingsError as exc:
        field = re.search(r'field "([^"]+)"', str(exc))
        name = config_check.env_var((field[1],)) if field else "a TIERDRIFT_ environment variable"
        raise ConfigError(f'{name}: not valid JSON (write a list as ["a", "b"] and a table as {{"k": 1}})') from None


def _unknown_variables() -> list[str]:
    """A warning per `TIERDRIFT_*` variable that is no setting: probably a typo of one."""
    prefix = config_check.ENV_PREFIX
    known = [prefix + name.upper() for name in Settings.model_fields]
    out = []
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(prefix) or upper[len(prefix) :].startswith(_NOT_SETTINGS):
            continue
        if upper.split("__", 1)[0] not in known:
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(f"environment variable {name} is not a setting and is ignored{hint}")
    return out


__all__ = ["BinanceSettings", "ConfigError", "Endpoints", "Settings", "load_settings", "redact_url"]
