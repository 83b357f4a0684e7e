"""Knowledge distillation while fine-tuning the (pruned) student.

`kd_alpha` weighs the soft teacher targets against the hard labels; with
`kd_temperature=1, kd_alpha=0` this is plain fine-tuning.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from autocompress.passes.base import PassContext
from autocompress.recipe import Recipe
from autocompress.training import fit


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · hard-label loss (Hinton et al.)."""
    if alpha == 0:
        return hard_loss
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
    ) * (temperature**2)
    return alpha * soft + (1.0 - alpha) * hard_loss


class Distillation:
    """Fine-tune for `recipe.finetune_epochs` with early stopping on validation F1."""

    name = "distillation"

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if recipe.finetune_epochs <= 0:
            return model
        task = ctx.task
        teacher_logits = task.teacher_logits()
        inputs, labels = task.train_tensors()

        def loss(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return kd_loss(
                logits,
                teacher_logits[index],
                task.label_loss(logits, y),
                recipe.kd_temperature,
                recipe.kd_alpha,
            )

        torch.manual_seed(ctx.seed)
        fit(
            model,
            inputs,
            labels,
            loss_fn=loss,
            score_fn=task.validation_score,
            settings=task.fit_settings(recipe.finetune_epochs),
            on_epoch=ctx.on_epoch,
        )
        return model
