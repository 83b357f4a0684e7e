"""The alembic environment of autocompress's tables: `env.py` and one file a revision in
`versions/`. Run through `autocompress.store.migrate.upgrade`, never by hand."""
