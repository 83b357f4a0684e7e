"""v4: a front member stored once per stay on the front, not once per snapshot.

Revision ID: v4
Revises: v3

`autocompress_front_members` held one row per member per snapshot: trials × front size
rows (211,807 rows, 144 MiB at 10,000 trials). `autocompress_front_memberships` holds
one row per stay of a trial on its study's front: the snapshot at which it joined and
the one at which it left (NULL while it is on it).

The v3 rows are converted study by study, walking the snapshots in id order (the order
they were written in): a trial joins at the first snapshot that lists it after one that
did not, and leaves at the first that no longer lists it; its params and metrics are
those of the row at which it joined (a complete trial's never change). Every snapshot's
front, the latest included, reads back as it was. The snapshots themselves are kept;
`complete_number_sum` stays NULL for them (which trials they counted is not known), so
the first snapshot after the upgrade is computed from every trial.

The tables are spelled out here as they are at v4, not taken from `schema.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "v4"
down_revision = "v3"
branch_labels = None
depends_on = None

SNAPSHOTS = "autocompress_front_snapshots"
OLD_MEMBERS = "autocompress_front_members"
MEMBERSHIPS = "autocompress_front_memberships"
_IS_OPEN = sa.text("left_snapshot_id IS NULL")
BATCH = 1000


def upgrade() -> None:
    op.add_column(SNAPSHOTS, sa.Column("complete_number_sum", sa.BigInteger, nullable=True))
    op.drop_index("ix_autocompress_front_snapshots_study_name", table_name=SNAPSHOTS)
    op.create_index("autocompress_front_snapshots_by_study", SNAPSHOTS, ["study_name", "id"])
    op.create_table(
        MEMBERSHIPS,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_name", sa.String(512), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column(
            "joined_snapshot_id", sa.Integer, sa.ForeignKey(f"{SNAPSHOTS}.id"), nullable=False
        ),
        sa.Column("left_snapshot_id", sa.Integer, sa.ForeignKey(f"{SNAPSHOTS}.id"), nullable=True),
    )
    op.create_index(
        "autocompress_front_memberships_by_left", MEMBERSHIPS, ["study_name", "left_snapshot_id"]
    )
    op.create_index(
        "autocompress_front_memberships_one_open",
        MEMBERSHIPS,
        ["study_name", "trial_number"],
        unique=True,
        sqlite_where=_IS_OPEN,
        postgresql_where=_IS_OPEN,
    )
    connection = op.get_bind()
    intervals = list(stays(connection))
    insert = sa.text(
        f"INSERT INTO {MEMBERSHIPS} "
        "(study_name, trial_number, params, metrics, joined_snapshot_id, left_snapshot_id) "
        f"SELECT :study_name, trial_number, params, metrics, :joined, :left "
        f"FROM {OLD_MEMBERS} WHERE id = :row"
    )
    for start in range(0, len(intervals), BATCH):
        connection.execute(insert, intervals[start : start + BATCH])
    op.drop_table(OLD_MEMBERS)  # with its index


def stays(connection: sa.Connection) -> Iterator[dict[str, object]]:
    """One interval per stay of a trial on a study's front, from the v3 rows: the v3 row
    it joined with (`row`), the snapshot it joined at and the one it left at (None:
    still on the front). Reads ids and numbers only, streamed in snapshot order."""
    snapshots = connection.execute(
        sa.text(f"SELECT id, study_name FROM {SNAPSHOTS} ORDER BY id")
    ).all()
    members = connection.execute(
        sa.text(
            f"SELECT snapshot_id, trial_number, id FROM {OLD_MEMBERS} ORDER BY snapshot_id, id"
        ),
        execution_options={"yield_per": 10_000},  # this statement only: streamed
    )
    pending = next(members, None)
    on_front: dict[str, dict[int, tuple[int, int]]] = {}  # study: trial: (row, joined)
    for snapshot_id, study_name in snapshots:
        listed: dict[int, int] = {}  # trial: row, of this snapshot
        while pending is not None and pending[0] <= snapshot_id:
            if pending[0] == snapshot_id:  # rows of a snapshot that is gone are dropped
                listed.setdefault(pending[1], pending[2])
            pending = next(members, None)
        current = on_front.setdefault(study_name, {})
        for trial in [t for t in current if t not in listed]:
            row, joined = current.pop(trial)
            yield _stay(study_name, row, joined, snapshot_id)
        for trial, row in listed.items():
            current.setdefault(trial, (row, snapshot_id))
    members.close()
    for study_name, current in on_front.items():
        for row, joined in current.values():
            yield _stay(study_name, row, joined, None)


def _stay(study_name: str, row: int, joined: int, left: int | None) -> dict[str, object]:
    return {"study_name": study_name, "row": row, "joined": joined, "left": left}


def downgrade() -> None:
    raise NotImplementedError("autocompress's tables are not downgraded: restore a backup")
