"""Structured pruning with torch-pruning: removes whole channels, so the model is
genuinely smaller and dense (no masks), and exports to ONNX as such."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from autocompress.passes.base import PassContext
from autocompress.recipe import Recipe

IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    "random": lambda: tp.importance.RandomImportance(),
}


class StructuredPruning:
    """Prune `recipe.pruning_ratio` of every prunable layer's channels, head protected."""

    name = "structured_pruning"

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if recipe.pruning_ratio <= 0:
            return model
        torch.manual_seed(ctx.seed)
        model.eval()
        pruner = tp.pruner.MetaPruner(
            model,
            ctx.task.example_inputs(),
            importance=IMPORTANCES[recipe.pruning_importance](),
            pruning_ratio=recipe.pruning_ratio,
            ignored_layers=ctx.task.protected_layers(model),
        )
        if recipe.pruning_importance == "taylor":
            _accumulate_gradients(model, ctx)
        pruner.step()
        model.zero_grad(set_to_none=True)
        return model


def _accumulate_gradients(model: nn.Module, ctx: PassContext) -> None:
    """Taylor importance scores channels by weight × gradient of the task loss."""
    inputs, labels = ctx.task.train_tensors()
    model.zero_grad()
    ctx.task.label_loss(model(*inputs), labels).backward()
