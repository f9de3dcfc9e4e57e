"""Channel configuration: the `[[channels]]` tables of the config file, and their filters.

Secrets (SMTP password, webhook secret, any token in a webhook URL, a Telegram bot token, an ntfy topic URL,
token or password, every Apprise URL) are `SecretStr`: they print as
`**********` and are only unwrapped by the channel that uses them.

Everything is checked when the settings load, so that a channel cannot fail later on a value that could
never have worked (a webhook URL without `https://`, an address without `@`, a timeout of `nan`): the
validators raise `ValueError`s whose text names the rule and never repeats a secret.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerts.model import KINDS, Alert, Severity
from alerts.schedule import QuietHours, Schedule, parse_window, zone
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


#: Traded instruments as the outbox is given them: (source, symbol) pairs.
Marked = Collection[tuple[str, str]]

#: The `symbols` filter that takes only traded and watched instruments (the monitor computes the set).
TRADED = "traded"


class Filters(BaseModel):
    """Which alerts a channel takes. An empty list means "all". `symbols = "traded"` takes the alerts on
    instruments traded (open or recently closed positions) or watched: the set is given to `accepts` when
    the alert is enqueued; an alert on no one symbol (a digest) passes when it names a traded one."""

    model_config = STRICT

    sources: list[str] = Field(default_factory=list)
    symbols: list[str] | Literal["traded"] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    min_severity: str = "info"

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _list_or_traded(cls, value: object) -> object:
        if isinstance(value, str) and value != TRADED:
            raise ValueError(f'a list of symbols, or "traded" (not {value[:40]!r})')
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

    def accepts(self, alert: Alert, traded: Marked = ()) -> bool:
        """Whether this channel takes `alert`; `traded` is the traded and watched set at enqueue time."""
        if alert.kind == "test":
            return True  # `alerts test` must reach every channel whatever its filters
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.sources and alert.source not in self.sources:
            return False
        if self.symbols == TRADED:
            if not _names_traded(alert, traded):
                return False
        elif self.symbols and alert.symbol not in self.symbols:
            return False
        return alert.severity >= Severity.parse(self.min_severity)


def _names_traded(alert: Alert, traded: Marked) -> bool:
    """Whether `alert` is about a traded instrument: its own symbol, or (a digest) one of those it lists."""
    if alert.symbol is not None:
        return (alert.source, alert.symbol) in traded
    listed = [*alert.data.get("marked", ()), *alert.data.get("symbols", ())]
    return any((alert.source, s) in traded for s in listed if isinstance(s, str))


class _Channel(BaseModel):
    """What every channel's settings share besides their fields: the attempt's deadline and the checks of
    `name` and `timeout`. The fields stay in each channel (their defaults differ, and `config show` lists
    them in the channel's own order)."""

    model_config = STRICT

    if TYPE_CHECKING:  # declared by each channel
        timeout: float
        deadline: float | None
        quiet_hours: str | None
        quiet_tz: str
        digest_min_interval_minutes: float | None

    @property
    def attempt_deadline(self) -> float:
        """Seconds for a whole attempt: `deadline`, or 3 × `timeout` when it is not set."""
        return self.deadline if self.deadline is not None else 3 * self.timeout

    @property
    def schedule(self) -> Schedule | None:
        """The channel's quiet hours and digest interval (alerts.schedule), None when it has neither."""
        quiet = QuietHours.parse(self.quiet_hours, self.quiet_tz) if self.quiet_hours else None
        interval = self.digest_min_interval_minutes
        if quiet is None and interval is None:
            return None
        return Schedule(quiet, None if interval is None else timedelta(minutes=interval))

    _name = field_validator("name", check_fields=False)(_check_name)
    _timeout = field_validator("timeout", "digest_min_interval_minutes", mode="before", check_fields=False)(
        _not_boolean
    )

    @field_validator("quiet_hours", check_fields=False)
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @field_validator("quiet_tz", check_fields=False)
    @classmethod
    def _quiet_tz(cls, value: str) -> str:
        zone(value)
        return value


class WebhookConfig(_Channel):
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
    #: Only critical alerts go out within this window ("22:00-07:00", wall clock in `quiet_tz`); the rest
    #: wait and go as one grouped message when it ends.
    quiet_hours: str | None = None
    quiet_tz: str = "UTC"
    #: At most one tier-change digest per this many minutes; those in between go as one grouped message.
    digest_min_interval_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    filters: Filters = Field(default_factory=Filters)

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


class EmailConfig(_Channel):
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
    #: Only critical alerts go out within this window ("22:00-07:00", wall clock in `quiet_tz`); the rest
    #: wait and go as one grouped message when it ends.
    quiet_hours: str | None = None
    quiet_tz: str = "UTC"
    #: At most one tier-change digest per this many minutes; those in between go as one grouped message.
    digest_min_interval_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    filters: Filters = Field(default_factory=Filters)

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


#: A Telegram bot token as BotFather issues it: the bot's numeric id, a colon, then the secret part.
_BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,100}")
#: A public channel or supergroup username (`@name`, 5 to 32 characters, telegram.org "Usernames").
_CHAT_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}")


