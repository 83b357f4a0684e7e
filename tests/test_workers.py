"""A worker killed mid-trial: its trial is failed by the next worker and run again.
A worker stopped with SIGTERM fails its own trial, says why, and exits 143.

The worker is a real `autocompress run` process, killed with SIGKILL (as the OOM
killer or a lost node would) or stopped with SIGTERM (as `kill` or a scheduler
would), on a real SQLite study; nothing is simulated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

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


def _stop_during_a_trial(
    study_file: Path, storage_url: str, cwd: Path, signum: int
) -> tuple[int, int, str]:
    """Start a worker and send it `signum` while a student trial runs: that trial's
    number, the worker's exit code and what it printed on stderr."""
    for _ in range(3):  # a trial may finish between the poll and the signal: try again
        worker = subprocess.Popen(
            [sys.executable, "-m", "autocompress", "run", str(study_file), "--no-export"],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        try:
            while worker.poll() is None and time.monotonic() < deadline:
                if (trial := _running_student(storage_url)) is not None:
                    os.kill(worker.pid, signum)
                    _, stderr = worker.communicate(timeout=120)
                    if _state(storage_url, trial.number) in (TrialState.RUNNING, TrialState.FAIL):
                        return trial.number, worker.returncode, stderr
                    break
                time.sleep(0.02)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    pytest.fail(f"could not signal the worker while a student trial was running ({signum})")


def _state(storage_url: str, number: int) -> TrialState:
    study = optuna.load_study(study_name="tiny", storage=optuna_storage(storage_url))
    return study.trials[number].state


def test_killed_worker_trial_is_failed_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_table: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    study = tiny_study_dict(tmp_path, n_trials=50, workers=HEARTBEAT)
    study_file = write_study(tmp_path, study)
    killed_number, _, _ = _stop_during_a_trial(
        study_file, study["storage"], tmp_path, signal.SIGKILL
    )
    assert _state(study["storage"], killed_number) == TrialState.RUNNING  # nobody failed it

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
    fault_table.record(
        "killed worker",
        f"`kill -9` of a worker while trial {killed_number} ran",
        f"the next worker failed trial {killed_number} after its stale heartbeat and ran "
        f"it again as trial {retry.number} ({retry.state.name}); 0 RUNNING",
    )


def test_sigterm_fails_the_running_trial_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_table: Any
) -> None:
    """A scheduler's stop (SIGTERM) ends the run like Ctrl-C: the trial is failed with
    the reason at once, not left RUNNING for a heartbeat to find."""
    monkeypatch.chdir(tmp_path)
    study = tiny_study_dict(tmp_path, n_trials=50, workers=HEARTBEAT)
    study_file = write_study(tmp_path, study)
    number, code, stderr = _stop_during_a_trial(
        study_file, study["storage"], tmp_path, signal.SIGTERM
    )
    assert code == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr
    stopped = optuna.load_study(study_name="tiny", storage=optuna_storage(study["storage"]))
    trial = stopped.trials[number]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failed_reason"] == "stopped by SIGTERM"
    assert not stopped.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    said = next(line for line in stderr.splitlines() if "stopped" in line)
    fault_table.record(
        "killed worker",
        f"SIGTERM to a worker while trial {number} ran",
        f"exit {code}: '{said.strip()}'; trial {number} FAILED with failed_reason "
        "'stopped by SIGTERM', 0 RUNNING",
    )


def test_a_stop_while_optuna_records_a_trial_is_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised while Optuna creates or records a trial, a stop breaks Optuna's own state
    handling (trials left RUNNING, "Should not reach"): there it is re-sent a moment
    later; inside our objective, and outside any trial, it is raised at once."""
    import optuna.study._optimize as optimize

    from autocompress import search
    from autocompress.cli._common import _in_trial_bookkeeping

    frames: dict[str, FrameType] = {}

    def spy(name: str, wrapped: Callable) -> Callable:
        def capture(*args: object, **kwargs: object) -> object:
            frames[name] = sys._getframe()
            return wrapped(*args, **kwargs)

        return capture

    monkeypatch.setattr(optimize, "_tell_with_warning", spy("tell", optimize._tell_with_warning))
    monkeypatch.setattr(search, "evaluate_recipe", spy("objective", search.evaluate_recipe))
    monkeypatch.chdir(tmp_path)
    run_study(write_study(tmp_path, tiny_study_dict(tmp_path, n_trials=2)))

    assert _in_trial_bookkeeping(frames["tell"])
    assert not _in_trial_bookkeeping(frames["objective"])
    assert not _in_trial_bookkeeping(sys._getframe())


def test_reading_a_study_sends_no_heartbeats(tmp_path: Path) -> None:
    """Readers (front, export, dashboard) open the storage without heartbeats."""
    storage = optuna_storage(f"sqlite:///{tmp_path / 'read.db'}")
    assert storage.get_heartbeat_interval() is None
