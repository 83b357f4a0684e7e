"""The registry's audit log: append-only, hash-chained, verifiable.

Each entry's `entry_sha256` is the sha256 of the previous entry's hash and this
entry's canonical JSON, so changing, removing or reordering an entry breaks the
chain from that point on and `find_break` names where.

Two things a valid chain alone cannot show, covered here too:

- A version row rewritten in the database. Every entry that creates or changes a
  version carries `details["row_sha256"]`, the `row_digest` of the version row as it
  stood after the change; `find_row_problems` compares each row with the digest in
  its latest such entry. (Entries written before digests were recorded have none:
  their versions are "not covered", not tampered with.)
- The newest entries deleted, which leaves a shorter valid chain. After each write
  the new head (id, entry_sha256, number of entries) is appended to an anchor file
  kept outside the database; `find_anchor_problem` checks the chain still holds it.

This module only appends and reads; nothing here updates or deletes a row.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autocompress.store.schema import AuditRow, utcnow

GENESIS = "0" * 64
ACTOR_VARIABLE = "AUTOCOMPRESS_ACTOR"
# What an entry's hash covers, besides the previous entry's hash.
HASHED = ("at", "actor", "action", "model", "version", "reason", "details")
# What a version row's digest covers: every column as of schema v2, named so that a
# column added later does not change the digests already recorded.
ROW_DIGESTED = (
    "version",
    "model",
    "export_dir",
    "manifest_sha256",
    "manifest_files",
    "metrics",
    "source_study",
    "source_trial",
    "source_policy",
    "status",
    "created_at",
    "promoted_at",
)
ROW_DIGEST = "row_sha256"  # the key in an entry's details
# Actions that record an event about a version without changing its row.
LEAVES_ROW = frozenset({"refuse"})
ANCHOR_VARIABLE = "AUTOCOMPRESS_REGISTRY_ANCHOR"


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry, detached from the database."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str
    version: int | None
    reason: str
    details: dict[str, Any]
    prev_sha256: str
    entry_sha256: str

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEntry:
        return cls(**{field.name: getattr(row, field.name) for field in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


def default_actor() -> str:
    """Who acts: `$AUTOCOMPRESS_ACTOR` (set it in CI and schedulers), else user@host."""
    if actor := os.environ.get(ACTOR_VARIABLE, "").strip():
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name, e.g. a container with a bare uid
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def entry_digest(prev_sha256: str, entry: Mapping[str, Any]) -> str:
    """sha256 over the previous hash and the canonical JSON of the entry's HASHED fields."""
    content = {name: entry[name] for name in HASHED}
    content["at"] = content["at"].isoformat()
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_sha256}\n{canonical}".encode()).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    model: str,
    version: int | None,
    reason: str,
    details: dict[str, Any],
) -> AuditRow:
    """Add an entry at the head of the chain, inside the caller's transaction."""
    head = session.scalar(select(AuditRow.entry_sha256).order_by(AuditRow.id.desc()).limit(1))
    prev = head or GENESIS
    entry: dict[str, Any] = {
        # Microseconds round-trip on every backend; the hash needs the stored value.
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "model": model,
        "version": version,
        "reason": reason,
        "details": details,
    }
    row = AuditRow(**entry, prev_sha256=prev, entry_sha256=entry_digest(prev, entry))
    session.add(row)
    session.flush()  # the next append in this transaction chains onto this one
    return row


def find_break(entries: Iterable[AuditEntry]) -> str | None:
    """Why the chain is broken at its first bad entry (in id order), or None if intact."""
    expected_prev, previous = GENESIS, None
    for entry in entries:
        where = f"audit entry #{entry.id} ({entry.action} of {entry.model!r}"
        where += f" version {entry.version})" if entry.version is not None else ")"
        if entry.prev_sha256 != expected_prev:
            after = f"entry #{previous.id}" if previous else "the start of the log"
            return (
                f"{where} does not follow {after}: its prev_sha256 does not match; "
                f"an entry between them was removed, inserted or rewritten"
            )
        recomputed = entry_digest(entry.prev_sha256, asdict(entry))
        if recomputed != entry.entry_sha256:
            return f"{where} was changed after it was written: it no longer matches its sha256"
        expected_prev, previous = entry.entry_sha256, entry
    return None


# Version rows ---------------------------------------------------------------------


