"""Exports never delete a user's file, manifests stay inside their folder, signatures.

One tiny real study (real SQLite, onnxruntime, German credit data), run once through the
real CLI; every command below is the real `autocompress` in a separate process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from autocompress import UserError, load_result, verify
from autocompress.manifest import SIGNATURE, file_sha256, manifest_files, write_manifest
from tests.conftest import autocompress_cli, tiny_study_dict, write_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-safety")


@pytest.fixture(scope="module")
def first_run(study_dir: Path) -> subprocess.CompletedProcess[str]:
    """`autocompress run` of a 3-trial study; its export lands in study_dir/exports/tiny."""
    path = write_study(study_dir, tiny_study_dict(study_dir, n_trials=3))
    process = autocompress_cli("run", str(path), cwd=study_dir)
    assert process.returncode == 0, process.stderr
    return process


@pytest.fixture(scope="module")
def study_file(study_dir: Path, first_run: subprocess.CompletedProcess[str]) -> Path:
    return study_dir / "study.yaml"


def first_line(process: subprocess.CompletedProcess[str]) -> str:
    return process.stderr.strip().splitlines()[0]


def one_line(process: subprocess.CompletedProcess[str]) -> str:
    return " ".join(process.stdout.split())


def export(study_file: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return autocompress_cli("export", str(study_file), "--out", str(out), *args, cwd=out.parent)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")}


def trial_of(folder: Path) -> int:
    return yaml.safe_load((folder / "config.yaml").read_text())["study"]["trial_number"]


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def good_export(study_file: Path, study_dir: Path) -> Path:
    """A verified export to copy from (never modified)."""
    out = study_dir / "good"
    process = export(study_file, out)
    assert process.returncode == 0, process.stderr
    return out


# --- never delete a user's file ------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_export_onto_a_folder_with_a_users_notes_is_refused(
    study_file: Path, study_dir: Path, overwrite: bool, fault_table
) -> None:
    out = study_dir / f"notes-{overwrite}"
    out.mkdir()
    notes = b"my notes, not an export\n" * 10
    (out / "notes.txt").write_bytes(notes)
    process = export(study_file, out, *(["--overwrite"] if overwrite else []))
    assert process.returncode == 2, process.stdout + process.stderr
    assert str(out) in process.stderr
    assert "choose another --out" in process.stderr.lower()
    if overwrite:
        assert "not an autocompress export (notes.txt)" in process.stderr
        assert "move those files away" in process.stderr
    assert snapshot(out) == {"notes.txt": notes}
    assert not list(study_dir.glob(f".{out.name}.*")), "no staging folder left behind"
    flag = " --overwrite" if overwrite else ""
    fault_table.record(
        area="exports",
        tried=f"export{flag} onto a folder holding a user's notes.txt",
        result=f"exit 2: '{first_line(process)}'; notes.txt untouched (byte-identical)",
    )


def test_export_onto_a_plain_file_is_refused(
    study_file: Path, study_dir: Path, fault_table
) -> None:
    out = study_dir / "a-file"
    out.write_bytes(b"a plain file where the export would go\n")
    process = export(study_file, out, "--overwrite")
    assert process.returncode == 2
    assert f"{out} is a file, not a folder" in process.stderr
    assert out.is_file() and out.read_bytes() == b"a plain file where the export would go\n"
    fault_table.record(
        area="exports",
        tried="export --overwrite onto a plain file",
        result=f"exit 2: '{first_line(process)}'; the file is intact",
    )


def test_export_onto_a_symlink_is_refused(study_file: Path, study_dir: Path, fault_table) -> None:
    target = study_dir / "linked-target"
    target.mkdir()
    out = study_dir / "a-link"
    out.symlink_to(target, target_is_directory=True)
    process = export(study_file, out, "--overwrite")
    assert process.returncode == 2
    assert f"{out} is a symlink" in process.stderr
    assert out.is_symlink() and os.readlink(out) == str(target)
    assert list(target.iterdir()) == []
    fault_table.record(
        area="exports",
        tried="export --overwrite onto a symlink to an empty folder",
        result=f"exit 2: '{first_line(process)}'; link and its target untouched",
    )


@pytest.mark.parametrize("edit", ["changed-model", "extra-file"])
def test_export_onto_an_edited_export_is_refused(
    study_file: Path, good_export: Path, study_dir: Path, edit: str, fault_table
) -> None:
    out = study_dir / f"edited-{edit}"
    shutil.copytree(good_export, out)
    if edit == "changed-model":
        flip_a_byte(out / "model.onnx")
        expected, tried = "changed: model.onnx", "an export whose model.onnx was edited"
    else:
        (out / "results.csv").write_text("someone's own results\n")
        expected, tried = "not in manifest: results.csv", "an export holding an extra file"
    before = snapshot(out)
    process = export(study_file, out, "--overwrite")
    assert process.returncode == 2
    assert "export whose files no longer match its manifest" in process.stderr
    assert expected in process.stderr
    assert snapshot(out) == before
    fault_table.record(
        area="exports",
        tried=f"export --overwrite onto {tried}",
        result=f"exit 2: '{first_line(process)}'; folder untouched",
    )


def test_export_onto_an_empty_folder(study_file: Path, study_dir: Path, fault_table) -> None:
    out = study_dir / "empty"
    out.mkdir()
    refused = export(study_file, out)
    assert refused.returncode == 2
    assert "already exists; choose another --out or pass --overwrite" in refused.stderr

    process = export(study_file, out, "--overwrite")
    assert process.returncode == 0, process.stderr
    assert verify(out) == 4
    assert f"exported trial {trial_of(out)} (policy fastest) to {out}" in one_line(process)
    fault_table.record(
        area="exports",
        tried="export (no --overwrite) onto an existing empty folder",
        result=f"exit 2: '{first_line(refused)}'; with --overwrite: exit 0, folder verifies",
    )


def test_re_export_onto_its_own_previous_export(study_file: Path, study_dir: Path) -> None:
    out = study_dir / "again"
    assert export(study_file, out).returncode == 0
    process = export(study_file, out, "--overwrite", "--policy", "most_accurate")
    assert process.returncode == 0, process.stderr
    assert verify(out) == 4
    trial = trial_of(out)
    assert f"exported trial {trial} (policy most_accurate) to {out}" in one_line(process)
    assert not list(study_dir.glob(".again.*")), "no staging or retired folder left behind"


def test_run_prints_the_trial_and_refreshes_its_own_export(
    study_file: Path, study_dir: Path, first_run: subprocess.CompletedProcess[str]
) -> None:
    out = study_dir / "exports" / "tiny"
    assert f"exported trial {trial_of(out)} (policy fastest) to {out}" in one_line(first_run)
    before = len(load_result(study_file).study.trials)
    second = autocompress_cli("run", str(study_file), "--n-trials", "1", cwd=study_dir)
    assert second.returncode == 0, second.stderr
    assert verify(out) == 4
    assert f"exported trial {trial_of(out)} (policy fastest) to {out}" in one_line(second)
    assert len(load_result(study_file).study.trials) == before + 1


def test_run_does_not_export_over_a_users_folder(
    study_file: Path, study_dir: Path, fault_table
) -> None:
    users = study_dir / "users-exports"
    (users / "tiny").mkdir(parents=True)
    (users / "tiny" / "notes.txt").write_text("keep me\n")
    study = yaml.safe_load(study_file.read_text())
    study["export"]["dir"] = str(users)
    path = write_study(study_dir, study, "users.yaml")
    process = autocompress_cli("run", str(path), "--n-trials", "1", cwd=study_dir)
    assert process.returncode == 2
    assert f"{users / 'tiny'} holds files that are not an autocompress export" in process.stderr
    assert snapshot(users / "tiny") == {"notes.txt": b"keep me\n"}
    fault_table.record(
        area="exports",
        tried="run whose export folder already holds a user's notes.txt",
        result=f"exit 2 after the trials: '{first_line(process)}'; notes.txt untouched",
    )


# --- manifest entries stay inside the folder ------------------------------------------


def add_entry(folder: Path, name: str, content_of: Path) -> None:
    """List `name` in the manifest with the sha256 of `content_of` (so only where it
    points can make verify refuse it)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {
        "sha256": file_sha256(content_of),
        "bytes": content_of.stat().st_size,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlinked-folder", "symlinked-file"])
def test_verify_refuses_entries_outside_the_folder(
    good_export: Path, tmp_path: Path, case: str, fault_table
) -> None:
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    outside = outside_dir / "outside.txt"
    outside.write_text("a file that is not part of the export\n")
    folder = tmp_path / "export"
    shutil.copytree(good_export, folder)
    if case == "dotdot":
        shutil.copy(outside, tmp_path / "outside.txt")
        entry, tried = "../outside.txt", "a manifest entry ../outside.txt"
    elif case == "absolute":
        entry, tried = str(outside), "a manifest entry with an absolute path"
    elif case == "symlinked-folder":
        (folder / "sub").symlink_to(outside_dir, target_is_directory=True)
        entry, tried = "sub/outside.txt", "a manifest entry through a symlinked folder leading out"
    else:
        (folder / "notes.onnx").symlink_to(outside)
        entry, tried = "notes.onnx", "a listed symlinked file pointing outside the folder"
    add_entry(folder, entry, outside)
    process = autocompress_cli("verify", str(folder))
    assert process.returncode == 1, process.stdout
    assert f"outside the folder: {entry}" in process.stderr
    problem = next(line for line in process.stderr.splitlines() if entry in line).strip()
    fault_table.record(
        area="exports",
        tried=f"verify an export with {tried}",
        result=f"exit 1: '{first_line(process)}' / '{problem}'",
    )


def test_verify_names_an_unlisted_symlink_and_write_manifest_refuses_one(
    good_export: Path, tmp_path: Path, fault_table
) -> None:
    folder = tmp_path / "export"
    shutil.copytree(good_export, folder)
    (folder / "hostname").symlink_to("/etc/hostname")
    process = autocompress_cli("verify", str(folder))
    assert process.returncode == 1
    assert "not in manifest: hostname (a symlink to /etc/hostname)" in process.stderr
    with pytest.raises(UserError, match="is a symlink; a manifest lists regular files only"):
        write_manifest(folder)
    assert "hostname" not in manifest_files(folder)
    problem = next(line for line in process.stderr.splitlines() if "hostname" in line).strip()
    fault_table.record(
        area="exports",
        tried="verify / write_manifest on an export holding a symlink to /etc/hostname",
        result=f"verify exit 1: '{first_line(process)}' / '{problem}'; write_manifest raises "
        "UserError",
    )


# --- signatures ---------------------------------------------------------------------


def test_signing_round_trip(study_file: Path, study_dir: Path, tmp_path: Path, fault_table) -> None:
    keys = tmp_path / "keys"
    made = autocompress_cli("keygen", str(keys / "signing.pem"))
    assert made.returncode == 0, made.stderr
    private, public = keys / "signing.pem", keys / "signing.pub"
    assert (private.stat().st_mode & 0o777) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()

    again = autocompress_cli("keygen", str(private))
    assert again.returncode == 2 and f"{private} already exists" in again.stderr
    assert b"PRIVATE KEY" in private.read_bytes()

    out = study_dir / "signed"
    process = export(study_file, out, "--sign-key", str(private))
    assert process.returncode == 0, process.stderr
    assert f"signed with {private}" in one_line(process)
    assert (out / SIGNATURE).is_file() and SIGNATURE not in manifest_files(out)
    checked = autocompress_cli("verify", str(out), "--public-key", str(public))
    assert checked.returncode == 0, checked.stderr
    assert "manifest.sig is a valid signature" in one_line(checked)
    plain = autocompress_cli("verify", str(out))
    assert plain.returncode == 0 and "signed (manifest.sig not checked" in one_line(plain)

    # Re-export onto the signed export: it verifies, so it may be replaced (and re-signed).
    process = export(study_file, out, "--overwrite", "--sign-key", str(private))
    assert process.returncode == 0, process.stderr

    # Someone else's key: the signature does not match.
    other = autocompress_cli("keygen", str(keys / "other.pem"))
    assert other.returncode == 0
    wrong = autocompress_cli("verify", str(out), "--public-key", str(keys / "other.pub"))
    assert wrong.returncode == 1 and "bad signature" in wrong.stderr

    # Rewrite the model and the manifest together: hashes agree, the signature does not.
    flip_a_byte(out / "model.onnx")
    write_manifest(out)
    assert autocompress_cli("verify", str(out)).returncode == 0
    forged = autocompress_cli("verify", str(out), "--public-key", str(public))
    assert forged.returncode == 1
    assert "bad signature: manifest.sig is not a signature of manifest.json" in forged.stderr

    unsigned_dir = study_dir / "unsigned"
    assert export(study_file, unsigned_dir).returncode == 0
    assert "; unsigned" in one_line(autocompress_cli("verify", str(unsigned_dir)))
    unsigned = autocompress_cli("verify", str(unsigned_dir), "--public-key", str(public))
    assert unsigned.returncode == 1 and "unsigned: no manifest.sig" in unsigned.stderr

    bad_key = export(study_file, study_dir / "never", "--sign-key", str(public))
    assert bad_key.returncode == 2 and "not an unencrypted PEM private key" in bad_key.stderr
    assert not (study_dir / "never").exists()

    def line(process: subprocess.CompletedProcess[str], word: str) -> str:
        return next(x for x in process.stderr.splitlines() if word in x).strip()

    for tried, result in [
        ("keygen onto an existing private key", f"exit 2: '{first_line(again)}'; key kept"),
        ("verify --public-key with another key's .pub", f"exit 1: '{line(wrong, 'bad')}'"),
        (
            "verify --public-key after rewriting model.onnx and regenerating manifest.json",
            f"exit 1: '{line(forged, 'bad')}' (plain verify exits 0)",
        ),
        (
            "verify --public-key on an unsigned export",
            f"exit 1: '{line(unsigned, 'unsigned: no')}'",
        ),
        (
            "export --sign-key given the public key",
            f"exit 2: '{first_line(bad_key)}'; nothing written",
        ),
    ]:
        fault_table.record(area="exports", tried=tried, result=result)


def test_export_trial_signs_with_an_api_key(
    study_file: Path, study_dir: Path, tmp_path: Path
) -> None:
    from autocompress.api import artifact_store
    from autocompress.export import export_trial
    from autocompress.manifest import generate_keypair

    private, public = generate_keypair(tmp_path / "api.pem")
    result = load_result(study_file)
    trial = result.study.trials[0]
    out = study_dir / "api-signed"
    export_trial(
        trial, result.loaded, artifact_store(result.loaded), out, "trial:0", {}, sign_key=private
    )
    assert verify(out, public_key=public) == 4
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "manifest.json",
        "manifest.sig",
        "metrics.json",
        "model.onnx",
        "preprocessing.json",
    ]


def test_version() -> None:
    from autocompress import __version__

    process = autocompress_cli("--version")
    assert process.returncode == 0
    assert process.stdout.strip() == f"autocompress {__version__}"
