"""What every target offers: a trial's student made runnable there, and measured there.

A target turns a compressed torch model into something it can run (`materialize`:
an onnxruntime session over an exported, quantized graph; a bitsandbytes model on
a GPU), measures it (`measure`), and says up front which recipes it cannot run
(`check`). Tasks score any `Runnable` the same way, so the pipeline never asks
which target it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from torch import nn

from autocompress.recipe import Recipe
from autocompress.targets.measurement import Acceptance, Measurement
from autocompress.targets.settings import MeasurementConfig

if TYPE_CHECKING:  # tasks import this module's Runnable; avoid the import cycle
    from autocompress.tasks.base import Task


class Runnable(Protocol):
    """A model ready on its target: named numpy inputs in, float logits out."""

    @property
    def size_bytes(self) -> int:
        """What the model occupies (file or memory), as the target counts it."""
        ...

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class Materialized:
    """A runnable model and the files written for it (kept as the trial's artifacts)."""

    runnable: Runnable
    files: list[str]


@runtime_checkable
class ReloadsExports(Protocol):
    """A target that can run an exported model file again (a nightly re-measures the
    champion and the challenger from their export folders)."""

    def load(self, model_path: Path) -> Runnable: ...


class Target(Protocol):
    @property
    def config(self) -> MeasurementConfig:
        """The study's `target:` section: its runtime's settings (`TARGETS`)."""
        ...

    def fingerprint(self) -> dict[str, object]:
        """Machine plus runtime: what makes two latencies comparable."""
        ...

    def check(self, recipe: Recipe) -> None:
        """Raise `Unsupported` with the reason when this target cannot run `recipe`."""
        ...

    def materialize(
        self, task: Task, student: nn.Module, recipe: Recipe, folder: Path
    ) -> Materialized:
        """Make `student` runnable at the recipe's precision; write its files to `folder`.
        `student` itself is never changed."""
        ...

    def measure(
        self, runnable: Runnable, feed: dict[str, np.ndarray], accept: Acceptance | None = None
    ) -> Measurement:
        """Warm up, then time `config.repeats` runs of one fixed batch; timed again with
        back-off while the spread is over `config.max_cv` or `accept` refuses the timings
        (see `steady_timings`)."""
        ...
