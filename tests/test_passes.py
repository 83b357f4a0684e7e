"""The compression passes on a real (small) credit task: torch-pruning, KD, onnxruntime.

One task and one teacher are built per module; every pass works on a deep copy.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch.nn import functional as F

from autocompress.errors import Unsupported
from autocompress.models import HiddenStates, Layered, MLPClassifier, Prunable, Specified
from autocompress.models.capabilities import PrunableFFN
from autocompress.passes import (
    Distillation,
    LayerDrop,
    PassContext,
    StructuredPruning,
    apply_precision,
    kd_loss,
)
from autocompress.passes import prune as prune_module
from autocompress.passes.distill import HiddenStateLoss
from autocompress.passes.precision import gemm_to_matmul
from autocompress.passes.prune import IMPORTANCE_CRITERIA
from autocompress.recipe import Recipe
from autocompress.tasks.credit import CreditTask
from autocompress.tasks.credit_config import DataConfig, TeacherConfig
from autocompress.training import FitSettings, learning_rate_schedule

HIDDEN = [64, 32]


@pytest.fixture(scope="module")
def task() -> CreditTask:
    data = DataConfig(
        path="embedded:germancredit", label="creditability", positive_label="bad", seed=0
    )
    return CreditTask(data, TeacherConfig(hidden_sizes=HIDDEN, epochs=3, patience=2))


@pytest.fixture(scope="module")
def teacher(task: CreditTask, tmp_path_factory: pytest.TempPathFactory) -> MLPClassifier:
    model = task.teacher(tmp_path_factory.mktemp("teacher-cache"))
    assert isinstance(model, MLPClassifier)
    return model


@pytest.fixture
def student(teacher: MLPClassifier) -> MLPClassifier:
    return copy.deepcopy(teacher)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kept_rows(pruned: torch.Tensor, original: torch.Tensor) -> list[int]:
    """Index in `original` of every row of `pruned` (each must be an exact copy)."""
    indices = []
    for row in pruned:
        matches = torch.nonzero(torch.all(original == row, dim=1)).flatten()
        assert len(matches) >= 1, "a pruned row is not a row of the original layer"
        indices.append(int(matches[0]))
    return indices


# -- structured pruning ----------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_pruning_shrinks_hidden_widths_by_the_ratio(
    task: CreditTask, teacher: MLPClassifier, student: MLPClassifier, ratio: float
) -> None:
    before = state_copy(teacher)
    pruned = StructuredPruning().apply(student, Recipe(pruning_ratio=ratio), PassContext(data=task))
    widths = pruned.spec["hidden_sizes"]
    assert len(widths) == len(HIDDEN)
    for width, original in zip(widths, HIDDEN, strict=True):
        assert 1 <= width < original
        assert abs(width - original * (1 - ratio)) <= 1, (widths, ratio)
    assert pruned.num_parameters() < teacher.num_parameters()
    # the head is protected: still two classes, and its input follows the last hidden width
    assert pruned.head.out_features == 2
    assert pruned.head.in_features == widths[-1]
    assert pruned.spec["input_dim"] == teacher.spec["input_dim"]
    logits = pruned(task.example_inputs()[0])
    assert logits.shape == (8, 2) and torch.isfinite(logits).all()
    assert same_weights(before, teacher.state_dict()), "the pass must not touch the teacher"


@pytest.mark.parametrize("importance", IMPORTANCE_CRITERIA)
def test_every_importance_prunes_whole_channels(
    task: CreditTask, teacher: MLPClassifier, student: MLPClassifier, importance: str
) -> None:
    recipe = Recipe(pruning_ratio=0.5, pruning_importance=importance)
    pruned = StructuredPruning().apply(student, recipe, PassContext(data=task, seed=3))
    assert pruned.spec["hidden_sizes"] == [32, 16]
    assert pruned.head.out_features == 2
    # structured: surviving channels are exact copies of the teacher's, and the next
    # layer keeps exactly the matching input columns (nothing re-initialised or masked)
    first, second = teacher.body[0], teacher.body[3]
    rows0 = kept_rows(pruned.body[0].weight.detach(), first.weight.detach())
    assert len(set(rows0)) == 32
    assert torch.equal(pruned.body[0].bias.detach(), first.bias.detach()[rows0])
    rows1 = kept_rows(pruned.body[3].weight.detach(), second.weight.detach()[:, rows0])
    assert len(set(rows1)) == 16
    assert torch.equal(pruned.head.weight.detach(), teacher.head.weight.detach()[:, rows1])
    assert torch.equal(pruned.head.bias.detach(), teacher.head.bias.detach())
    # no gradients left behind (taylor runs a backward pass)
    assert all(p.grad is None for p in pruned.parameters())
    assert torch.isfinite(pruned(task.example_inputs()[0])).all()


def test_taylor_gradients_come_from_bounded_mini_batches(
    task: CreditTask, student: MLPClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch of a whole training set ran MiniLM out of 24 GiB (the OOM killer)."""
    monkeypatch.setattr(prune_module, "TAYLOR_EXAMPLES", 100)
    seen: list[int] = []
    hook = student.register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    recipe = Recipe(pruning_ratio=0.5, pruning_importance="taylor")
    StructuredPruning().apply(student, recipe, PassContext(data=task, seed=3))
    hook.remove()
    gradient_batches = seen[-4:]  # 100 examples in batches of 32 (after graph tracing)
    assert gradient_batches == [32, 32, 32, 4]
    assert max(seen) <= max(prune_module.TAYLOR_BATCH, len(task.example_inputs()[0]))


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_magnitude_importance_keeps_the_larger_channels(
    task: CreditTask, teacher: MLPClassifier, student: MLPClassifier, importance: str
) -> None:
    p = 1 if importance == "l1" else 2
    recipe = Recipe(pruning_ratio=0.5, pruning_importance=importance)
    pruned = StructuredPruning().apply(student, recipe, PassContext(data=task))
    first, second = teacher.body[0].weight.detach(), teacher.body[3].weight.detach()
    kept = set(kept_rows(pruned.body[0].weight.detach(), first))
    # group magnitude of a hidden unit: its input weights plus its outgoing weights
    score = first.abs().pow(p).sum(1) + second.abs().pow(p).sum(0)
    dropped = [i for i in range(HIDDEN[0]) if i not in kept]
    assert score[sorted(kept)].mean() > score[dropped].mean()
    top = set(torch.topk(score, 32).indices.tolist())
    assert len(top & kept) >= 28  # ranking may differ only at the margin (bias, normalising)


