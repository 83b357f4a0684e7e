"""The alembic environment of autocompress's tables, configured in code: no alembic.ini.

`autocompress.store.migrate` opens the connection (and its transaction, under the setup
lock) and hands it over in `config.attributes["connection"]`. Our revisions are kept in
a version table of our own: Optuna keeps its revisions in `alembic_version` in the same
database.
"""

from alembic import context

from autocompress.store.migrate import VERSION_TABLE, is_ours
from autocompress.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run autocompress migrations through autocompress.store.migrate.upgrade")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=is_ours,  # comparing with schema.py looks at our tables, not Optuna's
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():  # joins the transaction `migrate` opened
    context.run_migrations()
