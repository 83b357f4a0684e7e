"""Latency before training: a candidate's shape at its precision, measured untrained.

A student's latency depends on its shape and precision (dense kernels), not on what
its weights learnt, so the structural passes alone (layer drop, pruning; no
fine-tuning) give a model that runs as fast as the trained one will. Measuring it
takes seconds where training a text student takes many minutes, which lets rules
skip a candidate that cannot matter (`cost_control.skip_slower_than_fastest`) or rank
a student by its latency while it trains (`cost_control.successive_halving`). The
trained model is still measured after training; that figure is the one that counts.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from autocompress.atomic import write_atomically
from autocompress.cost_summary import ESTIMATE_ATTR, SKIPPED_ATTR
from autocompress.pipeline import build_student
from autocompress.recipe import Recipe
from autocompress.targets import Runnable, Target
from autocompress.targets.measurement import fingerprint_id, interleaved_rounds
from autocompress.tasks import Task

__all__ = ["ESTIMATE_ATTR", "SKIPPED_ATTR", "LatencyEstimate", "LatencyEstimator"]
SIDE_BY_SIDE_ROUNDS = 3
"""Rounds of the check made before a candidate is skipped (see `side_by_side`)."""
KEPT_SHAPES = 4
"""Runnable shapes kept loaded per process (a MiniLM session holds about 100 MB)."""


@dataclass
class _Shape:
    """A shape made runnable, its timing batch, and the folder its files live in."""

    runnable: Runnable
    feed: dict[str, np.ndarray]
    folder: tempfile.TemporaryDirectory


@dataclass(frozen=True)
class LatencyEstimate:
    """The untrained student's p50 on the target, and what it was keyed by."""

    latency_p50_ms: float
    key: str
    cached: bool
    seconds: float
    """What measuring it cost (building, exporting, timing); 0 when it came from the cache."""
    student_spec: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LatencyEstimator:
    """Measures candidates before training, cached by (student shape, precision, inputs,
    target fingerprint) in `cache_dir` (shared by the workers of a machine).

    The last `KEPT_SHAPES` shapes made runnable stay loaded in this process, so the
    side-by-side check before a skip re-times the candidate just estimated and the
    fastest model without exporting either again (a MiniLM export takes most of a minute).
    """

    def __init__(self, target: Target, cache_dir: Path | None) -> None:
        self.target = target
        self.cache_dir = cache_dir
        self.target_id = fingerprint_id(target.fingerprint())
        self.exports = 0  # shapes made runnable by this estimator (the costly step)
        self._kept: OrderedDict[str, _Shape] = OrderedDict()

    def estimate(self, task: Task, teacher: nn.Module, recipe: Recipe) -> LatencyEstimate:
        """Raises `Unsupported` when the target cannot run `recipe` (nothing is built)."""
        started = time.monotonic()
        self.target.check(recipe)
        structural = replace(recipe, finetune_epochs=0)  # no training: shape only
        student = build_student(task, teacher, structural, seed=task.seed)
        spec = student.spec
        key = self._key(spec, recipe)
        cached = self._cached(key)
        if cached is not None:
            return LatencyEstimate(cached, key, cached=True, seconds=0.0, student_spec=spec)
        shape = self._runnable(key, task, student, structural)
        latency = self.target.measure(shape.runnable, shape.feed).latency_p50_ms
        if self.cache_dir is not None:
            write_atomically(
                self.cache_dir / f"{key}.json",
                json.dumps({"latency_p50_ms": latency, "student_spec": spec}, default=str),
            )
        seconds = time.monotonic() - started
        return LatencyEstimate(latency, key, cached=False, seconds=seconds, student_spec=spec)

    def side_by_side(
        self,
        shapes: dict[str, tuple[Task, nn.Module, Recipe, str | None]],
        rounds: int = SIDE_BY_SIDE_ROUNDS,
    ) -> dict[str, float]:
        """Each named recipe's untrained shape timed now, in interleaved rounds (each round
        visits each once, in a shuffled order), so a load that drifted since the cached
        figures were taken hits all alike: median p50. A shape is given with its estimate's
        key when known: one still loaded under that key is timed without being built."""
        loaded = {
            name: self._loaded(task, teacher, recipe, key)
            for name, (task, teacher, recipe, key) in shapes.items()
        }
        p50s = interleaved_rounds(
            lambda name: self.target.measure(loaded[name].runnable, loaded[name].feed),
            list(shapes),
            rounds,
        )
        return {name: statistics.median(values) for name, values in p50s.items()}

    def _loaded(self, task: Task, teacher: nn.Module, recipe: Recipe, key: str | None) -> _Shape:
        """The shape still loaded under `key`, or built, exported and kept now."""
        if key is not None and key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        structural = replace(recipe, finetune_epochs=0)
        student = build_student(task, teacher, structural, seed=task.seed)
        key = self._key(student.spec, recipe)
        return self._runnable(key, task, student, structural)

    def _runnable(self, key: str, task: Task, student: nn.Module, recipe: Recipe) -> _Shape:
        """The shape `key` made runnable: still loaded, or exported now and kept."""
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        folder = tempfile.TemporaryDirectory(prefix="autocompress-estimate-")
        try:
            runnable = self.target.materialize(task, student, recipe, Path(folder.name)).runnable
        except BaseException:
            folder.cleanup()
            raise
        self.exports += 1
        shape = _Shape(runnable, task.measurement_feed(self.target.config.batch_size), folder)
        self._kept[key] = shape
        while len(self._kept) > KEPT_SHAPES:
            self._kept.popitem(last=False)[1].folder.cleanup()
        return shape

    def _key(self, spec: dict[str, Any], recipe: Recipe) -> str:
        parts = {
            "student": spec,
            "precision": recipe.precision,
            "bnb_4bit_type": recipe.bnb_4bit_type if recipe.bits == 4 else None,
            "inputs": recipe.numeric_transform,  # a credit graph carries its preprocessing
            "target": self.target_id,
        }
        if recipe.extras:  # other registered passes' fields: they may change the graph too
            parts["extras"] = dict(recipe.extras)
        payload = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _cached(self, key: str) -> float | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.json"
        if not path.is_file():
            return None
        return float(json.loads(path.read_text())["latency_p50_ms"])
