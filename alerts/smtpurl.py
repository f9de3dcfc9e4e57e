"""Parsing of `smtp_url` (forms in alerts.channels.email), shared by the settings' validation and the channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

Security = Literal["starttls", "tls", "none"]

_DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 587}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """A parsed `smtp_url`. The password is kept out of `repr`."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        scheme = "smtps" if self.security == "tls" else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{host}:{self.port} ({self.security})"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse an `smtp://` or `smtps://` URL (module docstring). Raises `ValueError` whose message never
    repeats the URL, which may hold a password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("smtp_url is not a valid URL (is the port a number?)") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("smtp_url must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("smtp_url has no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("smtp_url takes no path or fragment (percent-encode / and # in a password)")
    security = _security(parts.scheme, parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError("smtp_url has a password but no user name")
    if username and security == "none" and parts.hostname not in _LOOPBACK:
        raise ValueError("smtp_url sends credentials without TLS to a remote host; use STARTTLS or smtps://")
    return SmtpTarget(parts.hostname, port or _DEFAULT_PORTS[security], security, username, password)


def _security(scheme: str, query: str) -> Security:
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"tls"})
    if unknown:
        raise ValueError(f"smtp_url: unknown parameter {unknown[0]!r}; only tls=starttls|none is accepted")
    tls = params.get("tls", ["starttls"])[-1].lower()
    if scheme == "smtps":
        if "tls" in params:
            raise ValueError("smtp_url: smtps:// is always TLS; drop the tls parameter")
        return "tls"
    if tls not in ("starttls", "none"):
        raise ValueError(f"smtp_url: tls must be starttls or none, not {tls!r}")
    return "starttls" if tls == "starttls" else "none"
