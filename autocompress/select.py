"""Policies that pick one trial to export from a study's front.

`parse_policy` owns which policies exist and what they mean; the study file check,
the command line's help and nightly runs all ask it. `choose` returns a `Selection`:
the member and, when noisy latencies could have decided it, a warning to show.
`select` returns the member alone (and logs the warning) for callers that want only
the trial.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from autocompress.config import CONSTRAINT_LIMITS, MAXIMIZED_METRICS, OBJECTIVE_METRICS
from autocompress.errors import UserError

if TYPE_CHECKING:  # optuna and the front are imported when a policy is applied, not parsed
    import optuna

    from autocompress.front import FrontMember

logger = logging.getLogger("autocompress")

LATENCY = "latency_p50_ms"
# best:<metric> ranks by any score a study can optimise; latency and size have `fastest`.
BEST_METRICS = tuple(
    m for m in OBJECTIVE_METRICS if not m.startswith("latency") and m != "size_bytes"
)
ALIASES = {"most_accurate": "best:accuracy"}


@dataclass(frozen=True)
class Policy:
    """An export policy as understood: `kind` fastest (lowest p50), best (best `metric`
    in `direction`, under the latency budget) or trial (`trial_number`, any complete
    trial); `name` is the text it was parsed from."""

    name: str
    kind: Literal["fastest", "best", "trial"]
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    trial_number: int | None = None

    @property
    def ranks(self) -> bool:
        """Whether it ranks trials (fastest, best:*) rather than naming one."""
        return self.kind != "trial"


def policy_choices(ranking_only: bool = False, sep: str = ", ") -> str:
    """The allowed policies, as messages and help list them."""
    choices = [
        "fastest",
        "most_accurate (= best:accuracy)",
        f"best:METRIC (METRIC: {', '.join(BEST_METRICS)})",
    ]
    return sep.join(choices if ranking_only else [*choices, "trial:N"])


def parse_policy(text: str, where: str = "--policy") -> Policy:
    """`fastest`, `most_accurate` (an alias of `best:accuracy`), `best:<metric>` for a
    metric of `BEST_METRICS` (highest accuracy, f1, roc_auc, gini, ks; lowest brier,
    ece) or `trial:N`; anything else is a `UserError` naming `where`."""
    canonical = ALIASES.get(text, text)
    if canonical == "fastest":
        return Policy(text, "fastest", LATENCY, "minimize")
    kind, _, rest = canonical.partition(":")
    if kind == "trial" and rest.isdigit():
        return Policy(text, "trial", trial_number=int(rest))
    if kind == "best" and rest in BEST_METRICS:
        direction = "maximize" if rest in MAXIMIZED_METRICS else "minimize"
        return Policy(text, "best", rest, direction)
    hint = ""
    if kind == "best" and rest in OBJECTIVE_METRICS:
        hint = f" ({rest} is not a score: for latency use fastest)"
    raise UserError(f"{where}: {text!r} is not allowed; allowed values: {policy_choices()}{hint}")


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
    """The first member of `ranked`, and a warning when noisy latencies may have decided it.

    `fastest` warns when the chosen member or the runner-up it beat is noisy, or when
    the two p50s are within each other's spread (their gap is at most the larger of
    p50 × CV of the two). `best:*` warns when a latency budget was applied and the
    chosen member's latency is noisy."""
    order = ranked(front, policy, study, latency_budget_ms)
    parsed = parse_policy(policy)
    chosen = order[0]
    if parsed.kind == "trial":
        return Selection(chosen, policy)
    if parsed.kind == "fastest":
        runner_up = order[1] if len(order) > 1 else None
        return Selection(chosen, policy, runner_up, _fastest_warning(chosen, runner_up))
    warning = None
    if latency_budget_ms is not None and chosen.noisy:
        warning = (
            f"trial {chosen.trial_number} is within the {latency_budget_ms} ms budget by a "
            f"noisy latency ({chosen.noise_note()}); re-measure before relying on it"
        )
    return Selection(chosen, policy, warning=warning)


def ranked(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> list[FrontMember]:
    """The members a policy accepts, best first (never empty: raises `UserError`):
    `fastest` by lowest p50 (the front is already feasible; ties: higher accuracy),
    `best:<metric>` by the metric in its direction under `latency_budget_ms`, if set
    (ties: lower p50; `most_accurate` is `best:accuracy`), `trial:N` that trial alone
    (any complete trial of `study`). The next member is the policy's fallback when the
    first does not hold its limits across seeds."""
    parsed = parse_policy(policy)
    if parsed.kind == "trial":
        return [_explicit_trial(policy, study)]
    if not front:
        raise UserError(
            "the study has no feasible complete trial to export yet; run more trials or "
            f"relax its constraints ({', '.join(f'constraints.{k}' for k in CONSTRAINT_LIMITS)})"
        )
    if parsed.kind == "fastest":
        return sorted(front, key=lambda m: (m.metrics[LATENCY], -m.metrics["accuracy"]))
    within = [
        m for m in front if latency_budget_ms is None or m.metrics[LATENCY] <= latency_budget_ms
    ]
    if not within:
        fastest = min(m.metrics[LATENCY] for m in front)
        raise UserError(
            f"export.latency_budget_ms: no front trial runs within "
            f"{latency_budget_ms} ms; the fastest takes {fastest:.3f} ms"
        )
    metric, sign = parsed.metric, (1.0 if parsed.direction == "maximize" else -1.0)
    scored = [m for m in within if _defined(m.metrics.get(metric))]
    if not scored:
        among = "no front trial within the budget" if latency_budget_ms else "no front trial"
        raise UserError(
            f"--policy: {policy!r}: {among} has a {metric} score (the study's task does not "
            "report it, or it is undefined on the validation split); pick another policy"
        )
    return sorted(scored, key=lambda m: (-sign * m.metrics[metric], m.metrics[LATENCY]))


def _defined(value: object) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


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
    from optuna.trial import TrialState

    from autocompress.front import FrontMember

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
