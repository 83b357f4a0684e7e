"""The model registry: versions of exported models, one champion per model, rollback,
and an append-only audit log of who did what, when and why.

    registry = Registry("sqlite:///runs/autocompress.db")
    version = registry.register("runs/exports/credit", reason="nightly run")
    registry.promote(version.version, reason="better F1 at the same latency")
    folder = registry.load(registry.champion("credit").version)   # verified first
    registry.rollback("credit", reason="drift alert on the new champion")

A version pins an export folder by its manifest (hash and file list), so a file edited
after registration is named and refused. Every change is written with its audit
entries in one transaction; each entry that changes a version records a digest of its
row, so a row rewritten in the database is caught too. After each write the new head
of the audit chain is appended to an anchor file kept outside the database (default:
beside a SQLite file; `anchor=` or `$AUTOCOMPRESS_REGISTRY_ANCHOR` otherwise), so
deleting the newest entries is caught. `promote`, `rollback`, `register` and `load`
refuse while any of this fails to verify. Reading never creates a database; nothing
here imports optuna or torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from autocompress.errors import StorageUnavailable, UserError, VerificationError
from autocompress.manifest import MANIFEST, differences, file_sha256, manifest_files, verify
from autocompress.store import audit
from autocompress.store.audit import ANCHOR_VARIABLE, AuditEntry, Head, default_actor
from autocompress.store.connection import check_reachable, database_exists, make_engine, safe_url
from autocompress.store.repository import Store
from autocompress.store.resilience import DatabaseUnavailable, retry_transient
from autocompress.store.schema import AuditRow, ModelStatus, ModelVersionRow, utcnow

__all__ = ["AuditEntry", "Head", "Integrity", "ModelStatus", "ModelVersion", "Registry", "Rollback"]

T = TypeVar("T")
logger = logging.getLogger("autocompress")
# Concurrent writers collide on the audit chain's unique head (or the one-champion
# index); the loser's transaction rolls back and is simply run again on fresh state.
WRITE_ATTEMPTS = 5
ANCHOR_SUFFIX = ".registry-anchor.txt"


@dataclass(frozen=True)
class ModelVersion:
    """One registered export, detached from the database."""

    version: int
    model: str
    status: ModelStatus
    export_dir: Path
    manifest_sha256: str
    manifest_files: dict[str, Any]
    metrics: dict[str, Any]
    source_study: str
    source_trial: int
    source_policy: str | None
    created_at: datetime
    promoted_at: datetime | None

    @classmethod
    def from_row(cls, row: ModelVersionRow) -> ModelVersion:
        return cls(
            version=row.version,
            model=row.model,
            status=ModelStatus(row.status),
            export_dir=Path(row.export_dir),
            manifest_sha256=row.manifest_sha256,
            manifest_files=dict(row.manifest_files),
            metrics=dict(row.metrics),
            source_study=row.source_study,
            source_trial=row.source_trial,
            source_policy=row.source_policy,
            created_at=row.created_at,
            promoted_at=row.promoted_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for `--json`."""
        return {
            **asdict(self),
            "status": self.status.value,
            "export_dir": str(self.export_dir),
            "created_at": self.created_at.isoformat(),
            "promoted_at": self.promoted_at.isoformat() if self.promoted_at else None,
        }


@dataclass(frozen=True)
class Rollback:
    """What a rollback did: the champion it withdrew and the one it restored."""

    withdrawn: ModelVersion
    restored: ModelVersion


@dataclass(frozen=True)
class Integrity:
    """What `Registry.integrity` checked, and every problem it found."""

    entries: int
    head: Head | None  # the chain's newest entry now
    matching: list[int]  # versions whose row matches its audit digest
    not_covered: list[int]  # versions last changed before digests were recorded
    anchor: str  # what the head was checked against, in words
    problems: list[str]


def default_anchor(url: str) -> Path | None:
    """`$AUTOCOMPRESS_REGISTRY_ANCHOR`, else `DB.registry-anchor.txt` beside a SQLite
    database file, else None (PostgreSQL, in-memory SQLite): no file anchor."""
    if chosen := os.environ.get(ANCHOR_VARIABLE, "").strip():
        return Path(chosen)
    try:
        parsed = make_url(url)
    except Exception:  # not a URL: `make_engine` says so when it is used
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(path.name + ANCHOR_SUFFIX)


