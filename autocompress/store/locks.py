"""A lock in the database: one holder at a time, across processes and machines.

Taken by INSERTing a row keyed by the lock's name: the primary key lets exactly one
writer win, on SQLite and PostgreSQL alike. A holder that dies leaves its row behind;
once `expires_at` has passed anyone may take it over, with one UPDATE guarded by the
old owner and the expiry, so two takers cannot both win. A long job calls `refresh()`
(the nightly does after every trial) to keep its lock. Times come from the database
server where there is one, so machines with skewed clocks still agree on expiry.

    with hold_lock("postgresql+psycopg://...", "nightly:german_credit", ttl_s=3600) as lock:
        for ...:
            ...
            lock.refresh()
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Row, delete, func, insert, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from autocompress.errors import LockHeld
from autocompress.store.connection import check_reachable, make_engine
from autocompress.store.schema import LockRow

logger = logging.getLogger("autocompress")
# An INSERT fails, then the row is gone before we read it: released in between. Try again.
ACQUIRE_ATTEMPTS = 5
Holder = Row[tuple[str, datetime, datetime]]  # owner, acquired_at, expires_at


def default_owner() -> str:
    """host/pid/random: unique per holder, and says where to look for it."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


@dataclass
class HeldLock:
    """A lock this process holds until `release()` (or until it expires unrefreshed)."""

    engine: Engine
    name: str
    owner: str
    ttl_s: float
    acquired_at: datetime
    expires_at: datetime

    def refresh(self, ttl_s: float | None = None) -> datetime:
        """Push the expiry `ttl_s` (default: the original TTL) from now; returns it.

        Raises `LockHeld` when the lock is no longer ours (it expired and was taken
        over): the caller must stop, since another run may now be working.
        """
        ttl_s = self.ttl_s if ttl_s is None else _positive(ttl_s)
        with self.engine.begin() as connection:
            now = _now(connection)
            expires_at = now + timedelta(seconds=ttl_s)
            changed = connection.execute(
                update(LockRow)
                .where(LockRow.name == self.name, LockRow.owner == self.owner)
                .values(expires_at=expires_at)
            ).rowcount
            holder = None if changed else _holder(connection, self.name)
        if not changed:
            now_held = (
                f"{holder.owner} has held it since {_when(holder.acquired_at)}"
                if holder
                else "its row is gone"
            )
            raise LockHeld(
                f"lock {self.name!r} is no longer held by {self.owner}: it expired before "
                f"it was refreshed and {now_held}. Stop this run (another may be working); "
                f"refresh more often than every {self.ttl_s:g} s, or use a longer TTL"
            )
        self.expires_at = expires_at
        return expires_at

    def release(self) -> bool:
        """Delete our own row (never another holder's); False if it was no longer ours."""
        with self.engine.begin() as connection:
            deleted = connection.execute(
                delete(LockRow).where(LockRow.name == self.name, LockRow.owner == self.owner)
            ).rowcount
        if not deleted:
            logger.warning("lock %r was no longer held by %s at release", self.name, self.owner)
        return bool(deleted)


def acquire_lock(engine: Engine, name: str, ttl_s: float, owner: str | None = None) -> HeldLock:
    """Take the lock `name` for `ttl_s` seconds, or raise `LockHeld` naming its holder."""
    ttl_s = _positive(ttl_s)
    owner = owner or default_owner()
    _ensure_table(engine)
    for _ in range(ACQUIRE_ATTEMPTS):
        try:
            with engine.begin() as connection:
                now = _now(connection)
                expires_at = now + timedelta(seconds=ttl_s)
                connection.execute(
                    insert(LockRow).values(
                        name=name, owner=owner, acquired_at=now, expires_at=expires_at
                    )
                )
            return HeldLock(engine, name, owner, ttl_s, now, expires_at)
        except IntegrityError:
            pass  # someone holds it: see whether their lock has expired
        with engine.begin() as connection:
            now = _now(connection)
            holder = _holder(connection, name)
            if holder is None:
                continue  # released between our INSERT and this read
            if holder.expires_at > now:
                raise LockHeld(_held_message(name, holder))
            expires_at = now + timedelta(seconds=ttl_s)
            taken = connection.execute(
                update(LockRow)
                .where(
                    LockRow.name == name,
                    LockRow.owner == holder.owner,
                    LockRow.expires_at <= now,
                )
                .values(owner=owner, acquired_at=now, expires_at=expires_at)
            ).rowcount
        if taken:
            logger.warning(
                "lock %r: took it over from %s, whose lock expired at %s",
                name,
                holder.owner,
                _when(holder.expires_at),
            )
            return HeldLock(engine, name, owner, ttl_s, now, expires_at)
    holder_now = _read_holder(engine, name)
    raise LockHeld(
        _held_message(name, holder_now)
        if holder_now
        else f"lock {name!r} kept changing hands while it was being taken; try again"
    )


@contextmanager
def hold_lock(
    url_or_engine: str | Engine, name: str, ttl_s: float, owner: str | None = None
) -> Iterator[HeldLock]:
    """Hold the lock `name` for the body of the `with`; released on the way out."""
    if isinstance(url_or_engine, Engine):
        engine, own_engine = url_or_engine, False
    else:
        check_reachable(url_or_engine)
        engine, own_engine = make_engine(url_or_engine), True
    try:
        lock = acquire_lock(engine, name, ttl_s, owner)
        try:
            yield lock
        finally:
            lock.release()
    finally:
        if own_engine:
            engine.dispose()


def _now(connection: Connection) -> datetime:
    """The database server's clock where there is a server; SQLite is local anyway."""
    if connection.dialect.name == "postgresql":
        return connection.scalar(select(func.now())).astimezone(UTC)
    return datetime.now(UTC)


def _ensure_table(engine: Engine) -> None:
    """Create the locks table if missing; another process creating it at once is fine."""
    try:
        LockRow.__table__.create(engine, checkfirst=True)
    except SQLAlchemyError:
        if not inspect(engine).has_table(LockRow.__tablename__):
            raise


def _holder(connection: Connection, name: str) -> Holder | None:
    return connection.execute(
        select(LockRow.owner, LockRow.acquired_at, LockRow.expires_at).where(LockRow.name == name)
    ).one_or_none()


def _read_holder(engine: Engine, name: str) -> Holder | None:
    with engine.connect() as connection:
        return _holder(connection, name)


def _held_message(name: str, holder: Holder) -> str:
    return (
        f"lock {name!r} is held by {holder.owner} since {_when(holder.acquired_at)} until "
        f"{_when(holder.expires_at)} (later if its holder refreshes it): another run is "
        f"in progress. Try again after it finishes (exit code 75 means: retry later); if "
        f"that run died, its lock is taken over automatically once it expires"
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _positive(ttl_s: float) -> float:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    return float(ttl_s)
