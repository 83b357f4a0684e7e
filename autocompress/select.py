"""Policies that pick one trial to export from a study's front.

`choose` returns a `Selection`: the member and, when noisy latencies could have
decided it, a warning to show. `select` returns the member alone (and logs the
warning) for callers that want only the trial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from autocompress.errors import UserError
from autocompress.front import FrontMember

logger = logging.getLogger("autocompress")


@dataclass(frozen=True)
class Selection:
    """The member a policy picked, and why its latency may not have decided it fairly.

    `runner_up` is the member it beat on latency (`fastest`), when there was one.
    A `warning` never blocks the selection: it says the pick rests on noisy numbers.
    """

    member: FrontMember
    policy: str
    runner_up: FrontMember | None = None
    warning: str | None = None


def select(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> FrontMember:
    """The member `choose` picks; its warning, if any, is logged (autocompress logger)."""
    selection = choose(front, policy, study, latency_budget_ms)
    if selection.warning:
        logger.warning("selection by %s: %s", policy, selection.warning)
    return selection.member


def choose(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> Selection:
    """`fastest` (lowest p50 within the allowed accuracy drop: the front is already
    feasible), `most_accurate` (highest accuracy under `latency_budget_ms`, if set),
    or `trial:N` (any complete trial of `study`).

    `fastest` warns when the chosen member or the runner-up it beat is noisy, or when
    the two p50s are within each other's spread (their gap is at most the larger of
    p50 × CV of the two). `most_accurate` warns when a latency budget was applied
    and the chosen member's latency is noisy."""
    if policy.startswith("trial:"):
        return Selection(_explicit_trial(policy, study), policy)
    if not front:
        raise UserError(
            "the study has no feasible complete trial to export yet; run more "
            "trials or relax constraints.max_accuracy_drop / max_f1_drop"
        )
    if policy == "fastest":
        ranked = sorted(front, key=lambda m: (m.metrics["latency_p50_ms"], -m.metrics["accuracy"]))
        chosen, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        return Selection(chosen, policy, runner_up, _fastest_warning(chosen, runner_up))
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
        chosen = max(within, key=lambda m: (m.metrics["accuracy"], -m.metrics["latency_p50_ms"]))
        warning = None
        if latency_budget_ms is not None and chosen.noisy:
            warning = (
                f"trial {chosen.trial_number} is within the {latency_budget_ms} ms budget by a "
                f"noisy latency ({chosen.noise_note()}); re-measure before relying on it"
            )
        return Selection(chosen, policy, warning=warning)
    raise UserError(
        f"--policy: {policy!r} is not allowed; allowed values: fastest, most_accurate, trial:N"
    )


def _fastest_warning(chosen: FrontMember, runner_up: FrontMember | None) -> str | None:
    """Why `chosen` may be fastest only by noise, or None."""
    if runner_up is None:
        return (
            f"trial {chosen.trial_number}'s latency is noisy ({chosen.noise_note()})"
            if chosen.noisy
            else None
        )
    reasons = [
        f"trial {m.trial_number} ({label}) is noisy: {m.noise_note()}"
        for m, label in ((chosen, "chosen"), (runner_up, "runner-up"))
        if m.noisy
    ]
    p50, other = chosen.metrics["latency_p50_ms"], runner_up.metrics["latency_p50_ms"]
    spread = max(chosen.latency_spread_ms, runner_up.latency_spread_ms)
    if other - p50 <= spread:
        reasons.append(
            f"p50 {p50:.3f} ms vs {other:.3f} ms (trial {runner_up.trial_number}) differ by "
            f"{other - p50:.3f} ms, within their spread of ±{spread:.3f} ms"
        )
    if not reasons:
        return None
    return (
        f"trial {chosen.trial_number} was chosen as fastest, but the latencies may not "
        "decide it: " + "; ".join(reasons)
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
