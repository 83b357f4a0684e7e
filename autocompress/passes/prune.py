"""Structured pruning with torch-pruning: removes whole channels, so the model is
genuinely smaller and dense (no masks), and exports to ONNX as such.

torch and torch-pruning are imported when the pass runs: reading a study file reads
this pass's fields, and needs neither."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from autocompress.passes.base import PassContext, TorchPass
from autocompress.recipe import FieldSpec, Need, Recipe

if TYPE_CHECKING:
    import torch_pruning as tp
    from torch import nn

# Taylor importance needs a gradient estimate, not the full training set.
TAYLOR_EXAMPLES = 1024
TAYLOR_BATCH = 32
# criterion -> its torch-pruning importance, made from the `torch_pruning` module
IMPORTANCES: dict[str, Callable[[Any], tp.importance.Importance]] = {
    "l1": lambda tp: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda tp: tp.importance.GroupMagnitudeImportance(p=2),
    "lamp": lambda tp: tp.importance.LAMPImportance(p=2),
    "taylor": lambda tp: tp.importance.GroupTaylorImportance(),
    "random": lambda tp: tp.importance.RandomImportance(),
}
IMPORTANCE_CRITERIA = tuple(IMPORTANCES)


def _prunes(params: Mapping[str, Any]) -> bool:
    return Recipe.from_dict(params).prunes


class StructuredPruning(TorchPass):
    """Prune `recipe.pruning_ratio` of every prunable layer's channels, head protected.

    Model-specific MetaPruner options, the protected head and post-pruning fix-ups
    come from the model (`Prunable`; `PrunableFFN` for an FFN ratio of its own), so this
    pass has no model `if`s; a model without them is refused with `Unsupported`.
    """

    name = "structured_pruning"
    fields = {
        "pruning_ratio": FieldSpec(
            float,
            0.0,
            0.95,
            needs=(Need("Prunable", "a model whose channels structured pruning can cut"),),
            note="fraction of channels removed",
            default=0.0,
        ),
        "ffn_pruning_ratio": FieldSpec(
            float,
            0.0,
            0.95,
            needs=(
                Need(
                    "PrunableFFN",
                    "a transformer whose FFN is pruned apart from heads and hidden size",
                ),
            ),
            note="fraction of FFN channels removed; pruning_ratio then prunes heads and hidden "
            "size only (unset: pruning_ratio prunes all three)",
            default=None,
        ),
        "pruning_importance": FieldSpec(
            str, choices=IMPORTANCE_CRITERIA, active=_prunes, default="l2"
        ),
    }

    def describe(self, recipe: Recipe) -> str:
        if not recipe.prunes:
            return ""
        ffn = "" if recipe.ffn_pruning_ratio is None else f" FFN {recipe.ffn_pruning_ratio:.0%}"
        return f"prune {recipe.pruning_ratio:.0%}{ffn} ({recipe.pruning_importance})"

    def step(self, recipe: Recipe, pruned_units: str | None = None) -> str:
        if not recipe.prunes:
            return ""
        where = pruned_units or "hidden units in an MLP; heads/FFN/hidden in a transformer"
        if recipe.ffn_pruning_ratio is not None:
            where = f"heads/hidden; {recipe.ffn_pruning_ratio:.0%} of the FFN channels"
        return (
            f"structured pruning: remove {recipe.pruning_ratio:.0%} of the channels "
            f"({where}), ranked by {recipe.pruning_importance}"
        )

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if not recipe.prunes:
            return model
        import torch
        import torch_pruning as tp

        from autocompress.models.capabilities import Prunable, PrunableFFN, require

        prunable = require(model, Prunable, "cannot be pruned structurally")
        # The model knows its architecture: attention heads, which widths must stay
        # uniform, what else to leave whole. Its options override the defaults here;
        # its ignored layers add to the protected ones, never replace them.
        if recipe.ffn_pruning_ratio is None:
            options = dict(prunable.pruning_options(recipe.pruning_ratio))
        else:
            ffn = require(model, PrunableFFN, "have no FFN to prune apart from the other widths")
            options = dict(ffn.ffn_pruning_options(recipe.pruning_ratio, recipe.ffn_pruning_ratio))
        torch.manual_seed(ctx.seed)
        model.eval()
        ignored = [*prunable.protected_layers(), *options.pop("ignored_layers", [])]
        kwargs = {
            "importance": IMPORTANCES[recipe.pruning_importance](tp),
            "pruning_ratio": recipe.pruning_ratio,
            **options,
            "ignored_layers": ignored,
        }
        pruner = tp.pruner.MetaPruner(model, ctx.data.example_inputs(), **kwargs)
        if recipe.pruning_importance == "taylor":
            _accumulate_gradients(model, ctx)
        pruner.step()
        model.zero_grad(set_to_none=True)
        # torch-pruning changes weights only; shape bookkeeping (head counts, configs)
        # is the model's to bring in line, or to refuse with `Unsupported`.
        prunable.after_pruning(pruner)
        return model


def _accumulate_gradients(model: nn.Module, ctx: PassContext) -> None:
    """Taylor importance scores channels by weight × gradient of the label loss.

    The gradient of the mean loss over a seeded sample of at most `TAYLOR_EXAMPLES`
    training examples, accumulated in mini-batches: one batch of a whole text training
    set (8.6k tweets through MiniLM) needs more memory than the machine has.
    """
    import torch

    inputs, labels = ctx.data.train_tensors()
    generator = torch.Generator().manual_seed(ctx.seed)
    sample = torch.randperm(len(labels), generator=generator)[:TAYLOR_EXAMPLES]
    model.zero_grad()
    for batch in sample.split(TAYLOR_BATCH):
        loss = ctx.data.label_loss(model(*(x[batch] for x in inputs)), labels[batch])
        (loss * len(batch) / len(sample)).backward()
