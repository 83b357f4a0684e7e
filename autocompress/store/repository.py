"""Reading and writing our tables. Each write is one transaction."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, text, union_all, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from autocompress.store import migrate
from autocompress.store.connection import make_engine
from autocompress.store.resilience import DEFAULT_RETRY_S, retry_transient
from autocompress.store.schema import (
    Base,
    ExportRecord,
    FrontMembership,
    FrontSnapshot,
    WorkerStart,
)

T = TypeVar("T")


def default_worker() -> str:
    """host/pid: says where a worker ran."""
    return f"{socket.gethostname()}/{os.getpid()}"


@dataclass(frozen=True)
class SnapshotView:
    study_name: str
    after_trial_number: int
    n_complete_trials: int
    created_at: datetime
    members: list[dict[str, Any]]


class Store:
    """autocompress's tables in the study database (created or upgraded on first use:
    `migrate.upgrade`)."""

    def __init__(self, url: str, retry_s: float = DEFAULT_RETRY_S) -> None:
        self.url = url
        self.retry_s = retry_s
        self.engine = make_engine(url)
        try:  # under the setup lock: workers started together must not race in CREATE TABLE
            migrate.upgrade(url, self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def _write(self, operation: str, rows: Callable[[], list[Base]]) -> None:
        """Add `rows()` in one transaction, retried while the database blinks."""

        def attempt() -> None:
            with Session(self.engine) as session, session.begin():
                session.add_all(rows())

        retry_transient(attempt, operation, self.retry_s)

    def record_front(
        self,
        study_name: str,
        after_trial_number: int,
        n_complete_trials: int,
        members: Sequence[dict[str, Any]],
        complete_number_sum: int | None = None,
    ) -> None:
        """Record that `members` are the front of `study_name` after trial
        `after_trial_number`, computed from `n_complete_trials` complete trials (whose
        numbers sum to `complete_number_sum`, when known).

        One transaction: a snapshot row; the memberships of trials no longer on the front
        are closed at it, and one is opened for each trial new on it. Members already on
        the front are not written again. Two workers recording at once are serialized
        per study (see `_one_front_writer`), so the open rows are always the members of
        the study's latest snapshot.
        """
        given = {m["trial_number"]: m for m in members}

        def attempt() -> None:
            with Session(self.engine) as session, session.begin():
                _one_front_writer(session, study_name)
                snapshot = FrontSnapshot(
                    study_name=study_name,
                    after_trial_number=after_trial_number,
                    n_complete_trials=n_complete_trials,
                    complete_number_sum=complete_number_sum,
                )
                session.add(snapshot)
                session.flush()  # on SQLite the first write: from here on no one else writes
                on_front: dict[int, int] = {
                    number: row
                    for number, row in session.execute(
                        select(FrontMembership.trial_number, FrontMembership.id).where(
                            FrontMembership.study_name == study_name,
                            FrontMembership.left_snapshot_id.is_(None),
                        )
                    )
                }
                gone = [row for number, row in on_front.items() if number not in given]
                for chunk in _chunks(gone):
                    session.execute(
                        update(FrontMembership)
                        .where(FrontMembership.id.in_(chunk))
                        .values(left_snapshot_id=snapshot.id)
                    )
                session.add_all(
                    FrontMembership(
                        study_name=study_name,
                        trial_number=number,
                        params=m["params"],
                        metrics=m["metrics"],
                        joined_snapshot_id=snapshot.id,
                    )
                    for number, m in given.items()
                    if number not in on_front
                )

        retry_transient(attempt, "record_front", self.retry_s)

    def _read(self, operation: str, query: Callable[[Session], T]) -> T:
        """`query(session)` in a session of its own, retried while the database blinks
        (a worker reads the front after every trial: a restart must not end the run)."""

        def attempt() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return query(session)

        return retry_transient(attempt, operation, self.retry_s)

    def latest_front(self, study_name: str) -> SnapshotView | None:
        """The study's latest snapshot with its members (None before its first)."""

        def query(session: Session) -> SnapshotView | None:
            snapshot = session.scalar(_latest_snapshot(study_name))
            return None if snapshot is None else _view(session, snapshot)

        return self._read("latest_front", query)

    def front_at(self, study_name: str, snapshot_id: int) -> SnapshotView | None:
        """The front of `study_name` as snapshot `snapshot_id` recorded it (None when the
        study has no such snapshot)."""

        def query(session: Session) -> SnapshotView | None:
            snapshot = session.get(FrontSnapshot, snapshot_id)
            if snapshot is None or snapshot.study_name != study_name:
                return None
            return _view(session, snapshot)

        return self._read("front_at", query)

    def snapshots(self, study_name: str) -> list[SnapshotRow]:
        """Every snapshot of the study, oldest first, without members (`front_at` gives
        the front of one)."""

        def query(session: Session) -> list[SnapshotRow]:
            rows = session.scalars(
                select(FrontSnapshot)
                .where(FrontSnapshot.study_name == study_name)
                .order_by(FrontSnapshot.id)
            )
            return [_row(snapshot) for snapshot in rows]

        return self._read("snapshots", query)

    def front_head(self, study_name: str) -> FrontHead | None:
        """What the next snapshot builds on: the latest snapshot of the study and the
        numbers of its members (their params and metrics are not read)."""

        def query(session: Session) -> FrontHead | None:
            snapshot = session.scalar(_latest_snapshot(study_name))
            if snapshot is None:
                return None
            numbers = session.scalars(
                _members_at(study_name, snapshot.id, FrontMembership.trial_number)
            )
            return FrontHead(_row(snapshot), list(numbers))

        return self._read("front_head", query)

    def record_export(
        self, study_name: str, trial_number: int, policy: str, path: str, manifest_sha256: str
    ) -> None:
        self._write(
            "record_export",
            lambda: [
                ExportRecord(
                    study_name=study_name,
                    trial_number=trial_number,
                    policy=policy,
                    path=path,
                    manifest_sha256=manifest_sha256,
                )
            ],
        )

    def exports(self, study_name: str) -> list[ExportRecord]:
        return self._read(
            "exports",
            lambda session: list(
                session.scalars(
                    select(ExportRecord)
                    .where(ExportRecord.study_name == study_name)
                    .order_by(ExportRecord.id)
                )
            ),
        )

    def register_worker_start(self, study_name: str, seed: int | None) -> int:
        """Record that a worker starts (or resumes) `study_name`; returns how many starts
        came before this one (0 for the study's first). The database numbers the rows,
        so two workers starting at the same moment get different answers."""

        def attempt() -> int:
            with Session(self.engine) as session, session.begin():
                row = WorkerStart(study_name=study_name, seed=seed, worker=default_worker())
                session.add(row)
                session.flush()
                return session.scalar(
                    select(func.count())
                    .select_from(WorkerStart)
                    .where(WorkerStart.study_name == study_name, WorkerStart.id < row.id)
                )

        return retry_transient(attempt, "register_worker_start", self.retry_s)

    def close(self) -> None:
        self.engine.dispose()


