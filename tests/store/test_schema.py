"""The schema: migrations match the models, the read-side catalog matches both, settings agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import alerts.db  # noqa: F401  (registers the tables)
import monitor.store.models  # noqa: F401
import snapshots.db  # noqa: F401
from monitor.config import paths
from monitor.config.paths import ConfigError
from monitor.config.settings import load_settings
from monitor.store.database import HEAD, MIGRATIONS, current_revision, open_engine
from snapshots import catalog


def test_migrations_reach_head_and_match_the_models(engine: Engine) -> None:
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_head_is_the_newest_migration_file() -> None:
    revisions = sorted(p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert revisions[-1] == HEAD


def test_processes_starting_together_migrate_once(db_url: str) -> None:
    """Replicas starting at once on an empty database: one migrates, the others wait, none fails."""
    code = "import sys; from monitor.store.database import open_engine; open_engine(sys.argv[1]).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    engine = open_engine(db_url)
    assert current_revision(engine) == HEAD
    engine.dispose()


def test_reopening_is_idempotent(db_url: str) -> None:
    open_engine(db_url).dispose()
    engine = open_engine(db_url)
    assert current_revision(engine) == HEAD
    engine.dispose()


@pytest.mark.parametrize("handle", [catalog.poll, catalog.table_version, catalog.tier_row, catalog.change_record])
def test_catalog_handles_match_the_models(handle: object) -> None:
    name = handle.name  # type: ignore[attr-defined]
    model = SQLModel.metadata.tables[name]
    assert [c.name for c in handle.c] == [c.name for c in model.c]  # type: ignore[attr-defined]
    for col in handle.c:  # type: ignore[attr-defined]
        theirs = model.c[col.name].type
        theirs = getattr(theirs, "impl", theirs)  # SQLModel wraps String and DateTime in TypeDecorators
        assert type(col.type) is type(theirs), col.name


def test_a_bad_database_url_is_one_clear_line() -> None:
    with pytest.raises(Exception, match=r"invalid database URL|cannot open database") as err:
        open_engine("nosuchdriver://x")
    assert "\n" not in str(err.value)


def test_light_database_url_agrees_with_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('database_url = "sqlite:////from/file.db"\n')
    monkeypatch.delenv("TIERDRIFT_DATABASE_URL", raising=False)
    assert paths.database_url(cfg) == load_settings(cfg).database_url == "sqlite:////from/file.db"
    monkeypatch.setenv("TIERDRIFT_DATABASE_URL", "sqlite:////from/env.db")
    assert paths.database_url(cfg) == load_settings(cfg).database_url == "sqlite:////from/env.db"
    assert paths.database_url(cfg, "sqlite:////explicit.db") == "sqlite:////explicit.db"
    assert load_settings(cfg, database_url="sqlite:////explicit.db").database_url == "sqlite:////explicit.db"
    monkeypatch.delenv("TIERDRIFT_DATABASE_URL")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert (
        paths.database_url(empty)
        == load_settings(empty).database_url
        == f"sqlite:///{tmp_path}/data/tierdrift/tierdrift.db"
    )


def test_settings_never_show_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'database_url = "postgresql+psycopg://me:pgsecret@db/tierdrift"\n'
        '[binance]\napi_key = "KEY123"\napi_secret = "SECRET456"\n'
    )
    settings = load_settings(cfg)
    shown = repr(settings) + str(settings.redacted())
    for secret in ("KEY123", "SECRET456", "pgsecret"):
        assert secret not in shown
    assert settings.binance.api_secret is not None
    assert settings.binance.api_secret.get_secret_value() == "SECRET456"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TIERDRIFT_WEBHOOK_URL": "http://127.0.0.1:9/h", "TIERDRIFT_WEBHOOK_SECRET": "whsec_!!secretish!!"},
            "webhook_secret",
        ),
        ({"TIERDRIFT_SMTP_URL": "ftp://me:secretish@host", "TIERDRIFT_EMAIL_TO": "a@example.com"}, "smtp_url"),
        ({"TIERDRIFT_SOURCES": '["nope"]'}, "unknown source 'nope'"),
    ],
)
def test_bad_settings_are_one_line_config_errors_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "absent.toml"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    text = str(err.value)
    assert message in text and "\n" not in text and "secretish" not in text
