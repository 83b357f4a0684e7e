"""One recipe through the whole chain: torch passes → the target's model → measure → score.

The search calls this for every trial; later, the nightly job calls it to
re-measure a champion on today's machine. One way to turn a recipe into numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from autocompress.passes import TORCH_PASSES, PassContext
from autocompress.recipe import Recipe
from autocompress.targets import Measurement, Target
from autocompress.targets.measurement import Acceptance, p50_ms
from autocompress.tasks import Task
from autocompress.tasks.metrics import Predictions
from autocompress.trained_students import TrainedStudents, training_key

# The search sees the first; the second is held out and only reported.
SCORED_SPLITS = ("valid", "test")


@dataclass(frozen=True)
class Evaluation:
    """What one recipe produced: files in a folder, scores, and its latency on the target."""

    recipe: Recipe
    # Its output on every row of the validation and test splits: scored, and compared
    # with the teacher's, by `changes.TeacherComparison`.
    predictions: dict[str, Predictions]
    measurement: Measurement
    student_spec: dict
    num_parameters: int
    files: list[str]
    # How the passes ran (e.g. `training_autocast`: fp32 or bf16, and why); empty when
    # there is nothing to say (workers.autocast: off).
    training: dict = field(default_factory=dict)
    # What its training depended on (`trained_students.training_key`), when trained
    # students are kept for reuse; None otherwise.
    training_key: str | None = None


def build_student(
    task: Task,
    teacher: nn.Module,
    recipe: Recipe,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    autocast: str = "off",
    cache_dir: Path | None = None,
    records: dict[str, object] | None = None,
) -> nn.Module:
    """Run the torch passes on a copy of the teacher (the teacher itself is never changed).

    `autocast` and `cache_dir` are `workers.autocast` and where its probes are kept;
    what the passes report about how they ran is added to `records` when given.
    """
    model = copy.deepcopy(teacher)
    context = PassContext(
        data=task, seed=seed, on_epoch=on_epoch, autocast=autocast, cache_dir=cache_dir
    )
    for compression_pass in TORCH_PASSES:
        model = compression_pass.apply(model, recipe, context)
    if records is not None:
        records.update(context.records)
    return model.eval()


ESTIMATE_TOLERANCE = 1.5
"""How far (either way) a trained model's p50 may lie from its untrained shape's before
the two are taken to disagree: same shape, same precision, dense kernels."""


def near_estimate(expected_p50_ms: float) -> Acceptance:
    """The check `target.measure` holds a trained model's timings to: their p50 agrees
    with `expected_p50_ms`, the p50 the same shape measured before training.

    Far from it (beyond `ESTIMATE_TOLERANCE`), one of the two was taken while something
    else had the machine: its spread alone may not show it (seen: a MiniLM student at
    3.7x its estimate with a CV of 0.39, under the 0.5 limit, while tests ran beside
    it). The target times it again, up to `target.config.remeasure_attempts` more times
    with its back-off (`steady_timings`), and keeps the first measurement that agrees
    (and is within `max_cv`); if none does, the least spread one is kept, marked noisy
    with this check's reason when it disagrees, so selections warn.
    """

    def check(attempts: Sequence[list[float]]) -> str | None:
        ratios = [p50_ms(timings) / expected_p50_ms for timings in attempts]
        if 1 / ESTIMATE_TOLERANCE <= ratios[-1] <= ESTIMATE_TOLERANCE:
            return None
        shown = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        return (
            f"p50 stayed far from the {expected_p50_ms:.3f} ms its untrained shape measured "
            f"before training ({shown} over {len(ratios)} measurements; tolerance "
            f"{ESTIMATE_TOLERANCE}x): one of them was taken while the machine was busy"
        )

    return check


def evaluate_recipe(
    task: Task,
    teacher: nn.Module,
    target: Target,
    recipe: Recipe,
    folder: Path,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    autocast: str = "off",
    cache_dir: Path | None = None,
    expected_p50_ms: float | None = None,
    trained: TrainedStudents | None = None,
) -> Evaluation:
    """Compress, make the student runnable on the target (its files in `folder`),
    measure it there and predict the validation and test splits.

    `autocast` and `cache_dir` as in `build_student`; its records become `training`.
    `expected_p50_ms` is the p50 its shape measured before training, if known (see
    `near_estimate`). With `trained`, a student of the same training kept there is
    loaded instead of trained (`training` then names it: `reused_training`), and a student
    trained here is remembered there. Raises `Unsupported` when the target cannot run the
    recipe.
    """
    target.check(recipe)
    training: dict[str, object] = {}
    reused, key = None, None
    if trained is not None:
        key = training_key(task.fingerprint(), recipe, seed, autocast)
        untrained = replace(recipe, finetune_epochs=0)  # the shape, as before training
        reused = trained.load(key, lambda: build_student(task, teacher, untrained, seed))
    if reused is not None:
        student, records = reused
        training.update(records, reused_training=key)
    else:
        student = build_student(
            task,
            teacher,
            recipe,
            seed,
            on_epoch,
            autocast=autocast,
            cache_dir=cache_dir,
            records=training,
        )
        if trained is not None:
            trained.remember(key, student, training)
    model = target.materialize(task, student, recipe, folder)
    feed = task.measurement_feed(target.config.batch_size)
    accept = None if expected_p50_ms is None else near_estimate(expected_p50_ms)
    measurement = target.measure(model.runnable, feed, accept)
    predictions = {split: task.predict(model.runnable, split) for split in SCORED_SPLITS}
    extras = task.write_extras(folder)
    return Evaluation(
        recipe=recipe,
        predictions=predictions,
        measurement=measurement,
        student_spec=student.spec,
        num_parameters=sum(p.numel() for p in student.parameters()),
        files=[*model.files, *extras],
        training=training,
        training_key=key,
    )
