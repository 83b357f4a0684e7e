"""Fine-tuning the student, from the teacher (knowledge distillation) or the labels.

The fields and words of the pass; the training itself is `passes/distill.py`, imported
when the pass runs (it needs torch, which reading a study file does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autocompress.passes.base import PassContext, TorchPass
from autocompress.recipe import FieldSpec, Need

if TYPE_CHECKING:
    from torch import nn

    from autocompress.recipe import Recipe


def _fine_tunes(params: Mapping[str, Any]) -> bool:
    """Active only when the recipe fine-tunes (the distillation fields)."""
    return params.get("finetune_epochs", 0) > 0


class Distillation(TorchPass):
    """Fine-tune for `recipe.finetune_epochs` with early stopping on validation F1."""

    name = "distillation"
    fields = {
        "finetune_epochs": FieldSpec(int, 0, 500, default=0),
        "kd_temperature": FieldSpec(float, 1.0, 50.0, active=_fine_tunes, default=1.0),
        "kd_alpha": FieldSpec(float, 0.0, 1.0, active=_fine_tunes, default=0.0),
        "hidden_distill_weight": FieldSpec(
            float,
            0.0,
            10.0,
            active=_fine_tunes,
            needs=(Need("HiddenStates", "a model with hidden states to distil"),),
            note="weight of the MSE between student and teacher hidden states, added to the "
            "KD loss",
            default=0.0,
        ),
        "augment_word_prob": FieldSpec(
            float,
            0.0,
            0.8,
            active=_fine_tunes,
            needs=(Need("WordAugmentation", "rows of words that augmentation can alter"),),
            note="chance that each whole word of an augmented row is replaced by an embedding "
            "neighbour; the teacher scores those rows (0 = no augmentation)",
            default=0.0,
        ),
    }

    def describe(self, recipe: Recipe) -> str:
        if recipe.finetune_epochs <= 0:
            return ""
        kd = f"KD T={recipe.kd_temperature:.1f} a={recipe.kd_alpha:.2f}" if recipe.distils else "FT"
        if recipe.hidden_distill_weight > 0:
            kd += f" +hid {recipe.hidden_distill_weight:.2g}"
        if recipe.augment_word_prob > 0:
            kd += f" +aug {recipe.augment_word_prob:.2g}"
        return f"{kd} {recipe.finetune_epochs}ep"

    def step(self, recipe: Recipe, pruned_units: str | None = None) -> str:
        if recipe.finetune_epochs <= 0:
            return "no fine-tuning"
        if not recipe.distils:
            return f"fine-tuning on the labels: {recipe.finetune_epochs} epoch(s)"
        extras = [
            f"hidden-state matching weight {recipe.hidden_distill_weight:g}"
            if recipe.hidden_distill_weight > 0
            else "",
            f"half of each batch with {recipe.augment_word_prob:.0%} of its words replaced "
            "and scored by the teacher"
            if recipe.augment_word_prob > 0
            else "",
        ]
        return (
            f"distillation from the teacher: {recipe.finetune_epochs} epoch(s), "
            f"T={recipe.kd_temperature:.2f}, alpha={recipe.kd_alpha:.2f}"
            + "".join(f", {extra}" for extra in extras if extra)
        )

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if recipe.finetune_epochs <= 0:
            return model
        from autocompress.passes.distill import fine_tune  # torch

        return fine_tune(model, recipe, ctx)
