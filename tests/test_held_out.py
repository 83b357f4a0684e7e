"""The search and the selection never see the test split; intervals and seeds are real.

Tiny but real German credit studies (real training, real onnxruntime, real SQLite).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

import autocompress.select
from autocompress.api import TEACHER_ATTR, export_selected, run_study
from autocompress.config import load_study_config
from autocompress.dashboard import SEEDS_ATTR_PREFIX
from autocompress.policies import parse_policy
from autocompress.select import ranked
from autocompress.tasks.credit import CreditTask
from tests.conftest import tiny_study_dict, write_study

# Attributes that legitimately differ between two runs of the same search: the test
# split's scores, latencies, and artifact ids.
NOT_COMPARED = {"held_out", "measurement", "artifacts", "report_artifacts", "note_artifact"}


def _study_file(folder: Path, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "n_trials": 6,
        # Deterministic objectives: no latency, so two runs sample the same recipes.
        "objectives": {"metrics": ["roc_auc", "size_bytes"]},
        "constraints": {"max_accuracy_drop": None, "max_roc_auc_drop": 0.03},
        "export": {"dir": str(folder / "exports"), "policy": "best:roc_auc", "seeds": 2},
        **overrides,
    }
    study = tiny_study_dict(folder, **settings)
    study["task"]["baselines"] = []
    return write_study(folder, study)


def _search_record(study: optuna.Study) -> list[tuple]:
    """Everything the search and the selection could have used, trial by trial."""
    return [
        (
            t.number,
            t.state,
            t.params,
            t.values,
            t.system_attrs.get("constraints"),
            {k: v for k, v in t.user_attrs.items() if k not in NOT_COMPARED},
        )
        for t in study.get_trials(deepcopy=False)
    ]


def test_scrambled_test_labels_change_neither_search_nor_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    true_run = run_study(_study_file(tmp_path / "true"), progress=False)
    true_export = json.loads((true_run.export() / "metrics.json").read_text())

    original = CreditTask.labels

    def scrambled(self: CreditTask, split: str) -> np.ndarray:
        labels = original(self, split)
        return np.random.default_rng(123).permutation(labels) if split == "test" else labels

    monkeypatch.setattr(CreditTask, "labels", scrambled)
    scrambled_run = run_study(_study_file(tmp_path / "scrambled"), progress=False)
    scrambled_export = json.loads((scrambled_run.export() / "metrics.json").read_text())

    # The scrambling took effect: the held-out scores moved (a permuted test split
    # ranks at chance)...
    true_teacher = true_run.study.user_attrs[TEACHER_ATTR]
    scrambled_teacher = scrambled_run.study.user_attrs[TEACHER_ATTR]
    assert true_teacher["test_metrics"]["roc_auc"] > 0.65
    assert abs(scrambled_teacher["test_metrics"]["roc_auc"] - 0.5) < 0.12
    assert true_export["held_out"]["metrics"] != scrambled_export["held_out"]["metrics"]
    # ...and nothing the search or the selection uses did.
    assert true_teacher["metrics"] == scrambled_teacher["metrics"]
    for true_trial, scrambled_trial in zip(
        _search_record(true_run.study), _search_record(scrambled_run.study), strict=True
    ):
        *true_facts, true_attrs = true_trial
        *scrambled_facts, scrambled_attrs = scrambled_trial
        assert true_facts == scrambled_facts
        differ = {
            k
            for k in true_attrs.keys() | scrambled_attrs.keys()
            if true_attrs.get(k) != scrambled_attrs.get(k)
        }
        assert not differ, (
            true_trial[0],
            {k: (true_attrs.get(k), scrambled_attrs.get(k)) for k in differ},
        )
    completed = true_run.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(completed) >= 4
    assert true_export["metrics"] == scrambled_export["metrics"]
    selection = true_export["selection"]
    assert selection == {
        **scrambled_export["selection"],
        "seeds": selection["seeds"],  # compared below without the held-out parts
    }
    for runs in (
        true_export["selection"]["seeds"]["runs"],
        scrambled_export["selection"]["seeds"]["runs"],
    ):
        assert [run["seed"] for run in runs] == [0, 1]
    assert [
        (run["seed"], run["metrics"], run["changes"])
        for run in true_export["selection"]["seeds"]["runs"]
    ] == [
        (run["seed"], run["metrics"], run["changes"])
        for run in scrambled_export["selection"]["seeds"]["runs"]
    ]


def test_confidence_mode_keeps_only_students_whose_upper_bound_is_within_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    limit = 0.03
    path = _study_file(
        tmp_path,
        constraints={"max_accuracy_drop": None, "max_roc_auc_drop": limit, "confidence": 0.95},
    )
    result = run_study(path, progress=False)
    judged = [
        t
        for t in result.study.get_trials(states=(TrialState.COMPLETE,))
        if t.user_attrs.get("role") != "teacher"
    ]
    assert judged
    for trial in judged:
        low, high = trial.user_attrs["change_intervals"]["roc_auc_drop"]
        point = trial.user_attrs["roc_auc_drop"]
        assert low <= point <= high
        feasible = all(v <= 0 for v in trial.constraints.values())
        # Both levels are 0.95, so the reported interval is the one the limit used.
        assert feasible == (high <= limit), (trial.number, low, point, high)
        assert trial.user_attrs["constraint_mode"] == {"kind": "upper_bound", "confidence": 0.95}
        held_out = trial.user_attrs["held_out"]
        assert held_out["split"] == "test" and held_out["rows"] == 200
        test_low, test_high = held_out["intervals"]["roc_auc_drop"]
        assert test_low <= held_out["changes"]["roc_auc_drop"] <= test_high
    out = result.export()
    exported = json.loads((out / "metrics.json").read_text())
    assert exported["selection"]["constraint_mode"] == {"kind": "upper_bound", "confidence": 0.95}
    number = yaml.safe_load((out / "config.yaml").read_text())["study"]["trial_number"]
    trial = result.study.trials[number]
    if trial.user_attrs.get("role") != "teacher":  # the teacher is within any limit
        assert trial.user_attrs["change_intervals"]["roc_auc_drop"][1] <= limit


def test_seeds_are_trained_once_and_a_recipe_that_breaks_the_limit_on_average_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _study_file(tmp_path, export={"dir": str(tmp_path / "exports"), "seeds": 3})
    result = run_study(path, progress=False)
    first = json.loads((result.export(tmp_path / "first") / "metrics.json").read_text())
    seeds = first["selection"]["seeds"]
    assert seeds["seeds"] == [0, 1, 2]
    trained = seeds["runs"]
    number = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())["study"][
        "trial_number"
    ]
    assert len(result.study.user_attrs[f"{SEEDS_ATTR_PREFIX}{number}"]["runs"]) == 3
    role = result.study.trials[number].user_attrs.get("role")
    if role != "teacher" and result.study.trials[number].params.get("finetune_epochs", 0) > 0:
        # Another seed is another training run: the scores move.
        assert len({json.dumps(run["metrics"], sort_keys=True) for run in trained}) > 1
    for name, stats in seeds["summary"]["valid"].items():
        values = [run["metrics"].get(name, run["changes"].get(name)) for run in trained]
        assert stats["mean"] == pytest.approx(np.mean(values))
        assert stats["sd"] == pytest.approx(np.std(values, ddof=1))

    # A second export trains nothing: the runs are kept with the study.
    caplog.set_level(logging.INFO, logger="autocompress")
    caplog.clear()
    result.export(tmp_path / "second")
    assert "again with seed" not in caplog.text
    # `--seeds 1` judges by the search's own run alone.
    single = json.loads((result.export(tmp_path / "single", seeds=1) / "metrics.json").read_text())
    assert single["selection"]["seeds"]["seeds"] == [0]

    # With the limit at 0 (no drop at all), a candidate whose mean drop over its seeds is
    # positive is passed over for the policy's next one; the teacher (drop 0) holds.
    strict = _study_file(
        tmp_path / "strict",
        constraints={"max_accuracy_drop": None, "max_roc_auc_drop": 0.0},
        export={"dir": str(tmp_path / "exports"), "seeds": 2, "finalists": 20, "policy": "fastest"},
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        artifacts_dir=str(tmp_path / "artifacts"),
    )
    caplog.clear()
    parsed: list[str] = []

    def counted(policy: str, *args: object, **kwargs: object) -> object:
        parsed.append(policy)
        return parse_policy(policy, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(autocompress.select, "parse_policy", counted)
        out = export_selected(result.study, load_study_config(strict), tmp_path / "strict-out")
    assert parsed == ["fastest"], "the policy is parsed and the front ranked once"
    exported = json.loads((out / "metrics.json").read_text())
    selection = exported["selection"]
    chosen_mean = selection["seeds"]["summary"]["valid"]["roc_auc_drop"]["mean"]
    assert selection["within_limits_across_seeds"] is True
    assert chosen_mean <= 0.0
    for passed in selection["passed_over"]:
        assert any("roc_auc drop mean" in reason for reason in passed["broken"])
        assert f"trial {passed['trial_number']} passed over" in caplog.text
    order = [m.trial_number for m in ranked(result.front, "fastest")]
    passed_numbers = [p["trial_number"] for p in selection["passed_over"]]
    assert passed_numbers == order[: len(passed_numbers)]
    number = yaml.safe_load((out / "config.yaml").read_text())["study"]["trial_number"]
    assert number == order[len(passed_numbers)]
