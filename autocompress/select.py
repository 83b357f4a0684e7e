"""Picking one trial to export from a study's front, by a policy (`autocompress.policies`).

`choose` returns a `Selection`: the member, the policy's whole order (the fallbacks)
and, when noisy latencies could have decided it, a warning to show; `logged` logs that
warning. `select` returns the member alone (and logs the warning) for callers that want
only the trial. `ranked` gives the fallbacks in order, without the warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autocompress.policies import Candidates, parse_policy

if TYPE_CHECKING:
    import optuna

    from autocompress.front import FrontMember

logger = logging.getLogger("autocompress")


@dataclass(frozen=True)
class Selection:
    """The member a policy picked, and why its latency may not have decided it fairly.

    `runner_up` is the next member of the policy's order, when there was one, and
    `order` that whole order, best first (`member` first: what `ranked` returns).
    A `warning` never blocks the selection: it says the pick rests on noisy numbers.
    """

    member: FrontMember
    policy: str
    runner_up: FrontMember | None = None
    warning: str | None = None
    order: tuple[FrontMember, ...] = ()


def select(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> FrontMember:
    """The member `choose` picks; its warning, if any, is logged (autocompress logger)."""
    return logged(choose(front, policy, study, latency_budget_ms)).member


def logged(selection: Selection) -> Selection:
    """`selection`, its warning (if any) logged on the autocompress logger."""
    if selection.warning:
        logger.warning("selection by %s: %s", selection.policy, selection.warning)
    return selection


def choose(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> Selection:
    """The first member of `ranked`, and the policy's warning when noisy numbers may
    have decided it."""
    parsed, candidates = parse_policy(policy), Candidates(front, study, latency_budget_ms)
    order = parsed.ranked(candidates)
    runner_up = order[1] if len(order) > 1 else None
    warning = parsed.warning(order, candidates)
    return Selection(order[0], policy, runner_up, warning, tuple(order))


def ranked(
    front: list[FrontMember],
    policy: str,
    study: optuna.Study | None = None,
    latency_budget_ms: float | None = None,
) -> list[FrontMember]:
    """The members `policy` accepts, best first (never empty: raises `UserError`). The
    next member is the policy's fallback when the first does not hold its limits
    across seeds."""
    return parse_policy(policy).ranked(Candidates(front, study, latency_budget_ms))
