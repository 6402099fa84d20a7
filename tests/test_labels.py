"""Labels from several sources: a person's label beats an annotator's; select lets labels veto or confirm
candidates (their reason in the manifest); the teacher learns from labels once a theme has enough."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from selector.core.config import Config
from selector.core.errors import InputError
from selector.core.labels import read_label_files
from selector.select.build import select
from selector.train.run import Teacher, fit_teacher
from tests.test_select import THEMES, background, docs, make_scores, sel_cfg


def write(path, rows: list[str]):
    path.write_text("doc_id,theme,label,reviewer,time,reason\n" + "\n".join(rows) + "\n")
    return path


def test_people_beat_the_annotator_whatever_the_file_order(tmp_path):
    llm = write(
        tmp_path / "llm.csv", ["a,honesty,on,llm:m1,t,it is about lying", "b,honesty,off,llm:m1,t,no"]
    )
    human = write(tmp_path / "human.csv", ["a,honesty,off,ana,t,", "c,cooperation,on,,t,"])
    for order in ([llm, human], [human, llm]):
        ls = read_label_files(order, THEMES)
        assert ls.labels == {("a", "honesty"): 0, ("b", "honesty"): 0, ("c", "cooperation"): 1}
        assert ls.reviewer[("a", "honesty")] == "ana"
        assert ls.reason[("b", "honesty")] == "no"
        assert ls.overridden == 1
        assert ls.sources == {"(no reviewer)": 1, "ana": 1, "llm:m1": 1}
        assert ls.info["sources"]["(no reviewer)"] == {"labels": 1, "on": 1}
        assert len(ls.info["files"]) == 2 and all(len(f["sha256"]) == 64 for f in ls.info["files"])


def test_a_later_annotator_round_replaces_an_earlier_one(tmp_path):
    r1 = write(tmp_path / "r1.csv", ["a,honesty,on,llm:m1,t,"])
    r2 = write(tmp_path / "r2.csv", ["a,honesty,off,llm:m2,t,"])
    assert read_label_files([r1, r2], THEMES).labels == {("a", "honesty"): 0}


def test_bad_label_files_name_the_line(tmp_path):
    bad = write(tmp_path / "bad.csv", ["a,honesty,maybe,ana,t,"])
    with pytest.raises(InputError, match=r"bad.csv:2: label 'maybe'"):
        read_label_files([bad], THEMES)
    with pytest.raises(InputError, match="not configured"):
        read_label_files([write(tmp_path / "t.csv", ["a,kindness,on,ana,t,"])], THEMES)


def test_select_labels_veto_and_confirm(cfg: Config, tmp_path):
    """A candidate labelled off leaves its stream with the label's reason; a document below the threshold
    labelled on joins it, its reason saying so; a label for another theme changes nothing."""
    rows = docs(6, "honesty", 0.9) + docs(1, "honesty", 0.2, prefix="low") + background(20)
    root = tmp_path / "r"
    make_scores(root, rows)
    labels = read_label_files(
        [
            write(
                tmp_path / "l.csv",
                [
                    "d000,honesty,off,llm:m,t,a review that mentions honesty in passing",
                    "low000,honesty,on,ana,t,an essay on truthfulness",
                    "d001,cooperation,off,llm:m,t,",
                ],
            )
        ],
        THEMES,
    )
    m = select(root, root, sel_cfg(cfg), progress=lambda x: None, labels=labels)
    d = pl.read_parquet(root / "manifest" / "documents.parquet")
    kept = set(d["doc_id"].to_list())
    assert "d000" not in kept and "low000" in kept and "d001" in kept
    why = dict(zip(d["doc_id"].to_list(), d["reason"].to_list(), strict=True))
    assert "below" not in why["d001"]
    assert "labelled on" in why["low000"] and "confirmed on by ana: an essay on truthfulness" in why["low000"]
    rej = pl.read_parquet(root / "manifest" / "rejected.parquet")
    r = rej.filter(pl.col("doc_id") == "d000")["reason"].to_list()
    assert r == ["label: off (llm:m: a review that mentions honesty in passing)"]
    assert m["selection"]["labels"]["labels"] == 3


def test_select_labels_exclude_a_stance_theme(cfg: Config, tmp_path):
    """A document labelled ai_risk is kept out of every stream under exclude_above, whatever its score."""
    rows = docs(4, "honesty", 0.9) + background(10)
    root = tmp_path / "r"
    make_scores(root, rows)
    labels = read_label_files([write(tmp_path / "l.csv", ["d002,ai_risk,on,ana,t,deceptive AI"])], THEMES)
    select(root, root, sel_cfg(cfg, exclude_above={"ai_risk": 0.5}), progress=lambda x: None, labels=labels)
    d = pl.read_parquet(root / "manifest" / "documents.parquet")
    assert "d002" not in d["doc_id"].to_list()
    rej = pl.read_parquet(root / "manifest" / "rejected.parquet")
    assert rej.filter(pl.col("doc_id") == "d002")["reason"].to_list() == [
        "excluded: labelled ai_risk (ana: deceptive AI)"
    ]


def _teacher(cfg: Config, human: dict[str, dict[int, int]]) -> Teacher:
    from selector.train.run import seed_index
    from selector.train.seeds import Seed

    rng = np.random.default_rng(0)
    n, d = 400, 16
    centre = rng.normal(size=d)
    xd = rng.normal(size=(n, d))
    xd[:40] += 3 * centre  # the on-theme documents
    xd /= np.linalg.norm(xd, axis=1, keepdims=True)
    seeds = [Seed(t, f"{t}-{i}", "positive", "x") for t in THEMES for i in range(3)]
    se = rng.normal(size=(len(seeds), d))
    se /= np.linalg.norm(se, axis=1, keepdims=True)
    ev = seed_index(THEMES, seeds, se.astype(np.float32), 3).evidence(xd.astype(np.float32))
    return fit_teacher(THEMES, seeds, se, xd, ev, human, cfg.train, lambda m: None)


def test_the_teacher_learns_from_labels_once_it_has_enough(cfg: Config):
    """With enough labelled positives and negatives a theme's head is fitted to the labels (the seeds a
    prior) and ranks the labelled kind of document first; with too few it stays the seed teacher."""
    few = {t: {} for t in THEMES} | {"honesty": {0: 1, 1: 1, 300: 0}}
    t_few = _teacher(cfg, few)
    assert t_few.info["honesty"]["fitted_on"] == "seeds and pseudo positives"
    many = {t: {} for t in THEMES} | {
        "honesty": {**{i: 1 for i in range(10)}, **{i: 0 for i in range(300, 330)}}
    }
    t_many = _teacher(cfg.replace("train", label_mix=1.0), many)
    info = t_many.info["honesty"]
    assert info["fitted_on"] == "labels, seeds as a prior (label_mix 1)"
    assert (info["labelled_positive"], info["labelled_negative"], info["pseudo_positives"]) == (10, 30, 0)
    coef, bias = t_many.heads["honesty"]
    assert coef.shape == (16,) and np.isfinite(bias)
    # the unlabelled on-theme documents (10..39) outrank the unlabelled rest
    p = t_many.strict["honesty"]
    assert p[10:40].mean() > 0.5 > p[40:300].mean()


def test_distillation_labels_more_documents_embedding_only_the_students_top(tmp_path):
    """The student learns the head's judgement on `train.distill_size` further documents, of which only the
    first student's top `distill_embed_fraction` per theme are embedded; the rest are its negatives. The
    card says what was done and only the second student is kept."""
    from selector.core.paths import demo_corpus_dir
    from selector.train.run import train
    from tests.conftest import quick_config

    cfg = quick_config().replace("train", sample_size=150, distill_size=150, distill_embed_fraction=0.2)
    card = train([demo_corpus_dir()], cfg, tmp_path / "c", progress=lambda m: None)
    d = card["distillation"]
    assert d["documents"] == 150
    assert 0 < d["embedded"] <= 4 * 8  # ceil(0.2 * 150 / 4) per theme, 4 themes
    assert set(d["positives"]) == set(THEMES)
    assert (
        card["label_counts"]["honesty"]["train_positive"] + card["label_counts"]["honesty"]["train_negative"]
        > 150
    )
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert files == sorted(["card.json", "head.npz", *card["files"]["fasttext"].values()])  # one student kept
