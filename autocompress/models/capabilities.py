"""What a model can do, as the passes and targets ask it.

Each capability is a small protocol a model family implements as methods: a pass
checks `isinstance(model, Layered)` (and so on) and refuses a model without it with
`Unsupported`, which prunes the trial with that reason. Nothing here knows the data;
what passes need from the data is `autocompress.passes.base.TrainingData`.

`isinstance` against a runtime protocol reads every member, so `Specified` (whose
`spec` is computed, and may raise `Unsupported`) is for type hints and tests; passes
check the others, whose members are all methods.

A task kind's settings list the protocols its students implement (`offers`, by these
class names; `tests/test_capabilities.py` holds the two true), so that a study file
naming a field whose pass needs one its students lack is refused when it is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from autocompress.errors import Unsupported


@runtime_checkable
class Specified(Protocol):
    """Every student: rebuilt from a shape spec, saved without pickle."""

    @property
    def spec(self) -> dict[str, Any]:
        """The shape the model is rebuilt from, read from its layers (written into
        `config.yaml`); raises `Unsupported` if no spec can describe it."""
        ...

    def num_parameters(self) -> int: ...

    def save_pretrained(self, folder: str | Path) -> None: ...


@runtime_checkable
class Prunable(Protocol):
    """Structured pruning (torch-pruning's `MetaPruner`) can cut its channels."""

    def protected_layers(self) -> list[nn.Module]:
        """Layers pruning must leave whole (the classifier head); quantization too."""
        ...

    def pruning_options(self, ratio: float) -> dict[str, Any]:
        """Extra `MetaPruner` keyword arguments (heads, per-layer ratios, more ignored
        layers) to remove `ratio` of every prunable width."""
        ...

    def after_pruning(self, pruner: object) -> None:
        """Bring shape bookkeeping torch-pruning does not touch in line with the pruned
        weights (head counts, configs), or refuse with `Unsupported`."""
        ...


@runtime_checkable
class PrunableFFN(Protocol):
    """A transformer whose feed-forward channels can be pruned by a ratio of their own,
    apart from its attention heads and hidden size (a `Prunable` model too)."""

    def ffn_pruning_options(self, ratio: float, ffn_ratio: float) -> dict[str, Any]:
        """`pruning_options` with `ffn_ratio` of the FFN channels removed, and `ratio` of
        the heads and hidden size."""
        ...


@runtime_checkable
class Layered(Protocol):
    """A stack of layers, some of which can be dropped whole."""

    def drop_layers(self, keep_ratio: float) -> nn.Module:
        """Keep `keep_ratio` of the layers (in place; returns the model)."""
        ...


@runtime_checkable
class HiddenStates(Protocol):
    """Intermediate representations a student can learn from its teacher's."""

    def forward_with_hidden_states(
        self, *inputs: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden states of one forward pass."""
        ...

    def hidden_state_map(self, teacher: nn.Module) -> list[int]:
        """For each of this model's hidden states, the index of the teacher's it learns from."""
        ...

    def hidden_state_mask(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """Which positions of the hidden states hold real input (1) rather than padding
        (0), shaped like the states without their last axis; None when all count."""
        ...


Capability = TypeVar("Capability")


def require(model: nn.Module, capability: type[Capability], missing: str) -> Capability:
    """`model` if it has `capability`; else `Unsupported("<Family> models <missing>")`."""
    if not isinstance(model, capability):
        raise Unsupported(f"{type(model).__name__} models {missing}")
    return model
