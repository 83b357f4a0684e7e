"""The registry's audit log: append-only, hash-chained, verifiable.

Each entry's `entry_sha256` is the sha256 of the previous entry's hash and this
entry's canonical JSON, so changing, removing or reordering an entry breaks the
chain from that point on and `find_break` names where. (Removing the newest entries
leaves a shorter valid chain: anchoring the head elsewhere is for a later issue.)
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
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autocompress.store.schema import AuditRow, utcnow

GENESIS = "0" * 64
ACTOR_VARIABLE = "AUTOCOMPRESS_ACTOR"
# What an entry's hash covers, besides the previous entry's hash.
HASHED = ("at", "actor", "action", "model", "version", "reason", "details")


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
