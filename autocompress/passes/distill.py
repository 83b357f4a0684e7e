"""Knowledge distillation while fine-tuning the (pruned) student: the training behind
the `Distillation` pass (`passes/distillation.py`), which imports this module when it runs.

`kd_alpha` weighs the soft teacher targets against the hard labels; with
`kd_temperature=1, kd_alpha=0` this is plain fine-tuning. `hidden_distill_weight`
adds a hidden-state term: logits alone carry little of what the teacher knows,
which is where layer-dropped and width-pruned students lose accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from autocompress.autocast import choose_autocast
from autocompress.models.capabilities import HiddenStates, require
from autocompress.passes.base import PassContext, TrainingData
from autocompress.recipe import Recipe
from autocompress.training import call_model, fit

NO_HIDDEN_STATES = "expose no hidden states to distil"


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
        cls, student: nn.Module, teacher: nn.Module, data: TrainingData, weight: float
    ) -> HiddenStateLoss:
        """Match the student's hidden states to the teacher's; widths from one probe batch.
        Both must be `HiddenStates` models (else `Unsupported`)."""
        student_side = require(student, HiddenStates, NO_HIDDEN_STATES)
        teacher_side = require(teacher, HiddenStates, NO_HIDDEN_STATES)
        sources = student_side.hidden_state_map(teacher)
        probe = data.example_inputs()
        with torch.no_grad():
            student_states = student_side.forward_with_hidden_states(*probe)[1]
            teacher_states = teacher_side.forward_with_hidden_states(*probe)[1]
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


def fine_tune(model: nn.Module, recipe: Recipe, ctx: PassContext) -> nn.Module:
    """Fine-tune `model` for `recipe.finetune_epochs` (at least one) with early stopping
    on the validation score: the `Distillation` pass's work."""
    data = ctx.data
    inputs, labels = data.train_tensors()
    torch.manual_seed(ctx.seed)
    step = DistillationStep(model, recipe, data, torch.Generator().manual_seed(ctx.seed))
    # The seed orders the batches too: retraining a recipe with another seed
    # (finalists) is another run, not the same batches with other dropout.
    settings = replace(data.fit_settings(recipe.finetune_epochs), seed=ctx.seed)
    first_batch = data.batch_order(
        len(labels), settings.batch_size, torch.Generator().manual_seed(ctx.seed)
    )[0]
    autocast = choose_autocast(
        ctx.autocast,
        probe_step(model, step, inputs, labels, first_batch),
        ctx.cache_dir,
        {
            "student": model.spec,
            "batch_size": settings.batch_size,
            "hidden": recipe.hidden_distill_weight > 0,
            "augment": recipe.augment_word_prob > 0,
        },
    )
    if ctx.autocast != "off":
        ctx.records["training_autocast"] = autocast.to_dict()
    fit(
        model,
        inputs,
        labels,
        loss_fn=step.loss,
        score_fn=data.validation_score,
        settings=settings,
        on_epoch=ctx.on_epoch,
        forward=step.forward,
        extra_parameters=step.parameters(),
        batch_order=data.batch_order,
        autocast=autocast,
    )
    return model


def probe_step(
    model: nn.Module,
    step: DistillationStep,
    inputs: tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    index: torch.Tensor,
) -> Callable[[bool], None]:
    """One training step on the rows `index` (forward, loss, backward; True: under bf16
    autocast) that leaves no trace: no optimiser step, gradients cleared, and the
    augmentation generator, buffers and train/eval mode put back as they were, so a
    probed student trains exactly as an unprobed one (`probe` restores the global RNG).
    """
    batch, batch_labels = tuple(t[index] for t in inputs), labels[index]
    parameters = [*model.parameters(), *step.parameters()]

    def run(enabled: bool) -> None:
        was_training, generator = model.training, step.generator.get_state()
        buffers = [(b, b.clone()) for b in model.buffers()]
        model.train()
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                loss = step.loss(step.forward(model, batch), batch_labels, index)
            loss.backward()
        finally:
            for parameter in parameters:
                parameter.grad = None
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
            step.generator.set_state(generator)
            model.train(was_training)

    return run