@dataclass(frozen=True)
class SnapshotRow:
    """One snapshot without its members."""

    id: int
    study_name: str
    after_trial_number: int
    n_complete_trials: int
    complete_number_sum: int | None
    created_at: datetime


@dataclass(frozen=True)
class FrontHead:
    """The latest snapshot of a study and the trial numbers on its front."""

    snapshot: SnapshotRow
    member_numbers: list[int]


CHUNK = 500  # ids in one IN (...): far below every backend's limit on bound parameters


def _chunks(items: Sequence[int]) -> list[Sequence[int]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _one_front_writer(session: Session, study_name: str) -> None:
    """Serialize the front writes of one study, until the transaction ends.

    A write reads the study's open memberships and changes them: two workers doing so
    at once must not both open the same new member, nor miss the rows the other one
    opened. PostgreSQL: a transaction-scoped advisory lock on the study, taken before
    the snapshot row is inserted, so snapshot ids also follow the order of the writes
    (the latest snapshot is the last written). SQLite has one writer at a time: the
    snapshot INSERT, the transaction's first statement, takes the database's write lock
    before the open rows are read (another writer waits: "database is locked" is
    retried). The unique index on open rows refuses a duplicate on any backend.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:study))"),
            {"space": FRONT_LOCK_SPACE, "study": study_name},
        )


FRONT_LOCK_SPACE = 0x0AC0  # first key of our advisory locks: front writes, by study


def _latest_snapshot(study_name: str) -> Select[tuple[FrontSnapshot]]:
    return (
        select(FrontSnapshot)
        .where(FrontSnapshot.study_name == study_name)
        .order_by(FrontSnapshot.id.desc())
        .limit(1)
    )


def _members_at(study_name: str, snapshot_id: int, *columns: InstrumentedAttribute[Any]) -> Select:
    """`columns` of the memberships of the study that had joined by `snapshot_id` and
    not left at it, by trial number: those still open, and those that left later. Two
    ranges of the index on (study_name, left_snapshot_id); the latest front reads the
    open rows only."""
    joined = [
        FrontMembership.study_name == study_name,
        FrontMembership.joined_snapshot_id <= snapshot_id,
    ]
    stays = union_all(
        select(*columns).where(*joined, FrontMembership.left_snapshot_id.is_(None)),
        select(*columns).where(*joined, FrontMembership.left_snapshot_id > snapshot_id),
    ).subquery()
    return select(*stays.c).order_by(stays.c.trial_number)


def _row(snapshot: FrontSnapshot) -> SnapshotRow:
    return SnapshotRow(
        id=snapshot.id,
        study_name=snapshot.study_name,
        after_trial_number=snapshot.after_trial_number,
        n_complete_trials=snapshot.n_complete_trials,
        complete_number_sum=snapshot.complete_number_sum,
        created_at=snapshot.created_at,
    )


def _view(session: Session, snapshot: FrontSnapshot) -> SnapshotView:
    """`snapshot` with its members, by trial number. Read as of the snapshot, not as
    the open rows: a write committed meanwhile does not mix into it."""
    members = session.execute(
        _members_at(
            snapshot.study_name,
            snapshot.id,
            FrontMembership.trial_number,
            FrontMembership.params,
            FrontMembership.metrics,
        )
    )
    return SnapshotView(
        study_name=snapshot.study_name,
        after_trial_number=snapshot.after_trial_number,
        n_complete_trials=snapshot.n_complete_trials,
        created_at=snapshot.created_at,
        members=[
            {"trial_number": number, "params": params, "metrics": metrics}
            for number, params, metrics in members
        ],
    )
