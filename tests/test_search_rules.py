"""Rules that spend training where it can matter: latency measured before training (and
skipping what cannot change a `fastest` selection), and multi-objective successive
halving. Real studies on the embedded German credit data, real onnxruntime timings."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from optuna_dashboard._note import get_note_from_system_attrs

from autocompress import run_study
from autocompress.config import CostControlConfig
from autocompress.cost_summary import (
    ESTIMATE_ATTR,
    SKIPPED_ATTR,
    cost_control_lines,
    estimate_accuracy,
)
from autocompress.errors import UserError
from autocompress.halving import RungEntry, halving_stop_reason, rungs
from autocompress.latency_estimate import LatencyEstimator
from autocompress.recipe import Recipe
from autocompress.search import VALID_CURVE, EpochMonitor
from autocompress.targets import build_target
from autocompress.tasks import build_task
from tests.conftest import TINY_SPACE, note_md, tiny_study_dict, write_study

# A teacher wide enough that its matrix products, not the graph's fixed costs, set the
# latency: an 80%-pruned student is then clearly faster than the teacher's shape.
WIDE_TEACHER = {"hidden_sizes": [512, 512], "epochs": 3, "patience": 2}
FAST = {"pruning_ratio": 0.8, "pruning_importance": "l2", "finetune_epochs": 0, "bits": 32}
TEACHER_SHAPED = {
    "pruning_ratio": 0.0,
    "finetune_epochs": 1,
    "kd_temperature": 2.0,
    "kd_alpha": 0.5,
    "bits": 32,
}


def _skipping_study(tmp_path: Path) -> Path:
    study = tiny_study_dict(
        tmp_path,
        n_trials=3,
        constraints={"max_accuracy_drop": 1.0},  # every student is within the limits
        cost_control={"skip_slower_than_fastest": True},
        target={"batch_size": 256, "warmup": 5, "repeats": 30},
        warm_start=[FAST, TEACHER_SHAPED],
    )
    study["task"]["teacher"] = WIDE_TEACHER
    return write_study(tmp_path, study)


def test_a_candidate_slower_than_the_fastest_feasible_student_is_not_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_study(_skipping_study(tmp_path), progress=False)
    study = result.study
    teacher, fast, slow = study.trials
    assert fast.state == TrialState.COMPLETE
    estimate = fast.user_attrs[ESTIMATE_ATTR]
    trained = fast.user_attrs["measurement"]["latency_p50_ms"]
    # The trained model is measured again, and that figure is the objective.
    assert fast.values[-1] == pytest.approx(trained)
    assert estimate["trained_ratio"] == pytest.approx(trained / estimate["latency_p50_ms"])
    assert 0.3 < estimate["trained_ratio"] < 3.0  # same shape, same precision

    assert slow.state == TrialState.PRUNED
    fastest = min((teacher, fast), key=lambda t: t.user_attrs["measurement"]["latency_p50_ms"])
    assert slow.user_attrs[SKIPPED_ATTR]["trial"] == fastest.number
    reason = slow.user_attrs["pruned_reason"]
    assert reason.startswith("not trained:")
    assert f"trial {fastest.number}" in reason
    assert slow.user_attrs[ESTIMATE_ATTR]["latency_p50_ms"] >= fastest.values[-1]
    # Confirmed side by side before skipping: both shapes timed again, now.
    check = slow.user_attrs[SKIPPED_ATTR]
    assert check["candidate_ms"] >= check["rival_ms"] > 0
    assert "measurement" not in slow.user_attrs and VALID_CURVE not in slow.user_attrs

    summary = estimate_accuracy(study.trials)
    assert summary is not None and summary["skipped"] == 1 and summary["compared"] == 1
    assert "1 training(s) skipped" in cost_control_lines(study.trials)[0]
    # What a person sees in the trials' notes: the estimate beside the trained latency,
    # and the skipped trial's reason (in its note.md: never on the front, so not in the
    # dashboard's note panel).
    artifacts = result.loaded.config.artifacts_path
    assert "latency before training" in note_md(artifacts, fast)
    assert "not trained:" in note_md(artifacts, slow)
    notes = study._storage.get_study_system_attrs(study._study_id)
    assert get_note_from_system_attrs(notes, slow._trial_id)["body"] == ""


def test_a_stale_cached_estimate_is_overturned_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached figure taken under another load says the candidate is slow; timed beside
    the fastest model, it is faster, so it is trained after all."""
    monkeypatch.chdir(tmp_path)
    first = run_study(_skipping_study(tmp_path), progress=False)
    config = first.loaded.config
    task = build_task(config)
    teacher = task.teacher(config.artifacts_path / "teachers")
    estimator = LatencyEstimator(build_target(config), config.artifacts_path / "latency_estimates")
    fast = Recipe.from_dict(FAST)
    stale = estimator.cache_dir / f"{estimator.estimate(task, teacher, fast).key}.json"
    stale.write_text(json.dumps({"latency_p50_ms": 1000.0}))
    # A check right after an estimate re-times the shapes still loaded: no new export.
    assert estimator.exports == 0  # the first study's run cached FAST's figure on disk
    pair = {"fast": (task, teacher, fast, None), "teacher": (task, teacher, Recipe(), None)}
    first_check = estimator.side_by_side(pair)
    assert estimator.exports == 2
    assert estimator.side_by_side(pair).keys() == first_check.keys()
    assert estimator.exports == 2
    # Given its estimate's key, a shape still loaded is timed as it is: not built again.
    teacher_key = estimator.estimate(task, teacher, Recipe()).key
    by_key = {"teacher": (task, teacher, Recipe(), teacher_key)}
    assert estimator.side_by_side(by_key).keys() == {"teacher"}
    assert estimator.exports == 2
    assert first_check["fast"] < first_check["teacher"]

    middle = {**FAST, "pruning_ratio": 0.3}  # slower than FAST, faster than the teacher
    study = tiny_study_dict(
        tmp_path,
        study_name="stale",
        n_trials=3,
        constraints={"max_accuracy_drop": 1.0},
        cost_control={"skip_slower_than_fastest": True},
        target={"batch_size": 256, "warmup": 5, "repeats": 30},
        warm_start=[middle, {**FAST, "finetune_epochs": 1, "kd_temperature": 2.0}],
    )
    study["task"]["teacher"] = WIDE_TEACHER
    trials = run_study(write_study(tmp_path, study, "stale.yaml"), progress=False).study.trials
    candidate = trials[2]
    assert candidate.user_attrs[ESTIMATE_ATTR]["cached"] is True
    assert candidate.user_attrs[ESTIMATE_ATTR]["latency_p50_ms"] == 1000.0
    assert candidate.state == TrialState.COMPLETE, candidate.user_attrs.get("pruned_reason")
    check = candidate.user_attrs["latency_side_by_side"]
    assert check["candidate_ms"] < check["rival_ms"]