class Registry:
    """The registry tables in a database given by SQLAlchemy URL (SQLite or PostgreSQL).

    `anchor`: the file the audit chain's head is appended to after every write and
    checked against before promote, rollback, register and load (see `default_anchor`).
    """

    def __init__(self, url: str, *, anchor: str | Path | None = None) -> None:
        self.url = url
        self._anchor_given = anchor is not None
        self.anchor = Path(anchor) if anchor is not None else default_anchor(url)
        # The head written by this registry's last write, for the CLI to print.
        self.last_head: Head | None = None
        self._engine: Engine | None = None
        self._has_tables = False

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._has_tables = None, False

    # Reading -------------------------------------------------------------------------

    def models(self) -> list[str]:
        with Session(self._existing()) as session:
            return list(session.scalars(select(ModelVersionRow.model).distinct().order_by("model")))

    def versions(self, model: str | None = None) -> list[ModelVersion]:
        """All versions (of one model), oldest first."""
        query = select(ModelVersionRow).order_by(ModelVersionRow.version)
        if model is not None:
            self._known_model(model)
            query = query.where(ModelVersionRow.model == model)
        with Session(self._existing()) as session:
            return [ModelVersion.from_row(row) for row in session.scalars(query)]

    def get(self, version: int) -> ModelVersion:
        with Session(self._existing()) as session:
            return ModelVersion.from_row(self._row(session, version))

    def champion(self, model: str) -> ModelVersion | None:
        with Session(self._existing()) as session:
            row = _champion_row(session, model)
            return None if row is None else ModelVersion.from_row(row)

    def audit(self, model: str | None = None, version: int | None = None) -> list[AuditEntry]:
        """Audit entries, oldest first, optionally only those about a model or version."""
        query = select(AuditRow).order_by(AuditRow.id)
        if model is not None:
            query = query.where(AuditRow.model == model)
        if version is not None:
            query = query.where(AuditRow.version == version)
        with Session(self._existing()) as session:
            return [AuditEntry.from_row(row) for row in session.scalars(query)]

    def integrity(
        self, head: Head | None = None, *, versions: Iterable[int] | None = None
    ) -> Integrity:
        """Check the hash chain, the anchored head(s) and the version rows (all, or
        only `versions`) against the audit log; every problem found is listed.

        `head` (e.g. from `--head ID:SHA`) is checked instead of the anchor file.
        """
        versions = None if versions is None else list(versions)
        # The anchor first: a writer appends its head there only after its commit, so
        # every head read from it now is in the chain read below. Read the other way
        # round, a promotion committed in between looked like deleted rows.
        heads, anchor = self._anchored_heads(head)
        with Session(self._existing()) as session:
            entries = [
                AuditEntry.from_row(row)
                for row in session.scalars(select(AuditRow).order_by(AuditRow.id))
            ]
            query = select(ModelVersionRow.__table__).order_by(ModelVersionRow.version)
            if versions is not None:
                query = query.where(ModelVersionRow.version.in_(versions))
            rows = [dict(row) for row in session.execute(query).mappings()]
        problems = []
        if chain_break := audit.find_break(entries):
            problems.append(chain_break)
        if heads and (missing := audit.find_anchor_problem(entries, heads, anchor)):
            problems.append(missing)
        checked = audit.find_row_problems(rows, entries, versions)
        problems += checked.problems
        last = entries[-1] if entries else None
        return Integrity(
            entries=len(entries),
            head=None if last is None else Head(last.id, last.entry_sha256, len(entries)),
            matching=checked.matching,
            not_covered=checked.not_covered,
            anchor=anchor or "no anchor",
            problems=problems,
        )

    def verify(self, head: Head | None = None) -> Integrity:
        """`integrity()`, raising `VerificationError` listing every problem found."""
        if head is None and self._anchor_given and self.anchor and not self.anchor.is_file():
            raise UserError(
                f"anchor {self.anchor}: no such file; pass the file the registry's writes "
                "appended their heads to, or --head ID:SHA"
            )
        found = self.integrity(head)
        if found.problems:
            raise VerificationError(
                f"audit log in {safe_url(self.url)}: " + "\n  ".join(found.problems)
            )
        return found

    def verify_audit(self, head: Head | None = None) -> int:
        """`verify()`: the chain, the anchored head and every version row; raises
        `VerificationError` naming each problem. Returns the number of entries checked."""
        return self.verify(head).entries

    def load(self, version: int, *, actor: str | None = None) -> Path:
        """The export folder of `version`, after checking every file against the manifest
        recorded at registration. A refusal is written to the audit log."""
        found = self.get(version)
        self._intact("load", [version])
        self._verified(found, "load", actor or default_actor())
        return found.export_dir

    # Changing ------------------------------------------------------------------------

    def register(
        self,
        export_dir: str | Path,
        *,
        model: str | None = None,
        reason: str,
        actor: str | None = None,
    ) -> ModelVersion:
        """Add a verified export folder as a `candidate` version of `model` (default:
        the name of the study it was exported from)."""
        folder = Path(export_dir).resolve()
        if not folder.is_dir():
            raise UserError(
                f"{folder}: no such export folder; write one with "
                "`autocompress export STUDY.yaml --out DIR`"
            )
        verify(folder)
        study, trial, policy = _export_source(folder)
        metrics = _export_metrics(folder)
        model = (model or study).strip()
        if not model:
            raise UserError("model: an empty name; give --model NAME")
        files, digest = manifest_files(folder), file_sha256(folder / MANIFEST)
        self._create_tables()
        self._intact("register", [])

        def work(session: Session) -> ModelVersion:
            same = session.scalar(
                select(ModelVersionRow).where(
                    ModelVersionRow.model == model,
                    ModelVersionRow.export_dir == str(folder),
                    ModelVersionRow.manifest_sha256 == digest,
                )
            )
            if same is not None:
                raise UserError(
                    f"{folder} is already registered as version {same.version} of "
                    f"{model!r} ({same.status}); promote that version instead: "
                    f"`autocompress registry promote {same.version}`"
                )
            row = ModelVersionRow(
                model=model,
                export_dir=str(folder),
                manifest_sha256=digest,
                manifest_files=files,
                metrics=metrics,
                source_study=study,
                source_trial=trial,
                source_policy=policy,
                status=ModelStatus.CANDIDATE.value,
            )
            session.add(row)
            session.flush()
            source = {"source_study": study, "source_trial": trial}
            details = {"export_dir": str(folder), "manifest_sha256": digest, **source}
            _record(
                session,
                model,
                [("register", row.version, details)],
                reason=reason,
                actor=actor or default_actor(),
            )
            return ModelVersion.from_row(row)

        return self._write(work)

    def promote(self, version: int, *, reason: str, actor: str | None = None) -> ModelVersion:
        """Make `version` its model's champion, after verifying its files; the champion
        it replaces becomes `retired`."""
        actor = actor or default_actor()
        candidate = self.get(version)
        if candidate.status is ModelStatus.CHAMPION:
            raise _already_champion(candidate)
        champion = self.champion(candidate.model)
        self._intact("promote", [version] + ([champion.version] if champion else []))
        self._verified(candidate, "promote", actor)

        def work(session: Session) -> ModelVersion:
            row = self._row(session, version)
            replaced = _champion_row(session, row.model)
            if replaced is row:
                raise _already_champion(candidate)
            if replaced is not None:
                replaced.status = ModelStatus.RETIRED.value
                session.flush()  # the database allows one champion per model at any moment
            was = row.status
            row.status, row.promoted_at = ModelStatus.CHAMPION.value, utcnow()
            session.flush()
            replaces = None if replaced is None else replaced.version
            events = [("promote", version, {"from_status": was, "replaces": replaces})]
            if replaced is not None:
                events.append(("retire", replaced.version, {"replaced_by": version}))
            _record(session, row.model, events, reason=reason, actor=actor)
            return ModelVersion.from_row(row)

        return self._write(work)

    def rollback(
        self, model: str | None = None, *, reason: str, actor: str | None = None
    ) -> Rollback:
        """Withdraw the champion (`rolled_back`) and restore the most recent earlier
        champion that was not itself rolled back.

        `model` may be omitted when the registry holds a single model.
        """
        actor = actor or default_actor()
        model = self._only_model(model)
        current = self.champion(model)
        if current is None:
            raise UserError(
                f"model {model!r} has no champion to roll back; promote a version first: "
                "`autocompress registry promote VERSION`"
            )
        with Session(self._existing()) as session:
            row = _previous_champion_row(session, model)
            previous = None if row is None else ModelVersion.from_row(row)
        if previous is None:
            raise UserError(
                f"model {model!r} has no earlier champion to roll back to: version "
                f"{current.version} is its only champion not rolled back; nothing was "
                "changed. Promote another version instead: "
                "`autocompress registry promote VERSION`"
            )
        self._intact("rollback", [current.version, previous.version])
        self._verified(previous, "rollback", actor)

        def work(session: Session) -> Rollback:
            withdrawn = _champion_row(session, model)
            restored = _previous_champion_row(session, model)
            if (
                withdrawn is None
                or restored is None
                or ((withdrawn.version, restored.version) != (current.version, previous.version))
            ):
                raise UserError(
                    f"model {model!r} changed while rolling back; nothing was changed. "
                    "Look at `autocompress registry list` and run the rollback again"
                )
            withdrawn.status = ModelStatus.ROLLED_BACK.value
            session.flush()  # one champion per model at any moment
            restored.status, restored.promoted_at = ModelStatus.CHAMPION.value, utcnow()
            session.flush()
            events = [
                ("rollback", withdrawn.version, {"restored": restored.version}),
                ("restore", restored.version, {"replaces": withdrawn.version}),
            ]
            _record(session, model, events, reason=reason, actor=actor)
            return Rollback(ModelVersion.from_row(withdrawn), ModelVersion.from_row(restored))

        return self._write(work)

    # Internals -----------------------------------------------------------------------

    def _existing(self) -> Engine:
        """The engine of a database that already holds the registry; never creates one."""
        if self._engine is None:
            if not database_exists(self.url):
                raise self._no_registry()
            self._engine = make_engine(self.url)
        if not self._has_tables:
            if not inspect(self._engine).has_table(ModelVersionRow.__tablename__):
                raise self._no_registry()
            self._has_tables = True
        return self._engine

    def _create_tables(self) -> None:
        """Create (or upgrade to) the registry tables: only `register` does this."""
        if self._has_tables:
            return
        check_reachable(self.url)
        store = Store(self.url)
        self.close()
        self._engine, self._has_tables = store.engine, True

    def _no_registry(self) -> UserError:
        return UserError(
            f"no model registry in {safe_url(self.url)}; register an export there first "
            "(`autocompress registry register EXPORT_DIR --storage URL`), or pass the "
            "--storage URL of the database that holds the registry"
        )

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction; a collision with another writer runs it again.
        After the commit, the new head of the audit chain is anchored."""
        engine = self._existing()

        def transaction() -> tuple[T, Head | None]:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                return work(session), _head_written(session)

        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                # A database that blinks (a restart, "database is locked") is waited for.
                result, head = retry_transient(transaction, "registry write")
                break
            except DatabaseUnavailable as error:
                raise StorageUnavailable(
                    f"registry in {safe_url(self.url)}: {error}; nothing was changed, "
                    "try again when the database is back"
                ) from None
            except IntegrityError as error:
                logger.debug("registry: another writer got there first (%s); again", error)
                if attempt == WRITE_ATTEMPTS:
                    reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
                    raise UserError(
                        f"registry in {safe_url(self.url)}: other writers kept changing it "
                        f"({reason}); nothing was changed, try again"
                    ) from None
        if head is not None:
            self._anchor_head(head)
        return result

    def _anchor_head(self, head: Head) -> None:
        """Append the committed head to the anchor file (if any); the CLI prints it."""
        self.last_head = head
        if self.anchor is None:
            return
        try:
            audit.append_anchor(self.anchor, audit.anchor_line(head, where=safe_url(self.url)))
        except OSError as error:
            raise UserError(
                f"the change was committed (audit head {head}), but the anchor "
                f"{self.anchor} could not be written ({error}); append that head to it "
                "by hand, or fix the path and run `autocompress registry audit --verify`"
            ) from None

    def _anchored_heads(self, given: Head | None) -> tuple[list[Head], str]:
        """The heads to check the chain against, and where they came from."""
        if given is not None:
            return [given], f"the head given ({given.id}:{given.entry_sha256[:12]}...)"
        if self.anchor is None:
            return [], ""
        if not self.anchor.is_file():
            return [], f"no anchor file yet at {self.anchor}"
        try:
            heads = audit.read_anchor(self.anchor)
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"anchor {self.anchor}: cannot read it ({error})") from None
        return heads, f"the anchor {self.anchor}"

    def _intact(self, attempted: str, versions: list[int]) -> None:
        """Refuse (`VerificationError`) unless the chain verifies, holds the anchored
        head, and the rows of `versions` match their audit digests. Not recorded in
        the log: it is the log (or rows it covers) that cannot be trusted."""
        found = self.integrity(versions=versions)
        if found.problems:
            raise VerificationError(
                f"{attempted} refused: the registry in {safe_url(self.url)} failed "
                "verification: " + "\n  ".join(found.problems) + "\nnothing was changed; "
                "restore the database from a backup, and see "
                "`autocompress registry audit --verify`"
            )

    def _row(self, session: Session, version: int) -> ModelVersionRow:
        row = session.get(ModelVersionRow, version)
        if row is None:
            raise UserError(
                f"no version {version} in the model registry in {safe_url(self.url)}; "
                "see the versions with `autocompress registry list`"
            )
        return row

    def _known_model(self, model: str) -> None:
        if model not in (models := self.models()):
            raise UserError(
                f"no model {model!r} in the registry in {safe_url(self.url)}; "
                f"it holds: {', '.join(models) or 'nothing yet'}"
            )

    def _only_model(self, model: str | None) -> str:
        if model is not None:
            self._known_model(model)
            return model
        models = self.models()
        if len(models) == 1:
            return models[0]
        if not models:
            raise self._no_registry()
        raise UserError(
            f"the registry in {safe_url(self.url)} holds {len(models)} models "
            f"({', '.join(models)}); say which one with --model NAME"
        )

    def _verified(self, version: ModelVersion, attempted: str, actor: str) -> None:
        """Raise `VerificationError` if the version's files changed; record the refusal."""
        try:
            check_files(version)
        except VerificationError as error:
            event = ("refuse", version.version, {"attempted": attempted, "problem": str(error)})
            self._write(
                lambda session: _record(
                    session,
                    version.model,
                    [event],
                    reason=f"{attempted} refused: the export failed verification",
                    actor=actor,
                )
            )
            recorded = f"\nrecorded in the audit log; its head is now {self.last_head}"
            raise VerificationError(f"{attempted} refused: {error}{recorded}") from None


