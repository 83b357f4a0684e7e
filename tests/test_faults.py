"""Faults a platform team hits in the first week, done for real.

Real `autocompress run` processes; a PostgreSQL server of the test's own (started
with `.ci/postgres.sh`, restarted and stopped with `pg_ctl`); a real 2 MB tmpfs for a
full disk; real concurrent starts. Each test counts what matters: trials lost, left
RUNNING, run twice with the same params, tracebacks printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from autocompress.store import optuna_storage
from tests.conftest import (
    REPO,
    autocompress_cli,
    postgres_url_or_skip,
    tiny_study_dict,
    write_study,
)

POSTGRES_SCRIPT = REPO / ".ci" / "postgres.sh"
# Small and quick: the teacher trains in seconds, a student trains for at most 2 epochs.
QUICK_SPACE: dict[str, Any] = {
    "pruning_ratio": {"low": 0.0, "high": 0.8, "step": 0.1},
    "pruning_importance": {"choices": ["l1", "l2"]},
    "finetune_epochs": {"low": 0, "high": 2},
    "kd_temperature": {"low": 1.0, "high": 4.0},
    "kd_alpha": {"low": 0.0, "high": 1.0},
    "bits": {"choices": [32, 8]},
    "int8_mode": {"choices": ["static"]},
    "per_channel": {"choices": [False]},
}


def quick_study(tmp_path: Path, storage: str, n_trials: int, **overrides: Any) -> Path:
    study = tiny_study_dict(
        tmp_path, storage=storage, n_trials=n_trials, search_space=QUICK_SPACE, **overrides
    )
    return write_study(tmp_path, study)


def start_worker(study_file: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autocompress", "run", str(study_file), "--no-export", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def trials_of(storage_url: str, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    storage = optuna_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


def duplicated_params(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[int, int]]:
    """Pairs of trials that ran the same params (a retried trial repeats on purpose)."""
    ran = [
        t
        for t in trials
        if t.params and t.state == TrialState.COMPLETE and "failed_trial" not in t.system_attrs
    ]
    return [
        (a.number, b.number)
        for i, a in enumerate(ran)
        for b in ran[i + 1 :]
        if a.params == b.params
    ]


def first_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    return lines[0] if lines else stderr.strip().splitlines()[-1]


@contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    name = f"autocompress_fault_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL server this test alone may restart and stop: (URL, cluster folder).

    The cluster lives in a folder of its own under the system's temporary folder: the
    server runs as the `postgres` user, which cannot enter pytest's root-only folders.
    """
    if not os.environ.get("AUTOCOMPRESS_CI"):
        postgres_url_or_skip()  # outside CI, only where a server is set up at all
    folder = Path(tempfile.mkdtemp(prefix="autocompress-pg-"))
    port = str(56000 + os.getpid() % 1000)
    started = subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), "start", str(folder), port],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"could not start a PostgreSQL server: {started.stderr}")
        yield started.stdout.strip().splitlines()[-1], folder
    finally:
        subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", str(folder)], timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def postgres(action: str, folder: Path) -> None:
    subprocess.run(["bash", str(POSTGRES_SCRIPT), action, str(folder)], check=True, timeout=120)


def wait_for_trials(storage_url: str, count: int, worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            done = [t for t in trials_of(storage_url) if t.state.is_finished()]
        except Exception:  # the study does not exist yet
            done = []
        if len(done) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"the worker did not finish {count} trials (exit {worker.poll()})")


# --- concurrent starts -------------------------------------------------------------


def test_workers_started_together_on_a_fresh_postgres_database(
    tmp_path: Path, fault_table: Any
) -> None:
    with fresh_database(postgres_url_or_skip()) as url:
        study_file = quick_study(tmp_path, url, n_trials=3)
        workers = [start_worker(study_file, tmp_path) for _ in range(3)]
        outputs = [worker.communicate(timeout=900) for worker in workers]
        codes = [worker.returncode for worker in workers]
        trials = trials_of(url)
    assert codes == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert not any("Traceback" in err for _, err in outputs)
    teachers = [t for t in trials if t.user_attrs.get("role") == "teacher"]
    assert len(teachers) == 1
    assert len(trials) == 9
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert duplicated_params(trials) == []
    fault_table.record(
        "concurrent starts",
        "3 workers started at once on a fresh PostgreSQL database (3 trials each)",
        f"all exit 0; {len(trials)} trials, teacher queued {len(teachers)}×, "
        "0 RUNNING, 0 duplicated params, no traceback",
    )


