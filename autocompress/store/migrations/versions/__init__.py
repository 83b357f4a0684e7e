"""One alembic revision a file (see `autocompress/store/schema.py` for how to add one)."""
