"""Alembic environment for the shadow's tables. Ombre runs it in-process
(shadow.schema.upgrade) with an open connection in `config.attributes["connection"]`;
there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from shadow.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
