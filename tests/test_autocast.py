"""bf16 autocast for training students: the rule, the timed probe, its cache, and a study.

The probe is real (real steps, real clocks); where a test needs a known answer, the
step's cost is made different on purpose (a sleep) rather than faking the timing.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn
from torch.nn import functional as F

from autocompress import run_study
from autocompress.api import StudyResult
from autocompress.autocast import (
    MIN_AUTOCAST_SPEEDUP,
    AutocastChoice,
    choose_autocast,
    decide,
    probe,
)
from autocompress.passes import Distillation, LayerDrop, PassContext
from autocompress.passes.distill import DistillationStep, probe_step
from autocompress.recipe import Recipe
from autocompress.tasks.credit import CreditTask
from autocompress.tasks.credit_config import DataConfig, TeacherConfig
from autocompress.tasks.text import TextTask
from autocompress.tasks.text_config import (
    FinetuneConfig,
    FitConfig,
    TextDataConfig,
    TextModelConfig,
    TextTaskConfig,
)
from autocompress.training import FitSettings, fit
from tests.conftest import TINY_SPACE, note_md, tiny_study_dict, write_study


# -- the rule --------------------------------------------------------------------------
def test_bf16_only_from_the_threshold_on() -> None:
    assert decide(MIN_AUTOCAST_SPEEDUP) == "bf16"
    assert decide(MIN_AUTOCAST_SPEEDUP + 0.5) == "bf16"
    assert decide(MIN_AUTOCAST_SPEEDUP - 0.01) == "fp32"
    assert decide(1.0) == "fp32"
    assert decide(0.3) == "fp32"


def test_choice_context_and_note_line() -> None:
    layer = nn.Linear(4, 2)
    with AutocastChoice("bf16", "forced").context():
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with AutocastChoice("fp32", "off").context():
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    assert AutocastChoice("bf16", "forced").dtype == torch.bfloat16
    assert AutocastChoice("fp32", "probe").dtype is None

    faster = AutocastChoice("bf16", "probe", 0.142, 0.1, 1.42)
    slower = AutocastChoice("fp32", "probe", 0.031, 0.1, 0.31)
    marginal = AutocastChoice("fp32", "probe", 0.11, 0.1, 1.1, cached=True)
    assert faster.describe == "bf16 autocast (probe: 1.42x faster than fp32)"
    assert slower.describe == "fp32 (probe: bf16 0.31x, not used)"
    assert marginal.describe == "fp32 (cached probe: bf16 1.10x, below 1.15x, not used)"
    assert AutocastChoice("bf16", "forced").describe == (
        "bf16 autocast (forced by workers.autocast)"
    )
    assert AutocastChoice(**faster.to_dict()) == faster  # what a trial stores reads back


# -- the probe -------------------------------------------------------------------------
def test_probe_times_a_real_step_both_ways_and_leaves_the_rng_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2))
    features, labels = torch.randn(64, 32), torch.randint(0, 2, (64,))
    seen: list[tuple[bool, torch.dtype]] = []

    def step(enabled: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            logits = model(features)  # dropout draws from the global RNG
            loss = F.cross_entropy(logits, labels)
        loss.backward()
        model.zero_grad(set_to_none=True)
        seen.append((enabled, logits.dtype))

    before = torch.random.get_rng_state()
    fp32_s, bf16_s = probe(step, repeats=4, warmup=2, give_up_below=0.0)  # every round
    after = torch.rand(3)
    torch.random.set_rng_state(before)
    assert torch.equal(after, torch.rand(3)), "the probe moved torch's global RNG"

    assert fp32_s > 0 and bf16_s > 0
    assert sorted(seen) == sorted([(False, torch.float32)] * 6 + [(True, torch.bfloat16)] * 6), (
        "each side ran warmup + repeats times, the bf16 side really under autocast"
    )
    assert seen[:4] == [(False, torch.float32), (True, torch.bfloat16)] * 2  # warmup first


class SleepyStep:
    """A step whose fp32 and bf16 sides take known times; counts its calls."""

    def __init__(self, fp32_s: float, bf16_s: float) -> None:
        self.seconds = {False: fp32_s, True: bf16_s}
        self.calls = 0

    def __call__(self, enabled: bool) -> None:
        self.calls += 1
        time.sleep(self.seconds[enabled])


@pytest.mark.parametrize(
    ("fp32_s", "bf16_s", "mode", "calls"),
    [
        (0.02, 0.005, "bf16", 12),  # 1 warmup + 5 timed, each way
        (0.01, 0.015, "fp32", 12),
        (0.005, 0.02, "fp32", 4),  # bf16 clearly slower: 1 warmup + 1 timed, each way
    ],
)
def test_auto_follows_the_probe_and_caches_it(
    tmp_path: Path, fp32_s: float, bf16_s: float, mode: str, calls: int
) -> None:
    step = SleepyStep(fp32_s, bf16_s)
    key = {"student": {"family": "mlp", "hidden_sizes": [32]}, "batch_size": 64}
    first = choose_autocast("auto", step, tmp_path, key)
    assert (first.mode, first.reason, first.cached) == (mode, "probe", False)
    assert first.mode == decide(first.speedup)
    assert first.speedup == pytest.approx(first.fp32_step_s / first.bf16_step_s)
    assert step.calls == calls
    (stored,) = tmp_path.glob("*.json")
    assert json.loads(stored.read_text())["key_parts"] == key

    again = choose_autocast("auto", step, tmp_path, key)
    assert step.calls == calls, "a cached probe does not run the step again"
    assert (again.mode, again.cached, again.speedup) == (mode, True, first.speedup)

    other = choose_autocast("auto", step, tmp_path, {**key, "batch_size": 32})
    assert step.calls == 2 * calls and not other.cached  # another shape is probed anew
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_off_and_forced_never_probe(tmp_path: Path) -> None:
    step = SleepyStep(0.0, 0.0)
    assert choose_autocast("off", step, tmp_path, {}) == AutocastChoice("fp32", "off")
    assert choose_autocast("bf16", step, tmp_path, {}) == AutocastChoice("bf16", "forced")
    assert step.calls == 0 and not list(tmp_path.iterdir())


def test_an_unreadable_cache_file_is_probed_again(tmp_path: Path) -> None:
    step = SleepyStep(0.002, 0.002)
    choose_autocast("auto", step, tmp_path, {"k": 1})
    (stored,) = tmp_path.glob("*.json")
    stored.write_text("{half a fi")
    again = choose_autocast("auto", step, tmp_path, {"k": 1})
    assert step.calls == 24 and not again.cached
    assert json.loads(stored.read_text())["fp32_step_s"] == again.fp32_step_s


# -- the training loop -----------------------------------------------------------------
def test_fit_runs_forward_and_loss_under_autocast_and_scores_in_fp32() -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 2)
    features, labels = torch.randn(64, 8), torch.randint(0, 2, (64,))
    forward_dtypes: list[torch.dtype] = []
    scored_under_autocast: list[bool] = []

    def loss(logits: torch.Tensor, y: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        forward_dtypes.append(logits.dtype)
        return F.cross_entropy(logits, y)

    def score(trained: nn.Module) -> float:
        scored_under_autocast.append(torch.is_autocast_enabled("cpu"))
        return -F.cross_entropy(trained(features), labels).item()

    settings = FitSettings(
        epochs=2, batch_size=16, learning_rate=0.01, weight_decay=0.0, patience=2
    )
    fit(
        model,
        (features,),
        labels,
        loss,
        score,
        settings,
        autocast=AutocastChoice("bf16", "forced"),
    )
    assert forward_dtypes == [torch.bfloat16] * 8
    assert scored_under_autocast == [False, False]
    assert all(p.dtype == torch.float32 for p in model.parameters())


# -- the distillation pass on a real credit task ---------------------------------------
def credit_task(teacher_cache: Path) -> CreditTask:
    """German credit with a small teacher (trained once, then loaded from the cache)."""
    data = DataConfig(
        path="embedded:germancredit", label="creditability", positive_label="bad", seed=0
    )
    credit = CreditTask(data, TeacherConfig(hidden_sizes=[64, 32], epochs=3, patience=2))
    credit.teacher(teacher_cache)
    return credit


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("teacher-cache")


@pytest.fixture(scope="module")
def task(teacher_cache: Path) -> CreditTask:
    return credit_task(teacher_cache)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


RECIPE = Recipe(finetune_epochs=2, kd_temperature=2.0, kd_alpha=0.5)


def test_a_probe_step_leaves_no_trace(task: CreditTask) -> None:
    student = copy.deepcopy(task.loaded_teacher()).eval()
    before = weights(student)
    step = DistillationStep(student, RECIPE, task, torch.Generator().manual_seed(0))
    inputs, labels = task.train_tensors()
    run = probe_step(student, step, inputs, labels, torch.arange(64))
    run(True)
    run(False)
    assert not student.training
    assert all(p.grad is None for p in student.parameters())
    after = weights(student)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_after_a_probe_is_training_without_one(task: CreditTask) -> None:
    """Whatever the probe decides on this machine, the student is the one that the
    decided mode trains without any probe (weights equal to the bit)."""
    teacher = task.loaded_teacher()
    probed_ctx = PassContext(data=task, seed=3, autocast="auto")
    probed = Distillation().apply(copy.deepcopy(teacher), RECIPE, probed_ctx)
    choice = probed_ctx.records["training_autocast"]
    assert choice["mode"] == decide(choice["speedup"]) and choice["reason"] == "probe"

    plain_ctx = PassContext(data=task, seed=3, autocast=choice["mode"].replace("fp32", "off"))
    plain = Distillation().apply(copy.deepcopy(teacher), RECIPE, plain_ctx)
    a, b = weights(probed), weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ("training_autocast" in plain_ctx.records) == (choice["mode"] == "bf16")


def test_the_teachers_targets_stay_fp32_when_the_student_trains_in_bf16(
    teacher_cache: Path,
) -> None:
    """The teacher's logits are computed on first use, here inside a bf16 step."""
    fresh = credit_task(teacher_cache)
    ctx = PassContext(data=fresh, seed=0, autocast="bf16")
    Distillation().apply(copy.deepcopy(fresh.loaded_teacher()), RECIPE, ctx)
    assert ctx.records["training_autocast"]["mode"] == "bf16"
    logits = fresh.teacher_logits()
    assert logits.dtype == torch.float32
    with torch.no_grad():
        features = fresh.train_tensors()[0][0]
        assert torch.equal(logits, fresh.loaded_teacher()(features))


