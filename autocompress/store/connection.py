"""Open databases by SQLAlchemy URL; fail early and clearly, never print a password."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from autocompress.errors import UserError

if TYPE_CHECKING:  # optuna is imported only where it is used: the registry never needs it
    import optuna

    from autocompress.config import WorkersConfig


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"storage: {safe_url(url)} is not a database URL; use e.g. "
            "sqlite:///runs/autocompress.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"storage: cannot create the folder for {safe_url(url)}: "
                f"{error.strerror}; use a URL whose folder can be created (storage in the "
                "study file, or --storage)"
            ) from None
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    try:
        return create_engine(url, connect_args=connect_args)
    except (ArgumentError, ImportError) as error:
        raise UserError(f"storage: cannot use {safe_url(url)}: {error}") from None


def check_reachable(url: str) -> None:
    """Connect once before anything is written, so a bad URL leaves nothing behind."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
        raise UserError(
            f"storage: cannot reach database {safe_url(url)}: {reason}; check the "
            "URL, that the server is running, and the credentials"
        ) from None
    finally:
        engine.dispose()


def database_exists(url: str) -> bool:
    """Whether there is a database to read; a missing SQLite file is never created.

    Server databases are checked for reachability (a clear error when down).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).is_file()
    check_reachable(url)
    return True


# Optuna's alembic head revision, by the optuna version it was read from
# (tests/test_cli_imports.py checks it against the installed optuna's own).
OPTUNA_HEADS = {"5.1.0": "v3.2.0.a"}
_ENGINE_KWARGS = {"pool_pre_ping": True}


def optuna_storage(url: str, workers: WorkersConfig | None = None) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage. Pass `workers` where trials run: their heartbeats let the
    next worker fail and re-queue the trials of a dead one, and every call rides out a
    database that blinks for up to `workers.db_retry_s` (readers pass nothing).

    Optuna creates its tables on first use: that runs under the setup lock, so workers
    started together on a fresh database do not race in `CREATE TABLE`. Readers of a
    database Optuna already set up skip that, and alembic (`_ready_storage`).
    """
    import optuna

    from autocompress.store.resilience import resilient_storage
    from autocompress.store.setup_lock import setup_lock

    if workers is None:
        if (ready := _ready_storage(url)) is not None:
            return ready
        with setup_lock(url):
            return optuna.storages.RDBStorage(url, engine_kwargs=dict(_ENGINE_KWARGS))
    with warnings.catch_warnings():  # experimental since Optuna 2.8; the interface we use is stable
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = (
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=workers.max_retry)
            if workers.max_retry > 0
            else None
        )
        with setup_lock(url):
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=dict(_ENGINE_KWARGS),
                heartbeat_interval=workers.heartbeat_interval_s,
                grace_period=workers.grace_period_s,
                heartbeat_stale_trial_callback=retry,
            )
    return resilient_storage(storage, workers.db_retry_s)


def _ready_storage(url: str) -> optuna.storages.RDBStorage | None:
    """Optuna's storage of a database whose Optuna tables are at this optuna's head,
    opened without what `RDBStorage()` does on every open besides: `CREATE TABLE IF NOT
    EXISTS` and alembic's revision check (0.2 s of alembic imports, a fifth of
    `autocompress front`, to read the one row read here). None on any doubt (another
    optuna version, a revision that is not the head, no tables, no answer): the caller
    opens it the usual way, and Optuna says what is wrong.

    The storage is made as `RDBStorage.__init__` makes one with `skip_table_creation`
    and `skip_compatibility_check`, but with no `_version_manager` (Optuna uses it only
    to upgrade its tables, which readers never do; a pickled copy gets its own).
    tests/test_cli_imports.py holds the attributes to those of `RDBStorage()`.
    """
    import optuna
    from sqlalchemy.orm import scoped_session, sessionmaker

    head = OPTUNA_HEADS.get(optuna.__version__)
    try:
        if head is None or make_url(url).get_backend_name() not in ("sqlite", "postgresql"):
            return None
        engine = create_engine(url, **_ENGINE_KWARGS)
    except (ArgumentError, ImportError):
        return None
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        found = []
    if found != [(head,)]:
        engine.dispose()
        return None
    storage = object.__new__(optuna.storages.RDBStorage)
    storage.engine_kwargs = dict(_ENGINE_KWARGS)
    storage.url = url
    storage.skip_compatibility_check = True  # checked above
    storage.heartbeat_interval = storage.grace_period = None
    storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = None
    storage.engine = engine
    storage.scoped_session = scoped_session(sessionmaker(bind=engine))
    storage._version_manager = None
    return storage
