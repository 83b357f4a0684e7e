"""Logistic regression on the credit task's own features: the scorecard-like model.

Fitted by scikit-learn on the preprocessed training features, then written as an
`MLPClassifier` with no hidden layer (the same linear map), so it gets exactly the
graph our students get: raw columns in, the same preprocessing, probabilities out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from autocompress.models import MLPClassifier
from autocompress.recipe import Recipe

if TYPE_CHECKING:
    from autocompress.targets.base import Target
    from autocompress.tasks.credit import CreditTask

MAX_ITER = 5000


def fit_logistic(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> MLPClassifier:
    """L2-regularised logistic regression (C = 1) as a linear `MLPClassifier` whose
    logit difference is the regression's decision function."""
    fitted = LogisticRegression(max_iter=MAX_ITER, C=1.0, random_state=seed).fit(features, labels)
    model = MLPClassifier(features.shape[1], [], 2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[1] = torch.from_numpy(fitted.coef_[0].astype(np.float32))
        model.head.bias.copy_(torch.tensor([0.0, float(fitted.intercept_[0])]))
    return model.eval()


def logistic_baseline(task: CreditTask, target: Target, folder: Path) -> dict:
    """Fit on the training split and write `folder/model.onnx` through the target
    (calibration and threshold on the validation split, as for our students)."""
    model = fit_logistic(task.core_feeds("train")["features"], task.labels("train"), task.seed)
    target.materialize(task, model, Recipe(), folder)
    return {
        "model": "scikit-learn LogisticRegression (L2, C=1)",
        "features": model.spec["input_dim"],
    }
