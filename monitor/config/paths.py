"""Where tierdrift keeps its files, and the database URL without loading the full settings.

The folders follow each platform's convention:

    Linux (and other Unixes)  data  $XDG_DATA_HOME/tierdrift, default ~/.local/share/tierdrift
                              config $XDG_CONFIG_HOME/tierdrift, default ~/.config/tierdrift
    macOS                     both  ~/Library/Application Support/tierdrift
    Windows                   data  %LOCALAPPDATA%\\tierdrift, config %APPDATA%\\tierdrift

macOS and Windows go through platformdirs, imported only there (Linux never loads it).

Read-only commands need only the database URL. Building `Settings` imports pydantic (about 100 ms here),
so `database_url` resolves that one key with the same precedence as `Settings`: explicit value,
`TIERDRIFT_DATABASE_URL`, `database_url` in the config file, the default. tests/store/test_schema.py checks
that both agree.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from snapshots.errors import TierdriftError

if TYPE_CHECKING:
    from platformdirs.api import PlatformDirsABC

APP = "tierdrift"


class ConfigError(TierdriftError):
    pass


# `scheme://user:password@`, split as SQLAlchemy does (user up to the first `:`, password up to the next
# `@`), but an unencoded `@` in the password must not leak its tail: `p@ss@host` hides `p@ss`.
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:/]*):(?P<password>[^@]*(?:@[^@/?]*(?=@))*)@")
# `?password=…` / `&sslpassword=…`: libpq takes the password as a query parameter too. SQLAlchemy reads
# the query to its end, `#` included.
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&][^=&]*password=)(?P<password>[^&]*)", re.IGNORECASE)


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def _platform_dirs(*, roaming: bool = False) -> PlatformDirsABC | None:
    """platformdirs' folders of this app on macOS and Windows; None elsewhere, where XDG applies."""
    if sys.platform == "darwin":
        from platformdirs.macos import MacOS  # lazily: only macOS needs it

        return MacOS(APP, appauthor=False)
    if sys.platform == "win32":
        from platformdirs.windows import Windows  # lazily: only Windows needs it

        # Settings roam with the Windows profile (%APPDATA%); the database stays on this machine (%LOCALAPPDATA%).
        return Windows(APP, appauthor=False, roaming=roaming)
    return None


def default_data_dir() -> Path:
    dirs = _platform_dirs()
    if dirs is not None:
        return Path(dirs.user_data_dir)
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def default_config_file() -> Path:
    explicit = os.environ.get("TIERDRIFT_CONFIG")
    if explicit:
        return Path(explicit)
    dirs = _platform_dirs(roaming=True)
    if dirs is not None:
        return Path(dirs.user_config_dir) / "config.toml"
    return _xdg("XDG_CONFIG_HOME", ".config") / APP / "config.toml"


#: UTF-8, with the byte-order mark that some Windows editors write skipped.
CONFIG_ENCODING = "utf-8-sig"


def require_file(config_file: Path) -> None:
    """A config file named explicitly (`--config`) must be there: a typo must not mean "all defaults"."""
    if not config_file.is_file():
        what = "is not a file" if config_file.exists() else "does not exist"
        raise ConfigError(f"config file {config_file} {what}")


def default_database_url() -> str:
    return f"sqlite:///{default_data_dir() / 'tierdrift.db'}"


def database_url(config_file: Path | None = None, override: str | None = None) -> str:
    if override:
        return override
    env = os.environ.get("TIERDRIFT_DATABASE_URL")
    if env:
        return env
    path = config_file or default_config_file()
    if config_file is not None:
        require_file(config_file)
    if path.is_file():
        import tomllib  # 2 ms that a command run without a config file (a read-only one) need not pay

        try:
            data = tomllib.loads(path.read_text(encoding=CONFIG_ENCODING))
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: TOML nested thousands deep
            raise ConfigError(f"cannot read config file {path}: {(str(exc).splitlines() or ['?'])[0]}") from None
        value = data.get("database_url")
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError("invalid setting database_url: must be a string")
            return value
    return default_database_url()


def redact_url(url: str) -> str:
    """A database URL fit to show: the password of `user:pass@` and of `?password=` (any `…password`
    parameter) replaced by `***`. Works on text that does not parse as a URL too."""
    hidden = _USERINFO.sub(r"\g<head>:***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\g<head>***", hidden)


def url_secrets(url: str) -> list[str]:
    """The passwords in a database URL, as written and percent-decoded, for redaction of messages."""
    found = [m["password"] for m in (_USERINFO.match(url), *_QUERY_PASSWORD.finditer(url)) if m]
    return sorted({v for raw in found if raw for v in (raw, unquote(raw))}, key=len, reverse=True)
