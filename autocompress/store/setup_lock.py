"""One process at a time creates tables and studies in a database.

Workers started together on a fresh PostgreSQL database raced in `CREATE TABLE`
("UniqueViolation … already exists") and in creating the study (a second worker read
the study before the first had written its identity, and was told it came from another
study file). Everything that creates schema or a study runs inside `setup_lock(url)`:

* PostgreSQL: a session-level advisory lock, held on a connection of its own (the
  database lets one holder in, across machines; it is released if the holder dies).
* SQLite: an exclusive `flock` on `<database>.setup-lock` beside the file (SQLite
  databases are shared only by processes on one machine).
* Other backends: no lock (they are not tested here).

The lock is re-entrant within a process, so `Store()` and `optuna_storage()`, which
take it themselves, can be called inside a larger setup that holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

# Any fixed 64-bit key; all autocompress processes agree on it.
ADVISORY_KEY = 0x61757463_6F6D7072  # "autcompr"
_held: dict[str, int] = {}
_guard = threading.RLock()


@contextmanager
def setup_lock(url: str) -> Iterator[None]:
    """Hold the database's setup lock (see the module docstring) for the `with` body."""
    with _guard:  # threads of one process take turns; the depth makes it re-entrant
        if _held.get(url):
            _held[url] += 1
            try:
                yield
            finally:
                _held[url] -= 1
            return
        with _backend_lock(url):
            _held[url] = 1
            try:
                yield
            finally:
                _held.pop(url, None)


@contextmanager
def _backend_lock(url: str) -> Iterator[None]:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        lock_path = Path(f"{parsed.database}.setup-lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if backend == "postgresql":
        from autocompress.store.connection import make_engine

        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
                connection.commit()
                try:
                    yield
                finally:
                    # A connection lost meanwhile took its session's lock with it.
                    with contextlib.suppress(SQLAlchemyError):
                        connection.execute(
                            text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY}
                        )
                        connection.commit()
        finally:
            engine.dispose()
        return
    yield
