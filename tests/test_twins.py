"""Earlier trials with the same params, found without reading the study once per trial."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest
from optuna.trial import Trial, TrialState

import autocompress.twins as twins_module
from autocompress.store import optuna_storage
from autocompress.twins import EarlierTwins

CHOICES = [1, 2, 3, 4, 5, 6]


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    storage = optuna_storage(f"sqlite:///{tmp_path / 'twins.db'}")
    return optuna.create_study(study_name="twins", storage=storage)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The trial numbers each call reads (the real read, recorded)."""
    seen: list[list[int]] = []
    real = twins_module.params_by_numbers

    def recorded(study: optuna.Study, numbers):  # noqa: ANN001, ANN202
        wanted = sorted(numbers)
        seen.append(wanted)
        yield from real(study, wanted)

    monkeypatch.setattr(twins_module, "params_by_numbers", recorded)
    return seen


def ask(study: optuna.Study, x: int | None) -> Trial:
    trial = study.ask()
    if x is not None:
        trial.suggest_categorical("x", CHOICES)  # enqueued below: fixed to x
    return trial


def with_x(study: optuna.Study, x: int) -> Trial:
    study.enqueue_trial({"x": x})
    return ask(study, x)


def test_finds_the_earliest_complete_pruned_running_or_waiting_twin_and_skips_failed(
    study: optuna.Study, reads: list[list[int]]
) -> None:
    twins = EarlierTwins()
    done = with_x(study, 1)
    study.tell(done, 0.5)  # 0: complete, x=1
    running = with_x(study, 2)  # 1: running, x=2
    failed = with_x(study, 3)
    study.tell(failed, state=TrialState.FAIL)  # 2: failed, x=3
    growing = ask(study, None)  # 3: running, no params yet (define-by-run)

    first = with_x(study, 1)  # 4
    twin = twins.earlier(first)
    assert twin is not None and (twin.number, twin.state) == (0, TrialState.COMPLETE)
    study.tell(first, state=TrialState.PRUNED)
    assert reads[-1] == [0, 1, 2, 3]

    second = with_x(study, 2)  # 5: its twin is still running
    twin = twins.earlier(second)
    assert twin is not None and (twin.number, twin.state) == (1, TrialState.RUNNING)
    assert reads[-1] == [1, 3, 4]  # the new one and those unfinished before, only
    study.tell(second, state=TrialState.PRUNED)

    assert twins.earlier(with_x(study, 3)) is None  # 6: only a failed trial had x=3

    # Trial 3 gets its params after it was first read; trial 1 ends pruned.
    growing.suggest_categorical("x", CHOICES)
    study.tell(running, state=TrialState.PRUNED)
    x = growing.params["x"]
    late = with_x(study, x)
    twin = twins.earlier(late)
    earliest = min(
        t.number for t in study.get_trials() if t.params == {"x": x} and t.number < late.number
    )
    assert twin is not None and twin.number == earliest
    again = with_x(study, 2)
    twin = twins.earlier(again)
    assert twin is not None and (twin.number, twin.state) == (1, TrialState.PRUNED)

    # Every trial was read once, plus the unfinished ones again: never the whole study.
    assert sum(len(r) for r in reads) < 2 * len(study.get_trials())


def test_a_retried_trial_and_a_trial_without_params_have_no_twin(study: optuna.Study) -> None:
    twins = EarlierTwins()
    done = with_x(study, 1)
    study.tell(done, 0.5)
    assert twins.earlier(ask(study, None)) is None
    retried = with_x(study, 1)
    study._storage.set_trial_system_attr(retried._trial_id, "failed_trial", done.number)
    assert twins.earlier(retried) is None


def test_matches_a_scan_of_every_trial(study: optuna.Study) -> None:
    """Against the plain definition, over a random mix of states and repeats."""
    rng = random.Random(0)
    twins = EarlierTwins()
    for _ in range(40):
        trial = with_x(study, rng.choice(CHOICES))
        earlier = [
            t
            for t in study.get_trials()
            if t.number < trial.number
            and t.params == trial.params
            and t.state
            in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        ]
        twin = twins.earlier(trial)
        assert (twin.number if twin else None) == (earlier[0].number if earlier else None)
        ending = rng.choice(["complete", "pruned", "fail", "running"])
        if ending == "complete":
            study.tell(trial, rng.random())
        elif ending == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif ending == "fail":
            study.tell(trial, state=TrialState.FAIL)
