"""Where tierdrift keeps its files, and the database URL without loading the full settings.

Read-only commands need only the database URL. Building `Settings` imports pydantic (about 100 ms here),
so `database_url` resolves that one key with the same precedence as `Settings`: explicit value,
`TIERDRIFT_DATABASE_URL`, `database_url` in the config file, the default. tests/test_settings.py checks
that both agree.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from snapshots.errors import TierdriftError


class ConfigError(TierdriftError):
    pass


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def default_data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "tierdrift"


def default_config_file() -> Path:
    explicit = os.environ.get("TIERDRIFT_CONFIG")
    if explicit:
        return Path(explicit)
    return _xdg("XDG_CONFIG_HOME", ".config") / "tierdrift" / "config.toml"


def default_database_url() -> str:
    return f"sqlite:///{default_data_dir() / 'tierdrift.db'}"


def database_url(config_file: Path | None = None, override: str | None = None) -> str:
    if override:
        return override
    env = os.environ.get("TIERDRIFT_DATABASE_URL")
    if env:
        return env
    path = config_file or default_config_file()
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read config file {path}: {str(exc).splitlines()[0]}") from None
        value = data.get("database_url")
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError("invalid setting database_url: must be a string")
            return value
    return default_database_url()
