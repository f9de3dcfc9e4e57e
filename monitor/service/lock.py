"""Only one writer at a time: a lock file on SQLite, an advisory lock on PostgreSQL.

The lock file is locked through portalocker: `flock` on Linux and macOS, `LockFileEx` on Windows; the
operating system drops it when the holder dies, on every platform. portalocker is imported when a lock is
taken, not at start-up (it costs about 30 ms, and read-only commands take no lock).

On PostgreSQL the lock lives on a dedicated connection: when the holder dies, the server drops its
session and the lock with it, and a standby replica acquires it on its next try. The holder checks its
connection (`still_held`) before every job, so a holder cut off from the database stops writing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url

from snapshots.errors import TierdriftError

#: Advisory lock key: the first 8 bytes of "tierdrift" as a signed 64-bit integer.
PG_LOCK_KEY = int.from_bytes(b"tierdrif", "big", signed=True)


class LockHeld(TierdriftError):
    pass


class WriterLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if free (never blocks); True when this process holds it."""
        ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...

    def describe(self) -> str: ...

    def held_by(self) -> str:
        """Who holds it, for the message of a second writer: " (pid 1234)", or "" when that is unknown."""
        ...


class FileLock:
    """An exclusive lock on `<database>.lock`, holding the owner's pid for the error message of a second writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        import portalocker  # lazily: see the module docstring

        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            portalocker.lock(fh, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
        except (portalocker.LockException, OSError):
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def still_held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        import portalocker  # lazily: see the module docstring

        if self._fh is not None:
            with contextlib.suppress(portalocker.LockException, OSError):
                portalocker.unlock(self._fh)
            self._fh.close()
            self._fh = None

    def owner(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def describe(self) -> str:
        return f"lock file {self.path}"

    def held_by(self) -> str:
        # The holder writes its pid into the file (on Windows the lock keeps others from reading it).
        owner = self.owner()
        return f" (pid {owner})" if owner.isdigit() else ""


class AdvisoryLock:
    """`pg_try_advisory_lock` held on its own connection for as long as this process writes."""

    def __init__(self, engine: Engine, key: int = PG_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None
        # Jobs run in several threads and all check the lock; one connection must not be used concurrently.
        self._mutex = threading.RLock()

    def acquire(self) -> bool:
        with self._mutex:
            return self._acquire()

    def _acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        conn = self.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        with self._mutex:
            if self._conn is None:
                return False
            try:
                self._conn.execute(text("SELECT 1")).scalar()
                self._conn.commit()
                return True
            except Exception:
                self._drop()
                return False

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        with self._mutex:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    self._conn.commit()
                self._drop()

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self.key}"

    def held_by(self) -> str:
        return ""  # the holder's server backend is known to PostgreSQL, its process (and host) is not


def writer_lock(engine: Engine) -> WriterLock:
    """The right lock for the database behind `engine`."""
    url = make_url(str(engine.url))
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(engine)
    database = url.database or ""
    if database in ("", ":memory:"):
        # An in-memory database belongs to this process alone; a private lock file keeps the code uniform.
        return FileLock(Path(tempfile.gettempdir()) / f"tierdrift-{os.getpid()}.lock")
    return FileLock(Path(database + ".lock"))
