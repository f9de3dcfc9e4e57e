"""Alembic environment: runs on the connection handed over by `monitor.schema.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import alerts.db  # noqa: F401  (registers the tables on SQLModel.metadata for autogenerate)
import monitor.store.models  # noqa: F401
import snapshots.db  # noqa: F401

target_metadata = SQLModel.metadata
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
