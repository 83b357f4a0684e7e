"""Registry integrity (issue 11): the attacks done for real, with SQL against real
databases, and what `audit --verify`, `promote`, `rollback` and `load` make of them.

SQLite always (its anchor file is the default one beside the database); PostgreSQL
too when AUTOCOMPRESS_TEST_POSTGRES_URL is set (its own schema per test, its anchor
given by $AUTOCOMPRESS_REGISTRY_ANCHOR). Export folders are fabricated, not exported:
a config.yaml, a metrics.json and some model bytes under a real manifest, which is
all the registry reads. The attacker writes with raw SQL, as the ORM's append-only
guard on audit rows would stop anything else.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from autocompress.errors import UserError, VerificationError
from autocompress.manifest import file_sha256, manifest_files, write_manifest
from autocompress.registry import Head, Registry
from autocompress.store import Store, audit
from autocompress.store.schema import AuditRow, ModelVersionRow
from tests.conftest import FaultTable, autocompress_cli, postgres_schema

TABLES = ("autocompress_model_versions", "autocompress_audit_log")


@dataclass(frozen=True)
class Db:
    url: str
    anchor: Path  # where the registry appends its heads
    backend: str

    def sql(self, statement: str, **params: object) -> None:
        """Run one statement as an attacker with database access would."""
        engine = create_engine(self.url)
        try:
            with engine.begin() as connection:
                connection.execute(text(statement), params)
        finally:
            engine.dispose()

    def json(self, name: str) -> str:
        """A JSON bind parameter: PostgreSQL wants it cast, SQLite stores the text."""
        return f"CAST(:{name} AS JSON)" if self.backend == "postgresql" else f":{name}"

    def rows(self) -> dict[str, list[tuple]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return {
                    table: [
                        tuple(r)
                        for r in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
                    ]
                    for table in TABLES
                }
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Db]:
    monkeypatch.setenv("AUTOCOMPRESS_ACTOR", "ci-bot")
    if request.param == "sqlite":
        monkeypatch.delenv("AUTOCOMPRESS_REGISTRY_ANCHOR", raising=False)
        yield Db(
            f"sqlite:///{tmp_path / 'registry.db'}",
            tmp_path / "registry.db.registry-anchor.txt",
            "sqlite",
        )
        return
    anchor = tmp_path / "anchors" / "pg-registry-anchor.txt"
    with postgres_schema("integrity") as url:
        monkeypatch.setenv("AUTOCOMPRESS_REGISTRY_ANCHOR", str(anchor))  # the CLI inherits it
        yield Db(url, anchor, "postgresql")


def fabricated_export(root: Path, name: str, *, accuracy: float = 0.645, trial: int = 0) -> Path:
    """A folder the registry accepts as an export: config, metrics, model, manifest."""
    folder = root / name
    folder.mkdir(parents=True)
    study = {"study_name": "credit", "trial_number": trial, "policy": "fastest"}
    (folder / "config.yaml").write_text(yaml.safe_dump({"study": study}))
    metrics = {
        "metrics": {"accuracy": accuracy, "f1": 0.61},
        "measurement": {"latency_p50_ms": 0.2},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "model.onnx").write_bytes(os.urandom(512))
    write_manifest(folder)
    return folder


def cli(db: Db, *args: str) -> subprocess.CompletedProcess[str]:
    return autocompress_cli("registry", *args, "--storage", db.url)


def cli_register(db: Db, folder: Path) -> subprocess.CompletedProcess[str]:
    process = cli(db, "register", str(folder), "--reason", f"register {folder.name}")
    assert process.returncode == 0, process.stderr
    return process


def cli_ok(db: Db, *args: str) -> subprocess.CompletedProcess[str]:
    process = cli(db, *args)
    assert process.returncode == 0, process.stderr
    return process


def first_line(process: subprocess.CompletedProcess[str]) -> str:
    return process.stderr.strip().splitlines()[0]


def champion(db: Db) -> int | None:
    with Registry(db.url) as registry:
        found = registry.champion("credit")
    return None if found is None else found.version


def printed_head(process: subprocess.CompletedProcess[str]) -> Head:
    """The head a writing command printed: `audit head ID:SHA (...)`."""
    (line,) = [x for x in process.stdout.splitlines() if x.startswith("audit head ")]
    return Head.parse(line.removeprefix("audit head "))


def three_versions_through_the_cli(db: Db, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Versions 1 and 2 promoted in turn (2 champion, 1 retired), version 3 a candidate,
    through the CLI. Returns the last write's process."""
    for i in range(3):
        cli_register(db, fabricated_export(tmp_path, f"v{i + 1}", trial=i))
    cli_ok(db, "promote", "1", "--reason", "first champion")
    return cli_ok(db, "promote", "2", "--reason", "better F1")


