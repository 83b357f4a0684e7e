"""The point metrics of `metrics.py` on many bootstrap resamples at once, vectorized.

Paired bootstrap intervals (teacher vs student on the same resampled rows) need every
metric on ~1000 resamples per model per trial, which looping sklearn makes too slow.
Each function here takes an (R, n') matrix of row indices, one resample per line, and
returns one value per line; with the identity index (`np.arange(n)[None, :]`) each
value equals its point metric in `metrics.py` (`classification_metrics`,
`credit_metrics`), and on any line it equals that metric on the line's rows, which
`tests/test_resampled.py` checks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.stats import rankdata

from autocompress.tasks.metrics import ECE_BINS, checked_probabilities, softmax

CLASSIFICATION_NAMES = ("accuracy", "f1_macro", "f1_positive", "roc_auc", "f1")
CREDIT_NAMES = (
    "accuracy",
    "f1_macro",
    "f1_positive",
    "f1",
    "accuracy_at_threshold",
    "f1_at_threshold",
    "roc_auc",
    "gini",
    "ks",
    "brier",
    "ece",
)


def stratified_indices(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) int64 row indices: each class resampled with replacement within itself
    (so every resample keeps the split's class counts and ranking metrics stay defined).
    Deterministic for (labels, resamples, seed): the same rows for every model scored on
    the split, which is what makes teacher-vs-student comparisons paired."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    blocks = [np.empty((resamples, 0), dtype=np.int64)]
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        blocks.append(rows[rng.integers(0, len(rows), size=(resamples, len(rows)))])
    return np.concatenate(blocks, axis=1).astype(np.int64, copy=False)


def classification_resampled(
    logits: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    f1_average: str = "macro",
    names: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per-resample values (shape (R,)) of classification_metrics' scores: accuracy, f1_macro,
    f1_positive (binary only), roc_auc, f1. `names` limits which are computed (None: all).

    Macro F1 averages over the classes in the resample's labels or predictions (sklearn's
    default); ROC AUC is one-vs-rest over the classes in the resample's labels, NaN with
    fewer than two."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).astype(np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(
            f"logits must be (n, classes) and labels (n,), got {logits.shape} and {labels.shape}"
        )
    index = _checked_index(index, len(labels))
    binary = logits.shape[1] == 2
    known = (
        CLASSIFICATION_NAMES
        if binary
        else tuple(name for name in CLASSIFICATION_NAMES if name != "f1_positive")
    )
    wanted = _wanted(names, known)
    predictions = logits.argmax(axis=1)
    rows = index.shape[1]
    out: dict[str, np.ndarray] = {}
    if "accuracy" in wanted:
        out["accuracy"] = _count(labels == predictions, index) / rows
    positive_f1 = binary and f1_average == "positive"
    if "f1_positive" in wanted or ("f1" in wanted and positive_f1):
        out["f1_positive"] = _class_f1(labels == 1, predictions == 1, index)[0]
    if "f1_macro" in wanted or ("f1" in wanted and not positive_f1):
        total = np.zeros(len(index))
        present = np.zeros(len(index), dtype=np.int64)
        for c in np.union1d(np.unique(labels), np.unique(predictions)):
            f1, seen = _class_f1(labels == c, predictions == c, index)
            total += f1
            present += seen
        out["f1_macro"] = total / present  # every resample holds a label: present >= 1
    if "roc_auc" in wanted:
        probabilities = softmax(logits)
        if binary:
            out["roc_auc"] = _auc(probabilities[:, 1], labels == 1, index)
        else:
            total = np.zeros(len(index))
            present = np.zeros(len(index), dtype=np.int64)
            for c in np.unique(labels):
                seen = _count(labels == c, index) > 0
                total += np.where(seen, _auc(probabilities[:, c], labels == c, index), 0.0)
                present += seen
            out["roc_auc"] = np.where(present >= 2, total / np.maximum(present, 1), np.nan)
    if "f1" in wanted:
        out["f1"] = (out["f1_positive"] if positive_f1 else out["f1_macro"]).copy()
    return {name: out[name] for name in known if name in wanted}


def credit_resampled(
    p_bad: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    index: np.ndarray,
    f1_average: str = "macro",
    names: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per-resample values of credit_metrics' scores: accuracy, f1_macro, f1_positive, f1,
    accuracy_at_threshold, f1_at_threshold, roc_auc, gini, ks, brier, ece
    (not threshold / positive_rate_at_threshold).

    Flagged bad when p_bad >= 0.5 (accuracy, f1*) and when p_bad >= threshold
    (`..._at_threshold`); macro F1 is over labels [0, 1]. Ranking scores are NaN on
    resamples holding one class."""
    p_bad, labels = checked_probabilities(p_bad, labels)
    index = _checked_index(index, len(labels))
    wanted = _wanted(names, CREDIT_NAMES)
    rows = index.shape[1]
    bad, good = labels == 1, labels == 0
    positive = f1_average == "positive"
    out: dict[str, np.ndarray] = {}

    # Decisions are compared in p_bad's own dtype, as credit_metrics does.
    for suffix, flagged in (("", p_bad >= 0.5), ("_at_threshold", p_bad >= threshold)):
        names_here = {f"accuracy{suffix}", f"f1{suffix}"}
        if suffix == "":
            names_here |= {"f1_macro", "f1_positive"}
        if not names_here & wanted:
            continue
        f1_bad, _ = _class_f1(bad, flagged, index)
        f1_good, _ = _class_f1(good, ~flagged, index)
        f1_macro = (f1_good + f1_bad) / 2
        out[f"accuracy{suffix}"] = (
            _count(bad & flagged, index) + _count(good & ~flagged, index)
        ) / rows
        out[f"f1{suffix}"] = (f1_bad if positive else f1_macro).copy()
        if suffix == "":
            out["f1_macro"], out["f1_positive"] = f1_macro, f1_bad

    scores = p_bad.astype(np.float64)
    if wanted & {"roc_auc", "gini"}:
        out["roc_auc"] = _auc(scores, bad, index)
        out["gini"] = 2.0 * out["roc_auc"] - 1.0
    if "ks" in wanted:
        out["ks"] = _ks(scores, bad, index)
    error = labels - scores
    if "brier" in wanted:
        out["brier"] = (error * error)[index].mean(axis=1)
    if "ece" in wanted:
        bins = np.minimum((scores * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        cells = bins[index] + ECE_BINS * np.arange(len(index))[:, None]
        sums = np.bincount(
            cells.ravel(), weights=error[index].ravel(), minlength=ECE_BINS * len(index)
        )
        out["ece"] = np.abs(sums.reshape(len(index), ECE_BINS)).sum(axis=1) / rows
    return {name: out[name] for name in CREDIT_NAMES if name in wanted}


def _checked_index(index: np.ndarray, rows: int) -> np.ndarray:
    index = np.asarray(index)
    if index.ndim != 2 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"index must be a 2-D integer array, got {index.dtype} {index.shape}")
    if index.shape[1] == 0:
        raise ValueError("index selects no rows")
    if index.size and (index.min() < -rows or index.max() >= rows):
        raise ValueError(f"index holds rows outside 0..{rows - 1}")
    return index


def _wanted(names: Iterable[str] | None, known: tuple[str, ...]) -> set[str]:
    if names is None:
        return set(known)
    wanted = {names} if isinstance(names, str) else set(names)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ValueError(f"unknown metric name(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return wanted


def _count(mask: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per resample, how many of its rows `mask` (over all rows) holds."""
    return np.count_nonzero(mask[index], axis=1)


def _class_f1(
    actual: np.ndarray, predicted: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One class's F1 per resample, 2TP / (2TP + FP + FN) and 0 when that is 0/0
    (sklearn's zero_division=0), and whether the class is in the resample's labels or
    predictions."""
    hits = _count(actual & predicted, index)
    either = _count(actual, index) + _count(predicted, index)  # 2TP + FP + FN
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(either > 0, 2.0 * hits / either, 0.0), either > 0


def _codes(scores: np.ndarray) -> np.ndarray:
    """The scores' dense ranks (0 for the lowest, ties equal) in the smallest unsigned
    dtype: the same order and ties as the scores, and small integers sort much faster
    (radix sort) than floats."""
    distinct, codes = np.unique(scores, return_inverse=True)
    return codes.astype(np.min_scalar_type(max(len(distinct) - 1, 0)))


def _auc(scores: np.ndarray, positive: np.ndarray, index: np.ndarray) -> np.ndarray:
    """ROC AUC per resample (Mann-Whitney with average ranks for ties); NaN on a
    resample holding one class."""
    ranks = rankdata(_codes(scores)[index], axis=1)
    inside = positive[index]
    n_pos = np.count_nonzero(inside, axis=1).astype(np.float64)
    n_neg = index.shape[1] - n_pos
    rank_sum = np.where(inside, ranks, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _ks(scores: np.ndarray, positive: np.ndarray, index: np.ndarray) -> np.ndarray:
    """max(TPR − FPR) over the thresholds (ROC curve points, (0, 0) included) per
    resample; NaN on a resample holding one class."""
    rows = index.shape[1]
    codes = _codes(scores)
    sampled = (codes.max(initial=0) - codes)[index]  # descending scores, ascending codes
    order = np.argsort(sampled, axis=1, kind="stable")
    ordered = np.take_along_axis(sampled, order, axis=1)
    del sampled
    # A threshold sits after the last row of each run of tied scores.
    cut = np.empty(ordered.shape, dtype=bool)
    np.not_equal(ordered[:, :-1], ordered[:, 1:], out=cut[:, :-1])
    cut[:, -1] = True
    del ordered
    true_pos = np.cumsum(np.take_along_axis(positive[index], order, axis=1), axis=1, dtype=float)
    del order
    n_pos = true_pos[:, -1:].copy()
    n_neg = rows - n_pos
    false_pos = np.arange(1, rows + 1, dtype=np.float64) - true_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        true_pos /= n_pos
        false_pos /= n_neg
    true_pos -= false_pos
    del false_pos
    np.copyto(true_pos, -np.inf, where=~cut)
    gap = np.maximum(true_pos.max(axis=1), 0.0)
    one_class = (n_pos[:, 0] == 0) | (n_neg[:, 0] == 0)
    return np.where(one_class, np.nan, gap)
