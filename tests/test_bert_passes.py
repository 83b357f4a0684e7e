"""Width pruning, layer dropping, ONNX and precision on a tiny random BERT classifier.

No weights are downloaded: every model is a `BertConfig` initialised at random. The
passes ask the model (`TextClassifier`'s `Prunable` and `Layered` methods); a small
test-double task supplies the data they train and trace with, and the ONNX export.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch_pruning as tp
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, BertConfig

from autocompress.errors import Unsupported
from autocompress.models import HiddenStates, Layered, MLPClassifier, Prunable, Specified
from autocompress.models.bert import (
    TextClassifier,
    drop_layers,
    kept_layer_indices,
    pruning_options,
    sync_after_pruning,
)
from autocompress.models.capabilities import PrunableFFN
from autocompress.passes import PassContext, StructuredPruning, apply_precision
from autocompress.passes.layer_drop import LayerDrop
from autocompress.recipe import Recipe
from autocompress.tasks.base import Task
from autocompress.training import FitSettings

VOCAB, SEQ, LABELS = 200, 16, 3
SHAPE = {
    "num_hidden_layers": 4,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "num_labels": LABELS,
}


def tiny_bert(seed: int = 0, **overrides: int) -> TextClassifier:
    """A fresh random BERT (a fresh config too: `from_config` keeps the object, and the
    surgery below rewrites it)."""
    torch.manual_seed(seed)
    values = {
        **SHAPE,
        "vocab_size": VOCAB,
        "max_position_embeddings": 64,
        # wider than the 0.02 default so random logits spread and precision errors show
        "initializer_range": 0.1,
        **overrides,
    }
    config = BertConfig(**values)
    return TextClassifier.from_hf(AutoModelForSequenceClassification.from_config(config)).eval()


def token_batch(rows: int, seq: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids with right padding (id 0, mask 0) of random lengths."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (rows, seq), generator=generator)
    lengths = torch.randint(seq // 4, seq + 1, (rows,), generator=generator)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    return ids * mask, mask


class TinyTextTask(Task):
    """Just enough of a text task for the passes: tokens, labels, ONNX export."""

    def __init__(self) -> None:
        self.splits = {
            "train": (*token_batch(64, SEQ, seed=1), torch.arange(64) % LABELS),
            "test": (*token_batch(24, SEQ, seed=2), torch.arange(24) % LABELS),
        }

    # what pruning (and taylor importance) needs
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        ids, mask, _ = self.splits["train"]
        return ids[:4], mask[:4]

    def train_tensors(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        ids, mask, labels = self.splits["train"]
        return (ids, mask), labels

    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    # ONNX side
    def export_onnx(self, model: nn.Module, path: Path) -> None:
        model.eval()
        axes = {0: "batch", 1: "sequence"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about the mask construction
            torch.onnx.export(
                model,
                self.example_inputs(),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )

    def feeds(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        ids, mask, _ = self.splits[split]
        return {"input_ids": ids[:limit].numpy(), "attention_mask": mask[:limit].numpy()}

    def labels(self, split: str) -> np.ndarray:
        return self.splits[split][2].numpy()

    # not needed by these tests
    def fingerprint(self) -> str:
        raise NotImplementedError

    def _train_teacher(self) -> nn.Module:
        raise NotImplementedError

    def _save_teacher(self, teacher: nn.Module, folder: Path) -> None:
        raise NotImplementedError

    def _load_teacher(self, folder: Path) -> nn.Module:
        raise NotImplementedError

    def validation_score(self, model: nn.Module) -> float:
        raise NotImplementedError

    def fit_settings(self, epochs: int) -> FitSettings:
        raise NotImplementedError

    def teacher_logits(self) -> torch.Tensor:
        raise NotImplementedError

    def write_extras(self, folder: Path) -> list[str]:
        raise NotImplementedError


@pytest.fixture(scope="module")
def task() -> TinyTextTask:
    return TinyTextTask()


@pytest.fixture(scope="module")
def teacher() -> TextClassifier:
    return tiny_bert()


@pytest.fixture
def student(teacher: TextClassifier) -> TextClassifier:
    return copy.deepcopy(teacher)


def held_out(task: TinyTextTask) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask, _ = task.splits["test"]
    return ids, mask


def logits(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return model(*inputs)


def prune(model: TextClassifier, task: TinyTextTask, ratio: float, importance: str = "l2"):
    recipe = Recipe(pruning_ratio=ratio, pruning_importance=importance)
    return StructuredPruning().apply(model, recipe, PassContext(data=task))


def drop(model: TextClassifier, task: TinyTextTask, keep_ratio: float) -> nn.Module:
    return LayerDrop().apply(model, Recipe(layer_keep_ratio=keep_ratio), PassContext(data=task))


def assert_matches_config(model: TextClassifier) -> None:
    """The spec, every attention module and the HF config all describe the same shape."""
    spec, config = model.spec, model.hf.config
    for key in SHAPE:
        assert getattr(config, key) == spec[key], key
    head_size = spec["hidden_size"] // spec["num_attention_heads"]
    assert head_size * spec["num_attention_heads"] == spec["hidden_size"]
    for layer in model.hf.bert.encoder.layer:
        attention = layer.attention.self
        assert attention.num_attention_heads == spec["num_attention_heads"]
        assert attention.attention_head_size == head_size
        assert attention.all_head_size == spec["hidden_size"]
        assert attention.scaling == head_size**-0.5
        assert layer.intermediate.dense.out_features == spec["intermediate_size"]
    # exactly the architecture the config builds: same parameter names and shapes
    fresh = AutoModelForSequenceClassification.from_config(BertConfig(**config.to_dict()))
    expected = {k: v.shape for k, v in fresh.state_dict().items()}
    assert {k: v.shape for k, v in model.hf.state_dict().items()} == expected


def assert_reloads_exactly(model: TextClassifier, folder: Path, inputs: tuple) -> None:
    """Plain transformers reloads the saved model (no autocompress code) bit-exactly."""
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert not [p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pkl")]
    saved = json.loads((folder / "config.json").read_text())
    for key in SHAPE:
        if key != "num_labels":
            assert saved[key] == model.spec[key], key
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        reloaded = plain(input_ids=inputs[0], attention_mask=inputs[1]).logits
    assert torch.equal(reloaded, logits(model, inputs))
    wrapped = TextClassifier.from_pretrained(folder)
    assert wrapped.spec == model.spec and not wrapped.training
    assert torch.equal(logits(wrapped, inputs), reloaded)


# -- the wrapper -----------------------------------------------------------------------


def test_wrapper_forward_spec_and_reload(
    teacher: TextClassifier, task: TinyTextTask, tmp_path: Path
) -> None:
    inputs = held_out(task)
    out = logits(teacher, inputs)
    assert out.shape == (24, LABELS) and torch.isfinite(out).all()
    with torch.no_grad():
        direct = teacher.hf(input_ids=inputs[0], attention_mask=inputs[1]).logits
    assert torch.equal(out, direct)
    assert teacher.spec == {"family": "bert", **SHAPE}
    assert teacher.num_parameters() == sum(p.numel() for p in teacher.hf.parameters())
    assert_matches_config(teacher)
    assert_reloads_exactly(teacher, tmp_path / "teacher", inputs)


# -- width pruning ---------------------------------------------------------------------

# ratio -> (heads, hidden, FFN) kept: heads round to whole heads, hidden = heads × 16
PRUNED_SHAPES = {0.25: (3, 48, 96), 0.5: (2, 32, 64)}


@pytest.mark.parametrize("ratio", list(PRUNED_SHAPES))
def test_pruning_is_uniform_and_config_stays_true(
    task: TinyTextTask,
    teacher: TextClassifier,
    student: TextClassifier,
    ratio: float,
    tmp_path: Path,
) -> None:
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    pruned = prune(student, task, ratio)
    heads, hidden, ffn = PRUNED_SHAPES[ratio]
    assert pruned.spec == {
        "family": "bert",
        "num_hidden_layers": 4,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "num_labels": LABELS,
    }
    assert_matches_config(pruned)
    assert pruned.num_parameters() < teacher.num_parameters()
    # embeddings, pooler and classifier input follow the hidden size; the head keeps 3 labels
    embeddings = pruned.hf.bert.embeddings
    assert embeddings.word_embeddings.weight.shape == (VOCAB, hidden)
    assert embeddings.position_embeddings.weight.shape[1] == hidden
    assert pruned.hf.bert.pooler.dense.weight.shape == (hidden, hidden)
    assert pruned.hf.classifier.weight.shape == (LABELS, hidden)
    assert torch.equal(pruned.hf.classifier.bias, teacher.hf.classifier.bias)
    out = logits(pruned, held_out(task))
    assert out.shape == (24, LABELS) and torch.isfinite(out).all()
    assert all(p.grad is None for p in pruned.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert_reloads_exactly(pruned, tmp_path / "pruned", held_out(task))


@pytest.mark.parametrize(
    ("ratio", "ffn_ratio", "shape"), [(0.0, 0.5, (4, 64, 64)), (0.25, 0.75, (3, 48, 32))]
)
def test_ffn_pruned_by_its_own_ratio(
    task: TinyTextTask,
    student: TextClassifier,
    ratio: float,
    ffn_ratio: float,
    shape: tuple[int, int, int],
    tmp_path: Path,
) -> None:
    """Heads and hidden size by `pruning_ratio`, FFN by `ffn_pruning_ratio`: still one
    BertConfig, reloaded by plain transformers and exported to the same logits."""
    recipe = Recipe(pruning_ratio=ratio, ffn_pruning_ratio=ffn_ratio)
    pruned = StructuredPruning().apply(student, recipe, PassContext(data=task))
    spec = pruned.spec
    assert (spec["num_attention_heads"], spec["hidden_size"], spec["intermediate_size"]) == shape
    assert_matches_config(pruned)
    assert_reloads_exactly(pruned, tmp_path / "pruned", held_out(task))
    task.export_onnx(copy.deepcopy(pruned), tmp_path / "model.onnx")
    ids, mask = held_out(task)
    got = run(tmp_path / "model.onnx", {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    np.testing.assert_allclose(got, logits(pruned, (ids, mask)).numpy(), atol=1e-4, rtol=0)
    assert f"FFN {ffn_ratio:.0%}" in recipe.describe


@pytest.mark.parametrize("importance", ["l1", "lamp", "taylor", "random"])
def test_every_importance_gives_the_same_uniform_shape(
    task: TinyTextTask, student: TextClassifier, importance: str
) -> None:
    pruned = prune(student, task, 0.5, importance)
    assert (pruned.spec["num_attention_heads"], pruned.spec["hidden_size"]) == (2, 32)
    assert pruned.spec["intermediate_size"] == 64
    assert_matches_config(pruned)
    assert all(p.grad is None for p in pruned.parameters())


def test_head_counts_survive_float_rounding(task: TinyTextTask) -> None:
    """10 heads at 0.3: 0.3 × 10 is 3.0000000000000004, so torch-pruning's own ceil would
    drop 4 heads while keeping int(80 × 0.7) = 56 hidden channels (not 6 × 8)."""
    model = tiny_bert(hidden_size=80, num_attention_heads=10, intermediate_size=160)
    pruned = prune(model, task, 0.3)
    assert pruned.spec["num_attention_heads"] == 7
    assert pruned.spec["hidden_size"] == 56
    assert pruned.spec["intermediate_size"] == int(160 * 0.7)
    assert_matches_config(pruned)


def test_pruning_removes_whole_heads(
    task: TinyTextTask, teacher: TextClassifier, student: TextClassifier
) -> None:
    """Heads only (hidden and FFN kept): the pruned model computes exactly what the
    teacher computes with the dropped heads' output columns zeroed."""
    options = pruning_options(student, 0.5)
    attention_only = {m: r for m, r in options["pruning_ratio_dict"].items() if hasattr(m, "query")}
    options |= {"pruning_ratio": 0.0, "pruning_ratio_dict": attention_only}
    pruner = tp.pruner.MetaPruner(
        student,
        task.example_inputs(),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        **options,
    )
    pruner.step()
    # the attention modules are brought in line first; the config cannot follow,
    # since 2 heads × 16 is not the untouched hidden size 64
    with pytest.raises(Unsupported, match="heads × head size"):
        sync_after_pruning(student, pruner)

    masked = copy.deepcopy(teacher)
    for layer, original, pruned in zip(
        masked.hf.bert.encoder.layer,
        teacher.hf.bert.encoder.layer,
        student.hf.bert.encoder.layer,
        strict=True,
    ):
        attention = pruned.attention.self
        assert attention.num_attention_heads == 2 and attention.attention_head_size == 16
        query, kept_query = original.attention.self.query.weight, attention.query.weight
        kept_heads = []
        for head in range(2):
            rows = kept_query[head * 16 : (head + 1) * 16]
            matches = [h for h in range(4) if torch.equal(query[h * 16 : (h + 1) * 16], rows)]
            assert len(matches) == 1, "a kept head is not a whole head of the teacher"
            kept_heads += matches
        assert len(set(kept_heads)) == 2
        with torch.no_grad():
            for head in set(range(4)) - set(kept_heads):
                layer.attention.output.dense.weight[:, head * 16 : (head + 1) * 16] = 0
    inputs = held_out(task)
    torch.testing.assert_close(logits(student, inputs), logits(masked, inputs))


