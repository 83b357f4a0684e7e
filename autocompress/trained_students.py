"""Trained students kept for reuse: training is the cost; the passes after it are not.

A student's training depends on its task (data, teacher), its torch passes' fields and
the seed; the ONNX passes (the precision among them) only transform the trained graph.
So a student trained once can be tried at every other precision the search space allows
without training it again: with `cost_control.try_other_precisions`, the search queues
those variants of each student trained within the limits (`other_precisions`), and
their trials load the trained weights kept here instead of training (the same weights a
new training with the same seed would give, in seconds instead of minutes).

Kept on disk as safetensors (no pickle) beside a small JSON of how it was trained, in
the study's artifacts folder, shared by the workers of a machine; a student that fits
no kept weights (another shape) is trained as usual, with a warning in the log: its
trial then carries a validation curve and no `reused_training`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_model, save_model
from torch import nn

from autocompress.atomic import write_atomically
from autocompress.recipe import RECIPE_FIELDS, Recipe, define_by_run

if TYPE_CHECKING:
    from autocompress.config import ParamSpace

logger = logging.getLogger("autocompress")


def after_training_fields() -> list[str]:
    """The recipe fields that act on the trained model only: the ONNX passes' fields."""
    from autocompress.passes import ONNX_PASSES  # light; passes import recipe, not this

    return [name for each in ONNX_PASSES for name in each.fields]


def training_key(task_fingerprint: str, recipe: Recipe, seed: int, autocast: str) -> str:
    """What a trained student depends on: the task (data and teacher), every recipe field
    but the after-training ones, the seed, and how training may use bf16."""
    after = set(after_training_fields())
    fields = {k: v for k, v in recipe.to_dict().items() if k not in after}
    payload = json.dumps(
        {"task": task_fingerprint, "recipe": fields, "seed": seed, "autocast": autocast},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class TrainedStudents:
    """Trained students by `training_key`, in `folder`.

    `remember` holds the last trained student in memory (no copy: the trial has it);
    `keep` writes it to disk only when something will reuse it, so a study does not
    keep every student it trains.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._last: tuple[str, nn.Module, dict[str, Any]] | None = None

    def remember(self, key: str, student: nn.Module, records: Mapping[str, Any]) -> None:
        self._last = (key, student, dict(records))

    def keep(self, key: str | None) -> bool:
        """Write the remembered student `key` (weights, then its records, each whole or
        not at all: a reader sees the records only once the weights are complete)."""
        if key is None or self._last is None or self._last[0] != key:
            return False
        _, student, records = self._last
        weights = self.folder / f"{key}.safetensors"
        if not (self.folder / f"{key}.json").is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.folder, prefix=".staging-") as staging:
                staged = Path(staging) / weights.name
                save_model(student, str(staged))
                staged.replace(weights)
            write_atomically(
                self.folder / f"{key}.json",
                json.dumps({"records": records, "spec": student.spec}, default=str),
            )
        return True

    def load(self, key: str, shape: Callable[[], nn.Module]) -> tuple[nn.Module, dict] | None:
        """The student kept under `key`, loaded into `shape()` (its untrained shape), with
        the records of its training; None when none is kept or it does not fit."""
        records_path = self.folder / f"{key}.json"
        if not records_path.is_file():
            return None
        kept = json.loads(records_path.read_text())
        student = shape()
        try:
            load_model(student, str(self.folder / f"{key}.safetensors"), strict=True)
        except (RuntimeError, FileNotFoundError, OSError) as error:
            logger.warning(
                "kept student %s does not fit its recipe's shape (%s); training it anew",
                key,
                str(error).splitlines()[0],
            )
            return None
        return student.eval(), kept["records"]


def other_precisions(params: Mapping[str, Any], space: Mapping[str, ParamSpace]) -> list[dict]:
    """`params` (a trial's sampled params) at every other combination of the categorical
    after-training fields the space searches; the other fields keep their values.

    Follows the define-by-run order of `RECIPE_FIELDS`: a field inactive for a
    combination (e.g. `int8_mode` at 32 bits) is left out, as the sampler would; a
    combination that would need a value the trial never sampled is left out.
    """
    after = set(after_training_fields())
    varied = [
        name
        for name in RECIPE_FIELDS
        if name in after and name in space and space[name].choices is not None
    ]
    variants: list[dict] = []
    for combination in itertools.product(*(space[name].choices for name in varied)):
        chosen = {**params, **dict(zip(varied, combination, strict=True))}
        try:  # a field active only here, which the trial never sampled: KeyError
            _, sampled = define_by_run(space, lambda name, _, given=chosen: given[name])
        except KeyError:
            continue
        if sampled != dict(params) and sampled not in variants:
            variants.append(sampled)
    return variants
