"""What every pass declares, and what a torch-level pass receives besides the model
and the recipe.

A pass (`Pass`) declares the recipe fields it acts on (`fields`: name -> `FieldSpec`,
with its default) and says in words what it does to a recipe (`describe`, `step`);
`autocompress.recipe` assembles `RECIPE_FIELDS`, `Recipe.describe` and
`Recipe.pass_chain` from the registered passes. Reading a study file reads those
declarations, so a pass module imports nothing heavy at import time (torch, onnx,
onnxruntime...): it imports them inside `apply`, or `apply` calls a module that does.

Torch passes ask the model what it can do (`autocompress.models.capabilities`) and
the data for what training needs (`TrainingData`, which every study's task
satisfies structurally); they never import the tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeAlias

if TYPE_CHECKING:  # annotations only: this module is read without torch
    import numpy as np
    import torch
    from torch import nn

    from autocompress.recipe import FieldSpec, Recipe
    from autocompress.training import FitSettings

    Calibration: TypeAlias = list[dict[str, np.ndarray]]  # input batches, as the graph's feeds


class TrainingData(Protocol):
    """The data and teacher outputs pruning and distillation train with."""

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """A small batch for tracing (pruning dependency graph) and probing widths."""
        ...

    def train_tensors(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Model inputs and labels of the training split."""
        ...

    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The hard-label loss."""
        ...

    def validation_score(self, model: nn.Module) -> float:
        """Higher is better; for early stopping."""
        ...

    def fit_settings(self, epochs: int) -> FitSettings:
        """Optimiser settings for fine-tuning a student."""
        ...

    def batch_order(self, rows: int, batch_size: int, generator: torch.Generator) -> list:
        """Which training rows form each batch."""
        ...

    def teacher_logits(self) -> torch.Tensor:
        """The teacher's logits on the training split."""
        ...

    def loaded_teacher(self) -> nn.Module:
        """The teacher itself, for distilling more than its logits."""
        ...

    def teacher_hidden_states(self, index: torch.Tensor) -> list[torch.Tensor]:
        """The teacher's hidden states for the training rows `index`, as its
        `forward_with_hidden_states` gives them for those rows (`Unsupported`: none)."""
        ...

    def augment(
        self, inputs: tuple[torch.Tensor, ...], word_prob: float, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """A training batch with some rows altered, and which rows (`Unsupported`: none)."""
        ...


@dataclass
class PassContext:
    """The training data (examples, teacher outputs) and hooks for the search."""

    data: TrainingData
    seed: int = 0
    on_epoch: Callable[[int, float], None] | None = None
    autocast: str = "off"  # workers.autocast: how students train (autocompress/autocast.py)
    cache_dir: Path | None = None  # where probes are kept (None: not kept)
    # What passes report about how they ran (e.g. `training_autocast`), for the trial.
    records: dict[str, object] = field(default_factory=dict)


class Pass:
    """A compression pass's declarations: its name, its recipe fields, its words."""

    name: ClassVar[str] = ""
    fields: ClassVar[dict[str, FieldSpec]] = {}
    """The recipe fields this pass acts on, in the order the sampler asks for them (a
    field's `active` sees the values asked for before it)."""

    def describe(self, recipe: Recipe) -> str:
        """A few words for `Recipe.describe` ("" when the pass does nothing to `recipe`)."""
        return ""

    def step(self, recipe: Recipe, pruned_units: str | None = None) -> str:
        """A sentence for `Recipe.pass_chain` ("" when the pass does nothing to `recipe`);
        by default the pass's name and its `describe`. `pruned_units` is what structured
        pruning removes in the model at hand, as its task words it."""
        words = self.describe(recipe)
        return f"{self.name.replace('_', ' ')}: {words}" if words else ""


class TorchPass(Pass):
    """A pass on the torch student, before the target makes it runnable (`TORCH_PASSES`)."""

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        """Return the transformed model (may be `model` itself when the pass is a no-op)."""
        raise NotImplementedError


class OnnxPass(Pass):
    """A pass on the exported ONNX graph, which the onnxruntime target runs in
    `ONNX_PASSES` order after export: ONNX in, ONNX out."""

    def apply(
        self, source: Path, destination: Path, recipe: Recipe, calibration: Calibration
    ) -> None:
        """Write `source` transformed to `destination` (a copy when there is nothing to
        do); `calibration` is the task's input batches, for passes that calibrate."""
        raise NotImplementedError
