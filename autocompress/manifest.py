"""The sha256 manifest of an export folder: write it, sign it, verify a folder against it.

Kept apart from `export.py` (which needs optuna and the task stack) so that checking
a folder, e.g. before the registry hands a model out, imports nothing heavy; the
signing functions import `cryptography` only when called.

Every manifest entry must name a regular file inside the folder: an absolute path,
a `..` step or a symlink (least of all one leading out of the folder) is a
verification failure, never a file that is read. `manifest.json` and its detached
Ed25519 signature `manifest.sig` are the folder's own files and listed nowhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from autocompress.errors import UserError, VerificationError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
OWN_FILES = frozenset({MANIFEST, SIGNATURE})  # at the top of the folder, never listed
MANIFEST_FORMAT = "autocompress.manifest/1"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[str]:
    """Everything under `folder` but folders (files, symlinks, ...) as sorted posix names.

    Symlinked folders are named, not entered; `manifest.json` and `manifest.sig` at
    the top are left out.
    """
    names = []
    for root, dirs, files in os.walk(folder):  # does not follow symlinked folders
        base = Path(root)
        for name in [*files, *(d for d in dirs if (base / d).is_symlink())]:
            names.append((base / name).relative_to(folder).as_posix())
    return sorted(name for name in names if name not in OWN_FILES)


def write_manifest(folder: Path) -> None:
    """List every regular file of `folder` with its sha256; anything else is refused."""
    files = {}
    for name in folder_files(folder):
        path = folder / name
        if path.is_symlink() or not path.is_file():
            kind = "a symlink" if path.is_symlink() else "not a regular file"
            raise UserError(f"{path} is {kind}; a manifest lists regular files only")
        files[name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    (folder / MANIFEST).write_text(
        json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=2)
    )


def verify(folder: str | Path, *, public_key: str | Path | None = None) -> int:
    """Check every file against the manifest; raises `VerificationError` naming each problem.

    With `public_key` (an Ed25519 PEM public key), `manifest.sig` must also be a valid
    signature of `manifest.json` by its private key. Returns the number of files verified.
    """
    folder = Path(folder)
    listed = manifest_files(folder)
    problems = differences(folder, listed)
    if public_key is not None and (problem := signature_problem(folder, public_key)):
        problems.append(problem)
    if problems:
        raise VerificationError(f"{folder}: verification FAILED\n  " + "\n  ".join(problems))
    return len(listed)


def manifest_files(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest's file list (name -> sha256 and bytes)."""
    listed = _read_manifest(folder).get("files")
    if not isinstance(listed, dict) or not all(isinstance(e, dict) for e in listed.values()):
        raise VerificationError(f"{folder / MANIFEST}: unreadable manifest (no file list)")
    return listed


