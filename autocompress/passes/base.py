"""What every torch-level pass receives besides the model and the recipe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    autocast: str = "off"  # workers.autocast: how students train (autocompress/autocast.py)
    cache_dir: Path | None = None  # where probes are kept (None: not kept)
    # What passes report about how they ran (e.g. `training_autocast`), for the trial.
    records: dict[str, object] = field(default_factory=dict)


class TorchPass(Protocol):
    name: str

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        """Return the transformed model (may be `model` itself when the pass is a no-op)."""
        ...
