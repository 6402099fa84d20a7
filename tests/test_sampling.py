"""The labelling plan (selector/label/sampling.py): fixed size, strata, clusters, certainty for known labels, and
an estimator that is unbiased over repeated draws."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from selector.core.errors import SelectorError
from selector.label.sampling import SampleConfig, estimate, plan_hash, plan_labels

THR = {"a": 0.6, "b": 0.5}


def synthetic(n: int = 2000, seed: int = 7) -> tuple[pl.DataFrame, dict[tuple[str, str], int]]:
    """Scores for two themes and the truth: a document is on-theme with a probability that grows with its
    score (so the top is rich, the threshold uncertain and the tail holds a few positives)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {
        "doc_id": [f"d{i}" for i in range(n)],
        "source": ["s.jsonl"] * n,
        "row": list(range(n)),
        "content_sha1": [f"h{i}" for i in range(n)],
    }
    truth: dict[tuple[str, str], int] = {}
    for t in THR:
        s = rng.beta(1, 6, n)
        ft = np.clip(s + rng.normal(0, 0.1, n), 0, 1)
        emb = np.where(ft > 0.2, s, np.nan)
        cols[f"ft_{t}"] = ft.astype(np.float32)
        cols[f"emb_{t}"] = emb.astype(np.float32)
        cols[f"score_{t}"] = s.astype(np.float32)
        on = rng.random(n) < np.clip(1.6 * s - 0.1, 0.003, 0.97)
        for i in range(n):
            truth[(f"d{i}", t)] = int(on[i])
    return pl.DataFrame(cols), truth


def test_plan_has_the_budget_and_the_top():
    scores, _ = synthetic()
    plan = plan_labels(scores, THR, 120, SampleConfig(seed=1))
    assert plan.height == 120
    assert plan["new"].all()
    assert (plan["pi"] > 0).all() and (plan["pi"] <= 1).all()
    # the top of each theme's ranking is taken with certainty
    for t in THR:
        top = scores.sort(f"score_{t}", descending=True).head(5)["doc_id"].to_list()
        assert set(top) <= set(plan["doc_id"].to_list())
    tags = " ".join(plan["strata"].to_list())
    for t in THR:
        for s in ("top", "threshold", "disagree"):
            assert f"{t}:{s}" in tags
    assert "background" in tags


def test_plan_is_seeded_and_pinned():
    scores, _ = synthetic()
    a = plan_labels(scores, THR, 80, SampleConfig(seed=3))
    b = plan_labels(scores.reverse(), THR, 80, SampleConfig(seed=3))
    assert plan_hash(a) == plan_hash(b.sort("row"))
    assert plan_hash(a) != plan_hash(plan_labels(scores, THR, 80, SampleConfig(seed=4)))
    assert plan_hash(a) == "91b6d2d47df2594a"


def test_duplicates_share_one_documents_probability():
    """Regression: 30 copies of one passage at the top of the ranking took 30 labels; a cluster now costs
    what one document does."""
    scores, _ = synthetic(500)
    top = scores.sort("score_a", descending=True)["doc_id"].head(4).to_list()
    scores = scores.with_columns(
        content_sha1=pl.when(pl.col("doc_id").is_in(top))
        .then(pl.lit("same"))
        .otherwise(pl.col("content_sha1"))
    )
    plan = plan_labels(scores, {"a": 0.6}, 40, SampleConfig(seed=0))
    pis = dict(zip(plan["doc_id"].to_list(), plan["pi"].to_list(), strict=True))
    picked = [d for d in top if d in pis]
    assert 1 <= len(picked) <= 3
    assert all(pis[d] < 1 for d in picked)


def test_known_labels_are_certain_and_free():
    scores, _ = synthetic(800)
    known = ["d1", "d2", "d3"]
    plan = plan_labels(scores, THR, 50, SampleConfig(seed=2), labelled=known)
    assert plan.height == 53
    old = plan.filter(~pl.col("new"))
    assert sorted(old["doc_id"].to_list()) == known
    assert (old["pi"] == 1.0).all()


def test_candidates_only_plans_every_qualifying_document():
    scores, _ = synthetic(600)
    plan = plan_labels(scores, THR, 10, candidates_only=True)
    want = scores.filter((pl.col("score_a") >= 0.6) | (pl.col("score_b") >= 0.5)).height
    assert plan.height == want
    assert (plan["pi"] == 1.0).all()


def test_estimates_are_unbiased_over_draws():
    """The Hajek estimates of prevalence, precision and recall average to the truth over many seeds, and
    their 95% intervals cover it most of the time."""
    scores, truth = synthetic(1500)
    n = scores.height
    true = {}
    for t, thr in THR.items():
        y = np.array([truth[(d, t)] for d in scores["doc_id"].to_list()])
        sel = scores[f"score_{t}"].to_numpy() >= thr
        true[t] = {"prevalence": y.mean(), "precision": y[sel].mean(), "recall": y[sel].sum() / y.sum()}
    got: dict[tuple[str, str], list[float]] = {}
    covered: dict[tuple[str, str], int] = {}
    runs = 120
    for seed in range(runs):
        plan = plan_labels(scores, THR, 150, SampleConfig(seed=seed))
        rep = estimate(plan, truth, THR, n)
        for t in THR:
            for k in ("prevalence", "precision", "recall"):
                e = rep["themes"][t][k]
                got.setdefault((t, k), []).append(e["estimate"])
                covered[(t, k)] = covered.get((t, k), 0) + int(e["low"] <= true[t][k] <= e["high"])
    for (t, k), vals in got.items():
        assert abs(np.mean(vals) - true[t][k]) < 0.04, (t, k, np.mean(vals), true[t][k])
        assert covered[(t, k)] / runs >= 0.8, (t, k, covered[(t, k)])


def test_unweighted_labels_would_be_biased():
    """Why every label carries its weight: the plan's raw share of on-theme labels overstates prevalence
    many times, since the ranked strata are rich in positives."""
    scores, truth = synthetic(1500)
    y = np.array([truth[(d, "a")] for d in scores["doc_id"].to_list()])
    plan = plan_labels(scores, THR, 150, SampleConfig(seed=0))
    raw = np.mean([truth[(d, "a")] for d in plan["doc_id"].to_list()])
    weighted = estimate(plan, truth, THR, scores.height)["themes"]["a"]["prevalence"]["estimate"]
    assert raw > 1.5 * y.mean()
    assert abs(weighted - y.mean()) < abs(raw - y.mean())


def test_bad_requests_are_clear():
    scores, _ = synthetic(100)
    with pytest.raises(SelectorError, match="at least 1"):
        plan_labels(scores, THR, 0)
    with pytest.raises(SelectorError, match="score_c"):
        plan_labels(scores, {"c": 0.5}, 5)
    with pytest.raises(SelectorError, match="background"):
        SampleConfig(background=1.0)
    with pytest.raises(SelectorError, match="empty"):
        plan_labels(scores.head(0), THR, 5)