def row_digest(row: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a version row's ROW_DIGESTED columns."""
    content = {}
    for name in ROW_DIGESTED:
        value = row[name]
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        content[name] = value
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RowCheck:
    """Version rows compared with the audit log: which match, which predate digests."""

    matching: list[int]
    not_covered: list[int]
    problems: list[str]


def find_row_problems(
    rows: Iterable[Mapping[str, Any]],
    entries: Iterable[AuditEntry],
    only: Iterable[int] | None = None,
) -> RowCheck:
    """Each version row (or those in `only`) against the digest in its latest entry
    that changed it. A row without any entry, and an entry whose row is gone, are
    problems too (when `only` is None)."""
    latest: dict[int, AuditEntry] = {}
    for entry in entries:
        if entry.version is not None and entry.action not in LEAVES_ROW:
            latest[entry.version] = entry
    by_version = {row["version"]: row for row in rows}
    wanted = sorted(by_version if only is None else set(only))
    matching, not_covered, problems = [], [], []
    for version in wanted:
        row = by_version.get(version)
        if row is None:
            if version in latest:
                problems.append(
                    f"version {version} of {latest[version].model!r} is in the audit log "
                    "but its row is gone: it was deleted outside autocompress"
                )
            continue
        label = f"version {version} of {row['model']!r}"
        entry = latest.get(version)
        if entry is None:
            problems.append(f"{label} has no audit entry: its row was added outside autocompress")
        elif ROW_DIGEST not in entry.details:
            not_covered.append(version)
        elif entry.details[ROW_DIGEST] != row_digest(row):
            problems.append(
                f"{label} was changed outside autocompress: its row no longer matches "
                f"the digest recorded by audit entry #{entry.id} ({entry.action})"
            )
        else:
            matching.append(version)
    if only is None:
        for version in sorted(set(latest) - set(by_version)):
            problems.append(
                f"version {version} of {latest[version].model!r} is in the audit log "
                "but its row is gone: it was deleted outside autocompress"
            )
    return RowCheck(matching, not_covered, problems)


# The anchor -----------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """A chain head recorded outside the database: entry id, its hash, and (when
    known) how many entries the chain held up to it."""

    id: int
    entry_sha256: str
    entries: int | None = None

    def __str__(self) -> str:
        return f"{self.id}:{self.entry_sha256}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """`ID:SHA256` (as printed after every registry write), optionally followed by
        `entries=N ...` as in an anchor file line."""
        first, *rest = text.split()
        number, _, digest = first.partition(":")
        if not number.isdigit() or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError(f"{text.strip()!r} is not ID:SHA256 (e.g. 12:3fa2...)")
        entries = None
        for word in rest:
            if word.startswith("entries=") and word[8:].isdigit():
                entries = int(word[8:])
        return cls(int(number), digest, entries)


def anchor_line(head: Head, *, where: str) -> str:
    at = utcnow().isoformat(timespec="seconds")
    return f"{head} entries={head.entries} at={at} db={where}\n"


def append_anchor(path: Path, line: str) -> None:
    """Append one line and fsync: the file is append-only, so a crash leaves at worst
    a torn last line (skipped when read), never a changed earlier one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    if created:  # the new directory entry survives a crash too
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_anchor(path: Path) -> list[Head]:
    """Every head recorded in an anchor file; blank, comment and torn lines skipped."""
    heads = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                heads.append(Head.parse(line))
            except ValueError:
                continue
    return heads


def find_anchor_problem(
    entries: list[AuditEntry], heads: Iterable[Head], source: str
) -> str | None:
    """Why the chain no longer holds every anchored head, or None if it does.

    `entries` in id order. The newest anchored head missing means the newest entries
    were deleted (or the chain was rewritten from there).
    """
    by_id = {entry.id: entry for entry in entries}
    for head in sorted(heads, key=lambda h: h.id, reverse=True):
        found = by_id.get(head.id)
        if found is not None and found.entry_sha256 == head.entry_sha256:
            continue
        last = entries[-1] if entries else None
        ends = f"entry #{last.id} ({len(entries)} entries)" if last else "no entries at all"
        if found is None and (last is None or last.id < head.id):
            missing = (
                head.entries - len(entries)
                if head.entries is not None
                else head.id - (last.id if last else 0)
            )
            rows = "row" if missing == 1 else "rows"
            return (
                f"{missing} {rows} missing after the anchored head: {source} records head "
                f"#{head.id} ({head.entry_sha256[:12]}...) but the chain ends at {ends}; "
                "its newest entries were deleted"
            )
        return (
            f"the chain was rewritten: {source} records head #{head.id} "
            f"({head.entry_sha256[:12]}...), but the chain holds "
            + (
                f"a different entry #{head.id} ({found.entry_sha256[:12]}...)"
                if found is not None
                else f"no entry #{head.id}"
            )
            + f" and ends at {ends}"
        )
    return None
