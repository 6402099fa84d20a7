"""The teacher (selector.train.run.fit_teacher) on hand-built embeddings: where its pseudo positives come from,
what human labels change, and what the student gets beyond the strict labels."""

from __future__ import annotations

import dataclasses

import numpy as np

from selector.core.config import TrainConfig
from selector.score.head import predict_logistic
from selector.train.run import fit_teacher, seed_index
from selector.train.seeds import Seed

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
    tc = {"pseudo_positive_fraction": 0.05, "min_pseudo_positives": 5, "student_positive_fraction": 0.0, **tc}
    cfg = dataclasses.replace(TrainConfig(), **tc)
    index = seed_index(["t"], seeds, seed_emb, k=3)
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


def test_human_labels_override_the_teacher_and_move_its_head():
    docs, seeds, seed_emb = setup()
    x = docs.astype(np.float64)
    plain = run(docs, seeds, seed_emb)
    # a reviewer calls the whole near-miss cluster on-theme and half of the on-theme cluster off-theme
    human = {**{i: 1 for i in range(10, 20)}, **{i: 0 for i in range(5)}}
    # with fewer labels than train.min_label_positives the seed teacher keeps its pseudo positives
    labelled = run(docs, seeds, seed_emb, human=human, min_label_positives=50)
    for i, v in human.items():  # the labels win in both label sets
        assert labelled.strict["t"][i] == bool(v) and labelled.doc["t"][i] == bool(v)
    # and the head is fitted to them (not merely left without those documents): the near misses rise by
    # more than half and end above the on-theme documents labelled off-theme
    p0, p1 = predict_logistic(x, *plain.heads["t"]), predict_logistic(x, *labelled.heads["t"])
    assert p1[10:20].mean() > 1.5 * p0[10:20].mean()
    assert p1[10:20].mean() > p1[:5].mean()
    # pseudo positives come from the unlabelled documents: the rest of the on-theme cluster first
    assert labelled.strict["t"][5:10].all()


def test_the_student_gets_extra_positives_that_the_strict_labels_leave_out():
    docs, seeds, seed_emb = setup()
    strict_only = run(docs, seeds, seed_emb)
    extra = run(docs, seeds, seed_emb, student_positive_fraction=0.1)
    np.testing.assert_array_equal(strict_only.strict["t"], extra.strict["t"])
    assert extra.doc["t"].sum() >= 20 > strict_only.doc["t"].sum()
    assert (extra.doc["t"] | ~extra.strict["t"]).all()  # every strict positive is a student positive


def test_with_enough_labels_the_head_follows_them_not_the_seeds():
    """Labels outvote the seeds: the reviewer's near-miss cluster becomes the theme, the on-theme cluster the
    reviewer rejected falls below it, and no pseudo positives are taken."""
    docs, seeds, seed_emb = setup()
    x = docs.astype(np.float64)
    human = {**{i: 1 for i in range(10, 20)}, **{i: 0 for i in range(10)}}
    t = run(docs, seeds, seed_emb, human=human, label_mix=1.0)
    assert t.info["t"]["fitted_on"] == "labels, seeds as a prior (label_mix 1)"
    assert t.info["t"]["pseudo_positives"] == 0
    p = predict_logistic(x, *t.heads["t"])
    assert p[10:20].min() > p[:10].max()
    assert p[10:20].mean() > 0.5 > p[20:].mean()


def test_label_mix_blends_the_labels_head_with_the_seed_teacher():
    """label_mix 0 is the seed teacher that learns the labels as extra examples; 1 the labels' head; 0.5
    averages their logits (coefficients and bias)."""
    docs, seeds, seed_emb = setup()
    human = {**{i: 1 for i in range(10, 20)}, **{i: 0 for i in range(10)}}
    seed_only = run(docs, seeds, seed_emb, human=human, min_label_positives=50)
    zero = run(docs, seeds, seed_emb, human=human, label_mix=0.0)
    one = run(docs, seeds, seed_emb, human=human, label_mix=1.0)
    half = run(docs, seeds, seed_emb, human=human, label_mix=0.5)
    np.testing.assert_allclose(zero.heads["t"][0], seed_only.heads["t"][0])
    np.testing.assert_allclose(half.heads["t"][0], (zero.heads["t"][0] + one.heads["t"][0]) / 2)
    assert abs(half.heads["t"][1] - (zero.heads["t"][1] + one.heads["t"][1]) / 2) < 1e-12
    assert half.info["t"]["pseudo_positives"] == seed_only.info["t"]["pseudo_positives"] > 0
