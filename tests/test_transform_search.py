"""The sampler chooses the numeric transform of declared columns (`numeric_transform`).

A recipe other than `declared` gets a teacher trained on its inputs (once, cached), its
student starts from that teacher, its graph applies that transform, and its drops are
measured against the study's own teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from optuna.trial import TrialState
from sklearn.metrics import roc_auc_score

from autocompress import UserError, load_study_config, run_study
from autocompress.tasks import build_task
from tests.conftest import TINY_SPACE, tiny_study_dict, write_study

SEARCHED = ["credit_amount", "duration*"]
HAND = {
    "pruning_ratio": 0.3,
    "pruning_importance": "l2",
    "finetune_epochs": 2,
    "kd_temperature": 2.0,
    "kd_alpha": 0.5,
    "bits": 32,
    "numeric_transform": "quantile",
}


def study_dict(tmp_path: Path, **overrides: object) -> dict:
    settings: dict = {
        "n_trials": 3,
        "search_space": {**TINY_SPACE, "numeric_transform": {"choices": ["declared", "quantile"]}},
        "warm_start": [HAND],
    }
    study = tiny_study_dict(tmp_path, **{**settings, **overrides})
    study["task"]["preprocessing"] = {"searched_columns": SEARCHED}
    study["task"]["baselines"] = []
    return study


def test_a_searched_transform_gets_its_own_teacher_and_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_study(write_study(tmp_path, study_dict(tmp_path)), progress=False)
    teacher, hand = result.study.trials[0], result.study.trials[1]
    assert hand.user_attrs["role"] == "warm_start" and hand.state == TrialState.COMPLETE
    assert hand.params["numeric_transform"] == "quantile"
    assert hand.user_attrs["recipe_summary"].startswith("quantile inputs")
    teachers = list((tmp_path / "artifacts" / "teachers").iterdir())
    assert len(teachers) == 2, "the study's teacher and one for quantile inputs"

    # Its preprocessing says quantile for the searched columns, and the graph applies it.
    store = result.loaded.config.artifacts_path / "trials"
    pre = json.loads((store / hand.user_attrs["artifacts"]["preprocessing.json"]).read_text())
    kinds = {c["column"]: c["transform"]["kind"] for c in pre["numeric"]}
    assert kinds["credit_amount"] == kinds["duration_in_month"] == "quantile"
    assert kinds["age_in_years"] == "none"
    task = build_task(result.loaded.config)
    session = ort.InferenceSession(str(store / hand.user_attrs["artifacts"]["model.onnx"]))
    for split, recorded in (
        ("valid", hand.user_attrs["metrics"]),  # what the search saw
        ("test", hand.user_attrs["held_out"]["metrics"]),  # held out, reported only
    ):
        probabilities = session.run(None, task.feeds(split))[0]
        assert np.isfinite(probabilities).all()
        auc = roc_auc_score(task.labels(split), probabilities[:, 1])
        assert auc == pytest.approx(recorded["roc_auc"])
    # The drop is against the study's teacher, not the quantile one.
    expected = teacher.user_attrs["metrics"]["accuracy"] - hand.user_attrs["metrics"]["accuracy"]
    assert hand.user_attrs["accuracy_drop"] == pytest.approx(expected)


def test_searched_columns_and_the_field_come_together(tmp_path: Path) -> None:
    study = study_dict(tmp_path)
    study["task"]["preprocessing"] = {}
    with pytest.raises(UserError, match=r"task.preprocessing.searched_columns: the search space"):
        load_study_config(write_study(tmp_path, study))
    study = study_dict(tmp_path, search_space=TINY_SPACE, warm_start=[])
    with pytest.raises(UserError, match=r"has no numeric_transform field"):
        load_study_config(write_study(tmp_path, study))
