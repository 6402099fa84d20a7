"""Ranking metrics for theme scores: average precision, precision/recall at a threshold or a budget."""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision (the area under the precision-recall curve as sklearn computes it: the mean of
    precision at the rank of each positive). Ties are broken by input order. NaN when nothing is positive."""
    truth = np.asarray(truth, dtype=bool)
    n_pos = int(truth.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = truth[order]
    cum = np.cumsum(hits)
    ranks = np.flatnonzero(hits) + 1
    return float((cum[hits] / ranks).sum() / n_pos)


def precision_recall_at(
    scores: np.ndarray, truth: np.ndarray, threshold: float
) -> tuple[float | None, float | None]:
    truth = np.asarray(truth, dtype=bool)
    sel = np.asarray(scores) >= threshold
    prec = float(truth[sel].mean()) if sel.any() else None
    rec = float(sel[truth].mean()) if truth.any() else None
    return prec, rec


def recall_at_budget(scores: np.ndarray, truth: np.ndarray, budget: int) -> float:
    """Share of positives among the `budget` highest-scored documents."""
    truth = np.asarray(truth, dtype=bool)
    if not truth.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:budget]
    return float(truth[order].sum() / truth.sum())
