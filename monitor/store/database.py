"""Open the database and keep its schema at the newest Alembic revision.

Every command opens the store through `open_engine`. Checking the schema costs one query against
`alembic_version`; Alembic itself (slow to import) is loaded only when an upgrade is due, so read-only
commands stay fast.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url

from monitor.config.paths import redact_url, url_secrets
from monitor.store import storage
from monitor.store.revision import HEAD
from monitor.store.storage import DatabaseError as DatabaseError
from monitor.store.storage import DatabaseLocked, NoDatabase
from snapshots.engine import make_engine
from snapshots.errors import TierdriftError

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock held while migrating ("tdmigrat" as a signed 64-bit integer).
MIGRATION_LOCK_KEY = int.from_bytes(b"tdmigrat", "big", signed=True)

#: How long a CLI write waits for another process's write transaction (a long poll or import) to end.
WRITE_WAIT_SECONDS = 600.0
#: A wait shorter than this stays silent: another process's usual write transaction lasts milliseconds.
QUIET_WAIT_SECONDS = 2.0
#: The busy timeout every SQLite connection has outside `begin_write` (as set by snapshots.engine).
BUSY_TIMEOUT_MS = 10_000


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
    import portalocker  # lazily, like Alembic: only a migration needs it (flock, or LockFileEx on Windows)

    with Path(database + ".migrate.lock").open("a") as fh:
        portalocker.lock(fh, portalocker.LockFlags.EXCLUSIVE)  # waits for the process that migrates
        try:
            yield
        finally:
            portalocker.unlock(fh)


def open_engine(url: str, *, create: bool = True) -> Engine:
    """An engine on `url` whose schema is at HEAD.

    With `create` (writing commands), a missing SQLite file and its folders are created. Without it
    (read-only commands), a database that does not exist raises `NoDatabase` and nothing is created.
    """
    try:
        make_url(url)
    except Exception as exc:
        raise DatabaseError(f"invalid database URL {redact_url(url)}: {exc}") from None
    if create:
        _make_folder(url)
    else:
        _require_file(url)
    try:
        engine = make_engine(url)
        revision = current_revision(engine)
        if revision is None and not create:
            raise NoDatabase(storage.label(url))  # PostgreSQL: a server database without our tables
        if revision != HEAD:
            upgrade(engine)
    except TierdriftError:
        raise
    except Exception as exc:
        known = storage.describe(exc, url)
        if known is not None:
            raise DatabaseError(known) from None
        # The message of a driver error can carry the URL; keep only its first line, password-free.
        # `?password=` too, which SQLAlchemy's hide_password leaves in (monitor.config.paths.redact_url).
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        for secret in url_secrets(url):
            detail = detail.replace(secret, "***")
        raise DatabaseError(f"cannot open database {redact_url(url)}: {detail}") from None
    return engine


def _make_folder(url: str) -> None:
    path = storage.sqlite_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder of database {path}: {storage.describe(exc, url)}") from None


def _require_file(url: str) -> None:
    """`NoDatabase` unless the SQLite file behind `url` exists (connecting would create it)."""
    path = storage.sqlite_path(url)
    if path is None:
        return
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise DatabaseError(f"cannot open database {path}: {storage.describe(exc, url)}") from None
    if not exists:
        raise NoDatabase(str(path))


def begin_write(conn: Connection, on_wait: Callable[[], None], *, limit: float | None = None) -> None:
    """Take SQLite's write lock now (`BEGIN IMMEDIATE`) for the transaction about to run on `conn`.

    A daemon's poll or an import may hold the lock for seconds: rather than failing after the busy
    timeout, wait up to `limit` seconds (default `WRITE_WAIT_SECONDS`), calling `on_wait` once if the
    wait outlasts `QUIET_WAIT_SECONDS`, then raise `DatabaseLocked`. Call it before any statement of the
    transaction. Other databases need nothing: a PostgreSQL writer waits for the rows it needs.
    """
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    limit = WRITE_WAIT_SECONDS if limit is None else limit
    deadline = time.monotonic() + limit
    try:
        if _try_begin(raw, min(QUIET_WAIT_SECONDS, limit)):
            return
        on_wait()
        while (remaining := deadline - time.monotonic()) > 0:
            if _try_begin(raw, min(remaining, 5.0)):
                return
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    url = conn.engine.url.render_as_string(hide_password=True)
    raise DatabaseLocked(
        f"database {storage.label(url)} is still locked by another process after {limit:g} s: nothing was written;"
        " try again when it has finished"
    )


def _try_begin(raw: sqlite3.Connection, seconds: float) -> bool:
    raw.execute(f"PRAGMA busy_timeout={max(int(seconds * 1000), 1)}")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return False
        raise
    return True
