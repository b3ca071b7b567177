"""Alembic's environment: the revisions run on the connection `orchestrator.migrations` hands in.

Rollway has no alembic.ini: `orchestrator.migrations` builds the configuration and passes an open
connection, inside its transaction (and, on PostgreSQL, its advisory lock), as `attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from orchestrator.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Rollway's migrations run through `rollway db upgrade`, not the alembic command")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
