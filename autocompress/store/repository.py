"""Reading and writing our tables. Each write is one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from autocompress.errors import UserError
from autocompress.store.connection import make_engine, safe_url
from autocompress.store.schema import (
    SCHEMA_VERSION,
    Base,
    ExportRecord,
    FrontMemberRow,
    FrontSnapshot,
    SchemaVersion,
)

logger = logging.getLogger("autocompress")


@dataclass(frozen=True)
class SnapshotView:
    study_name: str
    after_trial_number: int
    n_complete_trials: int
    created_at: datetime
    members: list[dict[str, Any]]


class Store:
    """autocompress's tables in the study database (created on first use)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        with Session(self.engine) as session, session.begin():
            row = session.scalar(select(SchemaVersion))
            if row is None:
                session.add(SchemaVersion(id=1, version=SCHEMA_VERSION))
            elif row.version > SCHEMA_VERSION:
                raise UserError(
                    f"storage: {safe_url(url)} holds autocompress schema "
                    f"v{row.version}, newer than this version understands "
                    f"(v{SCHEMA_VERSION}); upgrade autocompress"
                )
            elif row.version < SCHEMA_VERSION:
                # Every version so far only adds tables, which create_all just made.
                logger.info(
                    "storage: upgraded %s from autocompress schema v%d to v%d",
                    safe_url(url),
                    row.version,
                    SCHEMA_VERSION,
                )
                row.version = SCHEMA_VERSION

    def record_front(
        self,
        study_name: str,
        after_trial_number: int,
        n_complete_trials: int,
        members: Sequence[dict[str, Any]],
    ) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(
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
        with Session(self.engine) as session, session.begin():
            session.add(
                ExportRecord(
                    study_name=study_name,
                    trial_number=trial_number,
                    policy=policy,
                    path=path,
                    manifest_sha256=manifest_sha256,
                )
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

    def close(self) -> None:
        self.engine.dispose()
