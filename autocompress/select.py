"""Policies that pick one trial to export from a study's front."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from autocompress.errors import UserError
from autocompress.front import FrontMember


def select(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> FrontMember:
    """`fastest` (lowest p50 within the allowed accuracy drop: the front is already
    feasible), `most_accurate` (highest accuracy under `latency_budget_ms`, if set),
    or `trial:N` (any complete trial of `study`)."""
    if policy.startswith("trial:"):
        return _explicit_trial(policy, study)
    if not front:
        raise UserError(
            "the study has no feasible complete trial to export yet; run more "
            "trials or relax constraints.max_accuracy_drop / max_f1_drop"
        )
    if policy == "fastest":
        return min(front, key=lambda m: (m.metrics["latency_p50_ms"], -m.metrics["accuracy"]))
    if policy == "most_accurate":
        within = [
            m
            for m in front
            if latency_budget_ms is None or m.metrics["latency_p50_ms"] <= latency_budget_ms
        ]
        if not within:
            fastest = min(m.metrics["latency_p50_ms"] for m in front)
            raise UserError(
                f"export.latency_budget_ms: no front trial runs within "
                f"{latency_budget_ms} ms; the fastest takes {fastest:.3f} ms"
            )
        return max(within, key=lambda m: (m.metrics["accuracy"], -m.metrics["latency_p50_ms"]))
    raise UserError(
        f"--policy: {policy!r} is not allowed; allowed values: fastest, most_accurate, trial:N"
    )


def _explicit_trial(policy: str, study: optuna.Study | None) -> FrontMember:
    number_text = policy.removeprefix("trial:")
    if not number_text.isdigit() or study is None:
        raise UserError(f"--policy: {policy!r} needs a trial number, e.g. trial:3")
    number = int(number_text)
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            if trial.state != TrialState.COMPLETE:
                raise UserError(
                    f"--policy: trial {number} is {trial.state.name}, not COMPLETE; "
                    "pick a completed trial (see `autocompress front`)"
                )
            return FrontMember.from_trial(trial)
    raise UserError(f"--policy: study {study.study_name!r} has no trial {number}")
