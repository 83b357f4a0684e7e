"""Vectorized per-resample metrics equal the point metrics of `metrics.py`: on the identity
index, and on each line of any index (compared with the metric on that line's rows);
stratified indices keep the class counts and are reproducible; the `names` filter; and
R=1000 resamples of 6,000 rows take seconds, not minutes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from autocompress.tasks.metrics import (
    classification_metrics,
    credit_metrics,
    expected_calibration_error,
    ks_statistic,
)
from autocompress.tasks.resampled import (
    classification_resampled,
    credit_resampled,
    stratified_indices,
)

SEEDS = (0, 1, 2, 3)
THRESHOLD = 0.37
NOT_RESAMPLED = {"threshold", "positive_rate_at_threshold"}


def assert_same(resampled: dict[str, np.ndarray], point: dict[str, float], line: int) -> None:
    for name, values in resampled.items():
        np.testing.assert_allclose(
            values[line], point[name], rtol=0, atol=1e-12, equal_nan=True, err_msg=name
        )


def binary_logits(seed: int, rows: int = 400, dtype: type = np.float64):
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.35).astype(np.int64)
    logits = rng.normal(size=(rows, 2))
    logits[:, 1] += labels
    return np.round(logits, 1).astype(dtype), labels  # rounded: tied probabilities


def three_class_logits(seed: int, rows: int = 400):
    """Class 2 rare in the labels (about 3%) and seldom predicted."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=rows, p=[0.6, 0.37, 0.03])
    logits = rng.normal(size=(rows, 3))
    logits[np.arange(rows), labels] += 1.0
    logits[:, 2] -= 0.5
    return np.round(logits, 1), labels


def predicted_but_absent_logits(seed: int, rows: int = 300):
    """Labels hold classes 0 and 1 only; the model sometimes predicts class 2."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.4).astype(np.int64)
    logits = rng.normal(size=(rows, 3))
    logits[np.arange(rows), labels] += 1.0
    return logits, labels


def credit_scores(seed: int, rows: int = 500):
    """p_bad in steps of 0.01 (ties), some exactly 0.5 and exactly at the threshold."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.3).astype(np.int64)
    p_bad = np.round(np.clip(0.3 * labels + rng.random(rows) * 0.7, 0.0, 1.0), 2)
    p_bad[rng.choice(rows, 20, replace=False)] = 0.5
    p_bad[rng.choice(rows, 20, replace=False)] = THRESHOLD
    return p_bad, labels


def random_index(labels: np.ndarray, seed: int, lines: int = 6, width: int = 120) -> np.ndarray:
    """Plain (unstratified) resamples of `width` rows, the last one of class-0 rows only."""
    rng = np.random.default_rng(seed + 100)
    index = rng.integers(0, len(labels), size=(lines, width))
    index[-1] = rng.choice(np.flatnonzero(labels == 0), width)
    return index


CLASSIFICATION_CASES = [
    pytest.param(binary_logits, "macro", id="binary-macro"),
    pytest.param(binary_logits, "positive", id="binary-positive"),
    pytest.param(
        lambda seed: binary_logits(seed, dtype=np.float32), "positive", id="binary-float32"
    ),
    pytest.param(three_class_logits, "macro", id="three-class-rare"),
    pytest.param(three_class_logits, "positive", id="three-class-positive"),
    pytest.param(predicted_but_absent_logits, "macro", id="predicted-class-absent"),
]


