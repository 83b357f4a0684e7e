"""Riding out a database that blinks: bounded retries on transient errors.

A 1.2-second `pg_ctl restart` mid-study used to end the run with seven chained
tracebacks and leave the trial RUNNING. Connection resets, a restarting server and
SQLite's "database is locked" are transient: the same call succeeds a moment later.
`retry_transient` runs a call again with exponential back-off until a deadline; errors
that are not transient (a full disk, a constraint violation, a bug) pass at once.

`ResilientStorage` wraps Optuna's storage so that every read and write Optuna makes,
including the `tell` that records a finished trial, is retried this way: a trial's
result is not dropped because the server restarted while it was being written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

logger = logging.getLogger("autocompress")
T = TypeVar("T")
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 8.0
DEFAULT_RETRY_S = 60.0

_TRANSIENT_WORDS = (
    "database is locked",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "could not connect",
    "the database system is starting up",
    "the database system is shutting down",
    "connection is closed",
    "connection timed out",
    "ssl syscall error",
    "consuming input failed",
    "no connection to the server",
    "broken pipe",
)
_PERMANENT_WORDS = ("disk is full", "no space left", "disk full")


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for the whole retry budget."""

    def __init__(self, operation: str, waited_s: float, cause: BaseException) -> None:
        self.operation, self.waited_s, self.cause = operation, waited_s, cause
        super().__init__(
            f"the database did not answer {operation} for {waited_s:.0f} s: {describe(cause)}"
        )


def describe(error: BaseException) -> str:
    """The root cause's first line: what the driver said, without the SQL and the links."""
    root = _causes(error)[-1]  # through `orig`, causes and contexts (Optuna re-raises)
    lines = str(root).strip().splitlines()
    return lines[0] if lines else type(root).__name__


