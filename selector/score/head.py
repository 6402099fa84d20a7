"""The embedding head: an L2-regularised logistic regression per theme on the unit embedding, fitted by
Newton's method. Deterministic (no RNG)."""

from __future__ import annotations

import numpy as np


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, max_iter: int = 50, tol: float = 1e-8
) -> tuple[np.ndarray, float]:
    """Minimise sum_i w_i * logloss(y_i, sigmoid(x_i . coef + bias)) + l2/2 * |coef|^2; returns (coef, bias)."""
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-6  # the bias is (almost) unpenalised
    for _ in range(max_iter):
        z = np.clip(xa @ beta, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        grad = xa.T @ (w * (p - y)) + reg * beta
        s = w * p * (1 - p)
        hess = (xa * s[:, None]).T @ xa + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return beta[:-1].copy(), float(beta[-1])


def predict_logistic(x: np.ndarray, coef: np.ndarray, bias: float) -> np.ndarray:
    z = np.clip(x @ coef + bias, -30, 30)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
