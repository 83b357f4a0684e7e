"""Seeds for the finalists: a selected recipe is trained again before it is exported.

One training run's score moves with its seed (on Twitter Financial News, one recipe's
held-out macro-F1 moved by about a point between two runs with the same settings), so
the search's single run cannot say whether a recipe holds a 1-point limit. Before
export the policy's choice is trained with `export.seeds` seeds in all (the search's own
run is the first) and judged by the mean of its validation changes; a recipe whose mean
breaks a limit is passed over for the policy's next candidate. The runs are kept with
the study (one study attribute per finalist, `autocompress:seeds:<trial number>`), so
a second export trains nothing.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from autocompress.changes import Judgement, change_name
from autocompress.config import ConstraintsConfig
from autocompress.dashboard import SEEDS_ATTR_PREFIX
from autocompress.front import TEACHER_ROLE
from autocompress.recipe import Recipe

# (recipe, seed) -> its student trained with that seed, judged against the teacher.
Retrain = Callable[[Recipe, int], Judgement]
logger = logging.getLogger("autocompress")


def train_seeds(
    study: optuna.Study,
    trial: FrozenTrial,
    seeds: int,
    first_seed: int,
    limits: ConstraintsConfig,
    retrain: Callable[[], Retrain],
) -> dict[str, Any]:
    """`trial`'s recipe over seeds `first_seed` … `first_seed + seeds − 1` (the trial
    itself was trained with `first_seed`): each run's validation and held-out scores and
    changes, their mean ± sd, and whether the validation means hold every limit.
    Seeds run before (by an earlier export) are reused; `retrain()` gives the trainer,
    asked for only when a seed is missing. The teacher trains nothing: one run."""
    key = f"{SEEDS_ATTR_PREFIX}{trial.number}"
    stored = study.user_attrs.get(key) or {}
    runs = {run["seed"]: run for run in stored.get("all_runs", [])}
    runs.setdefault(first_seed, _run_of_trial(trial, first_seed))
    teacher = trial.user_attrs.get("role") == TEACHER_ROLE
    wanted = [first_seed] if teacher else [first_seed + k for k in range(seeds)]
    missing = [seed for seed in wanted if seed not in runs]
    if missing:
        trainer = retrain()
        recipe = Recipe.from_dict(trial.user_attrs["recipe"])
        for count, seed in enumerate(missing, start=1):
            logger.info(
                "trial %d's recipe again with seed %d (%d of %d more) before export",
                trial.number,
                seed,
                count,
                len(missing),
            )
            runs[seed] = _run_of_judgement(trainer(recipe, seed), seed)
    chosen = [runs[seed] for seed in wanted]
    broken = _broken_limits(chosen, limits)
    found = {
        "seeds": wanted,
        "runs": chosen,
        "summary": {
            "valid": _summary(chosen, lambda run: run),
            "test": _summary(chosen, lambda run: run["held_out"]),
        },
        "within_limits": not broken,
        "broken": broken,
        "shipped_seed": first_seed,
        "note": "the teacher: nothing is trained, one run" if teacher else None,
        # Every run trained so far, also those of seeds beyond today's `export.seeds`.
        "all_runs": [runs[seed] for seed in sorted(runs)],
    }
    if found != stored:  # what reports read (`dashboard.seed_runs`), as last judged
        study.set_user_attr(key, found)
    return found


def _run_of_trial(trial: FrozenTrial, seed: int) -> dict[str, Any]:
    attrs = trial.user_attrs
    held_out = attrs.get("held_out") or {}
    return {
        "seed": seed,
        "metrics": attrs.get("metrics", {}),
        "changes": {k: v for k, v in attrs.items() if k.endswith(("_drop", "_increase"))},
        "held_out": {
            "metrics": held_out.get("metrics", {}),
            "changes": held_out.get("changes", {}),
        },
    }


def _run_of_judgement(judgement: Judgement, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "metrics": judgement.metrics,
        "changes": judgement.changes,
        "held_out": {
            "metrics": judgement.held_out["metrics"],
            "changes": judgement.held_out["changes"],
        },
    }


def _summary(runs: list[dict], part: Callable[[dict], dict]) -> dict[str, dict[str, float]]:
    """Mean and sample sd (0 for one run) of every score and change all runs have."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for name, value in {**part(run)["metrics"], **part(run)["changes"]}.items():
            values.setdefault(name, []).append(value)
    return {
        name: {
            "mean": statistics.fmean(found),
            "sd": statistics.stdev(found) if len(found) > 1 else 0.0,
        }
        for name, found in values.items()
        if len(found) == len(runs) and all(isinstance(v, int | float) for v in found)
    }


def _broken_limits(runs: list[dict], limits: ConstraintsConfig) -> list[str]:
    """`roc_auc drop mean 0.0240 over 3 seeds > limit 0.0200`, one per broken limit."""
    broken = []
    for key, metric, limit, kind in limits.limits():
        name = change_name(metric)
        found = [run["changes"].get(name) for run in runs]
        if any(value is None for value in found):
            broken.append(f"{metric} {kind}: not recorded for every seed (constraints.{key})")
            continue
        mean = statistics.fmean(found)
        if mean > limit:
            broken.append(
                f"{metric} {kind} mean {mean:.4f} over {len(runs)} seed(s) > limit {limit:.4f} "
                f"(constraints.{key})"
            )
    return broken
