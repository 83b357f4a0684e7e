"""What every torch-level pass receives besides the model and the recipe.

Passes ask the model what it can do (`autocompress.models.capabilities`) and the
data for what training needs (`TrainingData`, which every study's task satisfies
structurally); they never import the tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from autocompress.recipe import Recipe
from autocompress.training import FitSettings


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


class TorchPass(Protocol):
    name: str

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        """Return the transformed model (may be `model` itself when the pass is a no-op)."""
        ...
