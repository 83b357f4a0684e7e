"""The model registry, its audit log and the database lock, on real databases.

SQLite always; PostgreSQL too when AUTOCOMPRESS_TEST_POSTGRES_URL is set (each test
gets its own schema there). The export folders are real: one tiny study is run and
exported once, and each version is a copy of that folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, insert, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from autocompress.errors import LockHeld, UserError, VerificationError
from autocompress.manifest import verify, write_manifest
from autocompress.registry import ModelStatus, Registry
from autocompress.store import Store
from autocompress.store.locks import HeldLock, acquire_lock, hold_lock
from autocompress.store.migrations.versions.v3_baseline import V3
from autocompress.store.schema import (
    SCHEMA_VERSION,
    AuditRow,
    ExportRecord,
    FrontSnapshot,
    LockRow,
    SchemaVersion,
    utcnow,
)
from tests.conftest import autocompress_cli, empty_database, tiny_study_dict, write_study

REGISTRY_TABLES = ("autocompress_model_versions", "autocompress_audit_log", "autocompress_locks")


# Fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real export of a tiny study; tests copy it, never change it."""
    from autocompress.api import run_study

    root = tmp_path_factory.mktemp("registry-study")
    result = run_study(write_study(root, tiny_study_dict(root, n_trials=3)))
    return result.export(root / "export")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file that does not exist yet, or a fresh PostgreSQL schema."""
    yield from empty_database(request.param, tmp_path / "registry.db", "registry")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture(autouse=True)
def actor(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AUTOCOMPRESS_ACTOR", "ci-bot")
    return "ci-bot"


def copy_export(template: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(template, tmp_path / name))


def registered(url: str, template: Path, tmp_path: Path, n: int) -> list[int]:
    """Register `n` copies of the export; returns their version numbers."""
    with Registry(url) as registry:
        folders = [copy_export(template, tmp_path, f"v{i}") for i in range(n)]
        return [
            registry.register(folder, reason=f"nightly {i}").version
            for i, folder in enumerate(folders)
        ]


def promoted_in_turn(url: str, template: Path, tmp_path: Path, n: int) -> list[int]:
    """Register `n` copies and promote each in turn: the last is champion, the rest retired."""
    versions = registered(url, template, tmp_path, n)
    with Registry(url) as registry:
        for version in versions:
            registry.promote(version, reason=f"promoted {version}")
    return versions


def rows(url: str) -> dict[str, list[tuple]]:
    """Every row of the registry tables, to show that a refused command changed nothing."""
    engine = create_engine(url)
    try:
        present = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            return {
                table: [
                    tuple(row)
                    for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
                ]
                for table in REGISTRY_TABLES
                if table in present
            }
    finally:
        engine.dispose()


def statuses(url: str) -> dict[int, str]:
    with Registry(url) as registry:
        return {v.version: v.status.value for v in registry.versions()}


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def registry_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return autocompress_cli("registry", *args)


# Lifecycle ----------------------------------------------------------------------------


def test_register_promote_promote_rollback_restores_the_previous_champion(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    first, second = registered(url, export_template, tmp_path, 2)
    with Registry(url) as registry:
        v1 = registry.get(first)
        metrics = json.loads((export_template / "metrics.json").read_text())
        assert (v1.model, v1.source_study, v1.status) == ("tiny", "tiny", "candidate")
        assert v1.metrics == metrics and v1.export_dir == tmp_path / "v0"
        assert v1.created_at.tzinfo is not None and v1.source_policy == "fastest"

        registry.promote(first, reason="first champion")
        registry.promote(second, reason="better on F1")
        assert statuses(url) == {first: "retired", second: "champion"}

        done = registry.rollback(reason="drift alert")  # one model: no need to name it
        assert (done.withdrawn.version, done.restored.version) == (second, first)
        assert statuses(url) == {first: "champion", second: "rolled_back"}
        assert registry.champion("tiny").version == first
        assert registry.load(first) == tmp_path / "v0"

        trail = [(e.action, e.version, e.reason, e.actor) for e in registry.audit()]
        assert trail == [
            ("register", first, "nightly 0", "ci-bot"),
            ("register", second, "nightly 1", "ci-bot"),
            ("promote", first, "first champion", "ci-bot"),
            ("promote", second, "better on F1", "ci-bot"),
            ("retire", first, "better on F1", "ci-bot"),
            ("rollback", second, "drift alert", "ci-bot"),
            ("restore", first, "drift alert", "ci-bot"),
        ]
        assert registry.verify_audit() == len(trail)

        # A second rollback has nowhere to go: the other champion was rolled back.
        with pytest.raises(UserError, match="no earlier champion"):
            registry.rollback("tiny", reason="again")


def test_rollback_with_no_previous_champion_changes_nothing(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    (only,) = registered(url, export_template, tmp_path, 1)
    no_champion = registry_cli("rollback", "--storage", url)
    assert no_champion.returncode == 2
    assert "no champion to roll back" in no_champion.stderr
    assert "Traceback" not in no_champion.stderr

    with Registry(url) as registry:
        registry.promote(only, reason="first")
    before = rows(url)
    process = registry_cli("rollback", "--model", "tiny", "--storage", url, "--reason", "x")
    assert process.returncode == 2
    assert "'tiny' has no earlier champion" in process.stderr
    assert "promote" in process.stderr and "Traceback" not in process.stderr
    assert rows(url) == before


def test_an_edited_file_is_named_and_refused_and_the_champion_stays(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    first, second = registered(url, export_template, tmp_path, 2)
    with Registry(url) as registry:
        registry.promote(first, reason="first")
    flip_a_byte(tmp_path / "v1" / "model.onnx")
    versions_before = rows(url)["autocompress_model_versions"]

    process = registry_cli("promote", str(second), "--storage", url)
    assert process.returncode == 1
    assert f"version {second} of 'tiny'" in process.stderr
    assert "changed: model.onnx" in process.stderr
    with Registry(url) as registry:
        with pytest.raises(VerificationError, match="changed: model.onnx"):
            registry.load(second)
        assert registry.champion("tiny").version == first
        refusals = [e for e in registry.audit() if e.action == "refuse"]
    assert rows(url)["autocompress_model_versions"] == versions_before
    assert [(e.version, e.details["attempted"]) for e in refusals] == [
        (second, "promote"),
        (second, "load"),
    ]
    assert "model.onnx" in refusals[0].details["problem"]


def test_a_rewritten_manifest_is_caught_by_the_registered_hash(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    (version,) = registered(url, export_template, tmp_path, 1)
    folder = tmp_path / "v0"
    flip_a_byte(folder / "model.onnx")
    write_manifest(folder)  # hashes recomputed: the folder verifies on its own again
    assert verify(folder) == 4
    with Registry(url) as registry, pytest.raises(VerificationError) as refused:
        registry.load(version)
    assert "changed: model.onnx" in str(refused.value)
    assert "changed: manifest.json" in str(refused.value)


def test_rollback_refuses_to_restore_an_edited_version(
    sqlite_url: str, export_template: Path, tmp_path: Path
) -> None:
    first, second = promoted_in_turn(sqlite_url, export_template, tmp_path, 2)
    (tmp_path / "v0" / "metrics.json").write_text("{}")
    with Registry(sqlite_url) as registry, pytest.raises(VerificationError, match="metrics.json"):
        registry.rollback(reason="drift")
    assert statuses(sqlite_url) == {first: "retired", second: "champion"}


def test_unknown_version_and_model(url: str, export_template: Path, tmp_path: Path) -> None:
    registered(url, export_template, tmp_path, 1)
    before = rows(url)
    for command in ("show", "promote"):
        process = registry_cli(command, "99", "--storage", url)
        assert process.returncode == 2
        assert "no version 99 in the model registry" in process.stderr
        assert "autocompress registry list" in process.stderr
    with Registry(url) as registry, pytest.raises(UserError, match="no model 'nope'.*holds: tiny"):
        registry.rollback("nope", reason="")
    assert rows(url) == before


def test_registering_the_same_export_twice_is_refused(
    sqlite_url: str, export_template: Path, tmp_path: Path
) -> None:
    (version,) = registered(sqlite_url, export_template, tmp_path, 1)
    with Registry(sqlite_url) as registry:
        with pytest.raises(UserError, match=f"already registered as version {version}"):
            registry.register(tmp_path / "v0", reason="again")
        with pytest.raises(VerificationError, match="changed: config.yaml"):
            folder = copy_export(export_template, tmp_path, "edited")
            (folder / "config.yaml").write_text("study: {}\n")
            registry.register(folder, reason="edited before registration")
        assert [v.version for v in registry.versions()] == [version]


def test_models_are_kept_apart_and_rollback_asks_which(
    sqlite_url: str, export_template: Path, tmp_path: Path
) -> None:
    with Registry(sqlite_url) as registry:
        a = registry.register(copy_export(export_template, tmp_path, "a"), reason="", model="a")
        b = registry.register(copy_export(export_template, tmp_path, "b"), reason="", model="b")
        registry.promote(a.version, reason="")
        registry.promote(b.version, reason="")  # another model: a stays champion
        assert statuses(sqlite_url) == {a.version: "champion", b.version: "champion"}
        with pytest.raises(UserError, match=r"holds 2 models \(a, b\); say which one with --model"):
            registry.rollback(reason="")


def test_concurrent_promotions_leave_one_champion_and_one_chain(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    versions = registered(url, export_template, tmp_path, 4)
    start = threading.Barrier(len(versions))
    failures: list[BaseException] = []

    def promote(version: int) -> None:
        with Registry(url) as registry:  # one registry each, as separate processes would
            start.wait()
            try:
                registry.promote(version, reason=f"race {version}")
            except BaseException as error:  # reported below
                failures.append(error)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert sorted(statuses(url).values()) == ["champion", "retired", "retired", "retired"]
    with Registry(url) as registry:
        assert registry.verify_audit() == 4 + 4 + 3  # registers, promotions, retirements


# Command line -------------------------------------------------------------------------


def test_list_and_show_as_json_through_the_cli(
    sqlite_url: str, export_template: Path, tmp_path: Path
) -> None:
    first, second = registered(sqlite_url, export_template, tmp_path, 2)
    promoted = registry_cli("promote", str(second), "--reason", "best F1", "--storage", sqlite_url)
    assert promoted.returncode == 0, promoted.stderr
    assert f"version {second} is now the champion of 'tiny'" in promoted.stdout

    listed = registry_cli("list", "--json", "--storage", sqlite_url)
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)
    assert [(v["version"], v["status"]) for v in versions] == [
        (first, "candidate"),
        (second, "champion"),
    ]
    metrics = json.loads((export_template / "metrics.json").read_text())
    assert versions[1]["metrics"] == metrics
    assert versions[1]["export_dir"] == str(tmp_path / "v1")
    config = yaml.safe_load((export_template / "config.yaml").read_text())
    assert versions[1]["source_trial"] == config["study"]["trial_number"]

    shown = registry_cli("show", str(second), "--json", "--storage", sqlite_url)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["version"] == second and detail["status"] == "champion"
    assert [(e["action"], e["reason"], e["actor"]) for e in detail["audit"]] == [
        ("register", "nightly 1", "ci-bot"),
        ("promote", "best F1", "ci-bot"),
    ]

    table = registry_cli("list", "--storage", sqlite_url)
    assert table.returncode == 0 and "champion" in table.stdout and "candidate" in table.stdout
    text_view = registry_cli("show", str(second), "--storage", sqlite_url)
    assert text_view.returncode == 0 and "best F1" in text_view.stdout


def test_register_and_rollback_through_the_cli(
    sqlite_url: str, export_template: Path, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        folder = copy_export(export_template, tmp_path, name)
        process = registry_cli("register", str(folder), "--reason", name, "--storage", sqlite_url)
        assert process.returncode == 0, process.stderr
        assert "candidate" in process.stdout
    for version in ("1", "2"):
        assert registry_cli("promote", version, "--storage", sqlite_url).returncode == 0
    process = registry_cli("rollback", "--reason", "drift", "--storage", sqlite_url)
    assert process.returncode == 0, process.stderr
    assert "version 1 is the champion again" in process.stdout
    assert statuses(sqlite_url) == {1: "champion", 2: "rolled_back"}


def test_reading_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "registry.db"
    for args in (("list",), ("show", "1"), ("promote", "1"), ("rollback",), ("audit",)):
        process = registry_cli(*args, "--storage", f"sqlite:///{missing}")
        assert process.returncode == 2, args
        assert "no model registry in sqlite:///" in process.stderr
        assert "autocompress registry register" in process.stderr
    assert not missing.parent.exists()


def test_an_unreachable_database_is_named_without_its_password() -> None:
    url = "postgresql+psycopg://autocompress:s3cret-pw@127.0.0.1:9/registry"
    process = registry_cli("list", "--storage", url)
    assert process.returncode == 2
    assert "cannot reach database" in process.stderr and "127.0.0.1:9" in process.stderr
    assert "s3cret-pw" not in process.stderr + process.stdout


def test_the_registry_path_imports_neither_optuna_nor_torch() -> None:
    code = (
        "import sys, autocompress.registry, autocompress.store.locks, autocompress.cli.registry\n"
        "heavy = [m for m in ('optuna', 'torch', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr


# Audit log ----------------------------------------------------------------------------


def test_the_audit_chain_verifies_and_names_an_entry_changed_behind_its_back(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    first, _ = promoted_in_turn(url, export_template, tmp_path, 2)
    with Registry(url) as registry:
        entries = registry.audit()
        assert registry.verify_audit() == 5
    ok = registry_cli("audit", "--verify", "--storage", url)
    assert ok.returncode == 0, ok.stderr
    assert "chain intact (5 entries)" in ok.stdout

    tampered = entries[2]  # promote of the first version
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE autocompress_audit_log SET reason = 'nothing to see' WHERE id = :id"),
            {"id": tampered.id},
        )
    with Registry(url) as registry, pytest.raises(VerificationError) as broken:
        registry.verify_audit()
    assert f"audit entry #{tampered.id} (promote of 'tiny' version {first})" in str(broken.value)
    assert "changed after it was written" in str(broken.value)
    process = registry_cli("audit", "--verify", "--storage", url)
    assert process.returncode == 1
    assert f"audit entry #{tampered.id}" in process.stderr

    with engine.begin() as connection:  # a removed entry breaks the link of the next one
        connection.execute(
            text("DELETE FROM autocompress_audit_log WHERE id = :id"), {"id": tampered.id}
        )
    with Registry(url) as registry, pytest.raises(VerificationError, match="does not follow"):
        registry.verify_audit()
    engine.dispose()


def test_the_orm_refuses_to_update_or_delete_audit_rows(
    sqlite_url: str, export_template: Path, tmp_path: Path
) -> None:
    registered(sqlite_url, export_template, tmp_path, 1)
    engine = create_engine(sqlite_url)
    with Session(engine) as session, pytest.raises(RuntimeError, match="append-only"):
        session.scalar(select(AuditRow)).reason = "rewritten"
        session.commit()
    with Session(engine) as session, pytest.raises(RuntimeError, match="append-only"):
        session.delete(session.scalar(select(AuditRow)))
        session.commit()
    engine.dispose()
    with Registry(sqlite_url) as registry:
        assert registry.verify_audit() == 1


# Locks --------------------------------------------------------------------------------


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_a_held_lock_refuses_a_second_holder_with_exit_code_75(url: str) -> None:
    with hold_lock(url, "nightly:tiny", ttl_s=60) as first:
        with pytest.raises(LockHeld) as held, hold_lock(url, "nightly:tiny", ttl_s=60):
            pass
        message = str(held.value)
        assert held.value.exit_code == 75 and isinstance(held.value, UserError)
        assert "'nightly:tiny'" in message and first.owner in message
        assert f"since {first.acquired_at:%Y-%m-%d %H:%M:%S} UTC" in message
        assert f"until {first.expires_at:%Y-%m-%d %H:%M:%S} UTC" in message
        assert "Try again" in message
    with hold_lock(url, "nightly:tiny", ttl_s=60):  # released on exit: free again
        pass


def test_an_expired_lock_is_taken_over_and_its_old_holder_knows(engine: Engine) -> None:
    crashed = acquire_lock(engine, "nightly:tiny", ttl_s=0.05, owner="other-machine/1/dead")
    time.sleep(0.3)
    with hold_lock(engine, "nightly:tiny", ttl_s=60) as mine:
        assert mine.owner != crashed.owner
        with pytest.raises(LockHeld, match=f"no longer held by {crashed.owner}"):
            crashed.refresh()
        assert crashed.release() is False  # the late holder cannot free the new one's lock
        assert _owners(engine) == {"nightly:tiny": mine.owner}
    assert _owners(engine) == {}


def test_refresh_extends_the_expiry(engine: Engine) -> None:
    lock = acquire_lock(engine, "nightly:tiny", ttl_s=0.2)
    time.sleep(0.3)
    later = lock.refresh(ttl_s=60)
    assert later == lock.expires_at and later > lock.acquired_at
    with pytest.raises(LockHeld):
        acquire_lock(engine, "nightly:tiny", ttl_s=60)
    assert lock.release() is True


def test_release_deletes_only_its_own_row(engine: Engine) -> None:
    a = acquire_lock(engine, "nightly:a", ttl_s=60)
    b = acquire_lock(engine, "nightly:b", ttl_s=60)
    assert a.release() is True
    assert _owners(engine) == {"nightly:b": b.owner}
    b.release()


def test_racing_for_a_free_lock_exactly_one_wins(engine: Engine) -> None:
    acquire_lock(engine, "warm-up", ttl_s=60).release()  # the table exists before the race
    for round_number in range(3):
        name = f"nightly:race-{round_number}"
        outcomes = race(engine, name, contenders=8)
        winners = [o for o in outcomes if isinstance(o, HeldLock)]
        assert len(outcomes) == 8 and len(winners) == 1
        assert all(isinstance(o, LockHeld) for o in outcomes if o not in winners)
        assert _owners(engine)[name] == winners[0].owner


def race(engine: Engine, name: str, contenders: int) -> list[HeldLock | LockHeld]:
    """`contenders` threads released at once, each trying to take the lock."""
    start = threading.Barrier(contenders)
    outcomes: list[HeldLock | LockHeld] = []

    def contend() -> None:
        start.wait()
        try:
            outcomes.append(acquire_lock(engine, name, ttl_s=60))
        except LockHeld as error:
            outcomes.append(error)

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def _owners(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        held = connection.execute(select(LockRow.name, LockRow.owner))
        return {name: owner for name, owner in held}


# Schema upgrade -----------------------------------------------------------------------


def test_a_v1_database_upgrades_in_place_and_keeps_its_rows(
    url: str, export_template: Path, tmp_path: Path
) -> None:
    v1_tables = [  # as v1 wrote them: the baseline revision's frozen tables
        V3.tables[name]
        for name in (
            "autocompress_schema_version",
            "autocompress_front_snapshots",
            "autocompress_front_members",
            "autocompress_exports",
        )
    ]
    engine = create_engine(url)
    V3.create_all(engine, tables=v1_tables)
    with engine.begin() as connection:
        connection.execute(insert(V3.tables["autocompress_schema_version"]).values(id=1, version=1))
        connection.execute(
            insert(V3.tables["autocompress_front_snapshots"]).values(
                study_name="old", after_trial_number=3, n_complete_trials=4, created_at=utcnow()
            )
        )
        connection.execute(
            insert(V3.tables["autocompress_exports"]).values(
                study_name="old",
                trial_number=2,
                policy="fastest",
                path="/x",
                manifest_sha256="0",
                created_at=utcnow(),
            )
        )

    # Reading does not upgrade: a v1 database simply holds no registry yet.
    with Registry(url) as registry, pytest.raises(UserError, match="no model registry"):
        registry.versions()
    assert not set(REGISTRY_TABLES) & set(inspect(engine).get_table_names())

    Store(url).close()
    with Session(engine) as session:
        assert session.scalar(select(SchemaVersion.version)) == SCHEMA_VERSION == 4
        assert session.scalar(select(ExportRecord.path)) == "/x"
        assert session.scalar(select(FrontSnapshot.study_name)) == "old"
    assert set(REGISTRY_TABLES) <= set(inspect(engine).get_table_names())
    engine.dispose()
    (version,) = registered(url, export_template, tmp_path, 1)
    assert statuses(url) == {version: ModelStatus.CANDIDATE.value}
