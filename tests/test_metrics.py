from __future__ import annotations

import numpy as np
import pytest

from selector.core.metrics import average_precision, precision_recall_at, recall_at_budget
from selector.score.head import fit_logistic, predict_logistic


def test_average_precision_hand_computed():
    # ranking: pos, neg, pos, neg, pos -> precisions at the positives 1/1, 2/3, 3/5
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    truth = np.array([1, 0, 1, 0, 1], dtype=bool)
    assert average_precision(scores, truth) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_average_precision_perfect_and_empty():
    assert average_precision(np.array([0.2, 0.9]), np.array([False, True])) == 1.0
    assert np.isnan(average_precision(np.array([0.2, 0.9]), np.array([False, False])))


def test_recall_at_budget_and_threshold():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    truth = np.array([0, 1, 1, 0], dtype=bool)
    assert recall_at_budget(scores, truth, 2) == 0.5
    assert precision_recall_at(scores, truth, 0.75) == (0.5, 0.5)


def test_logistic_fit_reaches_the_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.5, size=200) > 0).astype(float)
    w = np.ones(200)
    coef, bias = fit_logistic(x, y, w, l2=1.0)
    p = predict_logistic(x, coef, bias).astype(float)
    grad = x.T @ (p - y) + 1.0 * coef  # zero at the penalised optimum
    assert np.abs(grad).max() < 1e-3
    assert coef[0] > 0 > coef[1]