def test_random_importance_is_seeded_and_differs_from_l2(
    task: CreditTask, teacher: MLPClassifier
) -> None:
    def kept(importance: str, seed: int) -> list[int]:
        recipe = Recipe(pruning_ratio=0.5, pruning_importance=importance)
        model = StructuredPruning().apply(
            copy.deepcopy(teacher), recipe, PassContext(data=task, seed=seed)
        )
        return kept_rows(model.body[0].weight.detach(), teacher.body[0].weight.detach())

    assert kept("random", 1) == kept("random", 1)
    assert kept("random", 1) != kept("random", 2)
    assert kept("random", 1) != kept("l2", 1)


def test_ratio_zero_returns_the_model_unchanged(task: CreditTask, student: MLPClassifier) -> None:
    before = state_copy(student)
    result = StructuredPruning().apply(
        student, Recipe(pruning_ratio=0.0, pruning_importance="random"), PassContext(data=task)
    )
    assert result is student
    assert result.spec["hidden_sizes"] == HIDDEN
    assert same_weights(before, result.state_dict())


def test_pruned_spec_round_trips_through_safetensors(
    task: CreditTask, student: MLPClassifier, tmp_path: Path
) -> None:
    pruned = (
        StructuredPruning()
        .apply(
            student, Recipe(pruning_ratio=0.4, pruning_importance="lamp"), PassContext(data=task)
        )
        .eval()
    )
    pruned.save_pretrained(tmp_path / "student")
    assert (tmp_path / "student" / "model.safetensors").is_file()
    assert not list((tmp_path / "student").glob("*.pt")) and not list(
        (tmp_path / "student").glob("*.bin")
    )
    reloaded = MLPClassifier.from_pretrained(tmp_path / "student")
    assert reloaded.spec == pruned.spec
    assert reloaded.spec["hidden_sizes"] != HIDDEN
    assert not reloaded.training
    inputs = torch.from_numpy(task.core_feeds("test")["features"])
    with torch.no_grad():
        assert torch.equal(reloaded(inputs), pruned(inputs))


