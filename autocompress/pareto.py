"""Pareto fronts in O(n · front) with numpy: 10,000 trials take milliseconds.

(optuna-dashboard's own front computation was O(n²); ours must not be.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_front(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Indices of the non-dominated rows of `values` (n × k), in input order.

    `directions` holds "minimize" or "maximize" per column. Rows with equal values
    are all kept, as Optuna's `best_trials` keeps them.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(directions):
        raise ValueError("values must be n × len(directions)")
    if len(values) == 0:
        return np.empty(0, dtype=int)
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    costs = values * signs
    # After a lexicographic sort a row can only be dominated by earlier rows, so the
    # first remaining row is on the front (whatever dominated it was taken, or was
    # dropped by a front member that then dominates it too). Take it, drop every
    # remaining row it dominates in one vectorised comparison, repeat: one pass per
    # front member instead of one per row.
    rows = np.lexsort(costs.T[::-1])
    remaining = costs[rows]
    front = []
    while len(rows):
        front.append(rows[0])
        head, remaining, rows = remaining[0], remaining[1:], rows[1:]
        keep = ~(np.all(head <= remaining, axis=1) & np.any(head < remaining, axis=1))
        remaining, rows = remaining[keep], rows[keep]
    return np.sort(np.array(front, dtype=int))


def non_dominated_ranks(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Rank of every row: 0 for the front, 1 for the front of what remains, and so on."""
    values = np.asarray(values, dtype=float)
    ranks = np.full(len(values), -1, dtype=int)
    remaining = np.arange(len(values))
    rank = 0
    while len(remaining):
        front = remaining[pareto_front(values[remaining], directions)]
        ranks[front] = rank
        remaining = np.setdiff1d(remaining, front)
        rank += 1
    return ranks
