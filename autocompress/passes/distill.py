"""Knowledge distillation while fine-tuning the (pruned) student.

`kd_alpha` weighs the soft teacher targets against the hard labels; with
`kd_temperature=1, kd_alpha=0` this is plain fine-tuning. `hidden_distill_weight`
adds a hidden-state term: logits alone carry little of what the teacher knows,
which is where layer-dropped and width-pruned students lose accuracy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from autocompress.passes.base import PassContext
from autocompress.recipe import Recipe
from autocompress.tasks.base import Task
from autocompress.training import LossFn, call_model, fit


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


class HiddenStateLoss(nn.Module):
    """weight · mean over the student's hidden states of MSE(project(student), teacher match).

    A width-pruned student's states are narrower than the teacher's, so each is mapped
    up by its own `Linear` (no bias), trained with the student (TinyBERT's W_h). The
    projections belong to this loss, never to the student: they are dropped after
    fine-tuning and appear in no state_dict, ONNX graph or checkpoint of it.
    """

    def __init__(self, sources: list[int], widths: list[tuple[int, int]], weight: float) -> None:
        super().__init__()
        self.sources = sources
        self.weight = weight
        self.projections = nn.ModuleList(
            nn.Identity() if student == teacher else nn.Linear(student, teacher, bias=False)
            for student, teacher in widths
        )

    @classmethod
    def between(
        cls, student: nn.Module, teacher: nn.Module, task: Task, weight: float
    ) -> HiddenStateLoss:
        """Match the student's hidden states to the teacher's; widths from one probe batch."""
        sources = task.hidden_state_map(student, teacher)
        probe = task.example_inputs()
        with torch.no_grad():
            student_states = task.forward_with_hidden_states(student, probe)[1]
            teacher_states = task.forward_with_hidden_states(teacher, probe)[1]
        widths = [
            (state.shape[-1], teacher_states[source].shape[-1])
            for state, source in zip(student_states, sources, strict=True)
        ]
        return cls(sources, widths, weight)

    def forward(
        self,
        student_states: list[torch.Tensor],
        teacher_states: list[torch.Tensor],
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`mask` (1 = real input, 0 = padding) keeps padded positions out of the mean:
        what a model computes there is never used, so matching it only adds noise."""
        losses = [
            masked_mse(project(state), teacher_states[source], mask)
            for project, state, source in zip(
                self.projections, student_states, self.sources, strict=True
            )
        ]
        return self.weight * torch.stack(losses).mean()


def masked_mse(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Mean squared error over the positions `mask` keeps (all when it is None)."""
    if mask is None:
        return F.mse_loss(prediction, target)
    weights = mask.to(prediction.dtype).unsqueeze(-1)
    squared = (prediction - target).pow(2) * weights
    return squared.sum() / (weights.sum() * prediction.shape[-1]).clamp(min=1.0)


class Distillation:
    """Fine-tune for `recipe.finetune_epochs` with early stopping on validation F1."""

    name = "distillation"

    def apply(self, model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
        if recipe.finetune_epochs <= 0:
            return model
        task = ctx.task
        teacher_logits = task.teacher_logits()
        inputs, labels = task.train_tensors()

        def logit_loss(logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return kd_loss(
                logits,
                teacher_logits[index],
                task.label_loss(logits, y),
                recipe.kd_temperature,
                recipe.kd_alpha,
            )

        torch.manual_seed(ctx.seed)
        loss, forward, extra_parameters = logit_loss, call_model, []
        if recipe.hidden_distill_weight > 0:
            loss, hidden = _with_hidden_states(logit_loss, model, recipe, task)
            forward, extra_parameters = task.forward_with_hidden_states, list(hidden.parameters())
        fit(
            model,
            inputs,
            labels,
            loss_fn=loss,
            score_fn=task.validation_score,
            settings=task.fit_settings(recipe.finetune_epochs),
            on_epoch=ctx.on_epoch,
            forward=forward,
            extra_parameters=extra_parameters,
            batch_order=task.batch_order,
        )
        return model


def _with_hidden_states(
    logit_loss: LossFn, student: nn.Module, recipe: Recipe, task: Task
) -> tuple[LossFn, HiddenStateLoss]:
    """`logit_loss` plus the hidden-state term, for a forward returning (logits, states)."""
    teacher = task.loaded_teacher().eval()
    hidden = HiddenStateLoss.between(student, teacher, task, recipe.hidden_distill_weight)
    inputs, _ = task.train_tensors()

    def loss(output: tuple, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits, student_states = output
        mask = task.hidden_state_mask(tuple(t[index] for t in inputs))
        teacher_states = task.teacher_hidden_states(index)
        return logit_loss(logits, y, index) + hidden(student_states, teacher_states, mask)

    return loss, hidden
