"""A worker killed mid-trial: its trial is failed by the next worker and run again.

The worker is a real `autocompress run` process, killed with SIGKILL (as the OOM
killer or a lost node would), on a real SQLite study; nothing is simulated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from autocompress import run_study
from autocompress.store import optuna_storage
from tests.conftest import tiny_study_dict, write_study

HEARTBEAT = {"heartbeat_interval_s": 1, "grace_period_s": 3, "max_retry": 1}


def _running_student(storage_url: str) -> optuna.trial.FrozenTrial | None:
    """A running trial past the teacher whose params are already chosen, if any."""
    try:
        study = optuna.load_study(study_name="tiny", storage=optuna_storage(storage_url))
    except KeyError:
        return None
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return next((t for t in running if t.number > 0 and t.params), None)


def _kill_during_a_trial(study_file: Path, storage_url: str, cwd: Path) -> int:
    """Start a worker, SIGKILL it while a student trial runs; the killed trial's number."""
    for _ in range(3):  # a trial may finish between the poll and the kill: try again
        worker = subprocess.Popen(
            [sys.executable, "-m", "autocompress", "run", str(study_file), "--no-export"],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        try:
            while worker.poll() is None and time.monotonic() < deadline:
                if (trial := _running_student(storage_url)) is not None:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.wait()
                    if _running_student(storage_url) is not None:
                        return trial.number
                    break
                time.sleep(0.02)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    pytest.fail("could not kill the worker while a student trial was running")


def test_killed_worker_trial_is_failed_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    study = tiny_study_dict(tmp_path, n_trials=50, workers=HEARTBEAT)
    study_file = write_study(tmp_path, study)
    killed_number = _kill_during_a_trial(study_file, study["storage"], tmp_path)

    time.sleep(HEARTBEAT["grace_period_s"] + 1)  # the dead worker's last beat is now stale
    result = run_study(study_file, n_trials=2)

    trials = result.study.get_trials(deepcopy=False)
    killed = trials[killed_number]
    assert killed.state == TrialState.FAIL  # failed by the second worker, not left RUNNING
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retries) == 1
    (retry,) = retries
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == killed_number
    # the same choices; any the killed worker had not made yet are sampled afresh
    assert killed.params and killed.params.items() <= retry.params.items()
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert not result.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def test_reading_a_study_sends_no_heartbeats(tmp_path: Path) -> None:
    """Readers (front, export, dashboard) open the storage without heartbeats."""
    storage = optuna_storage(f"sqlite:///{tmp_path / 'read.db'}")
    assert storage.get_heartbeat_interval() is None
