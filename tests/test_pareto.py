"""pareto_front against a brute-force reference, against Optuna, and against the clock."""

from __future__ import annotations

import time

import numpy as np
import optuna
import pytest

from autocompress.pareto import non_dominated_ranks, pareto_front


def brute_force_front(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """O(n²) definition: a row is on the front when no other row dominates it."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    costs = np.asarray(values, dtype=float) * signs
    others, points = costs[None, :, :], costs[:, None, :]  # [i, j]: does row j dominate row i?
    dominates = np.all(others <= points, axis=2) & np.any(others < points, axis=2)
    return np.flatnonzero(~dominates.any(axis=1))


def random_rows(seed: int, n: int, k: int) -> np.ndarray:
    """Coarse integer grid (many ties per column) plus exact duplicate rows."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(n, k)).astype(float)
    duplicates = rng.integers(0, n, size=n // 5)
    return np.vstack([values, values[duplicates]])[rng.permutation(n + n // 5)]


DIRECTION_SETS = [
    ["minimize", "minimize"],
    ["maximize", "minimize"],
    ["maximize", "maximize"],
    ["maximize", "maximize", "minimize"],
    ["minimize", "maximize", "minimize"],
    ["minimize", "minimize", "minimize"],
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("directions", DIRECTION_SETS, ids="-".join)
def test_matches_brute_force_with_ties_and_duplicates(seed: int, directions: list[str]) -> None:
    values = random_rows(seed, 120, len(directions))
    expected = brute_force_front(values, directions)
    got = pareto_front(values, directions)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype.kind == "i"


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_on_continuous_values(seed: int) -> None:
    directions = ["maximize", "maximize", "minimize"]
    values = np.random.default_rng(100 + seed).normal(size=(300, 3))
    np.testing.assert_array_equal(
        pareto_front(values, directions), brute_force_front(values, directions)
    )


def test_large_front_matches_brute_force() -> None:
    """Most rows on the front (an accuracy/latency trade-off curve with noise)."""
    rng = np.random.default_rng(7)
    x = rng.random(600)
    values = np.c_[x, -x + rng.normal(scale=0.01, size=600), rng.integers(0, 3, size=600)]
    directions = ["maximize", "maximize", "minimize"]
    expected = brute_force_front(values, directions)
    assert len(expected) > 100
    np.testing.assert_array_equal(pareto_front(values, directions), expected)


def test_duplicate_rows_on_the_front_are_all_kept() -> None:
    values = np.array([[1.0, 1.0], [0.0, 2.0], [1.0, 1.0], [2.0, 2.0], [0.0, 2.0]])
    np.testing.assert_array_equal(
        pareto_front(values, ["minimize", "minimize"]), np.array([0, 1, 2, 4])
    )


def test_direction_flips_the_front() -> None:
    values = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    assert pareto_front(values, ["minimize", "minimize"]).tolist() == [0]
    assert pareto_front(values, ["maximize", "maximize"]).tolist() == [1]
    assert pareto_front(values, ["maximize", "minimize"]).tolist() == [0, 1, 2]


def test_edge_cases() -> None:
    assert pareto_front(np.empty((0, 2)), ["minimize", "minimize"]).tolist() == []
    assert pareto_front(np.array([[3.0, 4.0]]), ["minimize", "maximize"]).tolist() == [0]
    with pytest.raises(ValueError):
        pareto_front(np.zeros((3, 2)), ["minimize"])
    with pytest.raises(ValueError):
        pareto_front(np.zeros(3), ["minimize"])


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_optuna_best_trials(seed: int) -> None:
    directions = ["maximize", "maximize", "minimize"]
    values = random_rows(seed, 80, 3)
    study = optuna.create_study(directions=directions)
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    for number, row in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                values=row.tolist(),
                params={"x": number / len(values)},
                distributions={"x": distribution},
            )
        )
    optuna_front = sorted(trial.number for trial in study.best_trials)
    ours = pareto_front(values, directions).tolist()
    assert ours == optuna_front
    assert 0 < len(ours) < len(values)


def test_ten_thousand_rows_in_well_under_a_second() -> None:
    directions = ["maximize", "maximize", "minimize"]
    values = np.random.default_rng(0).random((10_000, 3))
    pareto_front(values[:100], directions)  # warm numpy's code paths
    start = time.perf_counter()
    front = pareto_front(values, directions)
    elapsed = time.perf_counter() - start
    print(f"pareto_front: 10,000 × 3 rows in {elapsed * 1e3:.1f} ms, front of {len(front)}")
    assert elapsed < 1.0
    # spot-check correctness on the big input: no front member dominates another, and a
    # sample of excluded rows is each dominated by some front member
    costs = values * np.array([-1.0, -1.0, 1.0])
    front_costs = costs[front]

    def dominated_by_front(point: np.ndarray) -> bool:
        return bool(
            np.any(np.all(front_costs <= point, axis=1) & np.any(front_costs < point, axis=1))
        )

    assert not any(dominated_by_front(point) for point in front_costs)
    excluded = np.setdiff1d(np.arange(len(values)), front)
    assert all(
        dominated_by_front(costs[row])
        for row in np.random.default_rng(1).choice(excluded, 200, replace=False)
    )


@pytest.mark.parametrize("directions", DIRECTION_SETS[:3], ids=str)
def test_non_dominated_ranks_peel_fronts_as_the_definition_says(directions: list[str]) -> None:
    """Rank r = on the front once every row of rank < r is removed (what successive
    halving ranks students by)."""
    for seed in range(5):
        values = random_rows(seed, 60, len(directions))
        ranks = non_dominated_ranks(values, directions)
        remaining = np.arange(len(values))
        rank = 0
        while len(remaining):
            front = remaining[brute_force_front(values[remaining], directions)]
            assert set(np.flatnonzero(ranks == rank)) == set(front)
            remaining = np.setdiff1d(remaining, front)
            rank += 1


@pytest.mark.parametrize("objectives", [2, 3])
def test_a_front_of_nearly_every_row_is_fast(objectives: int) -> None:
    """50,000 trials on one trade-off curve (the case that was O(n²)): well under 0.5 s,
    and the same front as the elimination method used for more objectives."""
    from autocompress.pareto import _front_by_elimination

    rng = np.random.default_rng(3)
    x = rng.random(50_000)
    columns = [x, 1 - x, rng.permutation(x)][:objectives]
    values = np.c_[tuple(columns)]
    directions = ["minimize"] * objectives
    start = time.perf_counter()
    front = pareto_front(values, directions)
    elapsed = time.perf_counter() - start
    print(f"pareto_front: 50,000 × {objectives}, front of {len(front)}, {elapsed * 1e3:.0f} ms")
    assert len(front) > 40_000 and elapsed < 0.5
    subset = np.sort(rng.choice(50_000, 2_000, replace=False))
    np.testing.assert_array_equal(
        subset[pareto_front(values[subset], directions)],
        subset[_front_by_elimination(values[subset])],
    )