# -- classification -------------------------------------------------------------------------
@pytest.mark.parametrize("make, average", CLASSIFICATION_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_classification_identity_index_is_the_point_metric(make, average, seed) -> None:
    logits, labels = make(seed)
    identity = np.arange(len(labels))[None, :]
    resampled = classification_resampled(logits, labels, identity, f1_average=average)
    point = classification_metrics(logits, labels, f1_average=average)
    assert set(resampled) == set(point)
    assert all(values.shape == (1,) and values.dtype == np.float64 for values in resampled.values())
    assert_same(resampled, point, 0)


@pytest.mark.parametrize("make, average", CLASSIFICATION_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_classification_each_line_is_the_point_metric_on_its_rows(make, average, seed) -> None:
    logits, labels = make(seed)
    index = random_index(labels, seed)
    resampled = classification_resampled(logits, labels, index, f1_average=average)
    for line, rows in enumerate(index):
        point = classification_metrics(logits[rows], labels[rows], f1_average=average)
        assert_same(resampled, point, line)
    assert np.isnan(resampled["roc_auc"][-1])  # one class on the last line


# -- credit ---------------------------------------------------------------------------------
@pytest.mark.parametrize("average", ["macro", "positive"])
@pytest.mark.parametrize("seed", SEEDS)
def test_credit_identity_index_is_the_point_metric(average, seed) -> None:
    p_bad, labels = credit_scores(seed)
    identity = np.arange(len(labels))[None, :]
    resampled = credit_resampled(p_bad, labels, THRESHOLD, identity, f1_average=average)
    point = credit_metrics(p_bad, labels, THRESHOLD, f1_average=average)
    assert set(resampled) == set(point) - NOT_RESAMPLED
    assert_same(resampled, point, 0)


@pytest.mark.parametrize("average", ["macro", "positive"])
@pytest.mark.parametrize("seed", SEEDS)
def test_credit_each_line_is_the_point_metric_on_its_rows(average, seed) -> None:
    p_bad, labels = credit_scores(seed)
    index = random_index(labels, seed)
    resampled = credit_resampled(p_bad, labels, THRESHOLD, index, f1_average=average)
    for line, rows in enumerate(index):
        point = credit_metrics(p_bad[rows], labels[rows], THRESHOLD, f1_average=average)
        assert_same(resampled, point, line)
        np.testing.assert_allclose(
            resampled["ks"][line],
            ks_statistic(p_bad[rows], labels[rows]),
            atol=1e-12,
            rtol=0,
            equal_nan=True,
        )
        np.testing.assert_allclose(
            resampled["ece"][line],
            expected_calibration_error(p_bad[rows], labels[rows]),
            atol=1e-12,
            rtol=0,
        )
    for name in ("roc_auc", "gini", "ks"):
        assert np.isnan(resampled[name][-1])  # one class on the last line
        assert not np.isnan(resampled[name][:-1]).any()


def test_credit_float32_scores_decide_and_rank_as_the_point_metric() -> None:
    p_bad, labels = credit_scores(7)
    # float32(0.7) < 0.7: flagged at threshold 0.7 only when compared in float32, as
    # credit_metrics compares (a float64 copy of the scores would leave these rows out).
    threshold = 0.7
    p_bad[np.random.default_rng(7).choice(len(p_bad), 30, replace=False)] = threshold
    p_bad = p_bad.astype(np.float32)
    for index in (np.arange(len(labels))[None, :], random_index(labels, 7)):
        resampled = credit_resampled(p_bad, labels, threshold, index)
        for line, rows in enumerate(index):
            point = credit_metrics(p_bad[rows], labels[rows], threshold)
            # sklearn's Brier stays in float32; the resampled one is float64 throughout.
            point["brier"] = np.mean((p_bad[rows].astype(np.float64) - labels[rows]) ** 2)
            assert_same(resampled, point, line)
            assert resampled["brier"][line] == pytest.approx(
                credit_metrics(p_bad[rows], labels[rows], threshold)["brier"], rel=1e-6
            )


# -- stratified indices ---------------------------------------------------------------------
def test_stratified_indices_keep_class_counts_and_are_reproducible() -> None:
    labels = np.random.default_rng(0).choice(3, size=250, p=[0.7, 0.25, 0.05])
    index = stratified_indices(labels, 40, seed=5)
    assert index.shape == (40, 250)
    assert index.dtype == np.int64
    counts = np.bincount(labels, minlength=3)
    for rows in index:
        assert np.array_equal(np.bincount(labels[rows], minlength=3), counts)
    assert np.array_equal(stratified_indices(labels, 40, seed=5), index)
    assert not np.array_equal(stratified_indices(labels, 40, seed=6), index)
    assert len({tuple(rows) for rows in index}) == 40  # resamples differ from each other


def test_stratified_resamples_keep_ranking_metrics_defined() -> None:
    p_bad, labels = credit_scores(0, rows=60)
    labels[:] = 0
    labels[:2] = 1  # two bad rows only
    index = stratified_indices(labels, 200, seed=0)
    resampled = credit_resampled(p_bad, labels, THRESHOLD, index, names=["roc_auc", "ks"])
    assert not np.isnan(resampled["roc_auc"]).any() and not np.isnan(resampled["ks"]).any()


# -- names ----------------------------------------------------------------------------------
def test_names_limit_what_is_computed() -> None:
    p_bad, labels = credit_scores(1)
    index = stratified_indices(labels, 50, seed=1)
    everything = credit_resampled(p_bad, labels, THRESHOLD, index, f1_average="positive")
    some = credit_resampled(
        p_bad, labels, THRESHOLD, index, f1_average="positive", names=["ks", "f1", "gini"]
    )
    assert list(some) == ["f1", "gini", "ks"]
    for name, values in some.items():
        np.testing.assert_array_equal(values, everything[name])

    logits, labels = binary_logits(1)
    index = stratified_indices(labels, 50, seed=1)
    only_f1 = classification_resampled(logits, labels, index, "positive", names=["f1"])
    assert list(only_f1) == ["f1"]
    np.testing.assert_array_equal(
        only_f1["f1"],
        classification_resampled(logits, labels, index, names=["f1_positive"])["f1_positive"],
    )


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    p_bad, labels = credit_scores(0)
    index = np.arange(len(labels))[None, :]
    with pytest.raises(ValueError, match="auc.*known: accuracy, .*roc_auc.*ece"):
        credit_resampled(p_bad, labels, THRESHOLD, index, names=["roc_auc", "auc"])
    with pytest.raises(ValueError, match="threshold"):
        credit_resampled(p_bad, labels, THRESHOLD, index, names=["threshold"])
    logits, labels = three_class_logits(0)
    index = np.arange(len(labels))[None, :]
    with pytest.raises(ValueError, match="f1_positive; known: accuracy, f1_macro, roc_auc, f1"):
        classification_resampled(logits, labels, index, names=["f1_positive"])


# -- speed ----------------------------------------------------------------------------------
def test_a_thousand_resamples_of_six_thousand_rows_take_seconds() -> None:
    p_bad, labels = credit_scores(0, rows=6000)
    index = stratified_indices(labels, 1000, seed=0)
    start = time.perf_counter()
    resampled = credit_resampled(p_bad, labels, THRESHOLD, index)
    elapsed = time.perf_counter() - start
    assert all(values.shape == (1000,) for values in resampled.values())
    assert elapsed < 15.0, f"credit_resampled took {elapsed:.1f} s for 1000 x 6000"
