"""How much worse than the teacher a student scores, and how sure we are of it.

A change is a drop (teacher − student, for scores where higher is better) or an
increase (student − teacher, for calibration errors): positive is always worse.

Two splits, two jobs. The search, the constraints and the selection see only the
validation split. The test split is held out: every trial is scored on it so the front
and the export can report it, but nothing chooses by it.

Every change carries a paired bootstrap interval: teacher and student are scored on the
same resamples of the split's rows (each class resampled within itself), so the
interval is that of the difference, far narrower than two separate intervals when the
models agree on most rows. With `constraints.confidence`, a student is feasible only
when the interval's upper bound is within the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from autocompress.config import MAXIMIZED_METRICS, ConstraintsConfig, StudyConfig
from autocompress.errors import UserError

if TYPE_CHECKING:  # export reads this module; tasks (torch, sklearn) load when judging
    from autocompress.tasks import Task
    from autocompress.tasks.metrics import Predictions

# Scores recorded against the teacher as `<metric>_drop` or `<metric>_increase`.
DROP_METRICS = (
    *sorted(MAXIMIZED_METRICS),
    "f1_macro",
    "f1_positive",
    "accuracy_at_threshold",
    "f1_at_threshold",
)
INCREASE_METRICS = ("brier", "ece")
# Changes given an interval even when no objective or limit names them.
ALWAYS_INTERVALS = ("accuracy", "f1", "roc_auc")
SEARCH_SPLIT = "valid"
HELD_OUT_SPLIT = "test"


def change(metric: str, teacher: float, student: float) -> float:
    """Positive is worse: teacher − student, or student − teacher for calibration errors."""
    return student - teacher if metric in INCREASE_METRICS else teacher - student


def change_name(metric: str) -> str:
    """`accuracy_drop`, `brier_increase`."""
    return f"{metric}_increase" if metric in INCREASE_METRICS else f"{metric}_drop"


def changes(teacher: dict[str, float], student: dict[str, float]) -> dict[str, float]:
    """Every finite change of a score both report, by `change_name`."""
    found = {}
    for metric in (*DROP_METRICS, *INCREASE_METRICS):
        if metric in teacher and metric in student:
            value = change(metric, teacher[metric], student[metric])
            if math.isfinite(value):
                found[change_name(metric)] = value
    return found


def drops_and_constraints(
    limits: ConstraintsConfig,
    teacher: dict[str, float],
    metrics: dict[str, float],
    upper_bounds: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """The changes (see `changes`) and the constraint values of the limits the study
    sets, named like the changes: change minus limit, feasible when ≤ 0. With
    `upper_bounds` (change name → upper bound of its interval) the bound stands in for
    the point change."""
    constraints = {}
    for key, metric, limit, _ in limits.limits():
        if metric not in teacher or metric not in metrics:
            reported = sorted(set(teacher) & set(metrics))
            raise UserError(
                f"constraints.{key}: the task reports no {metric} score for "
                f"{'the teacher' if metric not in teacher else 'this student'} (it reports "
                f"{', '.join(reported)}); remove the limit"
            )
        name = change_name(metric)
        value = change(metric, teacher[metric], metrics[metric])
        if upper_bounds is not None:
            value = upper_bounds.get(name, math.inf)
        constraints[name] = value - limit
    return changes(teacher, metrics), constraints


class PairedBootstrap:
    """Intervals of teacher-vs-student changes on one split: the resamples are drawn
    once (fixed by the seed), and the teacher's scores on them computed once, so every
    student is compared with the teacher on exactly the same rows."""

    def __init__(
        self,
        task: Task,
        split: str,
        teacher: Predictions,
        metrics: list[str],
        resamples: int,
        seed: int,
    ) -> None:
        from autocompress.tasks.resampled import stratified_indices  # scipy: only when judging

        self.task = task
        self.split = split
        self.metrics = metrics
        self.index = stratified_indices(task.labels(split), resamples, seed)
        self.teacher = task.resampled_scores(teacher, split, self.index, metrics)

    def changes(self, student: Predictions) -> dict[str, np.ndarray]:
        """Each change (by `change_name`) on every resample."""
        scores = self.task.resampled_scores(student, self.split, self.index, self.metrics)
        return {change_name(m): change(m, self.teacher[m], scores[m]) for m in self.metrics}

    @staticmethod
    def interval(samples: np.ndarray, confidence: float) -> list[float] | None:
        """Percentile interval; None when the change is undefined on some resample."""
        if not np.all(np.isfinite(samples)):
            return None
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(samples, [tail, 100 - tail])
        return [float(low), float(high)]


@dataclass(frozen=True)
class Judgement:
    """A student against the teacher: what the search uses (validation) and what is
    only reported (held out), as stored on its trial."""

    metrics: dict[str, float]  # validation scores: objectives, constraints, selection
    changes: dict[str, float]
    intervals: dict[str, list[float] | None]
    constraints: dict[str, float]
    held_out: dict[str, Any]
    search_split: dict[str, Any]
    constraint_mode: dict[str, Any]

    def user_attrs(self) -> dict[str, Any]:
        """What a trial records (`set_user_attr`), changes under their own names."""
        return {
            "metrics": self.metrics,
            **self.changes,
            "change_intervals": self.intervals,
            "search_split": self.search_split,
            "held_out": self.held_out,
            "constraint_mode": self.constraint_mode,
        }


class TeacherComparison:
    """Judges students against the teacher on the validation split (for the search)
    and the held-out test split (for reports), with paired bootstrap intervals."""

    def __init__(self, config: StudyConfig, task: Task, teacher: dict[str, Predictions]) -> None:
        self.config = config
        self.task = task
        self.teacher_metrics = {split: task.score(p, split) for split, p in teacher.items()}
        self.rows = {split: len(task.labels(split)) for split in teacher}
        valid = self.teacher_metrics[SEARCH_SPLIT]
        wanted = {
            *config.objectives.metrics,
            *(metric for _, metric, _, _ in config.constraints.limits()),
            *ALWAYS_INTERVALS,
        }
        metrics = [
            m
            for m in (*DROP_METRICS, *INCREASE_METRICS)
            if m in wanted and math.isfinite(valid.get(m, math.nan))
        ]
        intervals = config.intervals
        self.bootstraps = {
            split: PairedBootstrap(
                task, split, teacher[split], metrics, intervals.resamples, intervals.seed
            )
            for split in teacher
        }

    @property
    def constraint_mode(self) -> dict[str, Any]:
        confidence = self.config.constraints.confidence
        if confidence is None:
            return {"kind": "point"}
        return {"kind": "upper_bound", "confidence": confidence}

    def split_facts(self, split: str) -> dict[str, Any]:
        intervals = self.config.intervals
        return {
            "split": split,
            "rows": self.rows[split],
            "confidence": intervals.confidence,
            "resamples": intervals.resamples,
            "seed": intervals.seed,
        }

    def judge(self, predictions: dict[str, Predictions]) -> Judgement:
        """A student's scores, changes, intervals and constraint values."""
        config = self.config
        level = config.intervals.confidence
        metrics = self.task.score(predictions[SEARCH_SPLIT], SEARCH_SPLIT)
        samples = self.bootstraps[SEARCH_SPLIT].changes(predictions[SEARCH_SPLIT])
        intervals = {name: PairedBootstrap.interval(s, level) for name, s in samples.items()}
        upper_bounds = None
        if config.constraints.confidence is not None:
            # An undefined bound cannot show the student within the limit: infeasible.
            upper_bounds = {}
            for name, resampled in samples.items():
                bounds = PairedBootstrap.interval(resampled, config.constraints.confidence)
                upper_bounds[name] = bounds[1] if bounds else math.inf
        found, constraints = drops_and_constraints(
            config.constraints, self.teacher_metrics[SEARCH_SPLIT], metrics, upper_bounds
        )
        test_metrics = self.task.score(predictions[HELD_OUT_SPLIT], HELD_OUT_SPLIT)
        test_samples = self.bootstraps[HELD_OUT_SPLIT].changes(predictions[HELD_OUT_SPLIT])
        held_out = {
            **self.split_facts(HELD_OUT_SPLIT),
            "metrics": test_metrics,
            "changes": changes(self.teacher_metrics[HELD_OUT_SPLIT], test_metrics),
            "intervals": {
                name: PairedBootstrap.interval(s, level) for name, s in test_samples.items()
            },
        }
        return Judgement(
            metrics=metrics,
            changes=found,
            intervals=intervals,
            constraints=constraints,
            held_out=held_out,
            search_split=self.split_facts(SEARCH_SPLIT),
            constraint_mode=self.constraint_mode,
        )