def three_versions_two_promoted(db: Db, tmp_path: Path) -> None:
    """The same through the Python API (quicker): the attacks then go through the CLI."""
    with Registry(db.url) as registry:
        for i in range(3):
            folder = fabricated_export(tmp_path, f"v{i + 1}", trial=i)
            registry.register(folder, reason=f"register v{i + 1}")
        registry.promote(1, reason="first champion")
        registry.promote(2, reason="better F1")


# What is recorded ---------------------------------------------------------------------


def test_every_write_records_row_digests_and_anchors_the_printed_head(
    db: Db, tmp_path: Path
) -> None:
    registered = cli_register(db, fabricated_export(tmp_path, "v1"))
    assert f"(appended to {db.anchor})" in registered.stdout
    last = three_versions_through_the_cli(db, tmp_path / "more")
    rolled = cli_ok(db, "rollback", "--reason", "drift")

    with Registry(db.url) as registry:
        entries = registry.audit()
        found = registry.verify()
        # Each entry that changed a version carries the digest of its row as it stands
        # after that change; the latest one matches the row now.
        assert all(audit.ROW_DIGEST in e.details for e in entries)
        engine = create_engine(db.url)
        with engine.connect() as connection:
            stored = {
                r["version"]: r
                for r in connection.execute(ModelVersionRow.__table__.select()).mappings()
            }
        engine.dispose()
        latest = {e.version: e.details[audit.ROW_DIGEST] for e in entries}
        assert latest == {v: audit.row_digest(row) for v, row in stored.items()}
    assert found.problems == [] and found.not_covered == [] and found.matching == [1, 2, 3, 4]

    # One anchor line per write (register x4, promote x2, rollback), the last one the
    # head the last command printed, which is the chain's head.
    heads = audit.read_anchor(db.anchor)
    assert len(heads) == 7
    assert str(printed_head(rolled)) == str(heads[-1])
    assert str(printed_head(last)) == str(heads[-2])
    assert (heads[-1].id, heads[-1].entry_sha256) == (entries[-1].id, entries[-1].entry_sha256)
    assert heads[-1].entries == len(entries) == found.entries

    verified = cli_ok(db, "audit", "--verify")
    assert f"audit hash chain intact ({len(entries)} entries)" in verified.stdout
    assert "version rows: 4 match the audit log" in verified.stdout
    assert f"chain holds the anchor {db.anchor}" in verified.stdout
    with_head = cli_ok(db, "audit", "--verify", "--head", str(heads[-1]))
    assert "chain holds the head given" in with_head.stdout


# The attacks --------------------------------------------------------------------------


