"""Create and upgrade our tables: one function, `upgrade`, with alembic.

Our revisions live in `migrations/versions` and their current one in the table
`autocompress_alembic_version` (Optuna keeps its own in `alembic_version`, in the same
database). `upgrade` decides from what it finds, under the setup lock and in one
transaction (PostgreSQL also runs the DDL in it; SQLite commits DDL as it goes, which
is why the baseline creates only what is missing):

* an alembic revision this code knows: upgrade from it to the head (nothing to do
  when it is the head: a second open writes nothing);
* an alembic revision it does not know: a newer autocompress wrote the tables;
  refused with a `UserError`, nothing changed;
* no alembic revision, and `autocompress_schema_version` says 3: the tables as written
  before alembic, which the baseline `v3` describes; stamped `v3`, then upgraded;
* no alembic revision, and no version row (an empty database) or v1 or v2 (older, with
  fewer tables; only tables were ever added): upgraded from nothing, the baseline
  creating the tables that are missing;
* no alembic revision and a version above 3: refused as above.

A database already at the head (every open after the first) is told by one plain read
of the two version tables, without the setup lock and without importing alembic (0.2 s,
a fifth of `autocompress front`): alembic writes the revision row after the tables it
describes, so a reader that sees the head sees its tables too.

Decisions rest on the alembic revision. The old row is still written (`SCHEMA_VERSION`,
bumped with each revision), so autocompress from before alembic, which knows only that
row, refuses a database written by a newer one instead of misreading it.

alembic is imported only here, when the tables need creating or upgrading, not with
`autocompress.store`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from autocompress.errors import UserError
from autocompress.store.connection import make_engine, safe_url
from autocompress.store.schema import SCHEMA_VERSION, SchemaVersion
from autocompress.store.setup_lock import setup_lock

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger("autocompress")

VERSION_TABLE = "autocompress_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")
# The revision that describes the tables as autocompress wrote them before alembic,
# and the `autocompress_schema_version` those databases hold.
BASELINE, BASELINE_VERSION = "v3", 3
# The head revision's name (tests/test_store_migrations.py checks that alembic agrees).
HEAD = f"v{SCHEMA_VERSION}"


def is_ours(name: str | None, type_: str, parent_names: object) -> bool:
    """alembic's `include_name`: our tables only; Optuna's share the database."""
    return type_ != "table" or bool(name and name.startswith("autocompress_"))


def upgrade(url: str, engine: Engine | None = None) -> str:
    """Bring our tables in the database at `url` to the newest revision (see the module
    docstring for what is done when) and return that revision.

    Takes the setup lock of `url` (re-entrant: callers may hold it already), so workers
    started together do not race. `engine`, if given, is used and left open.
    """
    own_engine = engine is None
    engine = make_engine(url) if engine is None else engine
    try:
        if is_at_head(engine):
            return HEAD
        logging.getLogger("alembic").setLevel(logging.WARNING)  # as Optuna does for its own
        from alembic import command

        with setup_lock(url), engine.begin() as connection:
            config = alembic_config(connection)
            script = scripts()
            head = script.get_current_head()
            found = start = current_revision(connection)
            if found is None:
                legacy = _legacy_version(connection)
                if legacy is not None and legacy > BASELINE_VERSION:
                    raise _newer(url, f"schema v{legacy}", f"v{SCHEMA_VERSION}")
                if legacy == BASELINE_VERSION:
                    command.stamp(config, BASELINE)
                    start = f"{BASELINE} (written before alembic, now stamped)"
            elif found not in {revision.revision for revision in script.walk_revisions()}:
                raise _newer(url, f"revision {found!r}", f"revision {head!r}")
            if found != head:
                command.upgrade(config, "head")
                logger.info(
                    "storage: %s: autocompress tables upgraded from %s to %s",
                    safe_url(url),
                    start or "nothing",
                    head,
                )
            _write_legacy_version(connection)
            return head
    finally:
        if own_engine:
            engine.dispose()


def is_at_head(engine: Engine) -> bool:
    """Whether our tables are at `HEAD` with the pre-alembic row saying so too: nothing
    for `upgrade` to do. Any doubt (no tables yet, a database that does not answer)
    is False, and `upgrade` decides under the lock."""
    table = SchemaVersion.__table__
    try:
        with engine.connect() as connection:
            found = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
            legacy = connection.execute(select(table.c.version)).all()
    except SQLAlchemyError:
        return False
    return found == [(HEAD,)] and bool(legacy) and all(v == SCHEMA_VERSION for (v,) in legacy)


def current_revision(connection: Connection) -> str | None:
    """Our alembic revision in the database, or None when it has none (yet)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def scripts() -> ScriptDirectory:
    """Our revisions (read from `migrations/versions` on each call: a few ms)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def alembic_config(connection: Connection) -> Config:
    """An alembic configuration in code (no alembic.ini) whose `env.py` migrates over
    `connection`, inside the transaction it is in."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _legacy_version(connection: Connection) -> int | None:
    if not inspect(connection).has_table(SchemaVersion.__tablename__):
        return None
    return connection.scalar(select(SchemaVersion.version).order_by(SchemaVersion.id).limit(1))


def _write_legacy_version(connection: Connection) -> None:
    """`SCHEMA_VERSION` into the old one-row table, for autocompress from before alembic."""
    table = SchemaVersion.__table__
    rows = connection.execute(select(table.c.id, table.c.version)).all()
    if not rows:
        connection.execute(insert(table).values(id=1, version=SCHEMA_VERSION))
    elif any(version != SCHEMA_VERSION for _, version in rows):
        connection.execute(update(table).values(version=SCHEMA_VERSION))


def _newer(url: str, found: str, known: str) -> UserError:
    return UserError(
        f"storage: {safe_url(url)} holds autocompress tables at {found}, newer than this "
        f"autocompress knows (its newest is {known}): a newer autocompress wrote them. "
        "Upgrade autocompress to use this database; nothing was changed"
    )