def test_the_estimate_is_cached_by_shape_precision_and_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two recipes that differ only in how they are trained share one measurement."""
    monkeypatch.chdir(tmp_path)
    study = tiny_study_dict(
        tmp_path,
        n_trials=3,
        constraints={"max_accuracy_drop": 1.0},
        cost_control={"successive_halving": True},
        warm_start=[
            {**FAST, "finetune_epochs": 1, "kd_temperature": 2.0, "kd_alpha": 0.0},
            {**FAST, "finetune_epochs": 2, "kd_temperature": 3.0, "kd_alpha": 0.9},
        ],
    )
    trials = run_study(write_study(tmp_path, study), progress=False).study.trials
    first, second = (t.user_attrs[ESTIMATE_ATTR] for t in trials[1:])
    assert first["key"] == second["key"]
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["latency_p50_ms"] == second["latency_p50_ms"]
    assert len(list((tmp_path / "artifacts" / "latency_estimates").glob("*.json"))) == 1


def test_skipping_needs_the_fastest_policy(tmp_path: Path) -> None:
    study = tiny_study_dict(
        tmp_path,
        cost_control={"skip_slower_than_fastest": True},
        export={"policy": "best:roc_auc"},
    )
    with pytest.raises(UserError, match=r"cost_control.skip_slower_than_fastest.*best:roc_auc"):
        run_study(write_study(tmp_path, study), progress=False)


def test_rungs_grow_by_the_rate_and_stop_before_the_last_epoch() -> None:
    assert rungs(2, 3, 30) == [2, 6, 18]
    assert rungs(1, 2, 8) == [1, 2, 4]
    assert rungs(2, 3, 2) == []


def test_halving_keeps_a_fast_slightly_weaker_student_and_stops_a_slow_weak_one() -> None:
    peers = [
        RungEntry(1, 0.850, 4.0),
        RungEntry(2, 0.845, 3.5),
        RungEntry(3, 0.840, 3.8),
        RungEntry(4, 0.830, 4.2),
        RungEntry(5, 0.820, 4.5),
    ]
    fast = RungEntry(6, 0.810, 1.2)  # lowest score, fastest by far: non-dominated
    assert halving_stop_reason(fast, peers, epoch=2, rate=3) is None
    slow = RungEntry(7, 0.800, 5.0)  # dominated by every other trial
    reason = halving_stop_reason(slow, peers, epoch=2, rate=3)
    assert reason is not None and "epoch 2" in reason and "only the best 2" in reason
    # The median rule would have stopped the fast one: its score is below every peer's.
    assert fast.score < min(p.score for p in peers)


def _study_with_rung_history(epoch_scores: list[tuple[float, float]]) -> optuna.Study:
    """Finished trials with a validation curve and a pre-training latency each."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (score, latency) in enumerate(epoch_scores):
        study.add_trial(
            optuna.trial.create_trial(
                values=[score, latency],
                user_attrs={
                    VALID_CURVE: [score - 0.02, score, score + 0.01],
                    ESTIMATE_ATTR: {"latency_p50_ms": latency},
                    "trial": number,
                },
            )
        )
    return study


