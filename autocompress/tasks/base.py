"""What a compression study compresses.

A `Task` is data, teacher, evaluation and export extras: loading and splitting, the
teacher (trained once, cached) and its outputs, example inputs, ONNX export, and
scoring. What a model can do structurally (prune, drop layers, expose hidden states,
its spec) is the model's own (`autocompress.models.capabilities`); passes ask the
model for that and the task only for data (`autocompress.passes.base.TrainingData`,
which every task satisfies). A new kind of data is a new file in `tasks/`, a new
kind of model a new file in `models/`, never an `if` elsewhere.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from autocompress.atomic import atomic_directory
from autocompress.errors import Unsupported, UserError
from autocompress.tasks.metrics import Predictions, classification_metrics
from autocompress.tasks.resampled import classification_resampled
from autocompress.training import FitSettings, random_batches

if TYPE_CHECKING:
    import onnxruntime as ort

    from autocompress.recipe import Recipe
    from autocompress.targets.base import Runnable

logger = logging.getLogger("autocompress")


PREDICT_ROWS = 256
"""Rows per run when a task scores a split (see `Task.predict`)."""


class Task(ABC):
    """The data, the teacher and how to score a model for one study."""

    seed: int = 0
    f1_average: str = "macro"
    _teacher: nn.Module | None = None  # set by `teacher()`

    # -- data and teacher ------------------------------------------------------------
    @abstractmethod
    def fingerprint(self) -> str:
        """A short hash of the data and teacher settings; keys the teacher cache."""

    def teacher(self, cache_dir: Path) -> nn.Module:
        """The trained teacher: trained on first use, then loaded from `cache_dir`.

        The cache folder is keyed by `fingerprint()` and written atomically, so
        concurrent workers either find a complete teacher or train their own.
        """
        if self._teacher is None:
            folder = Path(cache_dir) / f"{self.cache_prefix}-teacher-{self.fingerprint()}"
            if folder.is_dir():
                logger.info("loading the cached teacher from %s", folder)
                self._teacher = self._load_teacher(folder)
            else:
                self._teacher = self._train_teacher()
                try:
                    with atomic_directory(folder) as staging:
                        self._save_teacher(self._teacher, staging)
                except (UserError, OSError):
                    if not folder.is_dir():  # not another worker's complete cache: a fault
                        raise
                    logger.info("another worker cached the teacher meanwhile: %s", folder)
        return self._teacher

    def for_recipe(self, recipe: Recipe) -> Task:
        """The task a recipe's student is built and scored with: this one, unless the
        recipe changes the model's inputs (a credit `numeric_transform`), which needs
        its own teacher. Drops are always measured against this task's teacher."""
        return self

    cache_prefix: str = "task"
    # The model family of the teacher and its students: it implements the protocols of
    # `autocompress.models.capabilities` that the task's settings `offers`.
    model_class: type[nn.Module] = nn.Module
    # What structured pruning removes from this task's models, for pass chains in notes.
    pruned_units: str | None = None

    @abstractmethod
    def _train_teacher(self) -> nn.Module:
        """Train the teacher from scratch (or fine-tune it from a checkpoint)."""

    @abstractmethod
    def _save_teacher(self, teacher: nn.Module, folder: Path) -> None:
        """Write everything `_load_teacher` needs into `folder`."""

    @abstractmethod
    def _load_teacher(self, folder: Path) -> nn.Module:
        """Read a teacher `_save_teacher` wrote."""

    @abstractmethod
    def train_tensors(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Model inputs and labels of the training split."""

    validation_metric: str = "accuracy"
    """The metric `validation_score` computes (a key of the task's scores), so rules that
    read the training curve can relate it to the study's limits."""

    @abstractmethod
    def validation_score(self, model: nn.Module) -> float:
        """Higher is better; used for early stopping, never for the reported metrics."""

    def batch_order(self, rows: int, batch_size: int, generator: torch.Generator) -> list:
        """Which training rows form each batch; random unless a task knows better."""
        return random_batches(rows, batch_size, generator)

    @abstractmethod
    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The hard-label loss, the same for the teacher and for students."""

    @abstractmethod
    def fit_settings(self, epochs: int) -> FitSettings:
        """Optimiser settings for training the teacher or fine-tuning a student."""

    @abstractmethod
    def teacher_logits(self) -> torch.Tensor:
        """The teacher's logits on the training split, computed once, for distillation."""

    def loaded_teacher(self) -> nn.Module:
        """The teacher `teacher()` returned, for passes that distil from more than its logits."""
        if self._teacher is None:
            raise RuntimeError("teacher() must be called before loaded_teacher()")
        return self._teacher

    # -- inputs for the passes ---------------------------------------------------------
    @abstractmethod
    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """A small batch for tracing (pruning dependency graph, ONNX export)."""

    def teacher_hidden_states(self, index: torch.Tensor) -> list[torch.Tensor]:
        """The teacher's hidden states for the training rows `index`, as its
        `forward_with_hidden_states` (`HiddenStates`) gives them for those rows."""
        raise Unsupported(f"{type(self).__name__} models expose no hidden states to distil")

    def augment(
        self, inputs: tuple[torch.Tensor, ...], word_prob: float, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """A training batch with some rows altered for distillation, and which rows
        (their labels may no longer hold; the teacher scores them instead)."""
        raise Unsupported(f"{type(self).__name__} has no data augmentation")

    # -- ONNX side ---------------------------------------------------------------------
    @abstractmethod
    def export_onnx(self, model: nn.Module, path: Path) -> None:
        """Write `model` as an FP32 ONNX graph with a dynamic batch axis."""

    def wrap_onnx(
        self, core: Path, path: Path, open_session: Callable[[Path], ort.InferenceSession]
    ) -> None:
        """Write the deployed graph to `path` around `core`, the student's graph at its
        precision (inputs `core_feeds`). Text models deploy the core as it is; a task
        whose users send raw records puts its preprocessing in front (and calibration
        behind), so what is measured and exported is what a service runs."""
        core.replace(path)

    # Whether `feeds` are raw records that only the wrapped ONNX graph understands
    # (targets serving the torch model itself cannot run them).
    raw_inputs: bool = False

    @abstractmethod
    def feeds(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        """Inputs of the deployed model for a split (`train`, `valid`, `test`)."""

    def core_feeds(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        """Inputs of the student's own graph (what `export_onnx` writes); the same as
        `feeds` unless `wrap_onnx` adds preprocessing in front."""
        return self.feeds(split, limit)

    @abstractmethod
    def labels(self, split: str) -> np.ndarray:
        """Integer labels of a split."""

    @abstractmethod
    def write_extras(self, folder: Path) -> list[str]:
        """Write what a deployed model needs beside it (preprocessing, tokenizer)."""

    def measurement_feed(self, batch_size: int) -> dict[str, np.ndarray]:
        """A fixed batch from the validation split, repeated to `batch_size` if the split
        is short (the test split stays unseen until a model is scored on it)."""
        feeds = self.feeds("valid")
        rows = next(iter(feeds.values())).shape[0]
        take = np.arange(batch_size) % rows
        return {name: array[take] for name, array in feeds.items()}

    def calibration_feeds(self, batches: int = 8, batch_size: int = 32) -> list[dict]:
        """Training rows of the student's graph for static quantization calibration
        (never the test split)."""
        feeds = self.core_feeds("train", limit=batches * batch_size)
        rows = next(iter(feeds.values())).shape[0]
        return [
            {name: array[start : start + batch_size] for name, array in feeds.items()}
            for start in range(0, rows, batch_size)
        ]

    def predict(self, runnable: Runnable, split: str) -> Predictions:
        """A model's output on its target for every row of a split (logits here), run
        `PREDICT_ROWS` rows at a time: onnxruntime's memory arena keeps what its largest
        run needed, and one run over a whole text split (1,900 tweets) left 2.9 GB behind
        in every process that scored a MiniLM (two text workers on 24 GiB: one was killed
        for memory)."""
        feeds = self.feeds(split)
        rows = len(next(iter(feeds.values())))
        chunks = [
            runnable.run(
                {name: values[start : start + PREDICT_ROWS] for name, values in feeds.items()}
            )
            for start in range(0, rows, PREDICT_ROWS)
        ]
        return Predictions(np.concatenate(chunks).astype(np.float32, copy=False))

    def score(self, predictions: Predictions, split: str) -> dict[str, float]:
        """Accuracy, F1 (macro and positive), ROC AUC against the split's labels."""
        return classification_metrics(predictions.values, self.labels(split), self.f1_average)

    def resampled_scores(
        self, predictions: Predictions, split: str, index: np.ndarray, names: Iterable[str]
    ) -> dict[str, np.ndarray]:
        """`score`'s `names` on every resample of the split's rows (`index`: one row of
        row numbers per resample), for bootstrap intervals."""
        return classification_resampled(
            predictions.values, self.labels(split), index, self.f1_average, names
        )

    def evaluate(self, runnable: Runnable, split: str) -> dict[str, float]:
        """Score a model on its target on a split (`valid`: what the search sees;
        `test`: held out, reported only)."""
        return self.score(self.predict(runnable, split), split)
