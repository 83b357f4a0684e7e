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
    # After a lexicographic sort no row can be dominated by a later one, so one
    # forward sweep that compares each row with the front found so far is exact.
    order = np.lexsort(costs.T[::-1])
    front_costs = np.empty_like(costs)
    front_rows = np.empty(len(costs), dtype=int)
    size = 0
    for row in order:
        point = costs[row]
        kept = front_costs[:size]
        if size and np.any(np.all(kept <= point, axis=1) & np.any(kept < point, axis=1)):
            continue
        front_costs[size] = point
        front_rows[size] = row
        size += 1
    return np.sort(front_rows[:size])
