"""One training loop, shared by teacher training and student distillation.

Early stopping keeps the weights of the best validation epoch; `on_epoch` is the
seam for multi-fidelity search (report intermediate scores, stop hopeless trials).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits, labels, row indices) -> scalar loss; indices let KD look up cached teacher logits."""


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    seed: int = 0


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
) -> FitReport:
    """Train `model` in place; afterwards it holds the best-scoring epoch's weights."""
    generator = torch.Generator().manual_seed(settings.seed)
    indices = torch.arange(len(labels))
    loader = DataLoader(
        TensorDataset(indices, *inputs, labels),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=generator,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    best_score, best_epoch, best_state = float("-inf"), -1, copy.deepcopy(model.state_dict())
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        for index, *batch_inputs, batch_labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(*batch_inputs), batch_labels, index)
            loss.backward()
            optimizer.step()
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
