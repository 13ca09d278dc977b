"""Tests of ladc/training/checkpoints.py's rule for which evaluated checkpoint to keep (a pure function of the scores)."""

from __future__ import annotations

import math

import pytest

from ladc.training.checkpoints import kept_index, selection_margin


def test_margin_is_one_standard_error_and_at_least_one_example():
    assert selection_margin(0.88, 400) == pytest.approx(math.sqrt(0.88 * 0.12 / 400))  # 6.5 rows of 400
    assert selection_margin(0.88, 400) * 400 == pytest.approx(6.5, abs=0.01)
    assert selection_margin(0.88, 2000) * 2000 == pytest.approx(14.53, abs=0.01)
    assert selection_margin(1.0, 50) == pytest.approx(1 / 50)  # no binomial noise at 100 %: one example
    assert selection_margin(1.2, 50) == pytest.approx(1 / 50)  # scores outside [0, 1] are clipped first
    assert selection_margin(0.9, 0) == 0.0  # unknown number of rows: no margin


def test_a_tie_goes_to_the_later_checkpoint():
    assert kept_index([0.9, 0.9], examples=0) == 1
    assert kept_index([0.6, 0.9, 0.9, 0.7], examples=0) == 2
    assert kept_index([0.9, 0.8], examples=0) == 0  # without a margin, any real win keeps the earlier one


def test_an_earlier_checkpoint_is_kept_only_when_it_wins_by_more_than_the_margin():
    # 400 rows at 0.885: margin 6.4 rows. The RESULTS case: epoch 1 ahead by 1 to 3 rows -> the later one is kept
    n = 400
    assert kept_index([354 / n, 351 / n], n) == 1
    assert kept_index([354 / n, 348 / n], n) == 1  # 6 rows: still within one standard error
    assert kept_index([354 / n, 347 / n], n) == 0  # 7 rows: more than the margin, the earlier one wins
    # one example is the least margin, and winning by exactly the margin is not more than it
    assert kept_index([1.0, 49 / 50], 50) == 1
    assert kept_index([1.0, 48 / 50], 50) == 0


def test_the_margin_is_counted_from_the_best_not_from_the_kept_one():
    """A slow decline, each step within the margin of the one before but not of the best, is not followed down."""
    n = 400
    scores = [360 / n, 355 / n, 350 / n, 345 / n]  # 5 rows a step; margin at 0.9 is 6 rows
    assert kept_index(scores, n) == 1  # 350 is 10 rows below the best: step 1 is the last one within 6 rows
    assert [kept_index(scores[: k + 1], n) for k in range(4)] == [0, 1, 1, 1]


def test_nan_scores_never_win():
    assert kept_index([0.8, float("nan")], 100) == 0
    assert kept_index([float("nan"), 0.5], 100) == 1
    assert kept_index([float("nan"), float("nan")], 100) == 1
