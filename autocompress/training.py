"""One training loop, shared by teacher training and student distillation.

Early stopping keeps the weights of the best validation epoch; `on_epoch` is the
seam for multi-fidelity search (report intermediate scores, stop hopeless trials).
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

if TYPE_CHECKING:  # annotations only: training must import without the passes' modules
    from autocompress.autocast import AutocastChoice

LossFn = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
"""(forward output, labels, row indices) -> scalar loss; indices let KD look up teacher outputs."""

Forward = Callable[[nn.Module, tuple[torch.Tensor, ...]], Any]
"""(model, batch inputs) -> what the loss function receives; logits by default."""

BatchOrder = Callable[[int, int, torch.Generator], list[torch.Tensor]]
"""(rows, batch size, generator) -> the row indices of each batch of one epoch."""

PROGRESS_INTERVAL_S = 30.0
"""Seconds between progress lines when stderr is not a terminal (CI logs stay short)."""


def call_model(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The default forward: the model's logits."""
    return model(*inputs)


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    seed: int = 0
    lr_schedule: str = "constant"

    @classmethod
    def of(cls, optimizer: Any, epochs: int, seed: int) -> FitSettings:
        """From any study-file section with batch_size, learning_rate, weight_decay,
        patience; sections without an `lr_schedule` train at a constant rate."""
        return cls(
            epochs=epochs,
            batch_size=optimizer.batch_size,
            learning_rate=optimizer.learning_rate,
            weight_decay=optimizer.weight_decay,
            patience=optimizer.patience,
            seed=seed,
            lr_schedule=getattr(optimizer, "lr_schedule", "constant"),
        )


@dataclass(frozen=True)
class FitReport:
    best_score: float
    best_epoch: int
    epochs_run: int


def fit(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    loss_fn: LossFn,
    score_fn: Callable[[nn.Module], float],
    settings: FitSettings,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    forward: Forward = call_model,
    extra_parameters: Iterable[nn.Parameter] = (),
    progress: str | None = None,
    batch_order: BatchOrder | None = None,
    autocast: AutocastChoice | None = None,
) -> FitReport:
    """Train `model` in place; afterwards it holds the best-scoring epoch's weights.

    `forward` lets a loss see more of one forward pass than the logits (e.g. hidden
    states) without a second pass. `extra_parameters` are trained alongside the model
    (e.g. distillation projections); they are the caller's, and are not restored to
    their best epoch. `progress` names a progress bar over each epoch's batches.
    `batch_order` chooses which rows form each batch (default: a random permutation).
    `autocast` (default: fp32) is the context each step's forward and loss run in;
    backward, the optimiser and `score_fn` always run outside it, in fp32.
    """
    precision = autocast.context if autocast is not None else contextlib.nullcontext
    generator = torch.Generator().manual_seed(settings.seed)
    order = batch_order or random_batches
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *extra_parameters],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    steps_per_epoch = len(order(len(labels), settings.batch_size, torch.Generator()))
    scheduler = learning_rate_schedule(optimizer, settings, steps_per_epoch * settings.epochs)
    best_score, best_epoch, best_state = float("-inf"), -1, copy.deepcopy(model.state_dict())
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        batches = order(len(labels), settings.batch_size, generator)
        if progress is not None:
            batches = _progress_bar(batches, progress, epoch, settings)
        for index in batches:
            optimizer.zero_grad()
            batch_inputs = tuple(tensor[index] for tensor in inputs)
            with precision():
                loss = loss_fn(forward(model, batch_inputs), labels[index], index)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        score = score_fn(model)
        if on_epoch is not None:
            on_epoch(epoch, score)
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return FitReport(best_score=best_score, best_epoch=best_epoch, epochs_run=epoch)


WARMUP_SHARE = 0.06
"""Share of the steps over which a `linear` schedule warms up (transformers' common 6%)."""


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, settings: FitSettings, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """`constant`, or `linear`: warm up over the first 6% of steps, then decay to zero.

    The decay spans all the epochs asked for (the recipe's budget), so a run stopped
    early by patience simply ends before the rate reaches zero.
    """
    if settings.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    warmup = max(1, round(WARMUP_SHARE * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def random_batches(rows: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Row indices of each batch of one epoch, in a fresh random order."""
    return list(torch.randperm(rows, generator=generator).split(batch_size))


def _progress_bar(
    batches: list[torch.Tensor], description: str, epoch: int, settings: FitSettings
) -> tqdm:
    """A bar on stderr; in a log file (not a terminal) one line every 30 s, not every batch."""
    interactive = sys.stderr.isatty()
    return tqdm(
        batches,
        desc=f"{description} {epoch}/{settings.epochs}",
        unit="batch",
        file=sys.stderr,
        mininterval=0.1 if interactive else PROGRESS_INTERVAL_S,
        disable=False,  # tqdm's automatic choice (None) would hide it from CI logs
    )