def check_bot_token(token: str) -> str:
    """`token` if it is shaped like a Telegram bot token (`123456:ABC-DEF…`); `ValueError` naming no token."""
    if not _BOT_TOKEN.fullmatch(token):
        raise ValueError("a Telegram bot token looks like 123456789:AAH…, as BotFather gives it (digits, colon, key)")
    return token


def check_chat_id(value: int | str) -> int | str:
    """A numeric chat id (negative for groups and channels) or a public `@channelusername`."""
    if isinstance(value, bool):
        raise ValueError("must be a numeric chat id or an @channel name, not true or false")
    if isinstance(value, int):
        return value
    text = value.strip()
    if re.fullmatch(r"-?[0-9]{1,20}", text):
        return int(text)  # from an environment variable, or written as a string in the file
    if not _CHAT_USERNAME.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a chat id: give a number such as -1001234567890 or @channelname")
    return text


class TelegramConfig(_Channel):
    """A Telegram chat that a bot posts to (Bot API `sendMessage`, HTML formatting)."""

    model_config = STRICT

    type: Literal["telegram"] = "telegram"
    name: str = "telegram"
    token: SecretStr  # the bot token: it is part of every request's URL path, so never shown
    chat_id: int | str  # a numeric id (groups and channels are negative) or "@channelname"
    #: The Bot API server: telegram.org's, or a self-hosted telegram-bot-api (and a test double).
    api_url: str = "https://api.telegram.org"
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  # seconds for each connect, write or read
    #: Seconds for a whole attempt, however slowly the server answers; None: 3 × timeout.
    deadline: float | None = Field(default=None, gt=0, le=3 * MAX_TIMEOUT)
    #: Only critical alerts go out within this window ("22:00-07:00", wall clock in `quiet_tz`); the rest
    #: wait and go as one grouped message when it ends.
    quiet_hours: str | None = None
    quiet_tz: str = "UTC"
    #: At most one tier-change digest per this many minutes; those in between go as one grouped message.
    digest_min_interval_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    filters: Filters = Field(default_factory=Filters)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        check_bot_token(value.get_secret_value())
        return value

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id(cls, value: object) -> object:
        return check_chat_id(value) if isinstance(value, int | str) else value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        check_http_url(value)
        if urlsplit(value).query or urlsplit(value).fragment:
            raise ValueError("must be the server's base URL, without a query or fragment")
        return value.rstrip("/")


