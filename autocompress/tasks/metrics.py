"""Classification scores from logits; `f1` is whichever average the study chose."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, f1_average: str = "macro"
) -> dict[str, float]:
    """Accuracy, macro and positive-class F1, ROC AUC; `f1` is the objective's choice."""
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
        metrics["roc_auc"] = float(
            roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
        )
    metrics["f1"] = (
        metrics["f1_positive"] if f1_average == "positive" and binary else metrics["f1_macro"]
    )
    return metrics
