"""Alembic environment: the store hands its connection in ``config.attributes``."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations through lakeport (the store migrates when it opens)")
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
