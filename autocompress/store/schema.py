"""Our own tables, beside Optuna's in the same database.

Optuna owns trials, params, values and user attributes. These tables hold only
what Optuna has no place for: Pareto-front snapshots over time and the exports
made. `SCHEMA_VERSION` is bumped with every change so later migrations know
where they start from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "autocompress_schema_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class FrontSnapshot(Base):
    """The feasible Pareto front of a study right after one trial completed."""

    __tablename__ = "autocompress_front_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512), index=True)
    after_trial_number: Mapped[int] = mapped_column(Integer)
    n_complete_trials: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    members: Mapped[list[FrontMemberRow]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan", order_by="FrontMemberRow.id"
    )


class FrontMemberRow(Base):
    __tablename__ = "autocompress_front_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("autocompress_front_snapshots.id", ondelete="CASCADE"), index=True
    )
    trial_number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    snapshot: Mapped[FrontSnapshot] = relationship(back_populates="members")


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