def is_transient(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) is a connection loss or a lock that will pass."""
    chain = _causes(error)
    for current in chain:
        text = str(current).lower()
        if any(word in text for word in _PERMANENT_WORDS):
            return False
    for current in chain:
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, ConnectionError | sa_exc.DisconnectionError):
            return True
        if _is_driver_connection_error(current):
            return True
        if any(word in str(current).lower() for word in _TRANSIENT_WORDS):
            return True
    return False


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) says the disk, or SQLite's file, is full."""
    import errno

    return any(
        getattr(current, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        or any(word in str(current).lower() for word in _PERMANENT_WORDS)
        for current in _causes(error)
    )


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and everything it wraps or was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return chain


def _is_driver_connection_error(error: BaseException) -> bool:
    """psycopg's OperationalError: the connection, not the statement, went wrong."""
    try:
        import psycopg
    except ImportError:  # the PostgreSQL driver is optional for SQLite-only installs
        return False
    return isinstance(error, psycopg.OperationalError)


def retry_transient(
    call: Callable[[], T],
    operation: str,
    budget_s: float = DEFAULT_RETRY_S,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`call()`, again after transient errors with back-off until `budget_s` has passed.

    Raises `DatabaseUnavailable` when the budget runs out; other errors pass at once.
    `on_retry` is told of each transient error before the wait (e.g. to undo state).
    """
    started = time.monotonic()
    wait = FIRST_WAIT_S
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            waited = time.monotonic() - started
            if waited + wait > budget_s:
                raise DatabaseUnavailable(operation, waited, error) from error
            logger.warning(
                "database: %s failed (%s); retrying in %.1f s (attempt %d)",
                operation,
                describe(error),
                wait,
                attempt,
            )
            if on_retry is not None:
                on_retry(error)
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)


def resilient_storage(inner: Any, budget_s: float = DEFAULT_RETRY_S) -> Any:
    """Optuna storage `inner` (an `RDBStorage`) with every public call retried."""
    import optuna

    cached = optuna.storages._CachedStorage(inner)  # what Optuna would wrap it in itself
    return _storage_class()(cached, budget_s)


_STORAGE_CLASS: type | None = None


def _storage_class() -> type:
    """Built once, on first use: subclassing Optuna's base classes needs optuna imported,
    and the registry and CLI import this package without it."""
    global _STORAGE_CLASS
    if _STORAGE_CLASS is not None:
        return _STORAGE_CLASS
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import BaseStorage
    from optuna.storages._heartbeat import BaseHeartbeat

    def __init__(self: Any, inner: Any, budget_s: float) -> None:
        self._inner = inner
        self._budget_s = budget_s

    def __getattr__(self: Any, name: str) -> Any:
        # Private helpers Optuna reaches for (`_get_stale_trial_ids`, `_backend`) pass
        # through unretried: they are reads inside calls that are retried as a whole.
        return getattr(self._inner, name)

    def retried(name: str) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            call = getattr(self._inner, name)
            return retry_transient(lambda: call(*args, **kwargs), name, self._budget_s)

        method.__name__ = name
        return method

    def set_trial_state_values(self: Any, trial_id: int, state: Any, values: Any = None) -> bool:
        """Retried like the rest; a retry that finds the trial already finished in the
        state it was asked to reach means the first attempt was committed."""

        def call() -> bool:
            try:
                return self._inner.set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                if attempts[0] > 1 and self._inner.get_trial(trial_id).state == state:
                    return True
                raise

        attempts = [0]

        def counted() -> bool:
            attempts[0] += 1
            return call()

        return retry_transient(counted, "set_trial_state_values", self._budget_s)

    def record_heartbeat(self: Any, trial_id: int) -> None:
        """Runs in Optuna's heartbeat thread, where an exception would only print a
        traceback: a beat lost to an outage is logged; the trial's own calls decide."""
        try:
            retry_transient(
                lambda: self._inner.record_heartbeat(trial_id), "record_heartbeat", self._budget_s
            )
        except DatabaseUnavailable as error:
            logger.warning("database: a heartbeat was lost (%s)", describe(error.cause))

    def _get_stale_trial_ids(self: Any, study_id: int) -> list[int]:
        """Optuna's stale trials (heartbeat silent for the grace period), plus RUNNING
        trials that never beat at all once they are older than the grace period: a
        `create_new_trial` whose commit landed but whose answer was lost to an outage
        leaves such a trial, and the retry made another; Optuna alone never fails it."""
        stale = self._inner._get_stale_trial_ids(study_id)
        orphans = _orphaned_trial_ids(self._inner._backend, study_id)
        return [*stale, *(trial_id for trial_id in orphans if trial_id not in stale)]

    bases = (BaseStorage, BaseHeartbeat)
    public = {
        name
        for base in bases
        for name, member in vars(base).items()
        if callable(member) and not name.startswith("_")
    }
    abstract = set().union(*(base.__abstractmethods__ for base in bases))
    own = {"set_trial_state_values", "record_heartbeat"}
    names = sorted((public | abstract) - own)
    namespace: dict[str, Any] = {name: retried(name) for name in names}
    namespace.update(
        __init__=__init__,
        __getattr__=__getattr__,
        set_trial_state_values=set_trial_state_values,
        record_heartbeat=record_heartbeat,
        _get_stale_trial_ids=_get_stale_trial_ids,
        __doc__="Optuna storage whose every public call rides out transient database errors.",
        __module__=__name__,
    )
    _STORAGE_CLASS = type("ResilientStorage", bases, namespace)
    return _STORAGE_CLASS


def _orphaned_trial_ids(rdb: Any, study_id: int) -> list[int]:
    """RUNNING trials of the study with no heartbeat row, started more than the grace
    period ago (by this client's clock: Optuna 5 stores `datetime_start` as naive UTC
    from the client). A live worker records its trial's first beat right after creating
    it."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    if rdb.heartbeat_interval is None:
        return []
    grace = rdb.grace_period or 2 * rdb.heartbeat_interval
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=grace)
    with _create_scoped_session(rdb.scoped_session) as session:
        rows = (
            session.query(models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialModel._datetime_start_utc < cutoff)
            .filter(~models.TrialModel.heartbeats.any())
            .all()
        )
    return [row[0] for row in rows]
