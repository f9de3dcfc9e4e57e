"""Open the database and keep its schema at the newest Alembic revision.

Every command opens the store through `open_engine`. Checking the schema costs one query against
`alembic_version`; Alembic itself (slow to import) is loaded only when an upgrade is due, so read-only
commands stay fast.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url

from monitor.revision import HEAD
from snapshots.engine import make_engine
from snapshots.errors import TierdriftError

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock held while migrating ("tdmigrat" as a signed 64-bit integer).
MIGRATION_LOCK_KEY = int.from_bytes(b"tdmigrat", "big", signed=True)


class DatabaseError(TierdriftError):
    pass


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def upgrade(engine: Engine) -> None:
    """Run every pending migration (Alembic is imported here, lazily, for start-up speed)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Processes starting together on an empty database: one migrates, the others wait for it and then find
    # the schema at head (Alembic reads the revision inside the locked transaction).
    with _sqlite_migration_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with Path(database + ".migrate.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_engine(url: str) -> Engine:
    """An engine on `url` whose schema is at HEAD; SQLite parent folders are created as needed."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"invalid database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(url)
        revision = current_revision(engine)
        if revision != HEAD:
            upgrade(engine)
    except TierdriftError:
        raise
    except Exception as exc:
        # The message of a driver error can carry the URL; keep only its first line, password-free.
        safe = parsed.render_as_string(hide_password=True)
        raise DatabaseError(f"cannot open database {safe}: {str(exc).splitlines()[0]}") from None
    return engine