def test_non_uniform_layers_are_unsupported(student: TextClassifier, tmp_path: Path) -> None:
    """One layer's FFN pruned by hand: no single BertConfig describes it, so refuse."""
    layer = student.hf.bert.encoder.layer[1]
    tp.prune_linear_out_channels(layer.intermediate.dense, list(range(32)))
    tp.prune_linear_in_channels(layer.output.dense, list(range(32)))
    with pytest.raises(Unsupported, match="non-uniformly"):
        sync_after_pruning(student, pruner=None)
    with pytest.raises(Unsupported, match="non-uniformly"):
        student.save_pretrained(tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_spec_refuses_a_config_that_disagrees(student: TextClassifier) -> None:
    student.hf.config.intermediate_size = 100
    with pytest.raises(Unsupported, match="intermediate_size=100"):
        _ = student.spec


def test_ratio_zero_prunes_nothing(task: TinyTextTask, student: TextClassifier) -> None:
    assert prune(student, task, 0.0) is student
    assert student.spec == {"family": "bert", **SHAPE}


# -- layer dropping --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "keep_ratio", "kept"),
    [
        (6, 0.5, [1, 3, 5]),
        (4, 0.5, [1, 3]),
        (4, 0.25, [3]),
        (4, 0.01, [3]),
        (4, 0.75, [1, 2, 3]),
        (12, 1 / 3, [2, 5, 8, 11]),
        (5, 0.5, [1, 3, 4]),  # 3 blocks of 5/3 layers: ends at 1.67, 3.33, 5
        (4, 1.0, [0, 1, 2, 3]),
    ],
)
def test_kept_layers_are_evenly_spaced_and_end_with_the_last(
    layers: int, keep_ratio: float, kept: list[int]
) -> None:
    assert kept_layer_indices(layers, keep_ratio) == kept


