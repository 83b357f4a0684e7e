"""One recipe through the whole chain: torch passes → the target's model → measure → score.

The search calls this for every trial; later, the nightly job calls it to
re-measure a champion on today's machine. One way to turn a recipe into numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from autocompress.passes import TORCH_PASSES, PassContext
from autocompress.recipe import Recipe
from autocompress.targets import Measurement, Target
from autocompress.tasks import Task
from autocompress.tasks.metrics import Predictions

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
) -> Evaluation:
    """Compress, make the student runnable on the target (its files in `folder`),
    measure it there and predict the validation and test splits.

    `autocast` and `cache_dir` as in `build_student`; its records become `training`.
    Raises `Unsupported` when the target cannot run the recipe.
    """
    target.check(recipe)
    training: dict[str, object] = {}
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
    model = target.materialize(task, student, recipe, folder)
    measurement = target.measure(model.runnable, task.measurement_feed(target.config.batch_size))
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
    )