def test_two_processes_on_one_sqlite_study_queue_the_teacher_once(
    tmp_path: Path, fault_table: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = quick_study(tmp_path, url, n_trials=2)
    workers = [start_worker(study_file, tmp_path) for _ in range(2)]
    outputs = [worker.communicate(timeout=900) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    trials = trials_of(url)
    teachers = [t for t in trials if t.user_attrs.get("role") == "teacher"]
    assert len(teachers) == 1
    assert duplicated_params(trials) == []
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    fault_table.record(
        "concurrent starts",
        "2 workers started at once on one SQLite study",
        f"both exit 0; teacher queued {len(teachers)}×, {len(trials)} trials, 0 duplicated params",
    )


def test_resumed_run_does_not_replay_the_first_runs_recipes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_table: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = quick_study(tmp_path, url, n_trials=4)
    for _ in range(2):  # "run the same command again"
        result = autocompress_cli("run", str(study_file), "--no-export", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    trials = trials_of(url)
    first = [t.params for t in trials[1:4]]
    second = [t.params for t in trials[4:]]
    assert len(trials) == 8
    assert not [p for p in second if p in first]
    assert duplicated_params(trials) == []
    fault_table.record(
        "repeated trials",
        "the same `run` command twice on one SQLite study (4 trials each)",
        f"{len(trials)} trials, the resume proposed none of the first run's 3 recipes; "
        "0 duplicated params",
    )


# --- the database blinks ------------------------------------------------------------


def test_postgres_restart_mid_study_loses_no_trial(
    tmp_path: Path, own_postgres: tuple[str, Path], fault_table: Any
) -> None:
    url, cluster = own_postgres
    study_file = quick_study(tmp_path, url, n_trials=6)
    worker = start_worker(study_file, tmp_path)
    wait_for_trials(url, 2, worker)
    restarted = time.monotonic()
    postgres("restart", cluster)
    downtime = time.monotonic() - restarted
    stdout, stderr = worker.communicate(timeout=900)
    trials = trials_of(url)
    assert worker.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    assert len(trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [
        (t.number, t.state.name) for t in trials
    ]
    retries = (stdout + stderr).count("retrying in")  # logged where the run logs
    fault_table.record(
        "database blinks",
        f"`pg_ctl restart -m fast` ({downtime:.1f} s) after 2 of 6 trials",
        f"exit 0; 6 of 6 trials recorded, 0 RUNNING, 0 FAIL; {retries} retried calls logged",
    )


def test_postgres_down_for_longer_than_the_retries(
    tmp_path: Path, own_postgres: tuple[str, Path], fault_table: Any
) -> None:
    url, cluster = own_postgres
    workers = {"heartbeat_interval_s": 1, "grace_period_s": 3, "max_retry": 1, "db_retry_s": 3}
    study_file = quick_study(tmp_path, url, n_trials=5, workers=workers)
    worker = start_worker(study_file, tmp_path)
    wait_for_trials(url, 2, worker)
    postgres("halt", cluster)
    try:
        _, stderr = worker.communicate(timeout=600)
    finally:
        postgres("resume", cluster)
    assert worker.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr
    message = first_line(stderr)
    assert "lost the database" in message and "workers.db_retry_s (3 s)" in message
    assert "updated_state" not in message  # the database's own words, not Optuna's aftermath
    # The same command again, with the database back: the trial the outage interrupted
    # is failed (its heartbeat went stale) and run again; nothing stays RUNNING.
    time.sleep(4)
    again = start_worker(study_file, tmp_path)
    _, stderr_again = again.communicate(timeout=900)
    assert again.returncode == 0, stderr_again[-3000:]
    trials = trials_of(url)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert duplicated_params(trials) == []
    fault_table.record(
        "database blinks",
        "PostgreSQL stopped mid-study for longer than workers.db_retry_s (3 s)",
        f"exit 75: '{message}'; after the same command again: {len(trials)} trials, 0 RUNNING",
    )


# --- a full disk --------------------------------------------------------------------


@contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        if os.environ.get("AUTOCOMPRESS_CI"):
            pytest.fail(f"CI must be able to mount a tmpfs: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill the file system at `disk` but for about `leave_bytes`."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with open(disk / "filler", "ab") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))


def test_full_disk_while_caching_the_teacher(tmp_path: Path, fault_table: Any) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with small_tmpfs(tmp_path / "small") as small:
        (small / "artifacts").mkdir()
        fill(small, 0)
        study_file = quick_study(tmp_path, url, n_trials=2, artifacts_dir=str(small / "artifacts"))
        result = autocompress_cli("run", str(study_file), "--no-export", cwd=tmp_path)
        leftovers = [p for p in (small / "artifacts").rglob("*") if p.is_file()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = first_line(result.stderr)
    assert "disk full while preparing the teacher" in message
    assert leftovers == []
    assert not [t for t in trials_of(url) if t.state == TrialState.RUNNING]
    fault_table.record(
        "full disk",
        "artifacts_dir on a full 2 MB tmpfs (the teacher cannot be cached)",
        f"exit 2: '{message}'; no file left in artifacts_dir, 0 RUNNING",
    )


def test_full_disk_mid_study_fails_the_trial_with_one_message(
    tmp_path: Path, fault_table: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with small_tmpfs(tmp_path / "small") as small:
        study_file = quick_study(tmp_path, url, n_trials=1, artifacts_dir=str(small / "artifacts"))
        first = autocompress_cli("run", str(study_file), "--no-export", cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]  # the teacher cached, trial 0 kept
        fill(small, 2048)  # too little for the next model
        result = autocompress_cli(
            "run", str(study_file), "--no-export", "--n-trials", "2", cwd=tmp_path
        )
        partial = [p.name for p in small.rglob("*") if p.name.endswith(".partial")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = first_line(result.stderr)
    assert "disk full" in message
    assert partial == []
    trials = trials_of(url)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    assert failed[0].user_attrs["failed_reason"].startswith("disk full")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    fault_table.record(
        "full disk",
        "artifacts_dir's 2 MB tmpfs filled to 2 kB free mid-study",
        f"exit 2: '{message}'; trial {failed[0].number} FAILED with that reason, "
        "0 RUNNING, no partial file",
    )


# --- checked before the first trial -------------------------------------------------


def _refused_before_anything(
    tmp_path: Path, study_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    result = autocompress_cli("run", str(study_file), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "study.db").exists()
    assert not (tmp_path / "artifacts").exists()
    return result


def test_duplicate_yaml_key_names_both_lines(tmp_path: Path, fault_table: Any) -> None:
    study_file = quick_study(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", n_trials=2)
    lines = study_file.read_text().splitlines()
    at = lines.index("n_trials: 2")
    lines.insert(at + 1, "n_trials: 40")
    study_file.write_text("\n".join(lines) + "\n")
    result = _refused_before_anything(tmp_path, study_file)
    message = first_line(result.stderr)
    assert f"key 'n_trials' appears twice in one mapping (lines {at + 1} and {at + 2})" in message
    assert str(study_file) in message
    fault_table.record("bad input", "a study file giving n_trials twice", f"exit 2: '{message}'")


@pytest.mark.parametrize("key", ["export", "artifacts_dir"])
def test_unusable_output_folder_is_found_before_the_first_trial(
    tmp_path: Path, key: str, fault_table: Any
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a user's file\n")
    folder = str(blocker / "inside")
    overrides = {"export": {"dir": folder}} if key == "export" else {"artifacts_dir": folder}
    study_file = quick_study(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 2, **overrides)
    result = _refused_before_anything(tmp_path, study_file)
    message = first_line(result.stderr)
    name = "export.dir" if key == "export" else "artifacts_dir"
    assert f"{study_file}: {name}: {folder} cannot be used" in message
    assert blocker.read_text() == "a user's file\n"
    fault_table.record(
        "bad input", f"{name} inside a plain file", f"exit 2 before any trial: '{message}'"
    )


def test_export_policy_naming_a_trial_that_cannot_exist(tmp_path: Path, fault_table: Any) -> None:
    study_file = quick_study(
        tmp_path,
        f"sqlite:///{tmp_path / 'study.db'}",
        n_trials=3,
        export={"policy": "trial:999", "dir": str(tmp_path / "exports")},
    )
    result = _refused_before_anything(tmp_path, study_file)
    message = first_line(result.stderr)
    assert f"{study_file}: export.policy: trial 999 will not exist" in message
    assert "--policy" not in message
    fault_table.record(
        "bad input", "export.policy: trial:999 in a 3-trial study", f"exit 2: '{message}'"
    )


def test_a_trial_created_but_never_started_is_failed_once_past_the_grace_period(
    tmp_path: Path,
) -> None:
    """What a `create_new_trial` retried after a lost answer leaves: RUNNING, no beat.
    It is failed like a dead worker's trial once older than the grace period; a trial
    just created (its worker about to beat) is left alone."""
    import datetime as dt

    import optuna
    from optuna.storages._heartbeat import fail_stale_trials
    from optuna.trial import create_trial

    from autocompress.config import WorkersConfig
    from autocompress.store import optuna_storage

    url = f"sqlite:///{tmp_path / 'orphans.db'}"
    storage = optuna_storage(url, WorkersConfig(heartbeat_interval_s=1, grace_period_s=2))
    study = optuna.create_study(storage=storage, study_name="orphans")
    old = create_trial(state=TrialState.RUNNING)
    old.datetime_start = dt.datetime.now() - dt.timedelta(seconds=30)
    orphan = storage.create_new_trial(study._study_id, template_trial=old)
    fresh = storage.create_new_trial(study._study_id)
    fail_stale_trials(study)
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan] == TrialState.FAIL
    assert states[fresh] == TrialState.RUNNING
