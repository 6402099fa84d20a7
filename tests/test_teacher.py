"""The teacher (selector.train.fit_teacher) on hand-built embeddings: where its pseudo positives come from,
what human labels override, and that it is deterministic."""

from __future__ import annotations

import dataclasses

import numpy as np

from selector.config import TrainConfig
from selector.embed import SeedIndex
from selector.seeds import Seed
from selector.train import fit_teacher

DIM = 8


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def setup(n_on: int = 10, n_near: int = 10, n_bg: int = 180, seed: int = 0):
    """Axis 0 is the theme, axis 1 its near miss; the background points along the other axes."""
    rng = np.random.default_rng(seed)
    e0, e1 = np.eye(DIM)[0], np.eye(DIM)[1]
    on = unit(e0 + 0.15 * rng.normal(size=(n_on, DIM)))
    near = unit(0.6 * e0 + e1 + 0.15 * rng.normal(size=(n_near, DIM)))
    bg = unit(
        np.hstack([np.zeros((n_bg, 2)), rng.normal(size=(n_bg, DIM - 2))])
        + 0.05 * rng.normal(size=(n_bg, DIM))
    )
    docs = np.vstack([on, near, bg])
    seeds = [Seed("t", f"p{i}", "positive", f"pos {i}") for i in range(4)] + [
        Seed("t", f"n{i}", "near_miss", f"near {i}") for i in range(4)
    ]
    seed_emb = np.vstack(
        [unit(e0 + 0.1 * rng.normal(size=(4, DIM))), unit(0.6 * e0 + e1 + 0.1 * rng.normal(size=(4, DIM)))]
    )
    return docs, seeds, seed_emb


def run(docs, seeds, seed_emb, human=None, **tc):
    cfg = dataclasses.replace(
        TrainConfig(),
        pseudo_positive_fraction=0.05,
        min_pseudo_positives=5,
        student_positive_fraction=0.0,
        **tc,
    )
    index = SeedIndex(
        themes=["t"],
        pos={"t": seed_emb[:4]},
        neg={"t": seed_emb[4:]},
        pos_ids={"t": [s.seed_id for s in seeds[:4]]},
        k=3,
    )
    return fit_teacher(
        ["t"], seeds, seed_emb, docs, index.evidence(docs), {"t": human or {}}, cfg, lambda m: None
    )


def test_pseudo_positives_come_from_the_on_theme_cluster_not_the_near_misses():
    docs, seeds, seed_emb = setup()
    t = run(docs, seeds, seed_emb)
    on = np.flatnonzero(t.strict["t"])
    assert t.info["t"]["pseudo_positives"] == 10  # 5% of 200
    assert set(on) <= set(range(10)), on  # only documents of the on-theme cluster
    assert t.doc["t"][:10].mean() >= 0.9
    assert not t.doc["t"][10:20].any()  # near misses stay negative
    assert t.seed["t"].tolist() == [True] * 4 + [False] * 4


def test_human_labels_override_the_teacher():
    docs, seeds, seed_emb = setup()
    t = run(docs, seeds, seed_emb, human={0: 0, 15: 1})
    assert not t.strict["t"][0] and not t.doc["t"][0]
    assert t.strict["t"][15] and t.doc["t"][15]


def test_the_teacher_is_deterministic():
    docs, seeds, seed_emb = setup()
    a, b = run(docs, seeds, seed_emb), run(docs, seeds, seed_emb)
    np.testing.assert_array_equal(a.heads["t"][0], b.heads["t"][0])
    assert a.info == b.info