def check_files(version: ModelVersion) -> None:
    """Every file of the version's folder against the manifest recorded at registration
    (so a manifest rewritten to match edited files is caught too)."""
    folder = version.export_dir
    label = f"version {version.version} of {version.model!r} ({folder})"
    if not folder.is_dir():
        raise VerificationError(
            f"{label}: the export folder is gone; restore it, or promote another version"
        )
    problems = differences(folder, version.manifest_files)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        problems.insert(0, f"missing: {MANIFEST}")
    elif file_sha256(manifest) != version.manifest_sha256:
        problems.append(f"changed: {MANIFEST} (sha256 differs from the one registered)")
    if problems:
        raise VerificationError(
            f"{label} was changed after it was registered:\n  "
            + "\n  ".join(problems)
            + "\nrestore the original files, or export and register a new version"
        )


def _record(
    session: Session,
    model: str,
    events: list[tuple[str, int, dict[str, Any]]],
    *,
    reason: str,
    actor: str,
) -> None:
    """Audit entries (action, version, details) for one change, in its transaction.

    An entry that changes a version records the digest of its row as stored now.
    """
    session.flush()
    for action, version, details in events:
        if action not in audit.LEAVES_ROW:
            stored = session.execute(
                select(ModelVersionRow.__table__).where(ModelVersionRow.version == version)
            ).mappings()
            details = {**details, audit.ROW_DIGEST: audit.row_digest(stored.one())}
        session.info["audit_head"] = audit.append(
            session,
            actor=actor,
            action=action,
            model=model,
            version=version,
            reason=reason,
            details=details,
        )


