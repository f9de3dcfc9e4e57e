"""The engine factory (SQLAlchemy Core only, so read-only commands need not import SQLModel)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the CLI) run while the daemon writes; NORMAL sync is safe under WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


#: Seconds to wait for a PostgreSQL server to accept a connection. Without it a host that resolves but never
#: answers holds every command until the operating system gives up on TCP (about two minutes).
PG_CONNECT_TIMEOUT = 10


def make_engine(url: str) -> Engine:
    """An engine for any SQLAlchemy URL; SQLite files get WAL mode and a busy timeout, PostgreSQL a connect
    timeout (unless the URL sets its own `connect_timeout`)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    args = {} if "connect_timeout=" in url else {"connect_timeout": PG_CONNECT_TIMEOUT}
    return create_engine(url, pool_pre_ping=True, connect_args=args)
