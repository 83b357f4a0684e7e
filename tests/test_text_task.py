"""The text task end to end on a tiny random BERT: data, checkpoint checks, a 3-trial study,
an export that loads in plain onnxruntime with its tokenizer, and the cost controls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
from optuna.trial import TrialState

from autocompress import UserError, load_study_config, run_study, verify
from autocompress.config import CostControlConfig
from autocompress.search import VALID_CURVE, EpochMonitor, LimitFloor
from autocompress.tasks.text_config import TextDataConfig
from autocompress.tasks.text_data import load_text_splits
from tests.conftest import write_study
from tests.text_fixtures import make_sentences, tiny_text_study


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("text")


@pytest.fixture(scope="module")
def result(workspace: Path, model_dir: Path, data_file: Path):
    return run_study(write_study(workspace, tiny_text_study(workspace, model_dir, data_file)))


def test_phrasebank_format_is_read_deduplicated_and_split(tmp_path: Path) -> None:
    lines = [
        f"Sales {w} in quarter {i}@{lab}"
        for i in range(30)
        for w, lab in (("fell", "negative"), ("rose", "positive"), ("were flat", "neutral"))
    ]
    lines += lines[:5]  # exact duplicates, as in the real files
    path = tmp_path / "pb.txt"
    path.write_bytes("\r\n".join(lines + ["Café revenue fell@negative"]).encode("latin-1"))
    config = TextDataConfig(
        path=str(path),
        format="phrasebank",
        encoding="latin-1",
        text_column="sentence",
        label_names=["negative", "neutral", "positive"],
    )
    splits = load_text_splits(config, lambda key: key)
    texts = [t for split in splits.texts.values() for t in split]
    assert len(texts) == len(set(texts)) == 91
    assert "Café revenue fell" in texts
    assert not set(splits.texts["train"]) & set(splits.texts["test"])
    assert splits.label_names == ["negative", "neutral", "positive"]

    wrong = TextDataConfig(
        path=str(path), format="phrasebank", encoding="utf-8", text_column="sentence"
    )
    with pytest.raises(UserError, match="task.data.encoding.*latin-1"):
        load_text_splits(wrong, lambda key: key)


def test_teacher_trial_and_compressed_trials(result) -> None:
    trials = result.study.trials
    assert trials[0].user_attrs["role"] == "teacher" and trials[0].state == TrialState.COMPLETE
    teacher_spec = trials[0].user_attrs["student_spec"]
    assert teacher_spec["num_hidden_layers"] == 4 and teacher_spec["hidden_size"] == 32
    for trial in result.study.get_trials(states=(TrialState.COMPLETE,)):
        spec, recipe = trial.user_attrs["student_spec"], trial.user_attrs["recipe"]
        assert spec["num_hidden_layers"] == max(1, round(4 * recipe["layer_keep_ratio"]))
        assert spec["hidden_size"] == round(32 * (1 - recipe["pruning_ratio"]))
        assert {"model.onnx", "labels.json", "tokenizer.json"} <= set(trial.user_attrs["artifacts"])
        assert len(trial.values) == 2


def test_export_runs_in_plain_onnxruntime_with_its_tokenizer(result, workspace: Path) -> None:
    from transformers import AutoTokenizer

    out = result.export(workspace / "export", policy="fastest")
    assert verify(out) >= 5
    labels = json.loads((out / "labels.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = load_study_config(result.loaded.source).config
    from autocompress.tasks import build_task

    task = build_task(config)
    encoded = tokenizer(
        task.splits.texts["test"],
        padding="max_length",
        truncation=True,
        max_length=labels["max_seq_length"],
        return_tensors="np",
    )
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {name: encoded[name].astype(np.int64) for name in labels["inputs"]}
    predictions = session.run(None, feeds)[0].argmax(axis=1)
    accuracy = float(np.mean(predictions == task.labels("test")))
    recorded = json.loads((out / "metrics.json").read_text())["metrics"]["accuracy"]
    assert abs(accuracy - recorded) <= 0.005


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("no_config", "not a Hugging Face checkpoint folder"),
        ("not_classifier", "cannot be a sequence classifier"),
        ("head_mismatch", "do not match the checkpoint's classifier head"),
        ("empty_text", "empty texts"),
        ("too_long", "over the model's maximum of 64 positions"),
    ],
)
def test_bad_text_input_is_refused_before_anything_is_written(
    tmp_path: Path, model_dir: Path, data_file: Path, change: str, match: str
) -> None:
    study = tiny_text_study(tmp_path, model_dir, data_file)
    if change == "no_config":
        (tmp_path / "empty-model").mkdir()
        study["task"]["model"]["path"] = str(tmp_path / "empty-model")
    elif change == "not_classifier":
        from transformers import CLIPVisionConfig

        CLIPVisionConfig().save_pretrained(tmp_path / "vision")
        study["task"]["model"]["path"] = str(tmp_path / "vision")
    elif change == "head_mismatch":
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            id2label={0: "negative", 1: "positive"},
        )
        BertForSequenceClassification(config).save_pretrained(tmp_path / "two-labels")
        study["task"]["model"]["path"] = str(tmp_path / "two-labels")
    elif change == "empty_text":
        frame = make_sentences()
        frame.loc[5, "text"] = "   "
        frame.to_csv(tmp_path / "holes.csv", index=False)
        study["task"]["data"]["path"] = str(tmp_path / "holes.csv")
    elif change == "too_long":
        study["task"]["model"]["max_seq_length"] = 128
    with pytest.raises(UserError, match=match):
        run_study(write_study(tmp_path, study))
    assert not (tmp_path / "text.db").exists()
    assert not (tmp_path / "exports").exists()


class _FakeStudyTrial:
    """Only the bits of an Optuna trial EpochMonitor reads; the study is real."""

    number = 7

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.user_attrs: dict = {}

    def set_user_attr(self, key: str, value: object) -> None:
        self.user_attrs[key] = value


def test_median_rule_and_time_budget_stop_hopeless_trials() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for score in (0.6, 0.7, 0.8):
        study.add_trial(
            optuna.trial.create_trial(
                values=[score, 1.0], user_attrs={"valid_score_by_epoch": [score, score + 0.05]}
            )
        )
    settings = CostControlConfig(median_stop=True, min_epochs=1, min_trials=3)
    monitor = EpochMonitor(_FakeStudyTrial(study), settings, last_epoch=3)
    monitor(1, 0.75)  # above the median 0.7: goes on
    with pytest.raises(optuna.TrialPruned, match="below the median 0.7500 of 3 earlier"):
        monitor(2, 0.70)
    assert monitor.trial.user_attrs["valid_score_by_epoch"] == [0.75, 0.70]

    lenient = EpochMonitor(_FakeStudyTrial(study), CostControlConfig(min_trials=4), last_epoch=3)
    lenient(1, 0.1)  # too few earlier trials: never stopped by the median rule

    budget = EpochMonitor(
        _FakeStudyTrial(study), CostControlConfig(trial_budget_s=1e-9), last_epoch=3
    )
    with pytest.raises(optuna.TrialPruned, match="over the per-trial budget"):
        budget(1, 0.9)


def test_constraint_rule_stops_only_students_that_cannot_become_feasible() -> None:
    """Feasible students ended with best validation scores 0.81 and 0.80: the floor is
    0.80. The largest gain any earlier trial made after epoch 2 is 0.06."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    curves = {
        "feasible": ([0.75, 0.80, 0.81], -0.01),
        "feasible, lower": ([0.70, 0.72, 0.80, 0.79], -0.001),
        "infeasible": ([0.60, 0.70, 0.76], 0.02),
        "short": ([0.50], 0.05),
    }
    for curve, constraint in curves.values():
        trial = optuna.trial.create_trial(
            values=[curve[-1], 1.0],
            user_attrs={VALID_CURVE: curve},
            system_attrs={"constraints": [constraint]},
        )
        study.add_trial(trial)
    settings = CostControlConfig(constraint_stop=True, constraint_stop_margin=0.02)

    def monitor(in_study: optuna.Study = study, last_epoch: int = 6) -> EpochMonitor:
        return EpochMonitor(_FakeStudyTrial(in_study), settings, last_epoch)

    reachable = monitor()
    reachable(1, 0.50)  # before min_epochs: never judged
    reachable(2, 0.745)  # 0.745 + 0.08 ≥ 0.80: may still get there
    out_of_reach = monitor()
    out_of_reach(1, 0.70)
    with pytest.raises(
        optuna.TrialPruned, match=r"cannot reach 0.8000, .* of the 2 students .*than 0.0800"
    ):
        out_of_reach(2, 0.715)
    last = monitor(last_epoch=2)
    last(1, 0.5)
    last(2, 0.5)  # the last epoch: measured and kept as an infeasible trial, not stopped

    nothing_feasible = optuna.create_study(directions=["maximize", "minimize"])
    nothing_feasible.add_trial(
        optuna.trial.create_trial(
            values=[0.7, 1.0],
            user_attrs={VALID_CURVE: [0.6, 0.7]},
            system_attrs={"constraints": [0.5]},
        )
    )
    waiting = monitor(nothing_feasible)
    waiting(1, 0.1)
    waiting(2, 0.1)  # no student met the constraints yet: no floor to stop against
    off = EpochMonitor(_FakeStudyTrial(study), CostControlConfig(), 6)
    off(1, 0.1)
    off(2, 0.1)  # constraint_stop is off by default


