"""What every torch-level pass receives besides the model and the recipe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import nn

from autocompress.recipe import Recipe
from autocompress.tasks.base import Task


@dataclass
class PassContext:
    """The task (data, teacher logits, example inputs) and hooks for the search."""

    task: Task
    seed: int = 0
    on_epoch: Callable[[int, float], None] | None = None


class TorchPass(Protocol):
    name: str

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        """Return the transformed model (may be `model` itself when the pass is a no-op)."""
        ...
