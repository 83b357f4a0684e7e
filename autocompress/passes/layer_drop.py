"""Depth reduction: keep an evenly spaced subset of a transformer's layers.

Removing whole layers is the cheapest large latency win for encoders (each layer
is a fixed share of the compute), and unlike width pruning it needs no graph
tracing. How layers are picked and the config kept true is the model's business
(`Layered.drop_layers`); a model that is not `Layered` is refused with `Unsupported`.
"""

from __future__ import annotations

from torch import nn

from autocompress.models.capabilities import Layered, require
from autocompress.passes.base import PassContext
from autocompress.recipe import Recipe


class LayerDrop:
    """Keep `recipe.layer_keep_ratio` of the encoder layers (1.0 is a no-op)."""

    name = "layer_drop"

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if recipe.layer_keep_ratio >= 1.0:
            return model
        return require(model, Layered, "have no layers to drop").drop_layers(
            recipe.layer_keep_ratio
        )
