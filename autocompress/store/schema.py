"""Our own tables, beside Optuna's in the same database.

Optuna owns trials, params, values and user attributes. These tables hold only
what Optuna has no place for: Pareto-front snapshots over time, the exports made,
the model registry with its append-only audit log, and database locks.

They are created and upgraded by alembic, in one place: `migrate.upgrade`, which
`Store` runs on every open (under the setup lock). This file says what the tables are
now; `migrations/versions/` says how a database gets there, one revision a file, and
`autocompress_alembic_version` which revision a database is at.

To change the schema (a new table, or a column):

1. Change the table here.
2. Add one file `migrations/versions/v4_<what>.py` (the next number) with
   `revision = "v4"`, `down_revision = "v3"` (the previous head) and an `upgrade()`
   that makes the change with alembic's `op` (`op.create_table(...)`,
   `op.add_column("autocompress_exports", sa.Column(...))`; SQLite alters tables in
   batch mode, set up in `migrations/env.py`). Spell the columns out in the revision:
   it must still build v4 when this file has moved on to v5.
3. Bump `SCHEMA_VERSION` to the same number: autocompress from before alembic reads
   only `autocompress_schema_version`, and refuses a database newer than it knows.

`tests/test_store_migrations.py` checks that the revisions build exactly the tables
declared here, and that the head revision is `v{SCHEMA_VERSION}`.

History: v1 front snapshots and members, exports; v2 model versions, audit log,
locks; v3 worker starts. All three were made with `create_all` before alembic; the
baseline revision `v3` describes them and stamps such databases (see `migrate.py`).
v4 (`v4_front_intervals.py`): a front member is stored once per stay on the front
(`autocompress_front_memberships`) instead of once per snapshot
(`autocompress_front_members`, which grew as trials × front size); snapshots record
the sum of the complete trial numbers they were computed from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out on every backend.

    SQLite stores no time zone and PostgreSQL answers in the session's; the audit
    hash chain needs the same value back that was hashed, and lock expiry compares
    times written on different machines.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def unique_where(name: str, where: TextClause, *columns: str) -> Index:
    """A unique index over the rows for which `where` holds (SQLite and PostgreSQL)."""
    return Index(name, *columns, unique=True, sqlite_where=where, postgresql_where=where)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "autocompress_schema_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class FrontSnapshot(Base):
    """The feasible Pareto front of a study right after one trial completed: one small
    row; who was on it is told by the memberships (`FrontMembership`) it opened or
    closed, not by a copy of the front per snapshot.

    The front was computed from exactly `n_complete_trials` complete trials whose
    numbers sum to `complete_number_sum` (NULL for snapshots converted from v3): a
    later worker that counts one complete trial more knows which one is new (the
    difference of the sums) and builds on this front instead of reading every trial.
    """

    __tablename__ = "autocompress_front_snapshots"
    __table_args__ = (
        # The latest snapshot of a study: the last entry of its part of this index.
        Index("autocompress_front_snapshots_by_study", "study_name", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512))
    after_trial_number: Mapped[int] = mapped_column(Integer)
    n_complete_trials: Mapped[int] = mapped_column(Integer)
    complete_number_sum: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


_IS_OPEN = text("left_snapshot_id IS NULL")


class FrontMembership(Base):
    """One stay of a trial on its study's front, stored once: from the snapshot at which
    it joined to the one at which it left (NULL while it is on the front).

    The latest front is the study's rows whose `left_snapshot_id` is NULL; the front as
    of snapshot `s`, the rows with `joined_snapshot_id <= s` and `left_snapshot_id`
    NULL or above `s` (`Store.front_at`).
    """

    __tablename__ = "autocompress_front_memberships"
    __table_args__ = (
        # The open rows of a study (the latest front), and those that left after a snapshot.
        Index("autocompress_front_memberships_by_left", "study_name", "left_snapshot_id"),
        # A trial is on a study's front at most once at a time, even under races.
        unique_where(
            "autocompress_front_memberships_one_open", _IS_OPEN, "study_name", "trial_number"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512))
    trial_number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    joined_snapshot_id: Mapped[int] = mapped_column(ForeignKey("autocompress_front_snapshots.id"))
    left_snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("autocompress_front_snapshots.id")
    )


class ExportRecord(Base):
    """One export folder written from a study: which trial, where, and its manifest hash."""

    __tablename__ = "autocompress_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(4096))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkerStart(Base):
    """One start (or resume) of a study by one worker, numbered by the database.

    The k-th start of a study samples with a seed derived from the study's seed and k,
    so a resumed run, or a second worker, does not replay the first one's sequence.
    """

    __tablename__ = "autocompress_worker_starts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512), index=True)
    seed: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(512))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelStatus(StrEnum):
    """Where a registered version stands. Only a champion becomes `retired` (replaced)
    or `rolled_back` (withdrawn); a rollback restores the latest `retired` one."""

    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


_STATUS_VALUES = ", ".join(f"'{status.value}'" for status in ModelStatus)
_IS_CHAMPION = text(f"status = '{ModelStatus.CHAMPION.value}'")


class ModelVersionRow(Base):
    """One registered export folder, pinned by its manifest (hash and file list)."""

    __tablename__ = "autocompress_model_versions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="autocompress_model_status"),
        # At most one champion per model, enforced by the database even under races.
        unique_where("autocompress_one_champion_per_model", _IS_CHAMPION, "model"),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(512), index=True)
    export_dir: Mapped[str] = mapped_column(String(4096))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    # The manifest's file list at registration: names the edited file even when
    # manifest.json itself was rewritten to match.
    manifest_files: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_study: Mapped[str] = mapped_column(String(512))
    source_trial: Mapped[int] = mapped_column(Integer)
    source_policy: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.CANDIDATE.value)
    # When it last became champion: orders earlier champions for a rollback.
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """One registry event: who, when, what, why. Append-only and hash-chained.

    `entry_sha256` covers `prev_sha256` and this entry's canonical JSON (see
    `store/audit.py`); `prev_sha256` is unique, so the chain cannot fork even when two
    writers append at once (the second one's transaction fails and is retried).
    """

    __tablename__ = "autocompress_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(512))
    action: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(512), index=True)
    version: Mapped[int | None] = mapped_column(Integer, index=True)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    entry_sha256: Mapped[str] = mapped_column(String(64), unique=True)


@event.listens_for(AuditRow, "before_update")
@event.listens_for(AuditRow, "before_delete")
def _audit_is_append_only(*_: object) -> None:
    raise RuntimeError("autocompress_audit_log is append-only: rows are never updated or deleted")


class LockRow(Base):
    """A held lock: the primary key makes the INSERT that takes it succeed only once."""

    __tablename__ = "autocompress_locks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(512))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