def _head_written(session: Session) -> Head | None:
    """The head this transaction appended (with the chain's length), or None."""
    row = session.info.get("audit_head")
    if row is None:
        return None
    count = session.scalar(select(func.count()).select_from(AuditRow))
    return Head(row.id, row.entry_sha256, count)


def _champion_row(session: Session, model: str) -> ModelVersionRow | None:
    return session.scalar(
        select(ModelVersionRow).where(
            ModelVersionRow.model == model, ModelVersionRow.status == ModelStatus.CHAMPION.value
        )
    )


def _previous_champion_row(session: Session, model: str) -> ModelVersionRow | None:
    """The most recently promoted earlier champion that was not rolled back."""
    return session.scalar(
        select(ModelVersionRow)
        .where(ModelVersionRow.model == model, ModelVersionRow.status == ModelStatus.RETIRED.value)
        .order_by(ModelVersionRow.promoted_at.desc(), ModelVersionRow.version.desc())
        .limit(1)
    )


def _already_champion(version: ModelVersion) -> UserError:
    return UserError(
        f"version {version.version} is already the champion of {version.model!r}; "
        "nothing was changed"
    )


def _export_source(folder: Path) -> tuple[str, int, str | None]:
    """Study name, trial number and policy from the export's config.yaml."""
    path = folder / "config.yaml"
    try:
        study = yaml.safe_load(path.read_text())["study"]
        return str(study["study_name"]), int(study["trial_number"]), study.get("policy")
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path}: cannot read study.study_name and study.trial_number ({error!r}); "
            "register a folder written by `autocompress export`"
        ) from None


def _export_metrics(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path}: cannot read the export's metrics ({error}); "
            "register a folder written by `autocompress export`"
        ) from None
    if not isinstance(metrics, dict):
        raise UserError(f"{path}: expected a JSON object; register an autocompress export")
    return metrics
