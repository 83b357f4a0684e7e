"""PyTorch on a CUDA GPU as a target: fp32, fp16, and bitsandbytes LLM.int8, nf4 and fp4.

The student is served by PyTorch itself: a bitsandbytes-quantized model cannot be
exported to ONNX (bitsandbytes #768). What a recipe means here:

* bits 32: FP32. bits 16: FP16 (`.half()`).
* bits 8: LLM.int8 (`bnb.nn.Linear8bitLt`, threshold 6.0): int8 weights with one
  scale per output row, activations quantized per row at run time and outlier
  columns multiplied in fp16. That is `int8_mode: dynamic` with `per_channel: true`;
  static (calibrated QDQ) and per-tensor int8 are onnxruntime's and are refused.
* bits 4: `bnb.nn.Linear4bit` with `bnb_4bit_type` nf4 or fp4 and one absmax per
  `int4_block_size` weights (bitsandbytes has blocks of 32 to 4096).
* For bits 16, 8 and 4 everything that is not quantized (the protected head, norms,
  embeddings) and the activations are fp16, as when transformers loads in 8 or 4 bits.

A trial keeps the student's FP32 weights (`model.safetensors`, before quantization)
and `torch_model.json` saying how to quantize them: bitsandbytes quantizes the
weights when the model is moved to the GPU, deterministically, so the two files are
the model. Latency is the forward pass on inputs already on the GPU, each timing
closed by `torch.cuda.synchronize()`; `peak_memory_bytes` is the allocator's
high-water mark during the warm-up and timed runs, weights included.
"""

from __future__ import annotations

import copy
import gc
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import save_model
from torch import nn

from autocompress.errors import Unsupported, UserError
from autocompress.models.capabilities import Prunable, require
from autocompress.passes.bnb import (
    BNB_4BIT_BLOCK_SIZES,
    BNB_4BIT_TYPES,
    DOUBLE_QUANT,
    INT8_THRESHOLD,
    import_bitsandbytes,
    quantize_linear_layers,
    quantized_bytes,
)
from autocompress.recipe import Recipe
from autocompress.targets.base import Materialized
from autocompress.targets.measurement import (
    Acceptance,
    Measurement,
    fingerprint_id,
    machine_fingerprint,
    steady_timings,
    time_runs,
)
from autocompress.targets.torch_cuda_config import TorchCudaTargetConfig

if TYPE_CHECKING:
    from autocompress.tasks.base import Task

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "torch_model.json"
SPEC_FORMAT = "autocompress.torch_model/1"


def torch_precision(recipe: Recipe) -> str:
    """What `recipe` runs as on PyTorch with bitsandbytes, or `Unsupported` saying why not."""
    if recipe.bits == 32:
        return "fp32"
    if recipe.bits == 16:
        return "fp16"
    if recipe.bits == 8:
        if recipe.int8_mode != "dynamic":
            raise Unsupported(
                f"int8_mode={recipe.int8_mode} (activations calibrated ahead of time) is "
                "onnxruntime int8; bitsandbytes LLM.int8 quantizes activations at run time: "
                "use int8_mode=dynamic on torch-cuda"
            )
        if not recipe.per_channel:
            raise Unsupported(
                "bitsandbytes LLM.int8 scales int8 weights per output row (per_channel=true); "
                "per-tensor int8 (per_channel=false) has no bitsandbytes kernel"
            )
        return "llm.int8"
    if recipe.bits == 4:
        if recipe.bnb_4bit_type not in BNB_4BIT_TYPES:
            raise Unsupported(f"bnb_4bit_type={recipe.bnb_4bit_type!r} is not one of nf4, fp4")
        if recipe.int4_block_size not in BNB_4BIT_BLOCK_SIZES:
            sizes = ", ".join(map(str, BNB_4BIT_BLOCK_SIZES))
            raise Unsupported(
                f"bitsandbytes 4-bit blocks hold 32 to 4096 weights; "
                f"int4_block_size={recipe.int4_block_size} is not one of {sizes}"
            )
        return recipe.bnb_4bit_type
    raise Unsupported(f"bits={recipe.bits} is not a known precision")