def _read_manifest(folder: Path) -> dict[str, Any]:
    manifest_path = folder / MANIFEST
    if manifest_path.is_symlink():
        raise VerificationError(f"{manifest_path} is a symlink; an export holds regular files")
    if not manifest_path.is_file():
        raise VerificationError(f"{folder}: no {MANIFEST}; this is not an autocompress export")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VerificationError(f"{manifest_path}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise VerificationError(f"{manifest_path}: unreadable manifest (not a JSON object)")
    return manifest


def differences(folder: Path, listed: dict[str, dict[str, Any]]) -> list[str]:
    """Every file missing, changed, unlisted or outside `folder`, compared with `listed`."""
    root = Path(folder).resolve()
    problems = []
    for name, entry in listed.items():
        if problem := entry_problem(root, name):
            problems.append(problem)
            continue
        path = root / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif file_sha256(path) != entry.get("sha256"):
            problems.append(f"changed: {name} (sha256 differs from the manifest)")
    for name in folder_files(root):
        if name not in listed:
            link = root / name
            note = f" (a symlink to {link.resolve()})" if link.is_symlink() else ""
            problems.append(f"not in manifest: {name}{note}")
    return problems


def entry_problem(root: Path, name: object) -> str | None:
    """Why manifest entry `name` is not a regular file inside `root` (resolved), or None."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return f"not a file name: {name!r}"
    pure = PurePosixPath(name)
    if pure.is_absolute() or PureWindowsPath(name).anchor:
        return f"outside the folder: {name} (an absolute path)"
    if ".." in pure.parts:
        return f"outside the folder: {name} (goes up with ..)"
    path = root
    for part in pure.parts:
        path = path / part
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                return f"outside the folder: {name} (through the symlink {part} -> {target})"
            return f"symlink: {name} (an export holds regular files only)"
    return None


# --- may an existing folder be replaced by a new export? ----------------------------


def export_refusal(folder: Path) -> str | None:
    """Why the existing, non-empty `folder` must not be replaced by a new export, or None.

    Only an autocompress export whose manifest verifies (every file listed and
    matching, nothing extra) may be replaced. The rule `autocompress export
    --overwrite` and `run` apply, through `atomic.check_replaceable(path, overwrite,
    refusal=export_refusal)`; other writers can pass their own rule the same way.
    """
    try:
        manifest = _read_manifest(folder)
        listed = manifest_files(folder)
    except VerificationError:
        shown = sorted(p.name for p in folder.iterdir())
        more = f", and {len(shown) - 5} more" if len(shown) > 5 else ""
        return f"holds files that are not an autocompress export ({', '.join(shown[:5])}{more})"
    if manifest.get("format") != MANIFEST_FORMAT:
        return f"holds a {MANIFEST} that is not an autocompress manifest"
    if problems := differences(folder, listed):
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        return (
            "is an autocompress export whose files no longer match its manifest "
            f"({'; '.join(problems[:3])}{more})"
        )
    return None


# --- Ed25519 signatures of manifest.json (cryptography imported on use) -------------


def is_signed(folder: Path) -> bool:
    return (Path(folder) / SIGNATURE).is_file()


def load_private_key(path: str | Path) -> Any:
    """The Ed25519 private key in an unencrypted PEM file; a `UserError` says what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_key_file(path, "signing key")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise UserError(
            f"{path}: not an unencrypted PEM private key ({error}); make one with "
            "`autocompress keygen KEY.pem`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Any:
    """The Ed25519 public key in a PEM file (the `.pub` written by `autocompress keygen`)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _read_key_file(path, "public key")
    try:
        key = load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise UserError(f"{path}: not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def _read_key_file(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read the {what} ({error.strerror})") from None


def sign_manifest(folder: Path, private_key: Any) -> Path:
    """Write `manifest.sig`, the Ed25519 signature of `manifest.json`'s bytes.

    `private_key` is a key from `load_private_key` or the path of its PEM file. The
    signature file replaces any earlier one in a single rename.
    """
    folder = Path(folder)
    if isinstance(private_key, str | Path):
        private_key = load_private_key(private_key)
    signature = private_key.sign((folder / MANIFEST).read_bytes())
    handle, staged = tempfile.mkstemp(prefix=f".{SIGNATURE}.", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(signature)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staged, 0o666 & ~umask)  # like the other files of the export
        os.replace(staged, folder / SIGNATURE)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
    return folder / SIGNATURE


def signature_problem(folder: Path, public_key: str | Path) -> str | None:
    """Why `folder`'s `manifest.sig` is not a valid signature under `public_key`, or None."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key)
    signature = Path(folder) / SIGNATURE
    if signature.is_symlink() or not signature.is_file():
        return f"unsigned: no {SIGNATURE}, and --public-key {public_key} asks for a signature"
    try:
        key.verify(signature.read_bytes(), (Path(folder) / MANIFEST).read_bytes())
    except InvalidSignature:
        return (
            f"bad signature: {SIGNATURE} is not a signature of {MANIFEST} by the key of "
            f"{public_key} (the manifest was rewritten, or signed with another key)"
        )
    return None


def generate_keypair(private_path: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key (PEM, mode 0600) and its public key beside it.

    The public key goes to the same name with the suffix `.pub` (`signing.pem` ->
    `signing.pub`, `key` -> `key.pub`). Refuses to overwrite either file.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path = Path(private_path)
    public_path = private_path.with_suffix(".pub")
    if public_path == private_path:
        raise UserError(f"{private_path}: name the private key something other than *.pub")
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise UserError(f"{path} already exists; it is left as it is. Choose another name")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink()
        raise
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never replacing anything, even in a race) with `mode` and `data`."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        message = f"{path} already exists; it is left as it is. Choose another name"
        raise UserError(message) from None
    with os.fdopen(handle, "wb") as out:
        os.fchmod(out.fileno(), mode)
        out.write(data)
