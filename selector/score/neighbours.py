"""Label neighbours: the labelled documents' own embeddings, as evidence beside the head.

A linear head on the embedding learns one direction per theme. Labelled documents carry more than that: in a
user's own dump, the passages of one work, variants of one FAQ answer and reposts of one essay sit close to
each other, and a document that is the nearest neighbour of several labelled on-theme documents, and of no
labelled off-theme one, is likely on-theme itself whatever the head's direction says. So, per theme with
enough labels, the head's logit moves by

    weight * (mean cosine similarity to the k nearest labelled positives
              - mean cosine similarity to the k nearest labelled negatives)

and the probability is the sigmoid of the sum (docs/scoring.md#label-neighbours; measured in
docs/quality.md#label-neighbours). Only human and annotator labels count here, never seeds; `unsure` labels
are left out. Training scores each labelled document without itself (`exclude`), so thresholds are fitted to
the evidence an unlabelled document would get; scoring keeps every labelled document, so a near copy of one
takes its label's pull.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selector.score.head import predict_logistic

NB_EMB = "nb_emb"  # head.npz keys: the labelled documents' embeddings...
NB_LABEL = "nb_label_"  # ...and, per theme, their labels (1 on, 0 off, -1 none)


@dataclass
class LabelNeighbours:
    """The labelled documents' unit embeddings (n x dim, float32) and per theme their labels (int8: 1 on,
    0 off, -1 not labelled for the theme), with the k and weight of the evidence. A theme takes part only
    with at least `min_labels` (and k) positives and as many negatives (`active`): with a handful of labels
    the nearest few are noise (measured in docs/quality.md#label-neighbours)."""

    emb: np.ndarray
    labels: dict[str, np.ndarray]
    k: int
    weight: float
    min_labels: int = 1

    @property
    def active(self) -> list[str]:
        need = max(self.k, self.min_labels)
        return [
            t
            for t, y in self.labels.items()
            if self.weight > 0 and int((y == 1).sum()) >= need and int((y == 0).sum()) >= need
        ]

    def evidence(
        self, x: np.ndarray, exclude: np.ndarray | None = None, themes: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Per active theme (of `themes`, default all), the similarity difference above for each row of `x`
        (unit embeddings). `exclude[i]` is the labelled document row i must not count (itself), or -1."""
        themes = [t for t in self.active if themes is None or t in themes]
        out = {t: np.zeros(len(x)) for t in themes}
        cols = {t: (np.flatnonzero(self.labels[t] == 1), np.flatnonzero(self.labels[t] == 0)) for t in themes}
        # rows per block so that a block's similarities (and the copies _top_mean takes) stay near 64 MB
        step = max(1, min(2048, 2**24 // max(len(self.emb), 1)))
        for a in range(0, len(x), step):
            sims = x[a : a + step].astype(np.float32) @ self.emb.T
            if exclude is not None:
                ex = exclude[a : a + step]
                hit = np.flatnonzero(ex >= 0)
                sims[hit, ex[hit]] = -np.inf
            for t, (pos, neg) in cols.items():
                out[t][a : a + step] = _top_mean(sims[:, pos], self.k) - _top_mean(sims[:, neg], self.k)
        return out

    def adjust(
        self, probs: dict[str, np.ndarray], x: np.ndarray, exclude: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The head's probabilities `probs` (per theme, rows of `x`) with the evidence added to their logits."""
        return self.add(probs, self.evidence(x, exclude, list(probs)))

    def add(self, probs: dict[str, np.ndarray], evidence: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`probs` (float32) with `evidence` (from `evidence`, for the same rows) added to their logits; themes
        without evidence (not active) are returned unchanged."""
        out = {t: np.asarray(p, dtype=np.float32) for t, p in probs.items()}
        for t in probs:
            if t not in evidence:
                continue
            p = np.clip(probs[t].astype(np.float64), 1e-7, 1 - 1e-7)
            logit = np.log(p / (1 - p)) + self.weight * evidence[t]
            out[t] = (1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))).astype(np.float32)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """What `head.npz` stores."""
        return {NB_EMB: self.emb, **{NB_LABEL + t: y for t, y in self.labels.items()}}

    @classmethod
    def from_arrays(
        cls, z: Mapping[str, np.ndarray], themes: Sequence[str], k: int, weight: float, min_labels: int
    ) -> LabelNeighbours | None:
        if NB_EMB not in z:
            return None
        labels = {t: z[NB_LABEL + t] for t in themes}
        return cls(np.asarray(z[NB_EMB], dtype=np.float32), labels, k, weight, min_labels)

    def info(self) -> dict[str, Any]:
        """What the card records."""
        return {
            "k": self.k,
            "weight": self.weight,
            "min_labels": self.min_labels,
            "documents": int(len(self.emb)),
            "themes": {
                t: {
                    "positive": int((y == 1).sum()),
                    "negative": int((y == 0).sum()),
                    "used": t in self.active,
                }
                for t, y in self.labels.items()
            },
        }


def head_probs(
    x: np.ndarray,
    heads: Mapping[str, tuple[np.ndarray, float]],
    neighbours: LabelNeighbours | None,
    exclude: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The embedding head's probability per theme for the embeddings `x`, with the label neighbours' evidence
    where there are any (`exclude`: see `LabelNeighbours.evidence`): what a classifier scores, and what
    training judges documents by."""
    p = {t: predict_logistic(x.astype(np.float64), *h) for t, h in heads.items()}
    return p if neighbours is None else neighbours.adjust(p, x, exclude)


def _top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    """Mean of each row's k largest entries (fewer where an entry is excluded: -inf entries are dropped; 0
    where all are, which only k = 1 with a single positive can reach)."""
    kk = min(k, sims.shape[1])
    top = np.partition(sims, sims.shape[1] - kk, axis=1)[:, -kk:]
    finite = np.isfinite(top)
    return np.where(finite, top, 0.0).sum(1) / np.maximum(finite.sum(1), 1)


def build_neighbours(
    themes: Sequence[str],
    doc_emb: np.ndarray,
    human_rows: dict[str, dict[int, int]],
    k: int,
    weight: float,
    min_labels: int = 1,
) -> tuple[LabelNeighbours | None, np.ndarray]:
    """The neighbours of the labelled rows of `doc_emb` (`human_rows`: theme -> {row: 1/0}), and for every
    row of `doc_emb` its position among them (-1 when not labelled), for `exclude`. None when there are no
    labels or `weight` is 0."""
    rows = sorted({r for by_row in human_rows.values() for r in by_row})
    where = np.full(len(doc_emb), -1, dtype=np.int64)
    if not rows or weight <= 0:
        return None, where
    where[rows] = np.arange(len(rows))
    labels = {}
    for t in themes:
        y = np.full(len(rows), -1, dtype=np.int8)
        for r, v in human_rows.get(t, {}).items():
            y[where[r]] = 1 if v else 0
        labels[t] = y
    return LabelNeighbours(np.asarray(doc_emb[rows], dtype=np.float32), labels, k, weight, min_labels), where