def test_deleting_the_newest_audit_row_is_caught_by_the_anchor(
    db: Db, tmp_path: Path, fault_table: FaultTable
) -> None:
    three_versions_two_promoted(db, tmp_path)
    with Registry(db.url) as registry:
        newest = registry.audit()[-1]
        assert registry.verify_audit() == 6
    db.sql("DELETE FROM autocompress_audit_log WHERE id = :id", id=newest.id)
    with Registry(db.url) as registry:  # the shorter chain is still a valid chain
        assert audit.find_break(registry.audit()) is None

    process = cli(db, "audit", "--verify")
    assert process.returncode == 1
    assert "1 row missing after the anchored head" in process.stderr
    assert f"records head #{newest.id}" in process.stderr
    assert "Traceback" not in process.stderr
    # The head the last write printed (and anchored), kept by the operator, says the same.
    kept = audit.read_anchor(db.anchor)[-1]
    assert (kept.id, kept.entry_sha256) == (newest.id, newest.entry_sha256)
    given = cli(db, "audit", "--verify", "--head", str(kept))
    assert given.returncode == 1 and "missing after the anchored head" in given.stderr

    before = db.rows()
    for args in (("promote", "3"), ("rollback",)):
        refused = cli(db, *args, "--reason", "after the deletion")
        assert refused.returncode == 1, args
        assert f"{args[0]} refused" in refused.stderr
        assert "missing after the anchored head" in refused.stderr
    with Registry(db.url) as registry, pytest.raises(VerificationError, match="row missing"):
        registry.register(fabricated_export(tmp_path, "late"), reason="appends onto it")
    assert db.rows() == before and champion(db) == 2

    fault_table.record(
        area="registry integrity",
        tried=f"deleted the newest audit row with SQL ({db.backend})",
        result=f"audit --verify exit 1: '{first_line(process)}'; promote, rollback and "
        f"register refused, e.g. rollback exit 1: '{first_line(refused)}'",
    )


def test_a_forged_newest_entry_with_a_valid_hash_is_caught_by_the_anchor(
    db: Db, tmp_path: Path, fault_table: FaultTable
) -> None:
    """An attacker who deletes the newest entry and appends one of their own, hashed
    correctly onto the chain (the chain verifies), is caught at the anchored id."""
    three_versions_two_promoted(db, tmp_path)
    with Registry(db.url) as registry:
        newest = registry.audit()[-1]
    db.sql("DELETE FROM autocompress_audit_log WHERE id = :id", id=newest.id)
    forged = {**newest.__dict__, "reason": "nothing happened here"}
    forged_sha = audit.entry_digest(newest.prev_sha256, forged)
    engine = create_engine(db.url)
    with Session(engine) as session, session.begin():  # inserting is what the ORM allows
        session.add(
            AuditRow(
                **{k: forged[k] for k in audit.HASHED},
                id=newest.id,
                prev_sha256=newest.prev_sha256,
                entry_sha256=forged_sha,
            )
        )
    engine.dispose()
    with Registry(db.url) as registry:
        assert audit.find_break(registry.audit()) is None  # the chain alone looks fine

    process = cli(db, "audit", "--verify")
    assert process.returncode == 1
    assert "the chain was rewritten" in process.stderr
    assert f"a different entry #{newest.id}" in process.stderr
    fault_table.record(
        area="registry integrity",
        tried=f"replaced the newest audit row with a forged one hashed onto the chain "
        f"({db.backend})",
        result=f"audit --verify exit 1: '{first_line(process)}'",
    )


def test_a_version_row_rewritten_from_another_version_is_named_and_promote_refuses(
    db: Db, tmp_path: Path, fault_table: FaultTable
) -> None:
    three_versions_two_promoted(db, tmp_path)
    # Version 3 (the candidate) now points at version 1's folder, hash and file list:
    # its files verify, as version 1's are intact.
    db.sql(
        "UPDATE autocompress_model_versions SET "
        "export_dir = (SELECT export_dir FROM autocompress_model_versions WHERE version = 1), "
        "manifest_sha256 = (SELECT manifest_sha256 FROM autocompress_model_versions "
        "WHERE version = 1), "
        "manifest_files = (SELECT manifest_files FROM autocompress_model_versions "
        "WHERE version = 1) "
        "WHERE version = 3"
    )
    with Registry(db.url) as registry:
        assert registry.get(3).export_dir == tmp_path / "v1"  # the attack landed

    process = cli(db, "audit", "--verify")
    assert process.returncode == 1
    assert "version 3 of 'credit' was changed outside autocompress" in process.stderr
    assert "version 1 " not in process.stderr and "version 2 " not in process.stderr

    before = db.rows()
    refused = cli(db, "promote", "3", "--reason", "looks fine")
    assert refused.returncode == 1
    assert "promote refused" in refused.stderr
    assert "version 3 of 'credit' was changed outside autocompress" in refused.stderr
    with Registry(db.url) as registry, pytest.raises(VerificationError, match="load refused"):
        registry.load(3)
    assert db.rows() == before and champion(db) == 2
    fault_table.record(
        area="registry integrity",
        tried=f"rewrote version 3's export_dir, manifest_sha256 and manifest_files from "
        f"version 1 with SQL ({db.backend})",
        result=f"audit --verify exit 1: '{first_line(process)}'; promote 3 exit 1: "
        f"'{first_line(refused)}'",
    )