@pytest.mark.parametrize(
    ("score", "latency", "stops"),
    [(0.81, 1.0, False), (0.80, 6.0, True), (0.90, 6.0, False)],
    ids=["fast-slightly-weaker-continues", "slow-weak-stops", "slow-best-continues"],
)
def test_the_epoch_monitor_applies_halving_at_a_rung(
    score: float, latency: float, stops: bool
) -> None:
    study = _study_with_rung_history([(0.85, 4.0), (0.84, 3.5), (0.83, 4.5), (0.82, 5.0)])
    trial = study.ask()
    settings = CostControlConfig(successive_halving=True, min_epochs=2, halving_rate=3)
    monitor = EpochMonitor(trial, settings, last_epoch=8, latency_ms=latency)
    monitor(1, score - 0.05)  # before the first rung: never judged
    if stops:
        with pytest.raises(optuna.TrialPruned, match="successive halving at epoch 2"):
            monitor(2, score)
    else:
        monitor(2, score)
        monitor(3, score)  # not a rung


def test_successive_halving_runs_in_a_study_and_records_what_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    space = {**TINY_SPACE, "finetune_epochs": {"choices": [6]}, "bits": {"choices": [32]}}
    study = tiny_study_dict(
        tmp_path,
        n_trials=8,
        search_space=space,
        cost_control={"successive_halving": True, "min_epochs": 1, "halving_rate": 2},
    )
    trials = run_study(write_study(tmp_path, study), progress=False).study.trials
    students = [t for t in trials[1:] if ESTIMATE_ATTR in t.user_attrs]
    assert len(students) >= 5  # every trained candidate was measured before training
    stopped = [
        t
        for t in students
        if t.state == TrialState.PRUNED
        and t.user_attrs.get("pruned_reason", "").startswith("successive halving")
    ]
    # At rung 1 the second trial competes with the first alone: one of any two students
    # that are not on each other's front stops there; later ones meet more peers.
    for trial in stopped:
        epochs = len(trial.user_attrs[VALID_CURVE])
        assert epochs in (1, 2, 4), trial.user_attrs["pruned_reason"]
        assert f"epoch {epochs}" in trial.user_attrs["pruned_reason"]
    complete = [t for t in students if t.state == TrialState.COMPLETE]
    assert complete, "someone must finish"
    assert all(len(t.user_attrs[VALID_CURVE]) <= 6 for t in students)


def test_a_trained_latency_far_from_its_estimate_is_timed_again_then_marked_noisy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same shape measured 1000 ms before training (a figure taken under load, here
    planted in the cache) and well under 1 ms after: one of the two was disturbed. The
    trained model is timed again; still far, it is kept marked noisy with the reason."""
    monkeypatch.chdir(tmp_path)
    first = run_study(_skipping_study(tmp_path), progress=False)
    config = first.loaded.config
    task = build_task(config)
    estimator = LatencyEstimator(build_target(config), config.artifacts_path / "latency_estimates")
    key = estimator.estimate(
        task, task.teacher(config.artifacts_path / "teachers"), Recipe.from_dict(FAST)
    ).key
    assert not first.study.trials[1].user_attrs["measurement"].get("noise_reason")
    (estimator.cache_dir / f"{key}.json").write_text(json.dumps({"latency_p50_ms": 1000.0}))

    study = tiny_study_dict(
        tmp_path,
        study_name="planted",
        n_trials=2,
        constraints={"max_accuracy_drop": 1.0},
        cost_control={"successive_halving": True},
        target={"batch_size": 256, "warmup": 5, "repeats": 30, "remeasure_attempts": 2,
                "remeasure_backoff_s": 0.0},
        warm_start=[FAST],
    )  # fmt: skip
    study["task"]["teacher"] = WIDE_TEACHER
    result = run_study(write_study(tmp_path, study, "planted.yaml"), progress=False)
    trial = result.study.trials[1]
    measurement = trial.user_attrs["measurement"]
    assert trial.user_attrs[ESTIMATE_ATTR]["cached"] is True
    assert measurement["noisy"] is True
    assert "far from the 1000.000 ms its untrained shape measured" in measurement["noise_reason"]
    assert "over 3 measurements" in measurement["noise_reason"]
    assert trial.values[-1] == pytest.approx(measurement["latency_p50_ms"])
    member = next(m for m in result.front if m.trial_number == 1)
    assert member.noisy and "untrained shape" in member.noise_note()
    body = note_md(result.loaded.config.artifacts_path, trial)
    assert "**noisy latency**: p50 stayed far from" in body
    # On the front: the dashboard's note panel shows the same note.
    notes = result.study._storage.get_study_system_attrs(result.study._study_id)
    assert get_note_from_system_attrs(notes, trial._trial_id)["body"] == body
