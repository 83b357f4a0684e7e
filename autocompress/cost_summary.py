"""What the cost-control rules did over a study, read back from trial attributes.

Light to import (no torch): the CLI and the report read it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module; optuna only when a command needs it
    from optuna.trial import FrozenTrial

ESTIMATE_ATTR = "latency_estimate"
"""The untrained student's p50 on the target; `trained_ratio` once it was trained."""
SKIPPED_ATTR = "skipped_for_latency"
"""{trial, latency_p50_ms}: the faster model that made training this candidate pointless."""
HALVING_REASON = "successive halving"
VALID_CURVE = "valid_score_by_epoch"
"""The validation score after every fine-tuning epoch, as the trial reported it."""
OTHER_PRECISION_ROLE = "other_precision"
"""The role of a trial queued by `cost_control.try_other_precisions`: a trained student's
weights at another precision; `TRAINED_IN_ATTR` names the trial that trained them."""
TRAINED_IN_ATTR = "trained_in_trial"


def estimate_accuracy(trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
    """How close the estimates came to the trained models' own p50 over a study:
    trained / estimate, median and the worst case (farthest from 1), and how many
    trainings the estimates saved (trials skipped before training)."""
    ratios = [
        (trial.number, estimate["trained_ratio"])
        for trial in trials
        if (estimate := trial.user_attrs.get(ESTIMATE_ATTR)) and "trained_ratio" in estimate
    ]
    skipped = [t.number for t in trials if SKIPPED_ATTR in t.user_attrs]
    if not ratios and not skipped:
        return None
    worst = max(ratios, key=lambda item: abs(item[1] - 1.0), default=(None, None))
    return {
        "compared": len(ratios),
        "median_ratio": statistics.median(r for _, r in ratios) if ratios else None,
        "worst_ratio": worst[1],
        "worst_trial": worst[0],
        "skipped": len(skipped),
    }


def accuracy_sentence(summary: dict[str, Any] | None) -> str | None:
    """One line for tables and reports; None when no estimate was made."""
    if summary is None:
        return None
    parts = []
    if summary["compared"]:
        parts.append(
            f"trained p50 / pre-training estimate: median {summary['median_ratio']:.2f}, "
            f"worst {summary['worst_ratio']:.2f} (trial {summary['worst_trial']}) over "
            f"{summary['compared']} trained students"
        )
    parts.append(f"{summary['skipped']} training(s) skipped as slower than the fastest")
    return "Latency before training: " + "; ".join(parts)


def epochs_trained(trials: Sequence[FrozenTrial]) -> int:
    """Fine-tuning epochs run over the study (stopped trials count what they ran)."""
    return sum(len(t.user_attrs.get(VALID_CURVE, [])) for t in trials)


def cost_control_lines(trials: Sequence[FrozenTrial]) -> list[str]:
    """What the latency estimates and successive halving did, one line each (none when
    neither did anything)."""
    lines = []
    if sentence := accuracy_sentence(estimate_accuracy(trials)):
        lines.append(sentence)
    halved = [
        t
        for t in trials
        if t.state.name == "PRUNED"
        and str(t.user_attrs.get("pruned_reason", "")).startswith(HALVING_REASON)
    ]
    if halved:
        trained = sum(1 for t in trials if t.user_attrs.get(VALID_CURVE))
        lines.append(
            f"Successive halving: stopped {len(halved)} of {trained} fine-tuned students; "
            f"{epochs_trained(trials)} fine-tuning epochs in all"
        )
    reused = [t for t in trials if "reused_training" in t.user_attrs.get("training", {})]
    if reused:
        parents = {t.user_attrs.get(TRAINED_IN_ATTR) for t in reused}
        lines.append(
            f"Other precisions: {len(reused)} trials reused the trained weights of "
            f"{len(parents)} students instead of training"
        )
    return lines
