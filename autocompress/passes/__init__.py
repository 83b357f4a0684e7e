"""Compression passes, each one small step with one job.

Torch passes run in `TORCH_PASSES` order: `apply(model, recipe, ctx) -> model`.
A pass asks the model what it can do (`autocompress.models.capabilities`: `Prunable`,
`Layered`, `HiddenStates`) and refuses one that cannot with `Unsupported`, which
prunes the trial with its reason; what it needs from the data comes from
`ctx.data` (`TrainingData`: examples, labels, teacher outputs, fit settings).
The recipe's bit-width is applied by the target when it makes the student
runnable: `apply_precision` on the exported ONNX graph (onnxruntime), or
`quantize_linear_layers` with bitsandbytes on the torch model (torch-cuda).
A new pass is a new module here plus one line in `TORCH_PASSES`.
"""

from __future__ import annotations

from autocompress.passes.base import PassContext, TorchPass, TrainingData
from autocompress.passes.bnb import quantize_linear_layers
from autocompress.passes.distill import Distillation, kd_loss
from autocompress.passes.layer_drop import LayerDrop
from autocompress.passes.precision import apply_precision
from autocompress.passes.prune import StructuredPruning

TORCH_PASSES: tuple[TorchPass, ...] = (LayerDrop(), StructuredPruning(), Distillation())

__all__ = [
    "PassContext",
    "TorchPass",
    "TrainingData",
    "LayerDrop",
    "StructuredPruning",
    "Distillation",
    "kd_loss",
    "apply_precision",
    "quantize_linear_layers",
    "TORCH_PASSES",
]
