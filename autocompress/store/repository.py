"""Reading and writing our tables. Each write is one transaction."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from autocompress.store import migrate
from autocompress.store.connection import make_engine
from autocompress.store.resilience import DEFAULT_RETRY_S, retry_transient
from autocompress.store.schema import (
    Base,
    ExportRecord,
    FrontMemberRow,
    FrontSnapshot,
    WorkerStart,
)


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
    ) -> None:
        self._write(
            "record_front",
            lambda: [
                FrontSnapshot(
                    study_name=study_name,
                    after_trial_number=after_trial_number,
                    n_complete_trials=n_complete_trials,
                    members=[
                        FrontMemberRow(
                            trial_number=m["trial_number"], params=m["params"], metrics=m["metrics"]
                        )
                        for m in members
                    ],
                )
            ],
        )

    def latest_front(self, study_name: str) -> SnapshotView | None:
        with Session(self.engine) as session:
            snapshot = session.scalar(
                select(FrontSnapshot)
                .where(FrontSnapshot.study_name == study_name)
                .order_by(FrontSnapshot.id.desc())
                .limit(1)
                .options(selectinload(FrontSnapshot.members))
            )
            if snapshot is None:
                return None
            return SnapshotView(
                study_name=snapshot.study_name,
                after_trial_number=snapshot.after_trial_number,
                n_complete_trials=snapshot.n_complete_trials,
                created_at=snapshot.created_at,
                members=[
                    {"trial_number": m.trial_number, "params": m.params, "metrics": m.metrics}
                    for m in snapshot.members
                ],
            )

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
        with Session(self.engine, expire_on_commit=False) as session:
            return list(
                session.scalars(
                    select(ExportRecord)
                    .where(ExportRecord.study_name == study_name)
                    .order_by(ExportRecord.id)
                )
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