@dataclass(frozen=True)
class TorchModel:
    """A torch model on a device as a `Runnable`: numpy feeds in, float32 logits out.

    Floating inputs are cast to `dtype`; a whole split runs `batch_size` rows at a time.
    """

    model: nn.Module
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    size_bytes: int  # the state as held on the device: packed weights plus their scales

    def inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The feeds as tensors on the device (named as the model's forward arguments)."""
        tensors = {name: torch.as_tensor(array) for name, array in feeds.items()}
        return {
            name: t.to(self.device, self.dtype if t.is_floating_point() else t.dtype)
            for name, t in tensors.items()
        }

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(**inputs)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = next(iter(feeds.values())).shape[0]
        chunks = (
            {name: array[start : start + self.batch_size] for name, array in feeds.items()}
            for start in range(0, rows, self.batch_size)
        )
        return torch.cat([self.forward(self.inputs(c)).float().cpu() for c in chunks]).numpy()


def to_runnable(
    student: nn.Module, recipe: Recipe, device: torch.device | str, batch_size: int
) -> TorchModel:
    """A copy of `student` at the recipe's precision on `device` (CPU works too, slowly)."""
    torch_precision(recipe)
    device = torch.device(device)
    dtype = torch.float32 if recipe.bits == 32 else torch.float16
    model = copy.deepcopy(student).eval().to(dtype)
    if recipe.bits in (8, 4):
        # Quantized from the CPU copy as each layer moves to the device.
        model = quantize_linear_layers(
            model,
            recipe.bits,
            recipe.bnb_4bit_type,
            skip=_protected_layers(model),
            block_size=recipe.int4_block_size,
            device=device,
        )
    model = model.to(device)
    return TorchModel(model, device, dtype, batch_size, quantized_bytes(model))


def _protected_layers(model: nn.Module) -> list[nn.Module]:
    """What quantization leaves in full precision: what pruning leaves whole (the head)."""
    return require(model, Prunable, "name no layers to keep whole").protected_layers()


def write_model_files(student: nn.Module, recipe: Recipe, folder: Path) -> list[str]:
    """The student's FP32 weights and how this target quantizes them at load time."""
    precision = torch_precision(recipe)
    save_model(student, str(folder / WEIGHTS_FILE), force_contiguous=True)
    protected = {id(m) for m in _protected_layers(student)}
    quantization = None
    if recipe.bits in (8, 4):
        bnb = import_bitsandbytes()
        quantization = {
            "library": "bitsandbytes",
            "library_version": bnb.__version__,
            "method": precision,
            "layers": "Linear8bitLt" if recipe.bits == 8 else "Linear4bit",
            "replaces": "every nn.Linear except skip",
            "skip": [name for name, m in student.named_modules() if id(m) in protected],
            **(
                {"threshold": INT8_THRESHOLD}
                if recipe.bits == 8
                else {"block_size": recipe.int4_block_size, "double_quant": DOUBLE_QUANT}
            ),
        }
    spec = {
        "format": SPEC_FORMAT,
        "weights": WEIGHTS_FILE,
        "weights_dtype": "float32",
        "dtype": "float32" if recipe.bits == 32 else "float16",
        "precision": precision,
        "quantization": quantization,
        "student_spec": student.spec,
    }
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    return [WEIGHTS_FILE, SPEC_FILE]


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class TorchCudaTarget:
    """Runs the PyTorch student on the first CUDA GPU, quantized with bitsandbytes."""

    def __init__(
        self, config: TorchCudaTargetConfig, where: Callable[[str], str] = lambda key: key
    ) -> None:
        if not torch.cuda.is_available():
            raise UserError(
                f"{where('target.runtime')}: 'torch-cuda' needs a CUDA GPU, but no CUDA device "
                f"was found (torch {torch.__version__}, built for CUDA "
                f"{torch.version.cuda or 'none'}); use runtime 'onnxruntime' on this machine"
            )
        self.config = config
        self.device = torch.device("cuda", torch.cuda.current_device())

    def fingerprint(self) -> dict[str, object]:
        """Machine, GPU and runtime versions: what makes two latencies comparable."""
        gpu = torch.cuda.get_device_properties(self.device)
        return {
            **machine_fingerprint(),
            "runtime": "torch-cuda",
            "runtime_version": torch.__version__,
            "cuda_version": torch.version.cuda,
            "gpu": gpu.name,
            "gpu_capability": f"{gpu.major}.{gpu.minor}",
            "gpu_memory_bytes": gpu.total_memory,
            "bitsandbytes_version": _package_version("bitsandbytes"),
            "batch_size": self.config.batch_size,
        }

    def check(self, recipe: Recipe) -> None:
        """Raise `Unsupported` with the reason when this target cannot run `recipe`."""
        torch_precision(recipe)
        if recipe.bits in (8, 4):
            import_bitsandbytes()

    def materialize(
        self, task: Task, student: nn.Module, recipe: Recipe, folder: Path
    ) -> Materialized:
        """Write the FP32 weights and the quantization spec, then load a quantized copy
        of `student` on the GPU."""
        if task.raw_inputs:
            raise Unsupported(
                f"{type(task).__name__} scores raw records through its ONNX graph "
                "(preprocessing inside); torch-cuda serves the torch model only: use "
                "target.runtime onnxruntime (CUDAExecutionProvider runs it on the GPU)"
            )
        # bitsandbytes layers sit in reference cycles: free the last trial's GPU memory now.
        gc.collect()
        torch.cuda.empty_cache()
        files = write_model_files(student, recipe, folder)
        runnable = to_runnable(student, recipe, self.device, self.config.batch_size)
        return Materialized(runnable=runnable, files=files)

    def measure(
        self,
        runnable: TorchModel,
        feed: dict[str, np.ndarray],
        accept: Acceptance | None = None,
    ) -> Measurement:
        """Warm up, then time `repeats` forward passes of one fixed batch already on the GPU;
        timed again with back-off while the spread is over `max_cv` or `accept` refuses
        the timings (see `steady_timings`)."""
        inputs = runnable.inputs(feed)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        config = self.config
        steady = steady_timings(
            lambda: time_runs(
                lambda: runnable.forward(inputs),
                config.warmup,
                config.repeats,
                wait=lambda: torch.cuda.synchronize(self.device),
            ),
            config.max_cv,
            config.remeasure_attempts,
            config.remeasure_backoff_s,
            accept=accept,
        )
        return Measurement.from_steady(
            steady,
            size_bytes=runnable.size_bytes,
            warmup=self.config.warmup,
            batch_size=self.config.batch_size,
            threads=torch.get_num_threads(),
            provider="torch-cuda",
            machine_id=fingerprint_id(self.fingerprint()),
            peak_memory_bytes=torch.cuda.max_memory_allocated(self.device),
        )