def test_a_raised_accuracy_is_detected(db: Db, tmp_path: Path, fault_table: FaultTable) -> None:
    three_versions_two_promoted(db, tmp_path)
    engine = create_engine(db.url)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT metrics FROM autocompress_model_versions WHERE version = 3")
        ).scalar_one()
    engine.dispose()
    metrics = stored if isinstance(stored, dict) else json.loads(stored)
    assert metrics["metrics"]["accuracy"] == 0.645
    metrics["metrics"]["accuracy"] = 0.995
    db.sql(
        f"UPDATE autocompress_model_versions SET metrics = {db.json('metrics')} WHERE version = 3",
        metrics=json.dumps(metrics),
    )
    listed = cli_ok(db, "list", "--json")
    assert json.loads(listed.stdout)[2]["metrics"]["metrics"]["accuracy"] == 0.995

    process = cli(db, "audit", "--verify")
    assert process.returncode == 1
    assert "version 3 of 'credit' was changed outside autocompress" in process.stderr
    refused = cli(db, "promote", "3", "--reason", "best accuracy ever")
    assert refused.returncode == 1 and "promote refused" in refused.stderr
    assert champion(db) == 2
    fault_table.record(
        area="registry integrity",
        tried=f"raised version 3's stored accuracy 0.645 -> 0.995 with SQL ({db.backend})",
        result=f"audit --verify exit 1: '{first_line(process)}'; promote 3 exit 1",
    )


def test_a_chain_broken_in_the_middle_stops_rollback_and_promote(
    db: Db, tmp_path: Path, fault_table: FaultTable
) -> None:
    three_versions_two_promoted(db, tmp_path)
    with Registry(db.url) as registry:
        middle = registry.audit()[3]  # the promotion of version 1
    db.sql(
        "UPDATE autocompress_audit_log SET reason = 'approved by the board' WHERE id = :id",
        id=middle.id,
    )
    before = db.rows()
    rolled = cli(db, "rollback", "--reason", "drift")
    assert rolled.returncode == 1
    assert "rollback refused" in rolled.stderr
    assert f"audit entry #{middle.id}" in rolled.stderr
    assert "changed after it was written" in rolled.stderr
    promoted = cli(db, "promote", "3", "--reason", "anyway")
    assert promoted.returncode == 1
    assert "promote refused" in promoted.stderr and f"audit entry #{middle.id}" in promoted.stderr
    with Registry(db.url) as registry, pytest.raises(VerificationError, match="load refused"):
        registry.load(2)
    assert db.rows() == before and champion(db) == 2  # nothing written, not even a refusal
    fault_table.record(
        area="registry integrity",
        tried=f"rewrote the reason of a middle audit entry with SQL, then rollback and "
        f"promote ({db.backend})",
        result=f"rollback exit 1: '{first_line(rolled)}'; promote exit 1; champion unchanged",
    )


