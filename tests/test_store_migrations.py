"""Our tables are created and upgraded by alembic (autocompress/store/migrate.py).

On real databases: SQLite files always, PostgreSQL too when
AUTOCOMPRESS_TEST_POSTGRES_URL is set (its own schema per test). Databases written
before alembic are made two ways: `tests/fixtures/store_v3.sqlite`, written by the
pre-alembic code itself (see `tests/fixtures/make_store_v3.py`), and in the tests from
the baseline revision's frozen tables (v1, v2 and v3, on every backend).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, inspect, text
from sqlalchemy.engine import make_url

from autocompress.errors import UserError
from autocompress.registry import ModelStatus, Registry
from autocompress.store import Store, safe_url
from autocompress.store.migrate import (
    VERSION_TABLE,
    current_revision,
    is_ours,
    scripts,
)
from autocompress.store.migrations.versions.v3_baseline import V3
from autocompress.store.schema import SCHEMA_VERSION, Base
from tests.conftest import autocompress_cli, empty_database
from tests.test_registry_integrity import fabricated_export

FIXTURES = Path(__file__).parent / "fixtures"
HEAD = f"v{SCHEMA_VERSION}"
# The tables each schema version had before alembic (only tables were ever added).
V1_TABLES = [
    "autocompress_schema_version",
    "autocompress_front_snapshots",
    "autocompress_front_members",
    "autocompress_exports",
]
V2_TABLES = [
    *V1_TABLES,
    "autocompress_model_versions",
    "autocompress_audit_log",
    "autocompress_locks",
]
BEFORE_ALEMBIC = {1: V1_TABLES, 2: V2_TABLES, 3: [*V2_TABLES, "autocompress_worker_starts"]}
WHEN = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCOMPRESS_ACTOR", "ci-bot")
    monkeypatch.delenv("AUTOCOMPRESS_REGISTRY_ANCHOR", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file that does not exist yet, or a fresh PostgreSQL schema."""
    yield from empty_database(request.param, tmp_path / "store.db", "migrations")


# Helpers ------------------------------------------------------------------------------


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()


def contents(url: str) -> dict[str, list[tuple]]:
    """Every row of every table in the database (Optuna's included), by table."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: sorted(
                    (tuple(row) for row in connection.execute(text(f'SELECT * FROM "{table}"'))),
                    key=repr,
                )
                for table in sorted(inspect(connection).get_table_names())
            }
    finally:
        engine.dispose()


def sql(url: str, statement: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def optuna_study(url: str) -> None:
    """An Optuna study `old` with 2 complete trials, in Optuna's own tables."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="old", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)


def trials_of(url: str, study_name: str) -> list[dict[str, float]]:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=url)
    return [trial.params for trial in study.trials if trial.state.is_finished()]


def written_before_alembic(url: str, version: int) -> None:
    """The tables and rows autocompress at schema `version` wrote with `create_all`,
    beside an Optuna study: no alembic revision of ours."""
    engine = create_engine(url)
    try:
        V3.create_all(engine, tables=[V3.tables[name] for name in BEFORE_ALEMBIC[version]])
        table = V3.tables
        with engine.begin() as connection:
            connection.execute(
                insert(table["autocompress_schema_version"]).values(id=1, version=version)
            )
            connection.execute(
                insert(table["autocompress_front_snapshots"]).values(
                    id=1,
                    study_name="old",
                    after_trial_number=1,
                    n_complete_trials=2,
                    created_at=WHEN,
                )
            )
            connection.execute(
                insert(table["autocompress_front_members"]).values(
                    snapshot_id=1, trial_number=1, params={"x": 0.5}, metrics={"accuracy": 0.7}
                )
            )
            connection.execute(
                insert(table["autocompress_exports"]).values(
                    study_name="old",
                    trial_number=1,
                    policy="fastest",
                    path="/exports/old",
                    manifest_sha256="ab" * 32,
                    created_at=WHEN,
                )
            )
    finally:
        engine.dispose()
    optuna_study(url)


def registers_and_promotes(url: str, tmp_path: Path) -> None:
    """The registry works on the database: a new version, promoted, and all verifies."""
    folder = fabricated_export(tmp_path, f"export-{uuid.uuid4().hex[:6]}")
    with Registry(url) as registry:
        version = registry.register(folder, reason="after the upgrade").version
        registry.promote(version, reason="after the upgrade")
        assert registry.champion("credit").version == version
        assert registry.integrity().problems == []


# An empty database --------------------------------------------------------------------


