"""Fine-tuning the embedding model on the labels (`train.finetune_epochs`): the classifier carries the
fine-tuned encoder, and scoring and the audit embed with it."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import polars as pl
import pytest

from selector.audit.evaluation import read_labels
from selector.core.config import EmbeddingConfig, load_config
from selector.core.errors import ClassifierError, ConfigError
from selector.core.paths import demo_corpus_dir
from selector.score.cascade import ShardScorer
from selector.score.classifier import Classifier
from selector.score.embed import Embedder
from selector.score.run import read_scores, score
from selector.train.finetune import AUTO_EPOCHS, epochs_for, targets
from selector.train.run import train

from .conftest import REPO, quick_config

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


def test_finetune_settings_are_validated():
    bad_values = (
        ("finetune_epochs", -1),
        ("finetune_epochs", True),
        ("finetune_epochs", "always"),
        ("finetune_lr", 0.0),
        ("finetune_batch", 0),
        ("finetune_min_labels", 0),
    )
    for key, bad in bad_values:
        with pytest.raises(ConfigError, match=f"train.{key}"):
            quick_config().replace("train", **{key: bad})


def test_finetune_refuses_the_hashing_stand_in(tmp_path):
    cfg = quick_config().replace("train", finetune_epochs=1)
    with pytest.raises(ConfigError, match="nothing to fine-tune"):
        train([demo_corpus_dir()], cfg, tmp_path / "clf", progress=lambda m: None)
    assert not (tmp_path / "clf").exists()


def test_auto_fine_tunes_only_with_enough_labels_and_a_real_model():
    real = load_config(REPO / "configs" / "default.toml")
    assert real.train.finetune_epochs == "auto"
    assert epochs_for(real, 500) == (AUTO_EPOCHS, None)
    n, why = epochs_for(real, 499)
    assert n == 0 and why is not None and "fewer than train.finetune_min_labels = 500" in why
    n, why = epochs_for(quick_config(), 10_000)  # the hashing stand-in has nothing to fine-tune
    assert n == 0 and why is not None and "hashing stand-in" in why
    assert epochs_for(real.replace("train", finetune_epochs=0), 10_000) == (0, None)
    assert epochs_for(real.replace("train", finetune_epochs=2), 0) == (2, None)


def test_targets_mask_what_was_not_labelled():
    seeds = np.array([[1, -1], [-1, 0]], dtype=np.int8)
    y = targets(["a", "b"], 3, {"a": {0: 1, 2: 0}, "b": {1: 1}}, seeds)
    assert y.tolist() == [[1, -1], [-1, 1], [0, -1], [1, -1], [-1, 0]]


def write_demo_labels(path, n_per_theme: int = 6) -> int:
    """A labels CSV for some demo documents: per theme, its first on-theme documents and as many others."""
    df = pl.concat([read_labels(p, THEMES) for p in sorted(demo_corpus_dir().glob("*.jsonl"))]).sort("doc_id")
    rows = []
    for t in THEMES:
        on = df.filter(pl.col(f"label_{t}"))["doc_id"].head(n_per_theme).to_list()
        off = df.filter(~pl.col(f"label_{t}"))["doc_id"].head(n_per_theme).to_list()
        rows += [(d, t, "on_theme") for d in on] + [(d, t, "off_theme") for d in off]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["doc_id", "theme", "label", "reviewer", "time"])
        w.writerows([(d, t, lab, "tester", "2026-12-04T00:00:00Z") for d, t, lab in rows])
    return len({d for d, _, _ in rows})


@pytest.mark.slow
def test_finetuned_encoder_travels_with_the_classifier(tmp_path):
    cfg = load_config(REPO / "configs" / "default.toml")
    cfg = cfg.replace("fasttext", epoch=5, dim=16, bucket=20000)
    cfg = cfg.replace("embedding", max_tokens=64)
    cfg = cfg.replace("train", sample_size=310, finetune_epochs=1, finetune_batch=16)
    labels = tmp_path / "labels.csv"
    n_docs = write_demo_labels(labels)
    out = tmp_path / "clf"
    messages: list[str] = []
    card = train([demo_corpus_dir()], cfg, out, labels_path=labels, progress=messages.append)

    emb = card["embedding"]
    assert emb["model"] == cfg.embedding.model and emb["encoder"] == "encoder"
    ft = emb["finetune"]
    n_seeds = sum(card["seeds"][t]["positive"] + card["seeds"][t]["near_miss"] for t in THEMES)
    assert ft["examples"] == n_docs + n_seeds and ft["epochs"] == 1 and len(ft["loss_per_epoch"]) == 1
    assert all(ft["labelled_per_theme"][t]["on"] >= 6 for t in THEMES)
    assert any(m.startswith("fine-tuning ") for m in messages)
    assert (out / "encoder" / "config.json").is_file() and card["files"]["encoder"] == "encoder"

    clf = Classifier.load(out)
    assert clf.embedding_model == str(out / "encoder")
    # the fine-tuned model is not the base model: the same text lands elsewhere
    text = ["The assistant admitted it had made a mistake and corrected the figure."]
    base = Embedder(EmbeddingConfig(max_tokens=64)).encode(text)
    tuned = Embedder(EmbeddingConfig(model=clf.embedding_model, max_tokens=64)).encode(text)
    assert float((base * tuned).sum()) < 0.9999

    # scoring embeds with the classifier's encoder, wherever the classifier directory is moved
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)
    assert ShardScorer(cfg, moved).emb_cfg.model == str(moved / "encoder")
    score([demo_corpus_dir()], tmp_path / "run", moved, cfg, progress=lambda m: None)
    df = read_scores(tmp_path / "run")
    assert df.height == 310 and 0 < int(df["embedded"].sum())

    # a classifier copied without its encoder is refused, not scored with the base model
    shutil.rmtree(moved / "encoder")
    with pytest.raises(ClassifierError, match="encoder/ is missing"):
        Classifier.load(moved)
    assert json.loads((moved / "card.json").read_text())["fingerprint"] == card["fingerprint"]
