"""Serving the dashboard: where it listens (checked before anything else starts) and what `run` and `web` say.

`bind` refuses an address other machines can reach unless `web_token` is set (`monitor.web.security`), then
binds the socket at once, so that a port in use is one line before the daemon takes its lock or polls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.service.httpserver import Served
from monitor.web.security import WebServerError, check_bind

if TYPE_CHECKING:
    from monitor.config.settings import Settings


def bind(settings: Settings, *, port: int | None = None, setting: str = "web_host") -> Served | None:
    """The dashboard's server on `settings.web_host` and `port` (default `web_port`), bound but not serving
    yet; None when `web_port` is off (0 or unset) and no `port` is given (`port=0`: any free port).
    `WebServerError` (one line) if it must not or cannot listen."""
    if port is None:
        if not settings.web_port:
            return None
        port = settings.web_port
    check_bind(settings.web_host, settings, setting)
    return Served(settings.web_host, port, what="web server", setting="web_port", error=WebServerError)


def address(settings: Settings, server: Served) -> str:
    """The dashboard's address for people: `web_public_url` when set (behind a proxy), else where it listens."""
    return f"{settings.web_public_url or server.url}/"