# -- a text student: hidden states and augmentation in the step ------------------------
@pytest.fixture(scope="module")
def text_task(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, data_file: Path
) -> TextTask:
    """A tiny BERT teacher (tests/text_fixtures.py), fine-tuned once for the module."""
    config = TextTaskConfig(
        kind="text",
        model=TextModelConfig(path=str(model_dir), max_seq_length=16),
        data=TextDataConfig(path=str(data_file), label_names=["bearish", "bullish", "neutral"]),
        teacher=FitConfig(epochs=1, batch_size=16, learning_rate=1e-3),
        finetune=FinetuneConfig(batch_size=16, learning_rate=1e-3),
    )
    task = TextTask(config, "macro")
    task.teacher(tmp_path_factory.mktemp("text-teacher"))
    return task


TEXT_RECIPE = Recipe(
    layer_keep_ratio=0.5,
    finetune_epochs=1,
    kd_temperature=2.0,
    kd_alpha=0.5,
    hidden_distill_weight=1.0,
    augment_word_prob=0.3,
)


def distil_text(task: TextTask, autocast: str) -> tuple[nn.Module, PassContext]:
    ctx = PassContext(data=task, seed=1, autocast=autocast)
    student = LayerDrop().apply(copy.deepcopy(task.loaded_teacher()), TEXT_RECIPE, ctx)
    return Distillation().apply(student, TEXT_RECIPE, ctx), ctx


