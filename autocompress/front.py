"""The feasible Pareto front of a study, as plain rows people and tables can read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.pareto import pareto_front

TEACHER_ROLE = "teacher"
TEACHER_TRIAL_ATTR = "autocompress:teacher_trial"
"""Study user attribute: the number of the study's teacher trial (0 when the study is
created; the number of its retry when a stale teacher was tried again and completed)."""


@dataclass(frozen=True)
class FrontMember:
    """One trial on the front: its params and every metric it recorded (scores of the
    validation split; the held-out test split's under `metrics["held_out"]`)."""

    trial_number: int
    params: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def is_teacher(self) -> bool:
        return self.metrics.get("role") == TEACHER_ROLE

    @property
    def noisy(self) -> bool:
        """Whether its latency stayed over `target.max_cv` after every re-measurement
        (False for members stored before noise was recorded)."""
        return bool(self.metrics.get("latency_noisy"))

    @property
    def latency_spread_ms(self) -> float:
        """One standard deviation of its p50, as its CV says (0 when not recorded)."""
        p50 = self.metrics.get("latency_p50_ms") or 0.0
        return p50 * (self.metrics.get("latency_cv") or 0.0)

    def noise_note(self) -> str:
        """`CV 487% after 4 measurements (limit 50%)`, or `` when not noisy."""
        if not self.noisy:
            return ""
        m = self.metrics
        if m.get("latency_noise_reason"):
            return str(m["latency_noise_reason"])
        limit = m.get("latency_max_cv")
        return (
            f"CV {m.get('latency_cv') or 0.0:.0%} after {m.get('latency_attempts') or 1} "
            f"measurement(s)" + (f" (limit {limit:.0%})" if limit is not None else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {"trial_number": self.trial_number, "params": self.params, "metrics": self.metrics}

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> FrontMember:
        attrs = trial.user_attrs
        metrics = {
            **attrs.get("metrics", {}),
            **{k: v for k, v in attrs.get("measurement", {}).items() if k.startswith("latency")},
            # How steady the latency was; absent from measurements stored before it was recorded.
            "latency_noisy": attrs.get("measurement", {}).get("noisy", False),
            "latency_attempts": attrs.get("measurement", {}).get("attempts", 1),
            "latency_max_cv": attrs.get("measurement", {}).get("max_cv"),
            "latency_noise_reason": attrs.get("measurement", {}).get("noise_reason"),
            "size_bytes": attrs.get("measurement", {}).get("size_bytes"),
            "accuracy_drop": attrs.get("accuracy_drop"),
            "f1_drop": attrs.get("f1_drop"),
            # and every other change versus the teacher recorded: roc_auc_drop, brier_increase...
            **{k: v for k, v in attrs.items() if k.endswith(("_drop", "_increase"))},
            "num_parameters": attrs.get("num_parameters"),
            "recipe": attrs.get("recipe_summary"),
            "role": attrs.get("role"),
            # Scores above are the validation split's (what chose it); the held-out test
            # split's, with paired bootstrap intervals, only ever reported from here.
            "change_intervals": attrs.get("change_intervals"),
            "search_split": attrs.get("search_split"),
            "held_out": attrs.get("held_out"),
            "constraint_mode": attrs.get("constraint_mode"),
        }
        return cls(trial_number=trial.number, params=dict(trial.params), metrics=metrics)


def teacher_member(study: optuna.Study) -> FrontMember | None:
    """The completed teacher trial (the baseline), whether or not it is on the front.

    Read alone by its number (`TEACHER_TRIAL_ATTR`; trial 0 in a study made before it
    was recorded): a study of 50,000 trials is not read to find it. The complete trials
    are searched only when that trial is not a completed teacher and cannot become one
    (an older study, or a teacher that failed and may have been tried again)."""
    from autocompress.store.trials import trial_by_number

    recorded = study.user_attrs.get(TEACHER_TRIAL_ATTR)
    trial = trial_by_number(study, 0 if recorded is None else int(recorded))
    if _is_teacher(trial):
        return FrontMember.from_trial(trial)
    if recorded is not None and trial is not None and not trial.state.is_finished():
        return None  # the teacher has not finished yet
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("role") == TEACHER_ROLE:
            return FrontMember.from_trial(trial)
    return None


def _is_teacher(trial: FrozenTrial | None) -> bool:
    return (
        trial is not None
        and trial.state == TrialState.COMPLETE
        and trial.user_attrs.get("role") == TEACHER_ROLE
    )


def is_feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in trial.constraints.values())


def feasible_complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in trials if is_feasible(t)]


def compute_front(study: optuna.Study) -> list[FrontMember]:
    """Feasible, non-dominated complete trials, ordered by trial number."""
    return front_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), study)


def front_of(complete: Sequence[FrozenTrial], study: optuna.Study) -> list[FrontMember]:
    """The front among `complete` (complete trials of `study`), ordered by trial number."""
    trials = [t for t in complete if is_feasible(t)]
    if not trials:
        return []
    directions = [d.name.lower() for d in study.directions]
    values = np.array([t.values for t in trials], dtype=float)
    return [FrontMember.from_trial(trials[i]) for i in pareto_front(values, directions)]