def test_version_rows_added_or_removed_behind_the_registrys_back(
    db: Db, tmp_path: Path, fault_table: FaultTable
) -> None:
    three_versions_two_promoted(db, tmp_path)
    folder = fabricated_export(tmp_path, "smuggled")
    db.sql(
        "INSERT INTO autocompress_model_versions (version, model, export_dir, "
        "manifest_sha256, manifest_files, metrics, source_study, source_trial, "
        f"source_policy, created_at, status) VALUES (9, 'credit', :dir, :sha, "
        f"{db.json('files')}, {db.json('metrics')}, 'credit', 0, 'fastest', "
        "CURRENT_TIMESTAMP, 'candidate')",
        dir=str(folder),
        sha=file_sha256(folder / "manifest.json"),
        files=json.dumps(manifest_files(folder)),
        metrics=(folder / "metrics.json").read_text(),
    )
    added = cli(db, "audit", "--verify")
    assert added.returncode == 1
    assert "version 9 of 'credit' has no audit entry" in added.stderr
    refused = cli(db, "promote", "9")
    assert refused.returncode == 1 and "has no audit entry" in refused.stderr

    db.sql("DELETE FROM autocompress_model_versions WHERE version IN (1, 9)")
    removed = cli(db, "audit", "--verify")
    assert removed.returncode == 1
    assert "version 1 of 'credit' is in the audit log but its row is gone" in removed.stderr
    fault_table.record(
        area="registry integrity",
        tried=f"inserted a version row with SQL, then deleted one ({db.backend})",
        result=f"audit --verify exit 1: '{first_line(added)}', then "
        f"'{removed.stderr.strip().splitlines()[0]}'",
    )


# Old databases and the anchor's options -----------------------------------------------


def test_entries_written_before_row_digests_verify_as_not_covered(db: Db, tmp_path: Path) -> None:
    """A database written by the registry before this change: entries without digests,
    no anchor file. It verifies, says what is not covered, and still promotes."""
    folder = fabricated_export(tmp_path, "old")
    Store(db.url).close()
    engine = create_engine(db.url)
    with Session(engine) as session, session.begin():  # as the earlier registry wrote it
        row = ModelVersionRow(
            model="credit",
            export_dir=str(folder),
            manifest_sha256=file_sha256(folder / "manifest.json"),
            manifest_files=manifest_files(folder),
            metrics=json.loads((folder / "metrics.json").read_text()),
            source_study="credit",
            source_trial=0,
            source_policy="fastest",
            status="candidate",
        )
        session.add(row)
        session.flush()
        details = {"export_dir": str(folder), "source_study": "credit", "source_trial": 0}
        audit.append(
            session,
            actor="old",
            action="register",
            model="credit",
            version=row.version,
            reason="before digests",
            details=details,
        )
    engine.dispose()

    verified = cli_ok(db, "audit", "--verify")
    assert "audit hash chain intact (1 entries)" in verified.stdout
    assert "0 match the audit log; 1 not covered" in verified.stdout
    assert "not checked" in verified.stdout and "no anchor file yet" in verified.stdout
    assert not db.anchor.exists()

    promoted = cli_ok(db, "promote", "1", "--reason", "first under the new registry")
    assert f"(appended to {db.anchor})" in promoted.stdout
    with Registry(db.url) as registry:
        found = registry.verify()
    assert (found.matching, found.not_covered) == ([1], [])
    assert audit.read_anchor(db.anchor)[-1].id == found.head.id


def test_the_anchor_and_head_options(db: Db, tmp_path: Path) -> None:
    elsewhere = tmp_path / "operator" / "anchor.txt"
    process = cli(
        db, "register", str(fabricated_export(tmp_path, "v1")), "--anchor", str(elsewhere)
    )
    assert process.returncode == 0, process.stderr
    assert f"(appended to {elsewhere})" in process.stdout
    assert [str(h) for h in audit.read_anchor(elsewhere)] == [str(printed_head(process))]
    assert not db.anchor.exists()  # --anchor wins over the default and the variable

    assert cli_ok(db, "audit", "--verify", "--anchor", str(elsewhere)).returncode == 0
    missing = cli(db, "audit", "--verify", "--anchor", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad = cli(db, "audit", "--verify", "--head", "12:abc")
    assert bad.returncode == 2 and "is not ID:SHA256" in bad.stderr

    with Registry(db.url) as registry:
        with pytest.raises(UserError, match="no such file"):
            Registry(db.url, anchor=tmp_path / "nope.txt").verify()
        head = registry.integrity().head
    assert str(head) == str(printed_head(process))