def test_a_probed_text_student_trains_as_an_unprobed_one(text_task: TextTask) -> None:
    """The probe draws augmentation and dropout; none of it reaches training."""
    probed, ctx = distil_text(text_task, "auto")
    choice = ctx.records["training_autocast"]
    assert choice["mode"] == decide(choice["speedup"])
    plain, _ = distil_text(text_task, choice["mode"].replace("fp32", "off"))
    a, b = weights(probed), weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_text_student_trains_under_forced_bf16(text_task: TextTask) -> None:
    student, ctx = distil_text(text_task, "bf16")
    assert ctx.records["training_autocast"]["mode"] == "bf16"
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert math.isfinite(text_task.validation_score(student))


# -- whole studies ---------------------------------------------------------------------
def autocast_study(folder: Path, autocast: str | None, n_trials: int = 3) -> StudyResult:
    """The teacher, then students that all fine-tune, on German credit."""
    space = {**TINY_SPACE, "finetune_epochs": 2, "bits": {"choices": [32, 8]}}
    study = tiny_study_dict(folder, n_trials=n_trials, search_space=space)
    if autocast is not None:
        study["workers"] = {"autocast": autocast}
    return run_study(write_study(folder, study))


def trained(result: StudyResult) -> list[optuna.trial.FrozenTrial]:
    trials = [
        t
        for t in result.study.get_trials(states=(TrialState.COMPLETE,))
        if t.user_attrs["recipe"]["finetune_epochs"] > 0
    ]
    assert trials, "no student was fine-tuned"
    return trials


