"""Distilling text students on a tiny random BERT.

Hidden states: a no-op at weight 0, a real change above it, the kept-layer mapping after
layer drop and width pruning, projections that never reach the student. Augmentation:
neighbours that are other whole words, only whole words of the chosen rows replaced,
altered rows scored against the teacher on the altered text. A text study that searches
with both, and the progress bar."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from optuna.trial import TrialState
from safetensors.torch import load_file
from torch import nn

from autocompress import UserError, load_study_config, run_study
from autocompress.models.bert import KEPT_LAYERS_KEY, TextClassifier, kept_layers
from autocompress.passes import (
    Distillation,
    LayerDrop,
    PassContext,
    StructuredPruning,
    distill,
    kd_loss,
)
from autocompress.passes.distill import DistillationStep
from autocompress.recipe import Recipe
from autocompress.tasks.text import TextTask
from autocompress.tasks.text_augment import WordNeighbours
from autocompress.tasks.text_config import (
    FinetuneConfig,
    FitConfig,
    TextDataConfig,
    TextModelConfig,
    TextTaskConfig,
)
from autocompress.training import FitSettings, fit
from tests.conftest import tiny_study_dict, write_study
from tests.text_fixtures import tiny_text_study

LABEL_NAMES = ["bearish", "bullish", "neutral"]
KD = {"finetune_epochs": 1, "kd_temperature": 2.0, "kd_alpha": 0.5}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hidden")


@pytest.fixture(scope="module")
def task(workspace: Path, model_dir: Path, data_file: Path) -> TextTask:
    """A text task whose teacher (4 layers, hidden 32) is fine-tuned once for the module."""
    config = TextTaskConfig(
        kind="text",
        model=TextModelConfig(path=str(model_dir), max_seq_length=16),
        data=TextDataConfig(path=str(data_file), label_names=LABEL_NAMES),
        teacher=FitConfig(epochs=2, batch_size=16, learning_rate=1e-3),
        finetune=FinetuneConfig(batch_size=16, learning_rate=1e-3),
    )
    text_task = TextTask(config, "macro")
    text_task.teacher(workspace / "teachers")
    return text_task


@pytest.fixture
def teacher(task: TextTask) -> TextClassifier:
    return task.loaded_teacher()


def compress(task: TextTask, recipe: Recipe, seed: int = 0) -> nn.Module:
    """The torch passes on a copy of the teacher, as the pipeline runs them."""
    model = copy.deepcopy(task.loaded_teacher())
    context = PassContext(data=task, seed=seed)
    for compression_pass in (LayerDrop(), StructuredPruning(), Distillation()):
        model = compression_pass.apply(model, recipe, context)
    return model


def drop_half(model: nn.Module, task: TextTask) -> nn.Module:
    """Keep half of a copy's layers."""
    return LayerDrop().apply(
        copy.deepcopy(model), Recipe(layer_keep_ratio=0.5), PassContext(data=task)
    )


