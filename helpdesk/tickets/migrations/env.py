"""Alembic's environment for the ledger: the connection comes from helpdesk/tickets/schema.py
(`config.attributes["connection"]`), already inside the migration lock; nothing is read from
an alembic.ini or the environment here."""
from alembic import context

connection = context.config.attributes["connection"]
# SQLite alters tables by copying them (batch mode); other databases as usual
context.configure(connection=connection, target_metadata=None,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