def test_layer_drop_keeps_the_chosen_layers(task: TinyTextTask, tmp_path: Path) -> None:
    model = tiny_bert(num_hidden_layers=6)
    originals = list(model.hf.bert.encoder.layer)
    dropped = drop(model, task, 0.5)
    assert dropped is model
    layers = list(dropped.hf.bert.encoder.layer)
    assert [originals.index(layer) for layer in layers] == [1, 3, 5]
    assert [layer.attention.self.layer_idx for layer in layers] == [0, 1, 2]
    assert dropped.hf.config.num_hidden_layers == 3
    assert dropped.spec == {"family": "bert", **SHAPE, "num_hidden_layers": 3}
    assert_matches_config(dropped)
    out = logits(dropped, held_out(task))
    assert out.shape == (24, LABELS) and torch.isfinite(out).all()
    assert_reloads_exactly(dropped, tmp_path / "dropped", held_out(task))


def test_layer_drop_at_one_is_a_no_op(task: TinyTextTask, student: TextClassifier) -> None:
    layers = list(student.hf.bert.encoder.layer)
    assert drop(student, task, 1.0) is student
    assert LayerDrop().apply(student, Recipe(), PassContext(data=task)) is student
    assert list(student.hf.bert.encoder.layer) == layers
    assert drop_layers(student, 1.0) is student and student.hf.config.num_hidden_layers == 4


