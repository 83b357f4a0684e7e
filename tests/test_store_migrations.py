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
    assert "upgraded from v3 (written before alembic, now stamped)" in caplog.text
    assert revision(url) == HEAD
    after = contents(url)
    assert after.pop(VERSION_TABLE) == [(HEAD,)]
    before["autocompress_schema_version"] = [(1, SCHEMA_VERSION)]
    assert after == before  # Optuna's tables (its alembic_version too) and all our rows

    assert trials_of(url, "fixture") == [{"pruning_ratio": 0.2}, {"pruning_ratio": 0.5}]
    front = store.latest_front("fixture")
    assert front is not None and [m["trial_number"] for m in front.members] == [1]
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
    assert set(after) == set(before) | set(Base.metadata.tables) | {VERSION_TABLE}
    assert after["autocompress_schema_version"] == [(1, SCHEMA_VERSION)]
    assert after["alembic_version"] == before["alembic_version"]  # Optuna's, untouched
    for table in BEFORE_ALEMBIC[version][1:]:
        assert after[table] == before[table]
    assert trials_of(url, "old") == trials and len(trials) == 2
    front = store.latest_front("old")
    assert front is not None and front.members[0]["params"] == {"x": 0.5}
    assert [e.path for e in store.exports("old")] == ["/exports/old"]
    store.close()
    registers_and_promotes(url, tmp_path)


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
    autocompress.store does not import alembic (only opening a store does)."""
    from autocompress.store.migrate import MIGRATIONS

    folders = [MIGRATIONS, *(p for p in MIGRATIONS.rglob("*") if p.is_dir())]
    assert [
        f for f in folders if f.name != "__pycache__" and not (f / "__init__.py").is_file()
    ] == []
    code = "import sys, autocompress.store; print('alembic' in sys.modules)"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert process.stdout.strip() == "False", process.stderr
