"""Classification scores.

Text tasks: `classification_metrics` from logits (`f1` is whichever average the study
chose). Credit tasks: `credit_metrics` from the bad-class probability, the scores banks
judge credit models by: ranking (ROC AUC, Gini, KS), calibration (Brier, ECE) and the
decision at the study's threshold, which `choose_threshold` places.

One convention throughout: a row is flagged bad when its bad-class probability is at
least the threshold (`p_bad >= threshold`), as in sklearn's curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from autocompress.errors import UserError
from autocompress.tasks.credit_config import DecisionConfig

ECE_BINS = 10


@dataclass(frozen=True)
class Predictions:
    """One model's output for every row of a split, what all its scores are computed
    from: logits (rows × classes) for text, the bad-class probability (rows) for credit
    with the decision `threshold` its graph carries."""

    values: np.ndarray
    threshold: float | None = None


THRESHOLD_RULES = get_args(DecisionConfig.model_fields["rule"].annotation)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, f1_average: str = "macro"
) -> dict[str, float]:
    """Accuracy, macro and positive-class F1, ROC AUC; `f1` is the objective's choice.

    ROC AUC is one-vs-rest (macro) for more than two classes, over the classes the
    labels hold; NaN when they hold fewer than two."""
    predictions = logits.argmax(axis=1)
    probabilities = softmax(logits)
    binary = logits.shape[1] == 2
    metrics = {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }
    if binary:
        metrics["f1_positive"] = float(f1_score(labels, predictions, zero_division=0))
        metrics["roc_auc"] = (
            float(roc_auc_score(labels, probabilities[:, 1]))
            if len(np.unique(labels)) == 2
            else float("nan")
        )
    else:
        metrics["roc_auc"] = _one_vs_rest_auc(probabilities, labels)
    metrics["f1"] = (
        metrics["f1_positive"] if f1_average == "positive" and binary else metrics["f1_macro"]
    )
    return metrics


def _one_vs_rest_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present (sklearn's when all are)."""
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if len(present) == probabilities.shape[1]:
        return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    return float(np.mean([roc_auc_score(labels == c, probabilities[:, c]) for c in present]))


