"""v3, the baseline: our tables as they stood before alembic (schema v1 to v3).

Revision ID: v3
Revises: (none)

The tables are spelled out here as they were, not taken from `schema.py`, which moves
on with later revisions. Each is created only if absent: a database written before
alembic at v1 or v2 (only tables were ever added) gets the tables it lacks, and one at
v3 is stamped `v3` without running this (see `migrate.upgrade`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v3"
down_revision = None
branch_labels = None
depends_on = None

V3 = sa.MetaData()
_IS_CHAMPION = sa.text("status = 'champion'")

sa.Table(  # v1
    "autocompress_schema_version",
    V3,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Table(  # v1
    "autocompress_front_snapshots",
    V3,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("after_trial_number", sa.Integer, nullable=False),
    sa.Column("n_complete_trials", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(  # v1
    "autocompress_front_members",
    V3,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "snapshot_id",
        sa.Integer,
        sa.ForeignKey("autocompress_front_snapshots.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
)
sa.Table(  # v1
    "autocompress_exports",
    V3,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("policy", sa.String(64), nullable=False),
    sa.Column("path", sa.String(4096), nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(  # v2
    "autocompress_model_versions",
    V3,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(512), nullable=False, index=True),
    sa.Column("export_dir", sa.String(4096), nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("manifest_files", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("source_study", sa.String(512), nullable=False),
    sa.Column("source_trial", sa.Integer, nullable=False),
    sa.Column("source_policy", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "status IN ('candidate', 'champion', 'retired', 'rolled_back')",
        name="autocompress_model_status",
    ),
    sa.Index(
        "autocompress_one_champion_per_model",
        "model",
        unique=True,
        sqlite_where=_IS_CHAMPION,
        postgresql_where=_IS_CHAMPION,
    ),
)
sa.Table(  # v2
    "autocompress_audit_log",
    V3,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(512), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("model", sa.String(512), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=True, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("prev_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("entry_sha256", sa.String(64), nullable=False, unique=True),
)
sa.Table(  # v2
    "autocompress_locks",
    V3,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(512), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(  # v3
    "autocompress_worker_starts",
    V3,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("seed", sa.Integer, nullable=True),
    sa.Column("worker", sa.String(512), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
)


def upgrade() -> None:
    V3.create_all(op.get_bind(), checkfirst=True)  # with their indexes and constraints


def downgrade() -> None:
    V3.drop_all(op.get_bind(), checkfirst=True)
