"""Which process may take over a delivery that another one claimed and has not released.

A process claims a delivery (`Delivery.claimed_until`) for the time one attempt can take before sending it,
so that two live processes never send it at once, and clears the claim when it records the outcome. A
process killed in between leaves its claim behind; it expires, and then the delivery is due again. It need
not wait that long when no other process is delivering: every delivering process holds the *delivery
lock* shared (`ClaimGuard.delivering`), so a process that can take it exclusively knows that every claim
left is a dead one's, and clears them all (`ClaimGuard.sweep`).

The lock is a file lock on `<database>.deliver.lock` for a SQLite file, taken through portalocker (`flock`
on Linux and macOS, `LockFileEx` on Windows, where a shared lock needs pywin32; the system drops it with its
process) and an advisory lock for PostgreSQL (the server drops it with its session). An in-memory SQLite
database belongs to one process: claims there are only ever cleared by expiry.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

#: PostgreSQL advisory lock key of the delivery lock: "tddelivr" as a signed 64-bit integer.
PG_DELIVERY_KEY = int.from_bytes(b"tddelivr", "big", signed=True)


class ClaimGuard:
    """The delivery lock of one database, shared by the threads of this process that deliver."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._mutex = threading.Lock()
        self._holders = 0
        self._file: IO[str] | None = None
        self._conn: Connection | None = None
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._path = Path(database + ".deliver.lock") if database and database != ":memory:" else None
        self._postgres = engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def delivering(self) -> Iterator[None]:
        """Hold the lock shared for the block (the first holder in this process takes it, the last drops it)."""
        with self._mutex:
            if self._holders == 0:
                self._take_shared()
            self._holders += 1
        try:
            yield
        finally:
            with self._mutex:
                self._holders -= 1
                if self._holders == 0:
                    self._drop_shared()

    def sweep(self, clear: Callable[[], None]) -> bool:
        """Run `clear` (which clears every claim) if no process delivers now; True if it ran."""
        with self._mutex:
            if self._holders:
                return False
            if self._path is not None:
                return self._sweep_file(self._path, clear)
            if self._postgres:
                return self._sweep_postgres(clear)
            return False

    def _take_shared(self) -> None:
        if self._path is not None:
            import portalocker  # lazily: about 30 ms, and only delivering needs it

            self._file = self._path.open("a")
            portalocker.lock(self._file, portalocker.LockFlags.SHARED)  # waits only for a sweep, one UPDATE
        elif self._postgres:
            conn = self._engine.connect()
            conn.execute(text("SELECT pg_advisory_lock_shared(:k)"), {"k": PG_DELIVERY_KEY})
            conn.commit()  # a session lock, held outside any transaction
            self._conn = conn

    def _drop_shared(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases its lock
            self._file = None
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dead session has dropped the lock already
                self._conn.execute(text("SELECT pg_advisory_unlock_shared(:k)"), {"k": PG_DELIVERY_KEY})
                self._conn.commit()
            self._conn.close()
            self._conn = None

    @staticmethod
    def _sweep_file(path: Path, clear: Callable[[], None]) -> bool:
        import portalocker  # lazily, as in `_take_shared`

        with path.open("a") as fh:
            try:
                portalocker.lock(fh, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
            except (portalocker.LockException, OSError):
                return False
            clear()
        return True

    def _sweep_postgres(self, clear: Callable[[], None]) -> bool:
        with self._engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_DELIVERY_KEY}).scalar())
            conn.commit()
            if not got:
                return False
            try:
                clear()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_DELIVERY_KEY})
                conn.commit()
        return True
