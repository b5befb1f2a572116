"""Alembic environment: runs ledgerlm's migrations on the connection the node hands over."""

from alembic import context

from ledgerlm.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