def test_an_empty_database_gets_every_table_at_the_head_revision(url: str) -> None:
    assert scripts().get_current_head() == HEAD  # a new revision bumps SCHEMA_VERSION too
    Store(url).close()
    tables = set(contents(url))
    assert tables == {*Base.metadata.tables, VERSION_TABLE}
    assert revision(url) == HEAD
    assert sql(url, "SELECT id, version FROM autocompress_schema_version") == [(1, SCHEMA_VERSION)]


def test_the_revisions_build_the_tables_schema_py_declares(url: str) -> None:
    """Forgetting a revision for a change to schema.py (or writing it wrong) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    Store(url).close()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": VERSION_TABLE,
                    "include_name": is_ours,
                    "compare_type": True,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_opening_twice_the_second_open_changes_nothing(url: str) -> None:
    store = Store(url)
    store.record_export("s", 0, "fastest", "/x", "0" * 64)
    store.close()
    before = contents(url)
    sqlite_file = Path(make_url(url).database) if url.startswith("sqlite") else None
    data = sqlite_file.read_bytes() if sqlite_file else None
    store = Store(url)
    assert [e.path for e in store.exports("s")] == ["/x"]
    store.close()
    assert contents(url) == before
    if sqlite_file:
        assert sqlite_file.read_bytes() == data  # nothing but reading: byte for byte


def test_workers_opening_a_fresh_database_together_do_not_race(url: str) -> None:
    opener = "import sys\nfrom autocompress.store import Store\nStore(sys.argv[1]).close()\n"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", opener, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], [e for _, e in outputs]
    assert revision(url) == HEAD
    assert sql(url, "SELECT version_num FROM autocompress_alembic_version") == [(HEAD,)]
    assert sql(url, "SELECT id, version FROM autocompress_schema_version") == [(1, SCHEMA_VERSION)]


# Databases written before alembic ------------------------------------------------------


def test_the_database_written_by_the_code_before_alembic_is_stamped_and_keeps_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tests/fixtures/store_v3.sqlite, as the pre-alembic code wrote it."""
    for name in ("store_v3.sqlite", "store_v3.sqlite.registry-anchor.txt"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    url = f"sqlite:///{tmp_path / 'store_v3.sqlite'}"
    before = contents(url)
    assert VERSION_TABLE not in before
    assert before["autocompress_schema_version"] == [(1, 3)]

    with caplog.at_level("INFO", logger="autocompress"):
        store = Store(url)
    assert f"upgraded from v3 (written before alembic, now stamped) to {HEAD}" in caplog.text
    assert revision(url) == HEAD
    after = contents(url)
    assert after.pop(VERSION_TABLE) == [(HEAD,)]
    before["autocompress_schema_version"] = [(1, SCHEMA_VERSION)]
    # v4: the snapshot keeps its row (with no sum of trial numbers), its one member
    # becomes one membership, open since that snapshot.
    (snapshot,) = before.pop("autocompress_front_snapshots")
    assert after.pop("autocompress_front_snapshots") == [(*snapshot, None)]
    ((_, snapshot_id, trial_number, params, metrics),) = before.pop("autocompress_front_members")
    assert after.pop("autocompress_front_memberships") == [
        (1, "fixture", trial_number, params, metrics, snapshot_id, None)
    ]
    assert after == before  # Optuna's tables (its alembic_version too) and all other rows

    assert trials_of(url, "fixture") == [{"pruning_ratio": 0.2}, {"pruning_ratio": 0.5}]
    front = store.latest_front("fixture")
    assert front is not None and front.members == [
        {"trial_number": 1, "params": {"pruning_ratio": 0.5}, "metrics": {"accuracy": 0.66}}
    ]
    assert (front.study_name, front.after_trial_number, front.n_complete_trials) == (
        "fixture",
        1,
        2,
    )
    assert [(e.trial_number, e.path) for e in store.exports("fixture")] == [(1, "/exports/fixture")]
    assert store.register_worker_start("fixture", seed=7) == 1  # the fixture's start came first
    store.close()

    with Registry(url) as registry:
        found = registry.integrity()
        assert found.problems == [] and found.entries == 5
        assert found.matching == [1, 2] and "store_v3.sqlite.registry-anchor.txt" in found.anchor
        assert [(v.version, v.status) for v in registry.versions()] == [
            (1, ModelStatus.RETIRED),
            (2, ModelStatus.CHAMPION),
        ]
    registers_and_promotes(url, tmp_path)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_database_from_before_alembic_is_brought_to_the_head_with_its_rows(
    url: str, version: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written_before_alembic(url, version)
    trials = trials_of(url, "old")
    before = contents(url)
    assert VERSION_TABLE not in before and "alembic_version" in before  # Optuna's

    with caplog.at_level("INFO", logger="autocompress"):
        store = Store(url)
    # v3 is what the baseline describes: stamped; v1 and v2 get the tables they lack.
    start = "v3 (written before alembic, now stamped)" if version == 3 else "nothing"
    assert f"upgraded from {start} to {HEAD}" in caplog.text
    assert revision(url) == HEAD
    after = contents(url)
    replaced = {"autocompress_front_members"}  # by autocompress_front_memberships (v4)
    assert set(after) == (set(before) - replaced) | set(Base.metadata.tables) | {VERSION_TABLE}
    assert after["autocompress_schema_version"] == [(1, SCHEMA_VERSION)]
    assert after["alembic_version"] == before["alembic_version"]  # Optuna's, untouched
    for table in set(BEFORE_ALEMBIC[version][1:]) - replaced - {"autocompress_front_snapshots"}:
        assert after[table] == before[table]
    # v4 added a column to the snapshots: NULL for the rows written before it.
    assert after["autocompress_front_snapshots"] == [
        (*row, None) for row in before["autocompress_front_snapshots"]
    ]
    assert trials_of(url, "old") == trials and len(trials) == 2
    front = store.latest_front("old")
    assert front is not None and front.members[0]["params"] == {"x": 0.5}
    assert [e.path for e in store.exports("old")] == ["/exports/old"]
    store.close()
    registers_and_promotes(url, tmp_path)


# v4: front members stored as intervals ------------------------------------------------

# A v3 history, in the order it was written: (study, members of its snapshot). Trial 0 of
# study a leaves, comes back and leaves again; a snapshot of a is empty; b interleaves.
V3_HISTORY = [
    ("a", [0]),  # snapshot 1
    ("b", [5]),  # 2
    ("a", [0, 1]),  # 3
    ("a", [1, 2]),  # 4: 0 leaves
    ("b", [5, 6]),  # 5
    ("a", [0, 2]),  # 6: 1 leaves, 0 is back
    ("a", []),  # 7: all leave
    ("a", [3]),  # 8
]
# (study, trial, joined at, left at): one row per stay.
V4_STAYS = [
    ("a", 0, 1, 4),
    ("a", 0, 6, 7),
    ("a", 1, 3, 6),
    ("a", 2, 4, 7),
    ("a", 3, 8, None),
    ("b", 5, 2, None),
    ("b", 6, 5, None),
]


def member(trial: int) -> dict[str, object]:
    return {"trial_number": trial, "params": {"x": trial}, "metrics": {"accuracy": trial / 10}}


def stays(url: str) -> list[tuple]:
    return sql(
        url,
        "SELECT study_name, trial_number, joined_snapshot_id, left_snapshot_id "
        "FROM autocompress_front_memberships ORDER BY study_name, trial_number, id",
    )


def test_v3_member_rows_become_one_row_per_stay_and_every_front_reads_back(url: str) -> None:
    engine = create_engine(url)
    table = V3.tables
    try:
        V3.create_all(engine, tables=[table[name] for name in BEFORE_ALEMBIC[3]])
        with engine.begin() as connection:
            connection.execute(insert(table["autocompress_schema_version"]).values(id=1, version=3))
            for snapshot_id, (study, members) in enumerate(V3_HISTORY, start=1):
                inserted = connection.execute(
                    insert(table["autocompress_front_snapshots"]).values(
                        study_name=study,
                        after_trial_number=snapshot_id,
                        n_complete_trials=snapshot_id + 1,
                        created_at=WHEN,
                    )
                )
                assert inserted.inserted_primary_key == (snapshot_id,)
                for trial in members:
                    m = member(trial)
                    connection.execute(
                        insert(table["autocompress_front_members"]).values(
                            snapshot_id=snapshot_id,
                            trial_number=trial,
                            params=m["params"],
                            metrics=m["metrics"],
                        )
                    )
    finally:
        engine.dispose()

    store = Store(url)
    try:
        assert revision(url) == HEAD
        assert stays(url) == V4_STAYS
        for snapshot_id, (study, members) in enumerate(V3_HISTORY, start=1):
            front = store.front_at(study, snapshot_id)
            assert front is not None and front.members == [member(t) for t in members]
            assert (front.after_trial_number, front.n_complete_trials) == (
                snapshot_id,
                snapshot_id + 1,
            )
        assert store.front_at("b", 1) is None  # snapshot 1 is study a's
        latest = store.latest_front("a")
        assert latest is not None and latest.members == [member(3)]
        assert latest.after_trial_number == 8
        latest = store.latest_front("b")
        assert latest is not None and latest.members == [member(5), member(6)]
        assert [s.id for s in store.snapshots("a")] == [1, 3, 4, 6, 7, 8]
        assert all(s.complete_number_sum is None for s in store.snapshots("a"))

        # Written on from there: 3 leaves, 4 joins; 3 joins again.
        store.record_front("a", 9, 10, [member(4)], complete_number_sum=45)
        store.record_front("a", 10, 11, [member(3), member(4)], complete_number_sum=55)
        assert stays(url) == [
            *V4_STAYS[:4],
            ("a", 3, 8, 9),
            ("a", 3, 10, None),
            ("a", 4, 9, None),
            *V4_STAYS[5:],
        ]
        latest = store.latest_front("a")
        assert latest is not None and latest.members == [member(3), member(4)]
        assert store.front_head("a").member_numbers == [3, 4]
        assert store.front_head("a").snapshot.complete_number_sum == 55
        assert store.front_at("a", 8).members == [member(3)]  # history unchanged
        assert store.front_at("a", 9).members == [member(4)]
    finally:
        store.close()


def test_workers_recording_fronts_at_once_leave_the_latest_snapshot_s_front_open(
    url: str,
) -> None:
    """Each write reads the open rows and changes them: two workers at once must neither
    open a member twice nor leave one open that the latest snapshot does not list."""
    import threading

    Store(url).close()
    fronts = [[t for t in range(k % 7, k % 7 + 4) if t % 3] for k in range(40)]
    errors: list[BaseException] = []

    def worker(part: int) -> None:
        store = Store(url)
        try:
            for k in range(part, len(fronts), 2):
                store.record_front("s", k, k + 1, [member(t) for t in fronts[k]])
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(part,)) for part in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    store = Store(url)
    try:
        snapshots = store.snapshots("s")
        assert len(snapshots) == len(fronts)
        latest = store.latest_front("s")
        assert latest is not None
        assert latest.members == [member(t) for t in fronts[latest.after_trial_number]]
        for snapshot in snapshots:  # every snapshot reads back as written
            front = store.front_at("s", snapshot.id)
            assert front.members == [member(t) for t in fronts[snapshot.after_trial_number]]
        open_rows = sql(
            url,
            "SELECT trial_number FROM autocompress_front_memberships "
            "WHERE left_snapshot_id IS NULL ORDER BY trial_number",
        )
        assert [t for (t,) in open_rows] == [m["trial_number"] for m in latest.members]
    finally:
        store.close()


# Databases from a newer autocompress ---------------------------------------------------


@pytest.mark.parametrize("newer", ["alembic revision", "schema version before alembic"])
def test_a_database_from_a_newer_autocompress_is_refused_and_left_unchanged(
    url: str, newer: str, tmp_path: Path
) -> None:
    if newer == "alembic revision":
        Store(url).close()
        sql(url, "UPDATE autocompress_alembic_version SET version_num = 'v99_from_the_future'")
        found = "revision 'v99_from_the_future'"
    else:
        written_before_alembic(url, 3)
        sql(url, "UPDATE autocompress_schema_version SET version = 4")
        found = "schema v4"
    before = contents(url)
    sqlite_file = Path(make_url(url).database) if url.startswith("sqlite") else None
    data = sqlite_file.read_bytes() if sqlite_file else None

    with pytest.raises(UserError) as refused:
        Store(url)
    message = str(refused.value)
    assert f"storage: {safe_url(url)} holds autocompress tables at {found}" in message
    assert "Upgrade autocompress" in message and "nothing was changed" in message
    password = make_url(url).password
    assert not password or password not in message

    # The same through the CLI: registering goes through the same upgrade.
    folder = fabricated_export(tmp_path, "export")
    process = autocompress_cli(
        "registry", "register", str(folder), "--storage", url, "--reason", "r"
    )
    assert process.returncode == 2, process.stderr
    assert found in process.stderr and "Upgrade autocompress" in process.stderr
    assert "Traceback" not in process.stderr

    assert contents(url) == before
    if sqlite_file:
        assert sqlite_file.read_bytes() == data


def test_the_migrations_ship_with_the_code_and_load_lazily() -> None:
    """Every folder of migrations/ is a package, so a wheel carries it; importing
    autocompress.store does not import alembic (only creating or upgrading tables does)."""
    from autocompress.store.migrate import MIGRATIONS

    folders = [MIGRATIONS, *(p for p in MIGRATIONS.rglob("*") if p.is_dir())]
    assert [
        f for f in folders if f.name != "__pycache__" and not (f / "__init__.py").is_file()
    ] == []
    code = "import sys, autocompress.store; print('alembic' in sys.modules)"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert process.stdout.strip() == "False", process.stderr