class NtfyConfig(_Channel):
    """An ntfy topic (ntfy.sh or a self-hosted server) that receives a plain-text push per alert."""

    model_config = STRICT

    type: Literal["ntfy"] = "ntfy"
    name: str = "ntfy"
    #: The topic URL, e.g. https://ntfy.sh/mytopic: on a public server an unguessable topic name is
    #: itself the credential, so only the host is ever shown.
    url: SecretStr
    token: SecretStr | None = None  # an access token (`tk_…`), sent as `Authorization: Bearer`
    username: str | None = None  # with `password`: HTTP Basic auth
    password: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  # seconds for each connect, write or read
    #: Seconds for a whole attempt, however slowly the server answers; None: 3 × timeout.
    deadline: float | None = Field(default=None, gt=0, le=3 * MAX_TIMEOUT)
    #: Only critical alerts go out within this window ("22:00-07:00", wall clock in `quiet_tz`); the rest
    #: wait and go as one grouped message when it ends.
    quiet_hours: str | None = None
    quiet_tz: str = "UTC"
    #: At most one tier-change digest per this many minutes; those in between go as one grouped message.
    digest_min_interval_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    filters: Filters = Field(default_factory=Filters)

    @field_validator("url")
    @classmethod
    def _topic_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        check_http_url(url)
        parts = urlsplit(url)
        if not parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("must be a topic URL such as https://ntfy.sh/mytopic (a path, no query)")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use username and password, or token")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and (not value or ":" in value or _CONTROL.search(value)):
            raise ValueError("must be a non-empty user name without a colon or control characters")
        return value

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> NtfyConfig:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.username is not None else "username"
            raise ValueError(f"{missing} is missing: give both username and password, or neither")
        if self.token is not None and self.username is not None:
            raise ValueError("give either token or username and password, not both")
        for secret in (self.token, self.password):
            if secret is not None and (not secret.get_secret_value() or _CONTROL.search(secret.get_secret_value())):
                raise ValueError("token and password must be non-empty, without control characters")
        return self


#: What to run to get Apprise, in the one line that says it is missing.
APPRISE_MISSING = "the apprise channel needs the optional extra: pip install 'tierdrift[apprise]'"


def apprise_scheme(url: str) -> str:
    """The `scheme` of an Apprise URL (`tgram://…` → `tgram`), the only part of it ever shown."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme if re.fullmatch(r"[a-z][a-z0-9+.-]{0,31}", scheme) else "?"


def quiet_apprise_log() -> logging.Logger:
    """Apprise's logger, kept from reaching ours: it writes whole URLs (with their tokens) into its messages,
    e.g. "Unparseable URL …" and its debug lines. The apprise channel reads it through its own handler."""
    log = logging.getLogger("apprise")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


class AppriseConfig(_Channel):
    """Any of the services Apprise reaches (github.com/caronc/apprise/wiki), through its URLs; needs the
    `apprise` extra. Every URL carries its service's credentials (a bot token, a webhook key, a password):
    none is ever shown, only its scheme."""

    model_config = STRICT

    type: Literal["apprise"] = "apprise"
    name: str = "apprise"
    urls: list[SecretStr] = Field(min_length=1, max_length=50)
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT)  # seconds for each connect or read
    #: Seconds for a whole attempt (all the URLs), however slowly a service answers; None: 3 × timeout.
    deadline: float | None = Field(default=None, gt=0, le=3 * MAX_TIMEOUT)
    #: Only critical alerts go out within this window ("22:00-07:00", wall clock in `quiet_tz`); the rest
    #: wait and go as one grouped message when it ends.
    quiet_hours: str | None = None
    quiet_tz: str = "UTC"
    #: At most one tier-change digest per this many minutes; those in between go as one grouped message.
    digest_min_interval_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    filters: Filters = Field(default_factory=Filters)

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        if importlib.util.find_spec("apprise") is None:
            raise ValueError(APPRISE_MISSING)
        import apprise  # lazily: only a configured apprise channel needs it (about 0.1 s)

        quiet_apprise_log()
        for n, url in enumerate(value, 1):
            text = url.get_secret_value()
            if _CONTROL.search(text) or re.search(r"\s", text) or apprise.Apprise.instantiate(text) is None:
                raise ValueError(
                    f"URL #{n} ({apprise_scheme(text)}://…) is not an Apprise URL it can use "
                    "(see the Apprise wiki for each service's URL)"
                )
        return value


ChannelConfig = Annotated[
    WebhookConfig | EmailConfig | TelegramConfig | NtfyConfig | AppriseConfig, Field(discriminator="type")
]
