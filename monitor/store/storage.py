"""What a storage failure means, in one line that names the database and never shows its password.

`describe` turns the failures a disk or a database server can throw at any command into sentences:

    SQLite FULL, or ENOSPC           database or disk is full (<db>): nothing was written
    SQLite READONLY, EROFS           database <db> is read-only: nothing was written
    SQLite CANTOPEN                  folder <dir> does not exist / is read-only / <db> is a folder
    SQLite BUSY or LOCKED            database <db> is locked by another process: nothing was written
    SQLite NOTADB, CORRUPT, IOERR    <db> is not a SQLite database / … is corrupt / disk I/O error
    PostgreSQL connection failures   cannot connect to PostgreSQL at <host:port>: connection refused
    PostgreSQL SQLSTATE classes      PostgreSQL at <host:port>: disk full / read-only / … : nothing was written
    other OSError                    <strerror>: <file>

"Nothing was written" holds because every write is one transaction, which the database rolls back when
it fails. This module imports neither SQLAlchemy nor a driver (the CLI's error boundary must stay light):
it reads the driver error behind a SQLAlchemy error through its `orig` attribute.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from monitor.config.paths import redact_url, url_secrets
from snapshots.errors import TierdriftError

_SQLITE_PREFIX = "sqlite:///"


class DatabaseError(TierdriftError):
    """The database cannot be opened or written; `str()` names it, without its password."""


class NoDatabase(DatabaseError):
    """A read-only command was pointed at a database that does not exist (it is never created for a read)."""

    def __init__(self, where: str) -> None:
        super().__init__(f"no database at {where}: run `tierdrift poll` or `tierdrift import` first")


class DatabaseLocked(DatabaseError):
    """Another process kept the database's write lock for longer than a command waits."""


def sqlite_path(url: str) -> Path | None:
    """The file behind a `sqlite:///…` URL (None for other databases and for in-memory SQLite)."""
    if not url.startswith(_SQLITE_PREFIX):
        return None
    raw = url[len(_SQLITE_PREFIX) :].split("?", 1)[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw.removeprefix("file:")).expanduser()


def label(url: str) -> str:
    """How a message names the database: the SQLite file, or the URL without its password."""
    path = sqlite_path(url)
    return str(path) if path is not None else redact_url(url)


def _server(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return redact_url(url)


def _driver_error(exc: BaseException) -> BaseException:
    """The DBAPI error behind a SQLAlchemy `DBAPIError` (its `orig`), or `exc` itself."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def describe(exc: BaseException, url: str | None) -> str | None:
    """A one-line message for a storage failure, or None when `exc` is not one."""
    err = _driver_error(exc)
    if isinstance(err, sqlite3.Error):
        return _sqlite(err, url or "")
    if type(err).__module__.split(".")[0] == "psycopg":
        return _postgres(err, url or "")
    if isinstance(err, OSError):
        return _os(err)
    return None


def _sqlite(err: sqlite3.Error, url: str) -> str | None:
    code = getattr(err, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    db = label(url) if url else "the database"
    path = sqlite_path(url)
    if primary == sqlite3.SQLITE_FULL:
        return f"database or disk is full ({db}): nothing was written"
    if primary == sqlite3.SQLITE_READONLY:
        return f"database {db} is read-only: nothing was written"
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return f"database {db} is locked by another process: nothing was written; try again"
    if primary == sqlite3.SQLITE_CANTOPEN:
        if path is not None and not path.parent.is_dir():
            return f"folder {path.parent} does not exist"
        if path is not None and path.is_dir():
            return f"{path} is a folder, not a database file"
        if path is not None and not os.access(path.parent, os.W_OK):
            # SQLite keeps a WAL database's -wal and -shm files beside it, even to read it.
            return f"folder {path.parent} is read-only: SQLite cannot create the files it keeps beside {path.name}"
        return f"cannot open database {db}: check that it and its folder are readable and writable"
    if primary == sqlite3.SQLITE_NOTADB:
        return f"{db} is not a SQLite database"
    if primary == sqlite3.SQLITE_CORRUPT:
        return f"database {db} is corrupt: nothing was written"
    if primary == sqlite3.SQLITE_IOERR:
        return f"disk I/O error on database {db}: nothing was written"
    if primary == sqlite3.SQLITE_PERM:
        return f"permission denied on database {db}: nothing was written"
    return None


#: PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) worth a sentence.
_PG_STATES = {
    "53100": "disk full",
    "53200": "out of memory",
    "53300": "too many connections",
    "25006": "read-only (a standby server?)",
    "57P01": "the server is shutting down",
    "57P03": "the server is starting up or shutting down",
    "28P01": "password authentication failed",
    "28000": "authentication failed",
    "3D000": "the database does not exist",
    "42501": "permission denied",
    "55P03": "a lock could not be taken in time",
    "40P01": "deadlock detected",
    "57014": "the statement was cancelled (statement timeout?)",
}

#: Fragments of libpq's connection messages, which carry no SQLSTATE.
_PG_CONNECT = (
    ("Connection refused", "connection refused"),
    ("password authentication failed", "password authentication failed"),
    ("timeout expired", "timed out"),
    ("could not translate host name", "unknown host"),
    ("does not exist", "the database or user does not exist"),
    ("no password supplied", "no password given"),
    ("server closed the connection", "the server closed the connection"),
    ("Network is unreachable", "network unreachable"),
    ("No route to host", "no route to host"),
)


def _postgres(err: BaseException, url: str) -> str | None:
    where = _server(url)
    state = getattr(err, "sqlstate", None)
    if isinstance(state, str) and state in _PG_STATES:
        return f"PostgreSQL at {where}: {_PG_STATES[state]}: nothing was written"
    if type(err).__name__ != "OperationalError":
        return None
    message = str(err)
    for fragment, reason in _PG_CONNECT:
        if fragment in message:
            return f"cannot connect to PostgreSQL at {where}: {reason}"
    first = (message.strip().splitlines() or [type(err).__name__])[0]
    for secret in url_secrets(url):  # the server's own words: redacted, as ours never hold a password
        first = first.replace(secret, "***")
    return f"PostgreSQL at {where}: {first}"


_OS_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "not a folder",
    errno.EISDIR: "is a folder",
    errno.EIO: "input/output error",
}


def _os(err: OSError) -> str:
    reason = _OS_ERRORS.get(err.errno or 0) or (err.strerror or type(err).__name__).lower()
    where = None if err.filename is None else str(err.filename)
    if where is not None and len(where) > 200:
        where = where[:200] + "…"
    suffix = ": nothing was written" if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else ""
    return f"{reason}: {where}{suffix}" if where is not None else f"{reason}{suffix}"