def teacher_precision() -> torch.autocast:
    """fp32 inside a student's autocast step: the teacher's targets (its caches, built
    on first use, and its outputs on augmented rows) are the same whatever the student
    trains in."""
    return torch.autocast("cpu", enabled=False)


@dataclass(frozen=True)
class StudentPass:
    """What one training forward of the student gives the loss."""

    logits: torch.Tensor
    states: list[torch.Tensor] | None
    inputs: tuple[torch.Tensor, ...]
    augmented: torch.Tensor | None
    """Rows whose inputs `TrainingData.augment` changed (None: augmentation is off)."""


class DistillationStep:
    """The forward and loss of one distillation step, as `fit` calls them.

    The teacher's outputs come from the data's caches (by row index), except for rows
    that augmentation altered: the teacher runs on those as the student sees them, and
    they are scored on its soft targets alone (their labels may no longer hold).
    """

    def __init__(
        self, student: nn.Module, recipe: Recipe, data: TrainingData, generator: torch.Generator
    ) -> None:
        self.recipe = recipe
        self.data = data
        self.generator = generator
        self.hidden: HiddenStateLoss | None = None
        self.student = student  # whose `hidden_state_mask` weighs the hidden-state loss
        if recipe.hidden_distill_weight > 0:
            self.hidden = HiddenStateLoss.between(
                student, data.loaded_teacher().eval(), data, recipe.hidden_distill_weight
            )

    def parameters(self) -> list[nn.Parameter]:
        """Trained with the student, owned by the loss (hidden-state projections)."""
        return [] if self.hidden is None else list(self.hidden.parameters())

    def forward(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> StudentPass:
        augmented = None
        if self.recipe.augment_word_prob > 0:
            with teacher_precision():  # its neighbour table is built on first use
                inputs, augmented = self.data.augment(
                    inputs, self.recipe.augment_word_prob, self.generator
                )
        logits, states = self._outputs(model, inputs)
        return StudentPass(logits, states, inputs, augmented)

    def loss(self, output: StudentPass, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        with teacher_precision():
            teacher_logits, teacher_states = self._teacher_outputs(output, index)
        total = self._logit_loss(output, teacher_logits, labels)
        if self.hidden is not None:
            mask = self.student.hidden_state_mask(output.inputs)
            total = total + self.hidden(output.states, teacher_states, mask)
        return total

    def _outputs(
        self, model: nn.Module, inputs: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if self.hidden is None:
            return call_model(model, inputs), None
        return model.forward_with_hidden_states(*inputs)

    def _teacher_outputs(
        self, output: StudentPass, index: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """From the caches, except for altered rows: the teacher runs on those alone
        (its forward costs a third of a step when it runs on the whole batch)."""
        logits = self.data.teacher_logits()[index]
        states = None if self.hidden is None else self.data.teacher_hidden_states(index)
        altered = output.augmented
        if altered is None or not altered.any():
            return logits, states
        with torch.no_grad():
            teacher = self.data.loaded_teacher().eval()
            fresh_logits, fresh_states = self._outputs(
                teacher, tuple(t[altered] for t in output.inputs)
            )
        logits = logits.clone()
        logits[altered] = fresh_logits
        for cached, fresh in zip(states or [], fresh_states or [], strict=True):
            cached[altered] = 0.0  # beyond the altered rows' own trimmed length: padding
            cached[altered, : fresh.shape[1]] = fresh
        return logits, states

    def _logit_loss(
        self, output: StudentPass, teacher_logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """`kd_loss` on the rows that kept their label; soft targets only on altered rows."""
        temperature, alpha = self.recipe.kd_temperature, self.recipe.kd_alpha
        logits = output.logits
        if output.augmented is None:
            return kd_loss(
                logits, teacher_logits, self.data.label_loss(logits, labels), temperature, alpha
            )
        parts, altered = [], output.augmented
        for rows, row_alpha in ((~altered, alpha), (altered, 1.0)):
            if rows.any():
                hard = self.data.label_loss(logits[rows], labels[rows])
                part = kd_loss(logits[rows], teacher_logits[rows], hard, temperature, row_alpha)
                parts.append(part * rows.sum())
        return torch.stack(parts).sum() / len(labels)
