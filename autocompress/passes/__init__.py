"""Compression passes, each one small step with one job.

Torch passes run in `TORCH_PASSES` order: `apply(model, recipe, ctx) -> model`.
After ONNX export, `apply_precision` turns the FP32 graph into the recipe's
bit-width. A new pass is a new module here plus one line in `TORCH_PASSES`.
"""

from __future__ import annotations

from autocompress.passes.base import PassContext, TorchPass
from autocompress.passes.distill import Distillation, kd_loss
from autocompress.passes.layer_drop import LayerDrop
from autocompress.passes.precision import apply_precision
from autocompress.passes.prune import StructuredPruning

TORCH_PASSES: tuple[TorchPass, ...] = (LayerDrop(), StructuredPruning(), Distillation())

__all__ = [
    "PassContext",
    "TorchPass",
    "LayerDrop",
    "StructuredPruning",
    "Distillation",
    "kd_loss",
    "apply_precision",
    "TORCH_PASSES",
]