def holds_any(weights: list[np.ndarray], arrays: list[np.ndarray]) -> bool:
    """Whether any of `arrays` is one of `weights`, as is or transposed (as ONNX stores it)."""
    return any(
        np.array_equal(array, weight) or np.array_equal(array, weight.T)
        for weight in weights
        for array in arrays
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def plain_kd(task: TextTask) -> dict[str, torch.Tensor]:
    """The weights of a half-depth student after one epoch of logit KD, weight 0."""
    return weights(compress(task, Recipe(layer_keep_ratio=0.5, hidden_distill_weight=0.0, **KD)))


def test_zero_weight_is_exactly_plain_logit_kd(
    task: TextTask, plain_kd: dict[str, torch.Tensor]
) -> None:
    # the reference: logit KD written out against `fit`, as before hidden states existed
    reference = drop_half(task.loaded_teacher(), task)
    inputs, labels = task.train_tensors()
    torch.manual_seed(0)
    fit(
        reference,
        inputs,
        labels,
        loss_fn=lambda logits, y, index: kd_loss(
            logits, task.teacher_logits()[index], task.label_loss(logits, y), 2.0, 0.5
        ),
        score_fn=task.validation_score,
        settings=task.fit_settings(1),
        batch_order=task.batch_order,
    )
    assert plain_kd.keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(plain_kd[name], tensor), name


def test_positive_weight_changes_the_trained_student(
    task: TextTask, plain_kd: dict[str, torch.Tensor]
) -> None:
    hidden = weights(compress(task, Recipe(layer_keep_ratio=0.5, hidden_distill_weight=1.0, **KD)))
    assert plain_kd.keys() == hidden.keys()
    changed = [name for name in plain_kd if not torch.equal(plain_kd[name], hidden[name])]
    assert len(changed) > len(plain_kd) // 2


def test_kept_layer_mapping_follows_layer_drop(task: TextTask, teacher: TextClassifier) -> None:
    assert kept_layers(teacher) == [0, 1, 2, 3]
    assert teacher.hidden_state_map(teacher) == [0, 1, 2, 3, 4]

    half = drop_half(teacher, task)
    assert getattr(half.hf.config, KEPT_LAYERS_KEY) == [1, 3]  # last of each block of two
    assert half.hidden_state_map(teacher) == [0, 2, 4]  # embeddings, layers 1 and 3
    assert not hasattr(teacher.hf.config, KEPT_LAYERS_KEY)  # the teacher's copy is untouched

    # cut again: indices stay those of the original model, and a cut teacher lines up too
    quarter = drop_half(half, task)
    assert kept_layers(quarter) == [3]
    assert quarter.hidden_state_map(teacher) == [0, 4]
    assert quarter.hidden_state_map(half) == [0, 2]


def test_projections_map_pruned_widths_and_never_reach_the_student(
    task: TextTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[distill.HiddenStateLoss] = []
    between = distill.HiddenStateLoss.between

    def spy(*args, **kwargs) -> distill.HiddenStateLoss:
        built.append(between(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(distill.HiddenStateLoss, "between", spy)
    recipe = Recipe(layer_keep_ratio=0.5, pruning_ratio=0.5, hidden_distill_weight=1.0, **KD)
    student = compress(task, recipe)

    assert student.spec["hidden_size"] == 16 and student.spec["num_hidden_layers"] == 2
    (hidden,) = built
    assert hidden.sources == [0, 2, 4]  # kept-layer mapping, not the first two layers
    assert [(p.in_features, p.out_features) for p in hidden.projections] == [(16, 32)] * 3
    projected = [p.weight.detach().numpy() for p in hidden.projections]
    trained = [p for p in hidden.projections if p.weight.grad is not None]
    assert len(trained) == 3  # trained jointly with the student

    student_parameters = {id(p) for p in student.parameters()}
    assert not any(id(p) in student_parameters for p in hidden.parameters())
    keys = set(student.state_dict())
    assert not any("projection" in key for key in keys)

    student.save_pretrained(tmp_path / "student")
    saved = load_file(tmp_path / "student" / "model.safetensors")
    assert {f"hf.{key}" for key in saved} <= keys
    assert not holds_any(projected, [tensor.numpy() for tensor in saved.values()])

    task.export_onnx(student, tmp_path / "student.onnx")
    graph = onnx.load(tmp_path / "student.onnx").graph
    assert not holds_any(projected, [numpy_helper.to_array(i) for i in graph.initializer])


@pytest.fixture(scope="module")
def neighbours(task: TextTask) -> WordNeighbours:
    embeddings = task.loaded_teacher().hf.get_input_embeddings().weight
    return WordNeighbours(embeddings, task.tokenizer.get_vocab(), task.train_tensors()[0][0])


def test_neighbours_are_the_nearest_other_whole_words(task: TextTask) -> None:
    vocabulary = task.tokenizer.get_vocab()
    embeddings = torch.randn(len(vocabulary), 16, generator=torch.Generator().manual_seed(0))
    plunge, slump = vocabulary["plunge"], vocabulary["slump"]
    embeddings[slump] = embeddings[plunge] * 3.0 + 0.01  # same direction: cosine ≈ 1
    table = WordNeighbours(embeddings, vocabulary, task.train_tensors()[0][0])

    assert table.neighbours[plunge, 0] == slump and table.neighbours[slump, 0] == plunge
    names = task.tokenizer.convert_ids_to_tokens(table.neighbours[vocabulary["shares"]].tolist())
    assert "shares" not in names and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z]{2,}", name) for name in names), names


def test_replace_changes_only_whole_words_of_the_chosen_rows(
    task: TextTask, neighbours: WordNeighbours
) -> None:
    ids, mask, _ = (t[:64] for t in task.train_tensors()[0])
    following = torch.roll(ids, -1, dims=1)
    split_words = neighbours.word[ids] & neighbours.continuation[following]
    assert split_words.any(), "the sample must hold words split into pieces"

    out, rows = neighbours.replace(ids, mask, 1.0, torch.Generator().manual_seed(0))
    changed = out != ids
    assert 0 < rows.sum() < len(rows) and torch.equal(out[~rows], ids[~rows])
    assert changed[rows].any(axis=1).all()  # at probability 1 every chosen row changes
    assert not changed[mask == 0].any() and not changed[split_words].any()
    assert neighbours.word[ids[changed]].all() and neighbours.word[out[changed]].all()

    same, _ = neighbours.replace(ids, mask, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same, ids)
    again, _ = neighbours.replace(ids, mask, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)


def test_altered_rows_are_scored_against_the_teacher_on_the_altered_text(task: TextTask) -> None:
    """The loss is what a teacher run on the whole altered batch gives (the step runs it
    on the altered rows only and takes the others from the caches)."""
    recipe = Recipe(layer_keep_ratio=0.5, hidden_distill_weight=1.0, augment_word_prob=1.0, **KD)
    student = drop_half(task.loaded_teacher(), task)
    step = DistillationStep(student, recipe, task, torch.Generator().manual_seed(0))
    train, labels = task.train_tensors()
    index = torch.arange(48)
    output = step.forward(student, tuple(t[index] for t in train))
    altered = output.augmented
    assert altered is not None and 0 < altered.sum() < len(index)
    assert not torch.equal(output.inputs[0], train[0][index])

    with torch.no_grad():
        teacher, teacher_states = task.loaded_teacher().forward_with_hidden_states(*output.inputs)
    y, logits = labels[index], output.logits
    logit_part = sum(
        kd_loss(logits[rows], teacher[rows], task.label_loss(logits[rows], y[rows]), 2.0, alpha)
        * rows.sum()
        for rows, alpha in ((~altered, 0.5), (altered, 1.0))
    ) / len(index)
    mask = student.hidden_state_mask(output.inputs)
    expected = logit_part + step.hidden(output.states, teacher_states, mask)
    loss = step.loss(output, y, index)
    assert torch.allclose(loss, expected, atol=1e-4)
    cached = task.teacher_logits()[index]  # the teacher's view of the original text
    on_originals = kd_loss(logits, cached, task.label_loss(logits, y), 2.0, 0.5)
    assert not torch.allclose(logit_part, on_originals, atol=1e-4)


def test_augmentation_changes_training_reproducibly(
    task: TextTask, plain_kd: dict[str, torch.Tensor]
) -> None:
    recipe = Recipe(layer_keep_ratio=0.5, augment_word_prob=0.3, **KD)
    first, second = (weights(compress(task, recipe)) for _ in range(2))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert any(not torch.equal(first[name], plain_kd[name]) for name in first)


def test_kept_layers_survive_save_and_reload(task: TextTask, tmp_path: Path) -> None:
    student = compress(task, Recipe(layer_keep_ratio=0.5, pruning_ratio=0.5))
    student.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())[KEPT_LAYERS_KEY] == [1, 3]
    reloaded = TextClassifier.from_pretrained(tmp_path)
    assert kept_layers(reloaded) == [1, 3]
    assert reloaded.hidden_state_map(task.loaded_teacher()) == [0, 2, 4]


@pytest.mark.parametrize("field", ["hidden_distill_weight", "augment_word_prob"])
def test_text_distillation_fields_are_text_only(tmp_path: Path, field: str) -> None:
    study = tiny_study_dict(tmp_path)
    study["search_space"] = {**study["search_space"], field: 0.5}
    with pytest.raises(UserError, match=rf"{field}: needs .* which task kind 'credit' does not"):
        load_study_config(write_study(tmp_path, study))


def test_text_distillation_is_described() -> None:
    recipe = Recipe(hidden_distill_weight=0.5, augment_word_prob=0.3, **KD)
    assert "KD T=2.0 a=0.50 +hid 0.5 +aug 0.3 1ep" in recipe.describe
    assert "30% of its words replaced" in " ".join(recipe.pass_chain())
    assert "+hid" not in Recipe(**KD).describe and "+aug" not in Recipe(**KD).describe


def test_text_study_with_hidden_distillation_completes(
    task: TextTask,
    workspace: Path,
    model_dir: Path,
    data_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    space = {
        "layer_keep_ratio": 0.5,
        "pruning_ratio": {"choices": [0.0, 0.5]},
        "finetune_epochs": 1,
        "hidden_distill_weight": 1.0,
        "augment_word_prob": 0.3,
        "bits": 32,
    }
    study = tiny_text_study(tmp_path, model_dir, data_file, search_space=space, n_trials=2)
    study["artifacts_dir"] = str(workspace)  # the `task` fixture's teacher: same settings
    result = run_study(write_study(tmp_path, study))
    trials = result.study.trials
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[1].user_attrs["recipe"]["hidden_distill_weight"] == 1.0
    assert trials[1].user_attrs["recipe"]["augment_word_prob"] == 0.3
    assert trials[1].user_attrs["student_spec"]["num_hidden_layers"] == 2
    assert len(list((workspace / "teachers").iterdir())) == 1  # reused, not trained again


def test_fit_shows_progress_on_stderr_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Linear(3, 2)
    inputs, labels = (torch.randn(40, 3),), torch.arange(40) % 2
    settings = FitSettings(epochs=2, batch_size=8, learning_rate=0.01, weight_decay=0.0, patience=5)

    def train(progress: str | None) -> str:
        fit(
            model,
            inputs,
            labels,
            loss_fn=lambda logits, y, _: nn.functional.cross_entropy(logits, y),
            score_fn=lambda _: 0.0,
            settings=settings,
            progress=progress,
        )
        return capsys.readouterr().err

    assert train(None) == ""
    shown = train("warming up")
    assert "warming up 1/2" in shown and "warming up 2/2" in shown and "5/5" in shown


def test_hidden_state_loss_ignores_padding(task: TextTask, teacher: TextClassifier) -> None:
    inputs = tuple(t[:8] for t in task.train_tensors()[0])
    states = teacher.forward_with_hidden_states(*inputs)[1]
    mask = teacher.hidden_state_mask(inputs)
    assert mask.shape == states[0].shape[:2] and 0 < mask.sum() < mask.numel()

    loss = distill.HiddenStateLoss([0], [(32, 32)], weight=1.0)
    noisy = states[0] + torch.randn_like(states[0])
    at_padding = noisy.clone()
    at_padding[mask == 0] += 100.0  # what sits where the mask is 0 must not matter
    masked = loss([noisy], states, mask)
    assert torch.allclose(loss([at_padding], states, mask), masked)
    assert not torch.allclose(loss([at_padding], states), loss([noisy], states))
    assert torch.allclose(
        distill.masked_mse(noisy, states[0], torch.ones_like(mask)),
        torch.nn.functional.mse_loss(noisy, states[0]),
    )


def test_cached_teacher_states_match_a_fresh_forward(
    task: TextTask, teacher: TextClassifier
) -> None:
    """The per-process cache gives what a teacher forward on the same batch gives, at
    every real token (fp16 storage), trimmed to the batch's length, zero at padding."""
    index = torch.tensor([5, 0, 17, 3])
    cached = task.teacher_hidden_states(index)
    rows = tuple(t[index] for t in task.train_tensors()[0])
    with torch.no_grad():
        fresh = teacher.forward_with_hidden_states(*rows)[1]
    mask = teacher.hidden_state_mask(rows).unsqueeze(-1)
    assert len(cached) == len(fresh) == 5  # embeddings + 4 layers
    for kept, computed in zip(cached, fresh, strict=True):
        assert kept.dtype == torch.float32 and kept.shape == computed.shape
        assert torch.allclose(kept, computed * mask, atol=2e-2, rtol=1e-2)
        assert torch.all(kept[(mask == 0).expand_as(kept)] == 0)
