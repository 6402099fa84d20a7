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


def best_f1_threshold(
    scores: np.ndarray, truth: np.ndarray, default: float = 0.5
) -> tuple[float, float | None, float | None]:
    """The score threshold (one of the scores) that maximises F1 of `scores >= threshold` against `truth`,
    with its precision and recall; ties go to the higher threshold. `default` when nothing is positive."""
    truth = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if not truth.any() or len(s) == 0:
        return default, None, None
    order = np.argsort(-s, kind="stable")
    s_sorted, hits = s[order], truth[order]
    tp = np.cumsum(hits)
    k = np.arange(1, len(s) + 1)
    # only cut where the next score is lower, so a threshold selects whole groups of tied scores
    last_of_tie = np.append(s_sorted[1:] < s_sorted[:-1], True)
    f1 = np.where(last_of_tie, 2 * tp / (k + truth.sum()), -1.0)
    best = int(np.argmax(f1))
    return float(s_sorted[best]), float(tp[best] / k[best]), float(tp[best] / truth.sum())
