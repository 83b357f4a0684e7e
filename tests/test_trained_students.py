"""A student trained once, tried at the space's other precisions without training again
(`cost_control.try_other_precisions`). Real studies on the embedded German credit data."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from autocompress import run_study
from autocompress.config import ParamSpace
from autocompress.cost_summary import cost_control_lines
from autocompress.recipe import Recipe
from autocompress.search import OTHER_PRECISION_ROLE, TRAINED_IN_ATTR, VALID_CURVE
from autocompress.trained_students import other_precisions, training_key
from tests.conftest import tiny_study_dict, write_study
from tests.text_fixtures import tiny_text_study

TEXT_LIKE_SPACE = {
    "layer_keep_ratio": ParamSpace("layer_keep_ratio", choices=(1.0, 0.5)),
    "pruning_ratio": ParamSpace("pruning_ratio", low=0.0, high=0.6, step=0.05),
    "finetune_epochs": ParamSpace("finetune_epochs", fixed=3),
    "bits": ParamSpace("bits", choices=(32, 8, 4)),
    "int8_mode": ParamSpace("int8_mode", choices=("dynamic", "static")),
    "per_channel": ParamSpace("per_channel", choices=(True, False)),
    "int4_block_size": ParamSpace("int4_block_size", choices=(32,)),
}


def test_other_precisions_vary_only_the_after_training_fields_as_the_sampler_would() -> None:
    trained = {"layer_keep_ratio": 0.5, "pruning_ratio": 0.25, "bits": 32}
    variants = other_precisions(trained, TEXT_LIKE_SPACE)
    torch_part = {"layer_keep_ratio": 0.5, "pruning_ratio": 0.25}
    assert variants == [
        {**torch_part, "bits": 8, "int8_mode": mode, "per_channel": per_channel}
        for mode in ("dynamic", "static")
        for per_channel in (True, False)
    ] + [{**torch_part, "bits": 4, "int4_block_size": 32}]
    # From an int8 student: fp32 comes back without the int8-only fields.
    int8 = {**torch_part, "bits": 8, "int8_mode": "static", "per_channel": False}
    assert {**torch_part, "bits": 32} in other_precisions(int8, TEXT_LIKE_SPACE)
    assert int8 not in other_precisions(int8, TEXT_LIKE_SPACE)
    # Nothing to vary: nothing to queue.
    fixed = {**TEXT_LIKE_SPACE, "bits": ParamSpace("bits", fixed=32)}
    assert other_precisions({"layer_keep_ratio": 0.5, "pruning_ratio": 0.25}, fixed) == []


def test_the_training_key_ignores_the_precision_and_nothing_else() -> None:
    recipe = Recipe(pruning_ratio=0.3, finetune_epochs=2, kd_alpha=0.5)
    key = training_key("task-a", recipe, seed=0, autocast="auto")
    int8 = Recipe(pruning_ratio=0.3, finetune_epochs=2, kd_alpha=0.5, bits=8, per_channel=True)
    assert training_key("task-a", int8, seed=0, autocast="auto") == key
    assert training_key("task-b", recipe, seed=0, autocast="auto") != key
    assert training_key("task-a", recipe, seed=1, autocast="auto") != key
    assert training_key("task-a", recipe, seed=0, autocast="off") != key
    more = Recipe(pruning_ratio=0.3, finetune_epochs=3, kd_alpha=0.5)
    assert training_key("task-a", more, seed=0, autocast="auto") != key


TRAINED = {
    "pruning_ratio": 0.5,
    "pruning_importance": "l2",
    "finetune_epochs": 3,
    "kd_temperature": 2.0,
    "kd_alpha": 0.5,
    "bits": 32,
}


def test_a_student_within_the_limits_is_tried_at_other_precisions_from_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    space = {
        "bits": {"choices": [32, 8]},
        "int8_mode": {"choices": ["static"]},
        "per_channel": {"choices": [True, False]},
    }
    fixed = {k: {"choices": [v]} for k, v in TRAINED.items() if k != "bits"}
    study_dict = tiny_study_dict(
        tmp_path,
        n_trials=4,  # the teacher, the trained student, its two int8 variants
        search_space={**fixed, **space},
        constraints={"max_accuracy_drop": 1.0},  # every student is within the limits
        cost_control={"try_other_precisions": True},
        warm_start=[TRAINED],
    )
    study = run_study(write_study(tmp_path, study_dict), progress=False).study
    teacher, trained, *variants = study.trials
    assert trained.state == TrialState.COMPLETE
    assert len(trained.user_attrs[VALID_CURVE]) == 3  # it trained 3 epochs
    assert trained.user_attrs["other_precisions_queued"] == [
        "int8 static per-ch",
        "int8 static",
    ]
    kept = list((tmp_path / "artifacts" / "trained_students").glob("*.safetensors"))
    assert len(kept) == 1
    searched = {k: v for k, v in TRAINED.items() if k != "bits"}
    assert [v.params for v in variants] == [
        {**searched, "bits": 8, "int8_mode": "static", "per_channel": per_channel}
        for per_channel in (True, False)
    ]
    for variant in variants:
        assert variant.state == TrialState.COMPLETE, variant.user_attrs.get("pruned_reason")
        assert variant.user_attrs["role"] == OTHER_PRECISION_ROLE
        assert variant.user_attrs[TRAINED_IN_ATTR] == trained.number
        assert variant.user_attrs["training"]["reused_training"] == kept[0].stem
        assert VALID_CURVE not in variant.user_attrs  # not trained again
        assert "other_precisions_queued" not in variant.user_attrs  # no chain of variants
    assert not [t for t in study.trials if t.state == TrialState.WAITING]
    assert "Other precisions: 2 trials reused the trained weights of 1 students" in "\n".join(
        cost_control_lines(study.trials)
    )

    # The reused weights are the ones training would give: the same int8 recipe trained
    # in a study of its own scores exactly as its reused variant did.
    alone_dict = tiny_study_dict(
        tmp_path / "alone",
        n_trials=2,
        search_space=study_dict["search_space"],
        constraints={"max_accuracy_drop": 1.0},
        warm_start=[variants[1].params],
    )
    (tmp_path / "alone").mkdir()
    alone = run_study(write_study(tmp_path / "alone", alone_dict), progress=False).study
    retrained = alone.trials[1]
    assert VALID_CURVE in retrained.user_attrs
    for metric in ("accuracy", "roc_auc"):
        assert retrained.user_attrs["metrics"][metric] == variants[1].user_attrs["metrics"][metric]


def test_a_pruned_layer_dropped_text_student_is_reused_at_int8(
    tmp_path: Path, model_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The BERT student's shape (layers dropped, heads, hidden and FFN pruned) is rebuilt
    before training and takes the kept weights: strict loading would refuse another."""
    monkeypatch.chdir(tmp_path)
    student = {
        "layer_keep_ratio": 0.5,
        "pruning_ratio": 0.5,
        "finetune_epochs": 1,
        "kd_temperature": 2.0,
        "kd_alpha": 0.5,
        "bits": 32,
    }
    study_dict = tiny_text_study(
        tmp_path,
        model_dir,
        data_file,
        n_trials=3,
        constraints={"max_accuracy_drop": None, "max_f1_drop": 1.0},
        cost_control={"try_other_precisions": True},
        warm_start=[student],
    )
    study_dict["search_space"]["bits"] = {"choices": [32, 8]}
    study = run_study(write_study(tmp_path, study_dict), progress=False).study
    _, trained, variant = study.trials
    assert trained.user_attrs["other_precisions_queued"] == ["int8 dynamic"]
    assert variant.state == TrialState.COMPLETE, variant.user_attrs.get("pruned_reason")
    assert variant.params == {**student, "bits": 8, "int8_mode": "dynamic"}
    assert "reused_training" in variant.user_attrs["training"]
    assert variant.user_attrs["student_spec"] == trained.user_attrs["student_spec"]
    assert VALID_CURVE not in variant.user_attrs