# -- knowledge distillation loss -------------------------------------------------------


def logits_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(16, 2, generator=generator) * 3
    teacher = torch.randn(16, 2, generator=generator) * 3
    labels = torch.randint(0, 2, (16,), generator=generator)
    return student, teacher, labels


def test_kd_alpha_zero_is_exactly_the_hard_loss() -> None:
    student, teacher, labels = logits_pair()
    hard = F.cross_entropy(student, labels)
    for temperature in (1.0, 4.0, 20.0):
        assert torch.equal(kd_loss(student, teacher, hard, temperature, 0.0), hard)


def test_kd_alpha_one_with_identical_logits_is_zero() -> None:
    student, _, labels = logits_pair()
    hard = F.cross_entropy(student, labels)
    assert hard.item() > 0.1
    for temperature in (1.0, 3.0, 10.0):
        loss = kd_loss(student, student.clone(), hard, temperature, 1.0)
        assert abs(loss.item()) < 1e-6


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_kd_matches_a_manual_t_squared_kl(temperature: float, alpha: float) -> None:
    student, teacher, labels = logits_pair(1)
    hard = F.cross_entropy(student, labels)
    p_teacher = torch.softmax(teacher / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher / temperature, dim=-1)
    log_p_student = torch.log_softmax(student / temperature, dim=-1)
    kl = (p_teacher * (log_p_teacher - log_p_student)).sum(-1).mean()  # KL(teacher ‖ student)
    expected = alpha * temperature**2 * kl + (1 - alpha) * hard
    got = kd_loss(student, teacher, hard, temperature, alpha)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    if temperature > 1.0:  # without T² the soft term would shrink with the temperature
        unscaled = alpha * kl + (1 - alpha) * hard
        assert not torch.allclose(got, unscaled, rtol=1e-3)


def test_kd_gradient_flows_to_the_student_only() -> None:
    student, teacher, labels = logits_pair(2)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss = kd_loss(student, teacher.detach(), F.cross_entropy(student, labels), 4.0, 0.7)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None
    # and the soft term alone pulls the student towards the teacher
    s = student.detach().clone().requires_grad_(True)
    kd_loss(s, teacher.detach(), torch.zeros(()), 2.0, 1.0).backward()
    with torch.no_grad():
        stepped = kd_loss(s - 0.1 * s.grad, teacher.detach(), torch.zeros(()), 2.0, 1.0)
        assert stepped < kd_loss(s, teacher.detach(), torch.zeros(()), 2.0, 1.0)


# -- what the model can do ------------------------------------------------------------