def test_a_text_classifier_has_every_capability(student: TextClassifier) -> None:
    for capability in (Specified, Prunable, PrunableFFN, Layered, HiddenStates):
        assert isinstance(student, capability), capability.__name__
    assert student.protected_layers() == [student.hf.classifier]
    inputs = token_batch(4, SEQ, seed=5)
    logits, states = student.forward_with_hidden_states(*inputs)
    assert torch.allclose(logits, student(*inputs))
    assert len(states) == SHAPE["num_hidden_layers"] + 1
    assert student.hidden_state_mask(inputs).shape == states[0].shape[:2]
    assert student.hidden_state_map(student) == [0, 1, 2, 3, 4]
    with pytest.raises(Unsupported, match="MLPClassifier teacher has no BERT layers"):
        student.hidden_state_map(MLPClassifier(8, [4], LABELS))


def test_layer_drop_on_a_model_without_layers_is_unsupported(
    task: TinyTextTask, student: TextClassifier
) -> None:
    mlp = MLPClassifier(8, [4], LABELS)  # not `Layered`; the text task's data is irrelevant
    with pytest.raises(Unsupported, match="MLPClassifier models have no layers to drop"):
        drop(mlp, task, 0.5)
    with pytest.raises(Unsupported, match="keep ratio"):
        drop_layers(student, 0.0)


# -- pruned and dropped: reload, ONNX, precision ---------------------------------------


@pytest.fixture(scope="module")
def compressed(teacher: TextClassifier, task: TinyTextTask) -> TextClassifier:
    model = drop(prune(copy.deepcopy(teacher), task, 0.25), task, 0.5)
    assert isinstance(model, TextClassifier)
    return model