def test_the_constraint_rule_asks_no_more_than_the_limit_on_its_own_metric() -> None:
    """One feasible student ended at 0.8007, but the limit asks only 0.7918 of the
    curve's metric: a student at 0.7755 after epoch 2 (gains of 0.02 seen) may still
    meet it, so it goes on; one at 0.76 cannot, and its reason names the limit."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.8007, 3.0],
            user_attrs={VALID_CURVE: [0.74, 0.79, 0.7830, 0.8007]},
            system_attrs={"constraints": [-0.001]},
        )
    )
    settings = CostControlConfig(constraint_stop=True, constraint_stop_margin=0.02)
    floor = LimitFloor(0.7918, "the teacher's 0.8018 less max_f1_drop 0.01")
    learnt_only = EpochMonitor(_FakeStudyTrial(study), settings, last_epoch=6)
    with pytest.raises(optuna.TrialPruned, match="cannot reach 0.8007, the lowest best"):
        learnt_only(2, 0.7755)  # what stopped the benchmark's fastest student
    EpochMonitor(_FakeStudyTrial(study), settings, last_epoch=6, limit_floor=floor)(2, 0.7755)
    hopeless = EpochMonitor(_FakeStudyTrial(study), settings, last_epoch=6, limit_floor=floor)
    with pytest.raises(optuna.TrialPruned, match=r"cannot reach 0.7918, what the limit asks"):
        hopeless(2, 0.76)
    above = LimitFloor(0.85, "a limit stricter than any feasible student's best")
    EpochMonitor(_FakeStudyTrial(study), settings, last_epoch=6, limit_floor=above)(2, 0.785)


def test_trimming_shared_padding_leaves_logits_unchanged(model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from autocompress.models.bert import TextClassifier

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3).eval()
    model = TextClassifier.from_hf(hf)
    encoded = tokenizer(
        ["shares jump", "shares of acme plunge after a weak quarter"],
        padding="max_length",
        max_length=32,
        return_tensors="pt",
    )
    args = (encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    with torch.no_grad():
        trimmed = model(*args)
        untrimmed = hf(input_ids=args[0], attention_mask=args[1], token_type_ids=args[2]).logits
    assert int(encoded["attention_mask"].sum(dim=1).max()) < 32  # there was padding to trim
    assert torch.allclose(trimmed, untrimmed, atol=1e-5)


def test_text_batches_group_similar_lengths_and_cover_every_row(result) -> None:
    import torch

    from autocompress.tasks import build_task

    task = build_task(result.loaded.config)
    rows = len(task.labels("train"))
    batches = task.batch_order(rows, 8, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(rows))
    lengths = task.feeds("train")["attention_mask"].sum(axis=1)
    spread_grouped = np.mean([np.ptp(lengths[b.numpy()]) for b in batches if len(b) > 1])
    random_order = torch.randperm(rows, generator=torch.Generator().manual_seed(0)).split(8)
    spread_random = np.mean([np.ptp(lengths[b.numpy()]) for b in random_order if len(b) > 1])
    assert spread_grouped < spread_random


def test_a_split_is_scored_in_bounded_runs_with_the_same_logits(
    result, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring runs `PREDICT_ROWS` rows at a time (onnxruntime's arena keeps what its
    largest run needed); an FP32 model gives the logits of one run over the split."""
    import numpy as np

    from autocompress.recipe import Recipe
    from autocompress.targets import build_target
    from autocompress.tasks import base as task_base
    from autocompress.tasks import build_task

    config = result.loaded.config
    task = build_task(config)
    teacher = task.teacher(config.artifacts_path / "teachers")
    runnable = build_target(config).materialize(task, teacher, Recipe(), workspace).runnable
    whole = runnable.run(task.feeds("valid"))
    calls = []

    class Recording:  # the real session, with each run's rows noted
        def run(self, feeds: dict) -> np.ndarray:
            calls.append(len(feeds["input_ids"]))
            return runnable.run(feeds)

    monkeypatch.setattr(task_base, "PREDICT_ROWS", 7)
    chunked = task.predict(Recording(), "valid").values
    assert max(calls) == 7 and sum(calls) == len(whole) and len(calls) == -(-len(whole) // 7)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)