class NoData:
    """Training data that must not be read: a refusal comes from the model first."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the pass asked the data for {name}")


def test_an_mlp_is_specified_and_prunable_only(student: MLPClassifier) -> None:
    assert isinstance(student, Specified) and isinstance(student, Prunable)
    for lacking in (PrunableFFN, Layered, HiddenStates):
        assert not isinstance(student, lacking), lacking.__name__
    assert student.protected_layers() == [student.head]
    assert student.pruning_options(0.5) == {}
    assert student.after_pruning(pruner=None) is None


def test_an_mlp_refuses_layer_drop_ffn_pruning_and_hidden_states_with_a_reason(
    teacher: MLPClassifier, student: MLPClassifier
) -> None:
    with pytest.raises(Unsupported, match="^MLPClassifier models have no layers to drop$"):
        LayerDrop().apply(student, Recipe(layer_keep_ratio=0.5), PassContext(data=NoData()))
    no_states = "^MLPClassifier models expose no hidden states to distil$"
    with pytest.raises(Unsupported, match=no_states):
        HiddenStateLoss.between(student, teacher, NoData(), weight=1.0)
    no_ffn = "^MLPClassifier models have no FFN to prune apart from the other widths$"
    with pytest.raises(Unsupported, match=no_ffn):
        recipe = Recipe(pruning_ratio=0.5, ffn_pruning_ratio=0.25)
        StructuredPruning().apply(student, recipe, PassContext(data=NoData()))
    # no layers to keep: layer drop at 1.0 is a no-op, whatever the model
    assert LayerDrop().apply(student, Recipe(), PassContext(data=NoData())) is student


def test_hidden_state_distillation_of_an_mlp_is_unsupported(
    task: CreditTask, student: MLPClassifier
) -> None:
    """Through the pass, as a trial runs it: `Unsupported` prunes the trial with its reason."""
    before = state_copy(student)
    recipe = Recipe(finetune_epochs=1, kd_alpha=0.5, hidden_distill_weight=1.0)
    with pytest.raises(Unsupported, match="MLPClassifier models expose no hidden states"):
        Distillation().apply(student, recipe, PassContext(data=task))
    assert same_weights(before, student.state_dict())


def test_a_model_that_is_not_prunable_is_refused() -> None:
    plain = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    assert not isinstance(plain, Prunable)
    with pytest.raises(Unsupported, match="^Sequential models cannot be pruned structurally$"):
        StructuredPruning().apply(plain, Recipe(pruning_ratio=0.5), PassContext(data=NoData()))


# -- the distillation pass -------------------------------------------------------------


def test_distillation_changes_weights_and_reports_epochs(
    task: CreditTask, student: MLPClassifier
) -> None:
    before = state_copy(student)
    epochs: list[int] = []
    recipe = Recipe(finetune_epochs=2, kd_temperature=3.0, kd_alpha=0.5)
    result = Distillation().apply(
        student, recipe, PassContext(data=task, seed=0, on_epoch=lambda e, _: epochs.append(e))
    )
    assert result is student
    assert not same_weights(before, result.state_dict())
    assert epochs and epochs[0] == 1 and len(epochs) <= 2
    assert not result.training


def test_distillation_of_a_pruned_student(task: CreditTask, student: MLPClassifier) -> None:
    context = PassContext(data=task)
    pruned = StructuredPruning().apply(student, Recipe(pruning_ratio=0.5), context)
    before = state_copy(pruned)
    recipe = Recipe(pruning_ratio=0.5, finetune_epochs=1, kd_temperature=2.0, kd_alpha=1.0)
    tuned = Distillation().apply(pruned, recipe, context)
    assert tuned.spec["hidden_sizes"] == [32, 16]
    assert not same_weights(before, tuned.state_dict())


@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_learning_rate_schedule(schedule: str) -> None:
    """`linear` warms up over 6% of the steps, peaks, then decays to zero at the end."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    settings = FitSettings(4, 8, 1e-3, 0.0, 1, lr_schedule=schedule)
    scheduler = learning_rate_schedule(optimizer, settings, total_steps=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if schedule == "constant":
        assert rates == [1e-3] * 100
        return
    assert rates[0] == 0.0 and rates[3] == pytest.approx(1e-3 / 2)
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 6
    assert all(a > b for a, b in zip(rates[6:], rates[7:], strict=False))
    assert rates[-1] == pytest.approx(1e-3 / 94)


def test_distillation_with_zero_epochs_is_a_no_op(task: CreditTask, student: MLPClassifier) -> None:
    before = state_copy(student)
    recipe = Recipe(finetune_epochs=0, kd_temperature=5.0, kd_alpha=0.9)
    assert Distillation().apply(student, recipe, PassContext(data=task)) is student
    assert same_weights(before, student.state_dict())


# -- precision -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_model(
    task: CreditTask, teacher: MLPClassifier, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.fp32.onnx"
    task.export_onnx(copy.deepcopy(teacher), path)
    return path


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


# (recipe, tolerance on max |Δlogit| as a fraction of the fp32 logit range, ops expected)
PRECISIONS = {
    "fp32": (Recipe(bits=32), 0.0, {"Gemm"}),
    "fp16": (Recipe(bits=16), 0.005, {"Gemm", "Cast"}),
    "int8-dynamic": (Recipe(bits=8), 0.2, {"MatMulInteger", "DynamicQuantizeLinear"}),
    "int8-dynamic-per-channel": (
        Recipe(bits=8, per_channel=True),
        0.2,
        {"MatMulInteger", "DynamicQuantizeLinear"},
    ),
    "int8-static": (
        Recipe(bits=8, int8_mode="static"),
        0.25,
        {"QuantizeLinear", "DequantizeLinear"},
    ),
    "int8-static-per-channel": (
        Recipe(bits=8, int8_mode="static", per_channel=True),
        0.25,
        {"QuantizeLinear", "DequantizeLinear"},
    ),
    "int4-b16": (Recipe(bits=4, int4_block_size=16), 0.15, {"MatMulNBits"}),
    "int4-b32": (Recipe(bits=4, int4_block_size=32), 0.2, {"MatMulNBits"}),
}


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_precision_loads_and_stays_close(
    task: CreditTask, fp32_model: Path, tmp_path: Path, name: str
) -> None:
    recipe, tolerance, expected_ops = PRECISIONS[name]
    out = tmp_path / "model.onnx"
    apply_precision(fp32_model, out, recipe, task.calibration_feeds())
    feeds = task.core_feeds("test")
    reference, logits = run(fp32_model, feeds), run(out, feeds)
    assert logits.shape == reference.shape and logits.dtype == np.float32
    scale = float(reference.max() - reference.min())
    error = float(np.abs(logits - reference).max())
    assert error <= tolerance * scale, f"{name}: max |Δ| {error:.4g} over range {scale:.4g}"
    agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
    assert agreement >= (1.0 if recipe.bits >= 16 else 0.9), agreement

    model = onnx.load(out)
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert expected_ops <= ops, ops
    size, fp32_size = out.stat().st_size, fp32_model.stat().st_size
    if recipe.bits == 32:
        assert out.read_bytes() == fp32_model.read_bytes()
    elif recipe.bits == 16:
        assert size < 0.6 * fp32_size
    elif recipe.bits == 8:
        assert size < 0.55 * fp32_size
    else:
        assert size < 0.35 * fp32_size


def test_fp16_weights_are_float16_and_io_stays_float32(
    task: CreditTask, fp32_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fp16.onnx"
    apply_precision(fp32_model, out, Recipe(bits=16), [])
    model = onnx.load(out)
    weight_types = {init.data_type for init in model.graph.initializer}
    assert weight_types == {TensorProto.FLOAT16}
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT


def test_dynamic_int8_has_no_float_matmul_left(
    task: CreditTask, fp32_model: Path, tmp_path: Path
) -> None:
    for per_channel in (False, True):
        out = tmp_path / f"dynamic-{per_channel}.onnx"
        apply_precision(fp32_model, out, Recipe(bits=8, per_channel=per_channel), [])
        model = onnx.load(out)
        ops = [node.op_type for node in model.graph.node]
        assert ops.count("MatMulInteger") == 3 and "Gemm" not in ops and "MatMul" not in ops
        weight_scales = [
            numpy_helper.to_array(init)
            for init in model.graph.initializer
            if init.name.endswith("weight_Transposed_scale")
        ]
        assert len(weight_scales) == 3
        # per-channel: one scale per output unit; per-tensor: one scale per layer
        shapes = [s.shape for s in weight_scales]
        assert all((s.size > 1) == per_channel for s in weight_scales), shapes


def test_static_int8_is_qdq_with_calibrated_scales(
    task: CreditTask, fp32_model: Path, tmp_path: Path
) -> None:
    for per_channel in (False, True):
        out = tmp_path / f"static-{per_channel}.onnx"
        apply_precision(
            fp32_model,
            out,
            Recipe(bits=8, int8_mode="static", per_channel=per_channel),
            task.calibration_feeds(),
        )
        model = onnx.load(out)
        initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        weights = [n for n in initializers if n.endswith("weight_quantized")]
        assert len(weights) == 3 and all(initializers[n].dtype == np.int8 for n in weights)
        scales = [initializers[n.replace("_quantized", "_scale")] for n in weights]
        assert all((s.size > 1) == per_channel for s in scales)
        # the input is quantized with a scale calibrated on the data (not a default of 1)
        dequantized = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        assert any(n.input[0] == "features" for n in dequantized)
        assert 0 < float(initializers["features_scale"]) < 1.0


@pytest.mark.parametrize("block_size", [16, 32])
def test_int4_quantizes_every_linear_layer(
    task: CreditTask, fp32_model: Path, tmp_path: Path, block_size: int
) -> None:
    out = tmp_path / "int4.onnx"
    apply_precision(fp32_model, out, Recipe(bits=4, int4_block_size=block_size), [])
    nodes = onnx.load(out).graph.node
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert len(nbits) == 3
    assert not any(n.op_type in ("Gemm", "MatMul") for n in nodes)
    for node in nbits:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == 4 and attrs["block_size"] == block_size


def test_gemm_to_matmul_is_exact(task: CreditTask, fp32_model: Path, tmp_path: Path) -> None:
    rewritten = gemm_to_matmul(onnx.load(fp32_model))
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 3
    onnx.checker.check_model(rewritten)
    path = tmp_path / "matmul.onnx"
    onnx.save(rewritten, path)
    feeds = task.core_feeds("test")
    assert float(np.abs(run(path, feeds) - run(fp32_model, feeds)).max()) < 1e-5


def gemm_model(trans_b: int, bias: bool, alpha: float = 1.0) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 4) if trans_b else (4, 3)).astype(np.float32)
    initializers = [numpy_helper.from_array(weight, "W")]
    inputs = ["x", "W"]
    if bias:
        initializers.append(numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("Gemm", inputs, ["y"], name="gemm", transB=trans_b, alpha=alpha)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_gemm_to_matmul_handles_transpose_and_missing_bias(
    tmp_path: Path, trans_b: int, bias: bool
) -> None:
    original = gemm_model(trans_b, bias)
    onnx.save(original, tmp_path / "gemm.onnx")
    rewritten = gemm_to_matmul(gemm_model(trans_b, bias))
    ops = [node.op_type for node in rewritten.graph.node]
    assert ops == (["MatMul", "Add"] if bias else ["MatMul"])
    assert {init.name for init in rewritten.graph.initializer} == (
        {"W_for_matmul", "b"} if bias else {"W_for_matmul"}
    )
    onnx.save(rewritten, tmp_path / "matmul.onnx")
    feeds = {"x": np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)}
    diff = run(tmp_path / "matmul.onnx", feeds) - run(tmp_path / "gemm.onnx", feeds)
    assert float(np.abs(diff).max()) < 1e-5


