"""The sha256 manifest of an export folder: write it, and verify a folder against it.

Kept apart from `export.py` (which needs optuna and the task stack) so that checking
a folder, e.g. before the registry hands a model out, imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from autocompress.errors import VerificationError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "autocompress.manifest/1"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    files = {
        path.relative_to(folder).as_posix(): {
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
        }
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    (folder / MANIFEST).write_text(
        json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=2)
    )


def verify(folder: str | Path) -> int:
    """Check every file against the manifest; raises `VerificationError` naming each problem.

    Returns the number of files verified.
    """
    folder = Path(folder)
    listed = manifest_files(folder)
    if problems := differences(folder, listed):
        raise VerificationError(f"{folder}: verification FAILED\n  " + "\n  ".join(problems))
    return len(listed)


def manifest_files(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest's file list (name -> sha256 and bytes)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise VerificationError(f"{folder}: no {MANIFEST}; this is not an autocompress export")
    try:
        manifest = json.loads(manifest_path.read_text())
        listed: dict[str, dict[str, Any]] = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise VerificationError(f"{manifest_path}: unreadable manifest ({error})") from None
    return listed


def differences(folder: Path, listed: dict[str, dict[str, Any]]) -> list[str]:
    """Every file missing, changed or unlisted in `folder`, compared with `listed`."""
    problems = []
    for name, entry in listed.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif file_sha256(path) != entry.get("sha256"):
            problems.append(f"changed: {name} (sha256 differs from the manifest)")
    present = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    problems += [f"not in manifest: {name}" for name in sorted(present - set(listed))]
    return problems
