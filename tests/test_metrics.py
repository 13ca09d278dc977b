"""Tests for ladc/data/metrics.py: each metric equals scikit-learn/scipy, and each task reports its official metrics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from ladc.data.metrics import (
    accuracy,
    compute_metrics,
    f1,
    matthews_correlation,
    pearson,
    predictions_from_logits,
    spearmanr,
)
from ladc.data.tasks import TASKS, get_task


@pytest.fixture
def classes():
    rng = np.random.default_rng(0)
    return rng.integers(0, 2, size=500), rng.integers(0, 2, size=500)


@pytest.fixture
def scores():
    rng = np.random.default_rng(1)
    labels = rng.uniform(0, 5, size=300)
    return labels + rng.normal(0, 1.5, size=300), labels


def test_classification_metrics_match_sklearn(classes):
    predictions, labels = classes
    assert accuracy(predictions, labels) == pytest.approx(skm.accuracy_score(labels, predictions))
    assert accuracy(predictions, labels) == pytest.approx(np.mean(predictions == labels))
    assert f1(predictions, labels) == pytest.approx(skm.f1_score(labels, predictions))
    assert matthews_correlation(predictions, labels) == pytest.approx(skm.matthews_corrcoef(labels, predictions))
    assert 0.3 < accuracy(predictions, labels) < 0.7  # random guesses, so the metrics are not trivially 0 or 1


def test_f1_is_binary_f1_of_the_positive_class():
    labels = np.array([1, 1, 1, 0, 0, 0])
    predictions = np.array([1, 0, 0, 1, 0, 0])  # tp 1, fp 1, fn 2 -> precision 1/2, recall 1/3
    assert f1(predictions, labels) == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert f1(np.zeros(6, dtype=int), labels) == 0.0  # no positive predictions: 0, not a warning-NaN


def test_f1_without_any_positive_is_zero_and_silent():
    """No positive label or prediction at all: F1 is undefined; ladc reports 0.0 and sklearn must not warn."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f1(np.zeros(4, dtype=int), np.zeros(4, dtype=int)) == 0.0
        assert f1(np.zeros(4, dtype=int), np.array([1, 0, 1, 0])) == 0.0


def test_correlations_match_scipy(scores):
    predictions, labels = scores
    assert pearson(predictions, labels) == pytest.approx(stats.pearsonr(predictions, labels)[0])
    assert spearmanr(predictions, labels) == pytest.approx(stats.spearmanr(predictions, labels)[0])
    assert 0.5 < pearson(predictions, labels) < 0.95
    assert pearson(np.full(5, 2.0), np.arange(5.0)) == 0.0  # constant predictions: defined as no correlation
    assert spearmanr(np.full(5, 2.0), np.arange(5.0)) == 0.0
    assert pearson(np.arange(5.0), np.full(5, 2.0)) == 0.0  # constant labels too
    assert spearmanr(np.arange(5.0), np.full(5, 2.0)) == 0.0


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_compute_metrics_returns_each_tasks_metric_names(task_name):
    task = get_task(task_name)
    rng = np.random.default_rng(2)
    if task.is_regression:
        labels = rng.uniform(0, 5, size=64)
        predictions = labels + rng.normal(0, 1, size=64)
    else:
        labels = rng.integers(0, task.num_labels, size=64)
        predictions = np.where(rng.random(64) < 0.7, labels, rng.integers(0, task.num_labels, size=64))
    result = compute_metrics(task, predictions, labels)
    assert list(result) == list(task.metrics)
    if "accuracy" in result:
        assert result["accuracy"] == pytest.approx(np.mean(predictions == labels))
    if "pearson" in result:
        assert result["pearson"] == pytest.approx(stats.pearsonr(predictions, labels)[0])
    assert all(isinstance(value, float) for value in result.values())


def test_official_metric_names_per_task():
    expected = {
        "cola": ("matthews_correlation", "accuracy"),
        "sst2": ("accuracy",),
        "mrpc": ("f1", "accuracy"),
        "stsb": ("pearson", "spearmanr"),
        "qqp": ("f1", "accuracy"),
        "mnli": ("accuracy",),
        "qnli": ("accuracy",),
        "rte": ("accuracy",),
        "wnli": ("accuracy",),
    }
    assert {name: task.metrics for name, task in TASKS.items()} == expected


def test_compute_metrics_rejects_length_mismatch():
    with pytest.raises(ValueError, match="3 predictions for 4 labels"):
        compute_metrics(get_task("sst2"), np.zeros(3), np.zeros(4))


def test_predictions_from_logits():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert predictions_from_logits(logits, get_task("mnli")).tolist() == [1, 0]
    scores = predictions_from_logits(np.array([[4.5], [1.25]]), get_task("stsb"))
    assert scores.shape == (2,) and np.allclose(scores, [4.5, 1.25])
