"""Depth reduction: keep an evenly spaced subset of a transformer's layers.

Removing whole layers is the cheapest large latency win for encoders (each layer
is a fixed share of the compute), and unlike width pruning it needs no graph
tracing. How layers are picked and the config kept true is the model's business
(`Layered.drop_layers`); a model that is not `Layered` is refused with `Unsupported`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autocompress.passes.base import PassContext, TorchPass
from autocompress.recipe import FieldSpec, Need

if TYPE_CHECKING:
    from torch import nn

    from autocompress.recipe import Recipe


class LayerDrop(TorchPass):
    """Keep `recipe.layer_keep_ratio` of the encoder layers (1.0 is a no-op)."""

    name = "layer_drop"
    fields = {
        "layer_keep_ratio": FieldSpec(
            float,
            0.1,
            1.0,
            needs=(Need("Layered", "a model with layers to drop"),),
            note="share of encoder layers kept, evenly spaced",
            default=1.0,
        ),
    }

    def describe(self, recipe: Recipe) -> str:
        return f"keep {recipe.layer_keep_ratio:.0%} layers" if recipe.layer_keep_ratio < 1.0 else ""

    def step(self, recipe: Recipe, pruned_units: str | None = None) -> str:
        if recipe.layer_keep_ratio >= 1.0:
            return ""
        return f"layer drop: keep {recipe.layer_keep_ratio:.0%} of the layers, evenly spaced"

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if recipe.layer_keep_ratio >= 1.0:
            return model
        from autocompress.models.capabilities import Layered, require  # torch

        return require(model, Layered, "have no layers to drop").drop_layers(
            recipe.layer_keep_ratio
        )
