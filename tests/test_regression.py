"""Behaviour unchanged across refactors: fixed recipes on a tiny credit study and a tiny
text study give the student shapes and validation scores recorded by earlier code
(`tests/fixtures/regression.json`).

Shapes must match exactly. Scores may move by a little between CPUs (the kernels' float
order differs by instruction set), not more: a refactor that changes what a pass does
moves them by far more than `SCORE_TOLERANCE`. Rewrite the record only on purpose:
`python -m tests.test_regression` (it says what changed).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_SPACE, tiny_study_dict, write_study

RECORD = Path(__file__).with_name("fixtures") / "regression.json"
SCORE_TOLERANCE = 0.03
SCORES = ("accuracy", "f1", "roc_auc")

CREDIT_RECIPES = [
    {"pruning_ratio": 0.5, "pruning_importance": "l2", "finetune_epochs": 3,
     "kd_temperature": 2.0, "kd_alpha": 0.5, "bits": 32},
    {"pruning_ratio": 0.3, "pruning_importance": "taylor", "finetune_epochs": 2,
     "kd_temperature": 3.0, "kd_alpha": 0.8, "bits": 8, "int8_mode": "static",
     "per_channel": True},
    {"pruning_ratio": 0.7, "pruning_importance": "l1", "finetune_epochs": 0, "bits": 32},
]  # fmt: skip
TEXT_SPACE = {
    "layer_keep_ratio": {"choices": [1.0, 0.5]},
    "pruning_ratio": {"choices": [0.0, 0.5]},
    "ffn_pruning_ratio": {"choices": [0.0, 0.5]},
    "pruning_importance": {"choices": ["l2", "taylor"]},
    "finetune_epochs": {"low": 1, "high": 2},
    "kd_temperature": {"low": 1.0, "high": 4.0},
    "kd_alpha": {"low": 0.0, "high": 1.0},
    "hidden_distill_weight": {"low": 0.0, "high": 2.0},
    "augment_word_prob": {"low": 0.0, "high": 0.5},
    "bits": {"choices": [32, 8]},
    "int8_mode": {"choices": ["dynamic"]},
}
TEXT_RECIPES = [
    {"layer_keep_ratio": 0.5, "pruning_ratio": 0.0, "ffn_pruning_ratio": 0.5,
     "pruning_importance": "l2", "finetune_epochs": 2, "kd_temperature": 2.0, "kd_alpha": 0.7,
     "hidden_distill_weight": 1.0, "augment_word_prob": 0.3, "bits": 32},
    {"layer_keep_ratio": 1.0, "pruning_ratio": 0.5, "ffn_pruning_ratio": 0.0,
     "pruning_importance": "taylor", "finetune_epochs": 1, "kd_temperature": 3.0,
     "kd_alpha": 0.5, "hidden_distill_weight": 0.0, "augment_word_prob": 0.0, "bits": 8},
]  # fmt: skip


def observed(study_file: Path) -> list[dict[str, Any]]:
    """Each trial's params, state, student shape and validation scores."""
    from autocompress.api import run_study

    trials = run_study(study_file, progress=False).study.trials
    return [
        {
            "params": t.params,
            "state": t.state.name,
            "student_spec": t.user_attrs.get("student_spec"),
            "scores": {
                m: t.user_attrs["metrics"][m]
                for m in SCORES
                if m in t.user_attrs.get("metrics", {})
            },
        }
        for t in trials
    ]


def credit_study(folder: Path) -> Path:
    space = {**TINY_SPACE, "bits": {"choices": [32, 8]}}
    study = tiny_study_dict(folder, search_space=space, n_trials=1 + len(CREDIT_RECIPES))
    return write_study(folder, {**study, "warm_start": CREDIT_RECIPES}, "credit.yaml")


def text_study(folder: Path, model_dir: Path, data_file: Path) -> Path:
    from tests.text_fixtures import tiny_text_study

    study = tiny_text_study(
        folder, model_dir, data_file, search_space=TEXT_SPACE, n_trials=1 + len(TEXT_RECIPES)
    )
    # A teacher that learns the sentences, so the students' scores say something.
    study["task"]["teacher"] = {
        "epochs": 10,
        "batch_size": 8,
        "learning_rate": 0.0005,
        "patience": 10,
    }
    study["task"]["finetune"] = {"batch_size": 16, "learning_rate": 0.003}
    return write_study(folder, {**study, "warm_start": TEXT_RECIPES}, "text.yaml")


def compare(recorded: list[dict], now: list[dict]) -> list[str]:
    """What differs beyond the tolerance, one line each."""
    problems = []
    if len(recorded) != len(now):
        return [f"{len(now)} trials, recorded {len(recorded)}"]
    for number, (old, new) in enumerate(zip(recorded, now, strict=True)):
        for key in ("params", "state", "student_spec"):
            if old[key] != new[key]:
                problems.append(f"trial {number} {key}: {new[key]} (recorded {old[key]})")
        for metric, value in old["scores"].items():
            got = new["scores"].get(metric)
            if got is None or abs(got - value) > SCORE_TOLERANCE:
                problems.append(f"trial {number} {metric}: {got} (recorded {value:.4f})")
    return problems


@pytest.mark.parametrize("kind", ["credit", "text"])
def test_fixed_recipes_give_the_recorded_students(
    kind: str, tmp_path: Path, model_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = (
        credit_study(tmp_path) if kind == "credit" else text_study(tmp_path, model_dir, data_file)
    )
    now = observed(path)
    assert all(t["state"] == "COMPLETE" for t in now), now
    assert compare(json.loads(RECORD.read_text())[kind], now) == []


if __name__ == "__main__":  # rewrite the record with this code
    from tests.text_fixtures import make_sentences, make_tiny_bert

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model, data = make_tiny_bert(root / "bert"), root / "sentences.csv"
        make_sentences().to_csv(data, index=False)
        (root / "credit").mkdir()
        (root / "text").mkdir()
        record = {
            "credit": observed(credit_study(root / "credit")),
            "text": observed(text_study(root / "text", model, data)),
        }
    if RECORD.exists():
        for kind, trials in record.items():
            for line in compare(json.loads(RECORD.read_text())[kind], trials):
                print(f"{kind}: {line}", file=sys.stderr)
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD}")