def test_gemm_with_alpha_is_left_alone() -> None:
    rewritten = gemm_to_matmul(gemm_model(1, True, alpha=2.0))
    assert [node.op_type for node in rewritten.graph.node] == ["Gemm"]
    assert {init.name for init in rewritten.graph.initializer} == {"W", "b"}


def test_int4_without_any_matmul_is_unsupported(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    source = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    with pytest.raises(Unsupported, match="int4"):
        apply_precision(source, tmp_path / "relu.int4.onnx", Recipe(bits=4), [])
    assert not (tmp_path / "relu.int4.onnx").exists()


def test_unknown_bit_width_is_unsupported(fp32_model: Path, tmp_path: Path) -> None:
    with pytest.raises(Unsupported, match="bits=2"):
        apply_precision(fp32_model, tmp_path / "out.onnx", Recipe(bits=2), [])


QUIET_SCRIPT = """
import logging, sys
from pathlib import Path
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
from autocompress.passes.precision import apply_precision
from autocompress.recipe import Recipe

folder = Path(sys.argv[1])
weight = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
graph = helper.make_graph(
    [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 32])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
    [numpy_helper.from_array(weight, "W")],
)
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx")
before = logging.getLogger().level
apply_precision(folder / "m.onnx", folder / "q.onnx", Recipe(bits=4, int4_block_size=16), [])
assert logging.getLogger().level == before, logging.getLogger().level
print("done")
"""


def test_first_int4_quantization_in_a_process_is_quiet(tmp_path: Path) -> None:
    """onnxruntime's int4 quantizer calls logging.basicConfig(INFO) when first imported."""
    result = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "[INFO]" not in result.stderr, result.stderr
    assert (tmp_path / "q.onnx").is_file()
