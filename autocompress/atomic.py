"""Write folders all at once: build in a hidden sibling, then rename into place.

A folder is replaced only when the caller's rule says what sits there may go (see
`check_replaceable`): a user's own files are never deleted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from autocompress.errors import UserError

# Given an existing real folder: why it must not be replaced, or None when it may be.
Refusal = Callable[[Path], str | None]


def check_replaceable(final: Path, overwrite: bool, refusal: Refusal | None = None) -> None:
    """Raise a `UserError` naming `final` unless a new folder may be written there.

    Absent: yes. A file or a symlink: never (a link is not followed, a file not turned
    into a folder). A real folder: only with `overwrite`, and only if `refusal` finds
    nothing against it (an empty folder always may go). `refusal=None` leaves the
    folder's contents to the caller's own check, as the report writer does.
    """
    final = Path(final)
    if not os.path.lexists(final):
        return
    if final.is_symlink():
        raise UserError(
            f"{final} is a symlink; it is left as it is (nothing is written through a "
            "link). Choose another --out, or remove the link"
        )
    if not final.is_dir():
        raise UserError(
            f"{final} is a file, not a folder; it is left as it is. Choose another --out, "
            "or move the file away"
        )
    reason = refusal(final) if refusal is not None and any(final.iterdir()) else None
    if reason:
        raise UserError(
            f"{final} {reason}; it is left as it is. Choose another --out, or move those "
            "files away (--overwrite replaces only an empty folder or an earlier export "
            "that verifies)"
        )
    if not overwrite:
        raise UserError(f"{final} already exists; choose another --out or pass --overwrite")


@contextmanager
def atomic_directory(
    final: Path, overwrite: bool = False, refusal: Refusal | None = None
) -> Iterator[Path]:
    """Yield a staging folder; on success it becomes `final`, on any error it vanishes.

    An existing `final` is replaced only as `check_replaceable` allows, checked before
    anything is written and, with a `refusal` rule, again just before the swap (without
    one, a folder that appeared meanwhile is replaced: the teacher cache relies on
    that when two workers race). The swap happens only after the new folder is
    complete, so readers see the old folder or the new one, never half of either.
    """
    final = Path(final)
    check_replaceable(final, overwrite, refusal)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes 0700; exports are meant to be shared
    try:
        yield staging
        if os.path.lexists(final):
            if refusal is not None:  # it may have been made or changed meanwhile
                check_replaceable(final, overwrite, refusal)
            retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, retired / final.name)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write `path` whole or not at all: a temporary sibling, then a rename, so a reader
    (another worker sharing a cache) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