def test_prune_then_drop(
    compressed: TextClassifier, teacher: TextClassifier, task: TinyTextTask, tmp_path: Path
) -> None:
    assert compressed.spec == {
        "family": "bert",
        "num_hidden_layers": 2,
        "hidden_size": 48,
        "num_attention_heads": 3,
        "intermediate_size": 96,
        "num_labels": LABELS,
    }
    assert_matches_config(compressed)
    assert compressed.num_parameters() < 0.6 * teacher.num_parameters()
    assert_reloads_exactly(compressed, tmp_path / "both", held_out(task))


@pytest.fixture(scope="module")
def fp32_onnx(
    compressed: TextClassifier, task: TinyTextTask, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("bert-onnx") / "model.fp32.onnx"
    task.export_onnx(copy.deepcopy(compressed), path)
    return path


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(("rows", "seq"), [(24, 16), (1, 5), (7, 40)])
def test_onnx_export_matches_torch_on_any_batch_and_length(
    compressed: TextClassifier, fp32_onnx: Path, rows: int, seq: int
) -> None:
    ids, mask = token_batch(rows, seq, seed=rows + seq)
    got = run(fp32_onnx, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    expected = logits(compressed, (ids, mask)).numpy()
    assert got.shape == (rows, LABELS)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


# (recipe, max |Δlogit| as a fraction of the fp32 logit range, ops expected). Random
# weights at initializer_range 0.1 are harsher on low precision than trained ones.
PRECISIONS = {
    "fp32": (Recipe(bits=32), 0.0, {"Gemm", "MatMul"}),
    "fp16": (Recipe(bits=16), 0.01, {"Cast"}),
    "int8-dynamic": (Recipe(bits=8), 0.15, {"MatMulInteger", "DynamicQuantizeLinear"}),
    "int8-dynamic-per-channel": (
        Recipe(bits=8, per_channel=True),
        0.15,
        {"MatMulInteger", "DynamicQuantizeLinear"},
    ),
    "int8-static": (Recipe(bits=8, int8_mode="static"), 0.15, {"QuantizeLinear"}),
    "int8-static-per-channel": (
        Recipe(bits=8, int8_mode="static", per_channel=True),
        0.15,
        {"QuantizeLinear"},
    ),
    "int4-b16": (Recipe(bits=4, int4_block_size=16), 0.2, {"MatMulNBits"}),
    "int4-b32": (Recipe(bits=4, int4_block_size=32), 0.2, {"MatMulNBits"}),  # K=48: padded
}


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_precision_on_bert_onnx(
    fp32_onnx: Path, task: TinyTextTask, tmp_path: Path, name: str
) -> None:
    recipe, tolerance, expected_ops = PRECISIONS[name]
    out = tmp_path / "model.onnx"
    apply_precision(fp32_onnx, out, recipe, task.calibration_feeds(batches=2, batch_size=32))
    feeds = task.feeds("test")
    reference, got = run(fp32_onnx, feeds), run(out, feeds)
    assert got.shape == reference.shape and got.dtype == np.float32
    scale = float(reference.max() - reference.min())
    error = float(np.abs(got - reference).max())
    assert error <= tolerance * scale, f"{name}: max |Δ| {error:.4g} over range {scale:.4g}"
    if recipe.bits >= 16:  # quantized: random logits have near ties, the bound above rules
        assert np.array_equal(got.argmax(1), reference.argmax(1))
    model = onnx.load(out)
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert expected_ops <= ops, ops


def test_static_int8_leaves_the_attention_mask_alone(
    fp32_onnx: Path, task: TinyTextTask, tmp_path: Path
) -> None:
    """The additive mask (0 or float32 min) must not be quantized: its scale would be inf."""
    out = tmp_path / "static.onnx"
    recipe = Recipe(bits=8, int8_mode="static")
    apply_precision(fp32_onnx, out, recipe, task.calibration_feeds(batches=2, batch_size=32))
    model = onnx.load(out)
    scales = [
        numpy_helper.to_array(init)
        for init in model.graph.initializer
        if init.name.endswith("_scale")
    ]
    assert scales and all(np.isfinite(s).all() and (s > 0).all() for s in scales)
    # the masked attention scores reach Softmax in float, not through a Q/DQ pair
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    softmax_inputs = [produced_by[n.input[0]] for n in model.graph.node if n.op_type == "Softmax"]
    assert softmax_inputs and "DequantizeLinear" not in softmax_inputs, softmax_inputs
