"""Multi-objective successive halving: stop students that are behind on both counts.

Optuna's pruners refuse multi-objective studies, and a single-score rule (the median
rule) stops exactly the students a speed/accuracy search wants: fast ones a little
below the others in score. Here, as in MO-ASHA (Schmucker et al., 2021), a trial that
reaches a rung (epochs min_epochs · rate^k) is ranked by non-dominated sorting of
(validation score at that epoch, latency measured before training) among every trial
that reached the same rung, finished or not; it continues only when its rank is
within the best 1/rate. A fast, slightly weaker student is non-dominated, so it goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autocompress.pareto import non_dominated_ranks


@dataclass(frozen=True)
class RungEntry:
    """One trial at a rung: its validation score there and its latency."""

    trial_number: int
    score: float
    latency_ms: float


def rungs(first: int, rate: int, last_epoch: int) -> list[int]:
    """The epochs at which trials are compared: first, first·rate, … below `last_epoch`
    (after the last epoch nothing is left to save)."""
    epochs, epoch = [], first
    while epoch < last_epoch:
        epochs.append(epoch)
        epoch *= rate
    return epochs


def halving_stop_reason(
    entry: RungEntry, peers: list[RungEntry], epoch: int, rate: int
) -> str | None:
    """Why `entry` stops at this rung, or None when it continues.

    `peers` are the other trials that reached `epoch`. The best max(1, n // rate) of the
    n trials continue, ties in rank included; with fewer than `rate` trials only the
    non-dominated ones do (as Optuna's SuccessiveHalvingPruner promotes only the best).
    """
    everyone = [entry, *peers]
    values = np.array([[e.score, e.latency_ms] for e in everyone])
    ranks = non_dominated_ranks(values, ["maximize", "minimize"])
    keep = max(1, len(everyone) // rate)
    allowed = int(np.sort(ranks)[keep - 1])
    own = int(ranks[0])
    if own <= allowed:
        return None
    better = [e.trial_number for e, r in zip(everyone, ranks, strict=True) if r < own]
    return (
        f"successive halving at epoch {epoch}: validation score {entry.score:.4f} at "
        f"{entry.latency_ms:.3f} ms ranks {own} (non-dominated sorting of score and latency) "
        f"among the {len(everyone)} trials that reached epoch {epoch}; only the best "
        f"{keep} (rank ≤ {allowed}) continue. Better on both counts or on the front before "
        f"it: trials {', '.join(map(str, sorted(better)[:10]))}"
        + (" …" if len(better) > 10 else "")
    )
