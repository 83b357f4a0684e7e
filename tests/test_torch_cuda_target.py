"""The torch-cuda target: bitsandbytes LLM.int8 / nf4 / fp4 for PyTorch on a GPU.

bitsandbytes 0.50 runs its layers on CPU too, so the quantization itself, the
runnable model and the files a trial keeps are checked here on CPU; so are the
recipes the target refuses and the clean error on a machine without a GPU. The
whole trial on the target (materialize, measure, evaluate) needs a CUDA GPU and
skips without one.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from autocompress import UserError, load_study_config, run_study
from autocompress.cli import app
from autocompress.errors import Unsupported
from autocompress.models import MLPClassifier
from autocompress.passes.bnb import import_bitsandbytes, quantize_linear_layers, quantized_bytes
from autocompress.pipeline import evaluate_recipe
from autocompress.recipe import Recipe
from autocompress.targets import TorchCudaTarget
from autocompress.targets.torch_cuda import (
    SPEC_FILE,
    WEIGHTS_FILE,
    to_runnable,
    torch_precision,
    write_model_files,
)
from autocompress.targets.torch_cuda_config import TorchCudaTargetConfig
from autocompress.tasks.credit import CreditTask
from autocompress.tasks.credit_config import DataConfig, TeacherConfig
from autocompress.tasks.metrics import classification_metrics
from tests.conftest import TINY_SPACE, tiny_study_dict, write_study
from tests.test_config_errors import Scenario, assert_nothing_left, assert_one_clear_message

try:
    import bitsandbytes as bnb
except ImportError:
    bnb = None

needs_bitsandbytes = pytest.mark.skipif(
    bnb is None, reason="bitsandbytes is not installed: pip install -e '.[test]'"
)
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: bitsandbytes LLM.int8/nf4/fp4 and fp16 are measured on CUDA only",
)
without_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has a CUDA GPU, so the target is usable"
)

# (bits, 4-bit type, bitsandbytes layer, largest relative L2 error of the logits).
# Measured on the seeded MLP below with bitsandbytes 0.50.2 on CPU: 0.0040 (int8),
# 0.093 (nf4), 0.116 (fp4); the bounds leave about 2× room.
QUANTIZATIONS = {
    "llm.int8": (8, "nf4", "Linear8bitLt", 0.01),
    "nf4": (4, "nf4", "Linear4bit", 0.2),
    "fp4": (4, "fp4", "Linear4bit", 0.25),
}
BNB_RECIPES = {
    "fp32": Recipe(),
    "fp16": Recipe(bits=16),
    "llm.int8": Recipe(bits=8, int8_mode="dynamic", per_channel=True),
    "nf4": Recipe(bits=4, bnb_4bit_type="nf4", int4_block_size=64),
    "fp4": Recipe(bits=4, bnb_4bit_type="fp4", int4_block_size=32),
}


@pytest.fixture(scope="module")
def mlp() -> MLPClassifier:
    torch.manual_seed(0)
    return MLPClassifier(61, [256, 128], 4).eval()


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(512, 61, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def task() -> CreditTask:
    data = DataConfig(
        path="embedded:germancredit", label="creditability", positive_label="bad", seed=0
    )
    return CreditTask(data, TeacherConfig(hidden_sizes=[64, 32], epochs=3, patience=2))


@pytest.fixture(scope="module")
def teacher(task: CreditTask, tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    return task.teacher(tmp_path_factory.mktemp("teacher-cache"))


@pytest.fixture(scope="module")
def fp32_metrics(task: CreditTask, teacher: nn.Module, tmp_path_factory) -> dict[str, float]:
    """The teacher's own scores (its logits on the test split's features): the reference."""
    with torch.no_grad():
        logits = teacher(torch.from_numpy(task.core_feeds("test")["features"])).numpy()
    return classification_metrics(logits, task.labels("test"))


# -- (a) quantize_linear_layers, with bitsandbytes on CPU -------------------------------------
@needs_bitsandbytes
@pytest.mark.parametrize("name", QUANTIZATIONS)
def test_every_linear_but_the_head_becomes_a_bitsandbytes_layer(
    name: str, mlp: MLPClassifier
) -> None:
    bits, quant_type, layer_class, _ = QUANTIZATIONS[name]
    model = copy.deepcopy(mlp)
    head = model.head
    assert quantize_linear_layers(model, bits, quant_type, skip=[head], block_size=32) is model
    linears = [m for m in model.body if isinstance(m, nn.Linear)]
    assert len(linears) == 2
    assert all(type(m).__name__ == layer_class for m in linears)
    assert model.head is head and type(head) is nn.Linear
    assert torch.equal(head.weight, mlp.head.weight)
    for layer in linears:
        if bits == 8:
            assert layer.weight.dtype == torch.int8 and layer.state.threshold == 6.0
        else:
            assert layer.weight.dtype == torch.uint8  # two 4-bit codes per byte
            assert layer.weight.quant_state.quant_type == quant_type
            assert layer.weight.quant_state.blocksize == 32


@needs_bitsandbytes
@pytest.mark.parametrize("name", QUANTIZATIONS)
def test_quantized_outputs_stay_close_to_fp32(
    name: str, mlp: MLPClassifier, inputs: torch.Tensor
) -> None:
    bits, quant_type, _, tolerance = QUANTIZATIONS[name]
    model = copy.deepcopy(mlp)
    quantize_linear_layers(model, bits, quant_type, skip=[model.head])
    with torch.inference_mode():
        reference, quantized = mlp(inputs), model(inputs)
    assert quantized.dtype == torch.float32
    relative = float((quantized - reference).norm() / reference.norm())
    assert 0 < relative < tolerance, f"{name}: relative error {relative:.4f}"


@needs_bitsandbytes
@pytest.mark.parametrize("name", QUANTIZATIONS)
def test_quantized_parameters_take_less_memory(name: str, mlp: MLPClassifier) -> None:
    bits, quant_type, _, _ = QUANTIZATIONS[name]
    model = quantize_linear_layers(copy.deepcopy(mlp), bits, quant_type, skip=[])
    ratio = quantized_bytes(model) / quantized_bytes(mlp)
    # int8: a quarter plus one scale per row (0.26 here); 4-bit: an eighth plus the
    # (double-quantized) block absmax values and the fp32 biases (0.14 here).
    assert ratio < (0.3 if bits == 8 else 0.17), f"{name}: {ratio:.3f} of the fp32 bytes"


@needs_bitsandbytes
def test_linear_subclasses_and_layers_used_twice_are_handled() -> None:
    shared = nn.Linear(8, 8)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.MultiheadAttention(8, 2))
    quantize_linear_layers(model, 4, "nf4")
    assert model[0] is model[2] and type(model[0]).__name__ == "Linear4bit"
    # used through its weight by the attention, not its forward: left alone
    assert type(model[3].out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear


def test_bits_other_than_8_and_4_are_a_programming_error(mlp: MLPClassifier) -> None:
    with pytest.raises(ValueError, match="8 or 4 bits"):
        quantize_linear_layers(copy.deepcopy(mlp), 16)


def test_missing_bitsandbytes_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes the import fail
    with pytest.raises(Unsupported, match=r"^bitsandbytes is not installed: pip install"):
        import_bitsandbytes()


# -- the recipes torch-cuda runs, and those it refuses ---------------------------------------
def test_recipes_map_to_torch_and_bitsandbytes_precisions() -> None:
    assert {name: torch_precision(r) for name, r in BNB_RECIPES.items()} == {
        name: name for name in BNB_RECIPES
    }


@pytest.mark.parametrize(
    ("recipe", "reason"),
    [
        (Recipe(bits=8, int8_mode="static", per_channel=True), "use int8_mode=dynamic"),
        (Recipe(bits=8, per_channel=False), "per-tensor int8 (per_channel=false) has no"),
        (Recipe(bits=4, int4_block_size=16), "int4_block_size=16 is not one of 32, 64"),
        (Recipe(bits=4, bnb_4bit_type="int4"), "bnb_4bit_type='int4' is not one of nf4, fp4"),
        (Recipe(bits=2), "bits=2 is not a known precision"),
    ],
)
def test_recipes_torch_cuda_cannot_run_say_why(recipe: Recipe, reason: str) -> None:
    with pytest.raises(Unsupported, match=reason.replace("(", r"\(").replace(")", r"\)")):
        torch_precision(recipe)


# -- the runnable model and the trial's files, on CPU ----------------------------------------
@needs_bitsandbytes
@pytest.mark.parametrize("name", BNB_RECIPES)
def test_the_runnable_model_scores_like_the_fp32_teacher(
    name: str, task: CreditTask, teacher: nn.Module, fp32_metrics: dict[str, float]
) -> None:
    recipe = BNB_RECIPES[name]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    runnable = to_runnable(teacher, recipe, "cpu", batch_size=64)
    metrics = classification_metrics(runnable.run(task.core_feeds("test")), task.labels("test"))
    # On the German credit test split (200 rows), fp32, fp16 and int8 match the fp32
    # ONNX teacher exactly here, nf4 and fp4 within 0.01 accuracy.
    assert abs(metrics["accuracy"] - fp32_metrics["accuracy"]) <= 0.03
    assert abs(metrics["roc_auc"] - fp32_metrics["roc_auc"]) <= 0.01
    logits = runnable.run(task.core_feeds("test", limit=5))
    assert logits.dtype == np.float32 and logits.shape == (5, 2)
    assert runnable.dtype == (torch.float32 if recipe.bits == 32 else torch.float16)
    # the teacher is never changed
    assert all(type(m) is nn.Linear for m in teacher.modules() if isinstance(m, nn.Linear))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@needs_bitsandbytes
def test_the_runnable_size_counts_the_quantized_state(teacher) -> None:
    sizes = {
        name: to_runnable(teacher, recipe, "cpu", 64).size_bytes
        for name, recipe in BNB_RECIPES.items()
    }
    assert sizes["fp32"] > sizes["fp16"] > sizes["llm.int8"] > sizes["nf4"]


@needs_bitsandbytes
@pytest.mark.parametrize("name", ["fp16", "nf4"])
def test_a_trial_keeps_fp32_weights_and_how_to_quantize_them(
    name: str, task: CreditTask, teacher: nn.Module, tmp_path: Path
) -> None:
    recipe = BNB_RECIPES[name]
    assert write_model_files(teacher, recipe, tmp_path) == [WEIGHTS_FILE, SPEC_FILE]
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    assert spec["precision"] == name
    assert spec["student_spec"] == teacher.spec
    rebuilt = MLPClassifier.from_spec(spec["student_spec"])
    rebuilt.load_state_dict(load_file(tmp_path / WEIGHTS_FILE))
    features = torch.from_numpy(task.core_feeds("test")["features"])
    assert torch.equal(rebuilt.eval()(features), teacher(features))
    if name == "fp16":
        assert spec["dtype"] == "float16" and spec["quantization"] is None
    else:
        assert spec["quantization"]["layers"] == "Linear4bit"
        assert spec["quantization"]["skip"] == ["head"]
        assert spec["quantization"]["block_size"] == 64
        assert spec["quantization"]["library_version"] == bnb.__version__


# -- (b) and (d): no GPU here is a configuration error, said once ----------------------------
@without_cuda
def test_without_cuda_the_target_cannot_be_built() -> None:
    with pytest.raises(UserError) as raised:
        TorchCudaTarget(TorchCudaTargetConfig(), where=lambda key: f"s.yaml: {key}")
    message = str(raised.value)
    assert message.startswith("s.yaml: target.runtime: 'torch-cuda' needs a CUDA GPU")
    assert "no CUDA device was found" in message and "\n" not in message


def _torch_cuda_study(folder: Path) -> Path:
    study = tiny_study_dict(folder)
    study["target"]["runtime"] = "torch-cuda"
    study["search_space"] = {**TINY_SPACE, "bnb_4bit_type": {"choices": ["nf4", "fp4"]}}
    return write_study(folder, study)


@without_cuda
def test_a_torch_cuda_study_fails_cleanly_without_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _torch_cuda_study(tmp_path)
    expect = [f"{path}: target.runtime: 'torch-cuda' needs a CUDA GPU", "no CUDA device"]
    scenario = Scenario(["run", str(path)], lambda: run_study(path), expect)
    before = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, scenario.args)
    assert isinstance(result.exception, SystemExit), result.exc_info  # not a crash
    assert_one_clear_message(scenario, result.exit_code, result.stderr, result.stdout)
    assert_nothing_left(tmp_path, before, scenario)
    with pytest.raises(UserError, match="no CUDA device was found"):
        scenario.api()
    assert_nothing_left(tmp_path, before, scenario)


def test_bnb_4bit_type_is_searched_only_for_torch_cuda(tmp_path: Path) -> None:
    assert "bnb_4bit_type" in load_study_config(_torch_cuda_study(tmp_path)).space
    study = tiny_study_dict(tmp_path, search_space={**TINY_SPACE, "bnb_4bit_type": "fp4"})
    path = write_study(tmp_path, study, "onnx.yaml")
    with pytest.raises(UserError) as raised:
        load_study_config(path)
    assert str(raised.value) == (
        f"{path}: search_space.bnb_4bit_type: does not apply to target.runtime "
        "'onnxruntime' (only to torch-cuda); remove it from the search space"
    )


# -- (c) a whole trial on the GPU ------------------------------------------------------------
@needs_cuda
@needs_bitsandbytes
@pytest.mark.parametrize("name", BNB_RECIPES)
def test_a_credit_trial_on_the_gpu_is_refused_with_its_reason(
    name: str, task: CreditTask, teacher: nn.Module, tmp_path: Path
) -> None:
    """A credit model deploys as one raw-row ONNX graph (preprocessing inside); the
    torch model alone is not that model, so torch-cuda refuses it as a pruned trial."""
    target = TorchCudaTarget(TorchCudaTargetConfig(batch_size=32, repeats=5))
    with pytest.raises(Unsupported, match="raw records"):
        evaluate_recipe(task, teacher, target, BNB_RECIPES[name], tmp_path)
    assert not list(tmp_path.iterdir())