def note(result: StudyResult, trial: optuna.trial.FrozenTrial) -> str:
    """The trial's note (its `note.md`: the dashboard's note panel has the front's only)."""
    return note_md(result.loaded.config.artifacts_path, trial)


def test_study_with_auto_uses_bf16_only_where_the_probe_says_it_pays(tmp_path: Path) -> None:
    result = autocast_study(tmp_path, "auto")
    for trial in trained(result):
        choice = trial.user_attrs["training"]["training_autocast"]
        assert choice["reason"] == "probe"
        assert choice["mode"] == decide(choice["speedup"])
        assert f"training: {AutocastChoice(**choice).describe}" in note(result, trial)
    assert "training" not in result.study.trials[0].user_attrs  # the teacher: no training
    probes = result.loaded.config.artifacts_path / "autocast_probes"
    assert list(probes.glob("*.json"))


def test_study_with_forced_bf16_trains_every_student_in_bf16(tmp_path: Path) -> None:
    result = autocast_study(tmp_path, "bf16", n_trials=2)
    for trial in trained(result):
        choice = trial.user_attrs["training"]["training_autocast"]
        assert (choice["mode"], choice["reason"]) == ("bf16", "forced")
        assert all(math.isfinite(v) for v in trial.values)
        assert all(math.isfinite(v) for v in trial.user_attrs["metrics"].values())
        assert "training: bf16 autocast (forced by workers.autocast)" in note(result, trial)


def test_study_by_default_trains_in_fp32_and_records_nothing(tmp_path: Path) -> None:
    result = autocast_study(tmp_path, None, n_trials=2)
    assert result.loaded.config.workers.autocast == "off"
    for trial in trained(result):
        assert "training" not in trial.user_attrs
        assert "training:" not in note(result, trial)
    assert not (result.loaded.config.artifacts_path / "autocast_probes").exists()
