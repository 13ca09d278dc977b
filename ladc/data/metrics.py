"""GLUE metrics as pure functions of predictions and labels (scikit-learn / scipy under the hood)."""

from __future__ import annotations

import numpy as np

from ladc.data.tasks import TaskSpec

__all__ = [
    "accuracy",
    "f1",
    "matthews_correlation",
    "pearson",
    "spearmanr",
    "compute_metrics",
    "predictions_from_logits",
    "metrics_from_logits",
]


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, predictions))


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="binary", pos_label=1, zero_division=0))


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, predictions))


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import pearsonr

    if np.std(predictions) == 0 or np.std(labels) == 0:
        return 0.0  # undefined for a constant input; 0 is the honest "no correlation"
    return float(pearsonr(predictions, labels)[0])


def spearmanr(predictions: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import spearmanr as scipy_spearmanr

    if np.std(predictions) == 0 or np.std(labels) == 0:
        return 0.0
    return float(scipy_spearmanr(predictions, labels)[0])


METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


def predictions_from_logits(logits: np.ndarray, task: TaskSpec) -> np.ndarray:
    """(N, C) logits -> (N,) class ids, or (N, 1) -> (N,) scores for regression."""
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(-1).astype(np.float64)
    return logits.argmax(axis=-1)


def compute_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All official metrics of `task`, keyed by name (e.g. {'f1': .., 'accuracy': ..} for MRPC)."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.shape[0] != labels.shape[0]:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    return {name: METRIC_FUNCTIONS[name](predictions, labels) for name in task.metrics}


def metrics_from_logits(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """(N, C) logits and (N,) gold labels -> every official metric of `task`: the one path evaluate, training eval,
    parity and bench share, so their figures agree."""
    return compute_metrics(task, predictions_from_logits(logits, task), labels)
