"""The real path: bundled MiniLM + fastText + faiss, on the project's own demo corpus (no ../shared needed)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from selector.audit.evaluation import evaluate, read_labels
from selector.cli import cli
from selector.core.config import EmbeddingConfig, load_config
from selector.core.paths import default_classifier_dir, demo_corpus_dir
from selector.score.embed import Embedder
from selector.score.run import read_scores, score

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]
pytestmark = pytest.mark.slow


def demo_labels() -> pl.DataFrame:
    return pl.concat([read_labels(p, THEMES) for p in sorted(demo_corpus_dir().glob("*.jsonl"))])


def test_bundled_model_bf16_matches_fp32():
    texts = ["The assistant told the user it did not know the answer.", "Boil the pasta for nine minutes."]
    fp32 = Embedder(EmbeddingConfig(bf16="off")).encode(texts)
    bf16 = Embedder(EmbeddingConfig(bf16="on")).encode(texts)
    assert fp32.shape == (2, 384)
    assert np.allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    assert (fp32 * bf16).sum(axis=1).min() > 0.99


def test_shipped_classifier_ranks_the_demo_themes(tmp_path):
    """The default classifier never saw the demo labels; it must still rank on-theme demo pages first."""
    cfg = load_config()
    s = score([demo_corpus_dir()], tmp_path, default_classifier_dir(), cfg, progress=lambda m: None)
    assert s.totals()["scored"] == 310
    rep = evaluate(read_scores(tmp_path), demo_labels(), THEMES)
    aps = {t: rep["themes"][t]["average_precision"] for t in THEMES}
    assert min(aps.values()) > 0.5, aps


def test_run_trains_and_scores_the_demo_end_to_end(tmp_path):
    r = CliRunner().invoke(cli, ["run", "--out", str(tmp_path), "--silent"], prog_name="selector")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["documents_in"] == out["scored"] == 310
    card = json.loads((tmp_path / "classifier" / "card.json").read_text())
    assert card["embedding"]["model"] == "bundled:all-MiniLM-L6-v2"
    df = read_scores(tmp_path)
    assert 0 < df["embedded"].sum() < 310
    rep = evaluate(df, demo_labels(), THEMES)
    aps = {t: rep["themes"][t]["average_precision"] for t in THEMES}
    assert min(aps.values()) > 0.5, aps
