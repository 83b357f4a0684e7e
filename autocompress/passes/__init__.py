"""Compression passes, each one small step with one job.

Torch passes run in `TORCH_PASSES` order on the student: `apply(model, recipe, ctx)
-> model`. A torch pass asks the model what it can do (`autocompress.models.capabilities`:
`Prunable`, `PrunableFFN`, `Layered`, `HiddenStates`) and refuses one that cannot with
`Unsupported`, which prunes the trial with its reason; what it needs from the data comes
from `ctx.data` (`TrainingData`: examples, labels, teacher outputs, fit settings).

ONNX passes run in `ONNX_PASSES` order on the graph the onnxruntime target exports:
`apply(source, destination, recipe, calibration)`, ONNX in, ONNX out. The recipe's
bit-width is the `Precision` ONNX pass there; the torch-cuda target applies the same
fields with bitsandbytes (`quantize_linear_layers`) when it makes the student runnable.

Every pass declares the recipe fields it acts on and words what it does (`Pass` in
`base.py`); `RECIPE_FIELDS`, `Recipe.describe` and `Recipe.pass_chain` are assembled
from these two lists, in order. A field that needs a capability says which
(`FieldSpec.needs`, by its protocol's name), and a study whose task kind does not offer
it (see `autocompress.tasks`) is refused when it is read. A new pass is a new module
here plus one line in `TORCH_PASSES` or `ONNX_PASSES`: study files then accept its
fields (with its ranges), notes describe it and exports record its values. A pass
module imports torch, onnx or onnxruntime inside `apply` (or from a module `apply`
imports): this package is imported to read a study file, which needs none of them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from autocompress.passes.base import OnnxPass, Pass, PassContext, TorchPass, TrainingData
from autocompress.passes.distillation import Distillation
from autocompress.passes.layer_drop import LayerDrop
from autocompress.passes.precision import Precision, apply_precision
from autocompress.passes.prune import StructuredPruning

TORCH_PASSES: list[TorchPass] = [LayerDrop(), StructuredPruning(), Distillation()]
ONNX_PASSES: list[OnnxPass] = [Precision()]

_HEAVY = {  # offered here, imported on first use: they import torch
    "kd_loss": "distill",
    "quantize_linear_layers": "bnb",
}


def __getattr__(name: str) -> Any:  # `from autocompress.passes import kd_loss`
    if name in _HEAVY:
        return getattr(import_module(f"{__name__}.{_HEAVY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Pass",
    "PassContext",
    "TorchPass",
    "OnnxPass",
    "TrainingData",
    "LayerDrop",
    "StructuredPruning",
    "Distillation",
    "Precision",
    "apply_precision",
    "TORCH_PASSES",
    "ONNX_PASSES",
    *_HEAVY,
]