def ks_statistic(p_bad: np.ndarray, labels: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the bad and good rows' cumulative
    score distributions, max(TPR − FPR) over thresholds; NaN with one class."""
    p_bad, labels = checked_probabilities(p_bad, labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, p_bad, pos_label=1)
    return float(np.max(tpr - fpr))


def expected_calibration_error(p_bad: np.ndarray, labels: np.ndarray) -> float:
    """ECE of the bad-class probability over 10 equal-width bins of [0, 1] (bin b holds
    b/10 <= p < (b+1)/10, the last one p = 1 too): the row-weighted mean of
    |observed bad rate − mean p_bad| per bin. 0 for no rows."""
    p_bad, labels = checked_probabilities(p_bad, labels)
    if len(labels) == 0:
        return 0.0
    bins = np.minimum((p_bad.astype(np.float64) * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(labels[inside].mean() - p_bad[inside].astype(np.float64).mean())
    return float(total / len(labels))


def credit_metrics(
    p_bad: np.ndarray, labels: np.ndarray, threshold: float, f1_average: str = "macro"
) -> dict[str, float]:
    """Scores of a bad-class probability (label 1 = bad) against the labels.

    At probability 0.5 (flagged when p_bad >= 0.5): `accuracy`, `f1_macro`,
    `f1_positive` (F1 of the bad class) and `f1` (`f1_positive` when `f1_average` is
    "positive", else `f1_macro`). At `threshold`: `accuracy_at_threshold`,
    `f1_at_threshold` (the same average) and `positive_rate_at_threshold` (the share of
    rows flagged), with `threshold` itself. Ranking: `roc_auc`, `gini` (2·AUC − 1) and
    `ks` (see `ks_statistic`), NaN when the labels hold one class only. Calibration:
    `brier` (mean squared error of p_bad) and `ece` (10 equal-width bins, see
    `expected_calibration_error`).
    """
    p_bad, labels = checked_probabilities(p_bad, labels)
    at_half = (p_bad >= 0.5).astype(np.int64)
    at_threshold = (p_bad >= threshold).astype(np.int64)
    f1_macro = _f1(labels, at_half, "macro")
    f1_positive = _f1(labels, at_half, "binary")
    two_classes = len(np.unique(labels)) == 2
    roc_auc = float(roc_auc_score(labels, p_bad)) if two_classes else math.nan
    return {
        "accuracy": float(accuracy_score(labels, at_half)),
        "f1_macro": f1_macro,
        "f1_positive": f1_positive,
        "f1": f1_positive if f1_average == "positive" else f1_macro,
        "accuracy_at_threshold": float(accuracy_score(labels, at_threshold)),
        "f1_at_threshold": _f1(
            labels, at_threshold, "binary" if f1_average == "positive" else "macro"
        ),
        "threshold": float(threshold),
        "positive_rate_at_threshold": float(at_threshold.mean()) if len(labels) else math.nan,
        "roc_auc": roc_auc,
        "gini": 2.0 * roc_auc - 1.0,
        "ks": ks_statistic(p_bad, labels),
        "brier": float(brier_score_loss(labels, p_bad, pos_label=1, labels=[0, 1])),
        "ece": expected_calibration_error(p_bad, labels),
    }


def choose_threshold(
    p_bad: np.ndarray, labels: np.ndarray, rule: str, value: float | None = None
) -> float:
    """The decision threshold on p_bad (rows with p_bad >= it are flagged bad) that
    `rule` (see `DecisionConfig`) picks on these rows. Deterministic.

    - `max_f1`: the threshold maximising the bad class's F1 on these rows, among the
      distinct probabilities (ties: the higher threshold).
    - `bad_rate`: the smallest threshold flagging at most `value` of the rows (just
      above the probability of the first row left unflagged, in p_bad's precision).
    - `approval_rate`: approve at least `value` of the rows, i.e. `bad_rate` 1 − value.
    - `fixed`: `value`.
    """
    p_bad, labels = checked_probabilities(p_bad, labels)
    if rule == "fixed":
        return float(_needs_value(rule, value))
    if rule in ("bad_rate", "approval_rate"):
        share = _needs_value(rule, value)
        return _rate_threshold(p_bad, share if rule == "bad_rate" else 1.0 - share)
    if rule == "max_f1":
        return _max_f1_threshold(p_bad, labels)
    raise ValueError(f"unknown threshold rule {rule!r}; known: {', '.join(THRESHOLD_RULES)}")


def _max_f1_threshold(p_bad: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0 or not np.any(labels == 1):
        raise UserError(
            "task.decision.rule: max_f1 needs at least one bad (label 1) row in the "
            "validation split to place the threshold; it has none. Use a larger "
            "task.data.valid_size or another rule"
        )
    precision, recall, thresholds = precision_recall_curve(labels, p_bad, pos_label=1)
    precision, recall = precision[:-1], recall[:-1]  # the last pair has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0.0, atol=1e-12))
    return float(thresholds[best].max())


def _rate_threshold(p_bad: np.ndarray, share: float) -> float:
    """The smallest threshold t with #(p_bad >= t) <= share · rows."""
    rows = len(p_bad)
    if rows == 0:
        return 0.5
    allowed = math.floor(share * rows + 1e-9)
    if allowed >= rows:
        return float(p_bad.min())
    ordered = np.sort(p_bad)[::-1]
    kept = ordered[allowed]  # the highest probability that must stay unflagged
    return float(np.nextafter(kept, np.asarray(np.inf, dtype=kept.dtype)))


def _needs_value(rule: str, value: float | None) -> float:
    if value is None:
        raise ValueError(f"threshold rule {rule!r} needs a value")
    return float(value)


def _f1(labels: np.ndarray, predictions: np.ndarray, average: str) -> float:
    return float(
        f1_score(labels, predictions, labels=[0, 1], pos_label=1, average=average, zero_division=0)
    )


def checked_probabilities(p_bad: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-D bad-class probabilities (floating, float64 if given as anything else) and
    int64 labels of one length; a ValueError otherwise."""
    p_bad = np.asarray(p_bad)
    labels = np.asarray(labels).astype(np.int64)
    if p_bad.ndim != 1 or p_bad.shape != labels.shape:
        raise ValueError(
            f"p_bad and labels must be 1-D and of one length, got {p_bad.shape} and {labels.shape}"
        )
    if not np.issubdtype(p_bad.dtype, np.floating):
        p_bad = p_bad.astype(np.float64)
    return p_bad, labels
