"""The models a bank would use instead, trained and measured once per credit study.

Each baseline is fitted on the study's training split (early stopping and threshold on
its validation split), written as a raw-row ONNX graph, scored on the same test split
and timed on the same target and batch as every trial, in the same process. The
results live in the study's user attribute `autocompress:baselines`, so `autocompress
front`, the report and the dashboard show them as reference rows beside the front.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import torch

from autocompress.atomic import atomic_directory
from autocompress.baselines import BASELINES_ATTR
from autocompress.baselines.logistic import logistic_baseline
from autocompress.dashboard import baselines_note, save_study_note
from autocompress.pipeline import SCORED_SPLITS
from autocompress.targets.onnxruntime import MODEL_FILE
from autocompress.tasks.graph_keys import DECISION_RULE_KEY, THRESHOLD_KEY
from autocompress.tasks.metrics import choose_threshold

if TYPE_CHECKING:
    import optuna

    from autocompress.changes import TeacherComparison
    from autocompress.targets.base import Target
    from autocompress.tasks.credit import CreditTask

logger = logging.getLogger("autocompress")


def lightgbm_baseline(task: CreditTask, target: Target, folder: Path) -> dict:
    """LightGBM on the raw training columns, early-stopped on the validation split, its
    decision threshold chosen there by the study's rule (as for our students)."""
    from autocompress.baselines.lightgbm import fit_lightgbm

    train, y_train = task.splits["train"]
    valid, y_valid = task.splits["valid"]
    baseline = fit_lightgbm(
        train,
        y_train,
        valid,
        y_valid,
        list(task.preprocessor.categories),
        seed=task.seed,
        threads=torch.get_num_threads(),
    )
    baseline.save(folder)
    path = folder / MODEL_FILE
    p_bad = target.load(path).run(task.feeds("valid"))[:, 1]
    rule = task.decision
    threshold = choose_threshold(p_bad, y_valid, rule.rule, rule.value)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(
        model,
        {
            **{p.key: p.value for p in model.metadata_props},
            THRESHOLD_KEY: json.dumps(threshold),
            DECISION_RULE_KEY: json.dumps(rule.model_dump()),
        },
    )
    onnx.save(model, str(path))
    return {  # the whole description is baseline.json beside the model
        "model": "lightgbm",
        "num_trees": baseline.num_trees,
        "best_iteration": baseline.best_iteration,
        "train_seconds": round(baseline.train_seconds, 3),
        "threshold": threshold,
    }


BASELINES: dict[str, Callable[[CreditTask, Target, Path], dict]] = {
    "lightgbm": lightgbm_baseline,
    "logistic_regression": logistic_baseline,
}


def describe_baselines(
    study: optuna.Study,
    task: CreditTask,
    target: Target,
    folder: Path,
    names: list[str],
    comparison: TeacherComparison,
) -> dict[str, dict]:
    """Fit, score and time each named baseline once per study; stored, then reused.
    Scored like every trial: on the validation split, and on the held-out test split
    against the teacher with paired intervals (`held_out`)."""
    stored = study.user_attrs.get(BASELINES_ATTR)
    if stored is not None or not names:
        return stored or {}
    results = {}
    for name in names:
        logger.info("baseline %s: fitting on the training split", name)
        started = time.perf_counter()
        with atomic_directory(folder / name, overwrite=True) as staging:
            details = BASELINES[name](task, target, staging)
        fit_seconds = time.perf_counter() - started
        runnable = target.load(folder / name / MODEL_FILE)
        measurement = target.measure(runnable, task.measurement_feed(target.config.batch_size))
        judged = comparison.judge({split: task.predict(runnable, split) for split in SCORED_SPLITS})
        results[name] = {
            "metrics": judged.metrics,
            "split": judged.search_split["split"],
            "held_out": judged.held_out,
            "measurement": measurement.to_dict(),
            "fit_seconds": fit_seconds,
            "details": details,
            "path": str((folder / name / MODEL_FILE).resolve()),
        }
    study.set_user_attr(BASELINES_ATTR, results)
    save_study_note(study, baselines_note(results))
    return results
