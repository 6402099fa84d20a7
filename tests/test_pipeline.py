"""Train and score end to end with the seeded hashing embedder (fast); the real model is in test_real_model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from selector.core.labels import read_label_csv
from selector.core.paths import demo_corpus_dir
from selector.score.classifier import Classifier
from selector.score.run import read_scores, score
from selector.train.run import train

from .conftest import quick_config

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory) -> Path:
    """The embedded demo corpus, copied so tests can add shards."""
    d = tmp_path_factory.mktemp("demo")
    for f in sorted(demo_corpus_dir().glob("*.jsonl")):
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_inputs) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clf") / "c"
    card = train([demo_inputs], quick_config(), out, progress=lambda m: None)
    return out, card


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_card_records_what_the_classifier_was_trained_on(trained):
    out, card = trained
    assert card["themes"] == THEMES
    assert set(card["seeds"]) == set(THEMES)
    assert all(card["seeds"][t]["positive"] >= 25 for t in THEMES)
    assert (
        card["trained_on"]["sample_size"]
        == card["trained_on"]["n_train"] + card["trained_on"]["n_validation"]
    )
    for t in THEMES:
        v = card["validation"][t]
        assert {"average_precision", "precision_at_0.5", "recall_at_0.5", "gate", "recall_at_gate"} <= set(v)
        assert 0.0 <= card["gates"][t] <= 1.0
    assert card["fasttext"]["threads"] == 1
    assert json.loads((out / "card.json").read_text())["fingerprint"] == card["fingerprint"]


def test_training_is_reproducible(trained, demo_inputs, cfg, tmp_path):
    out, card = trained
    again = tmp_path / "again"
    card2 = train([demo_inputs], cfg, again, progress=lambda m: None)
    for f in [*card["files"]["fasttext"].values(), "head.npz"]:
        assert _digest(out / f) == _digest(again / f), f
    assert card2["fingerprint"] == card["fingerprint"]
    assert card2["gates"] == card["gates"]


def test_score_writes_parts_stats_and_markers(trained, demo_inputs, cfg, tmp_path):
    clf, card = trained
    summary = score([demo_inputs], tmp_path, clf, cfg, progress=lambda m: None)
    sdir = tmp_path / "scores"
    n_shards = len(list(demo_inputs.glob("*.jsonl")))
    assert sorted(p.name for p in sdir.glob("part-*.done")) == [f"part-{i:05d}.done" for i in range(n_shards)]
    df = read_scores(tmp_path)
    for t in THEMES:
        for prefix in ("ft", "score"):
            col = df[f"{prefix}_{t}"]
            assert col.null_count() == 0 and col.min() >= 0.0 and col.max() <= 1.0
        emb = df[f"emb_{t}"]
        assert emb.is_null().to_list() == (~df["embedded"]).to_list()
    tot = summary.totals()
    assert tot["documents_in"] == tot["scored"] + tot["skipped"] == df.height
    stats = json.loads((sdir / "part-00000.stats.json").read_text())
    assert stats["documents_in"] == stats["scored"] + stats["skipped"]
    assert {"embedded", "seconds", "skipped_by_reason"} <= set(stats)
    # thresholds are "auto": the classifier's calibrated ones, recorded beside the parts
    thr = json.loads((sdir / "_inputs.json").read_text())["thresholds"]
    assert thr == card["thresholds"] and all(0 <= v <= 1 for v in thr.values())
    assert tot["above_threshold"] == {t: int((df[f"score_{t}"] >= thr[t]).sum()) for t in THEMES}
    assert df["n_tokens"].to_list() == [-(-c // 4) for c in df["n_chars"].to_list()]


def test_rerun_reuses_parts_and_force_redoes_them(trained, demo_inputs, cfg, tmp_path):
    clf, _ = trained
    score([demo_inputs], tmp_path, clf, cfg, progress=lambda m: None)
    first = read_scores(tmp_path)
    again = score([demo_inputs], tmp_path, clf, cfg, progress=lambda m: None)
    assert again.skipped_parts == len(again.parts)
    forced = score([demo_inputs], tmp_path, clf, cfg, force=True, progress=lambda m: None)
    assert forced.skipped_parts == 0
    assert read_scores(tmp_path).equals(first)


def test_changed_config_invalidates_finished_parts(trained, demo_inputs, cfg, tmp_path):
    clf, _ = trained
    score([demo_inputs], tmp_path, clf, cfg, progress=lambda m: None)
    other = score(
        [demo_inputs], tmp_path, clf, cfg.replace("cascade", embedding_weight=0.5), progress=lambda m: None
    )
    assert other.skipped_parts == 0


def test_a_weight_other_than_the_calibrated_one_is_warned_about(trained, demo_inputs, cfg, tmp_path):
    clf, card = trained
    assert card["cascade"]["embedding_weight"] == cfg.cascade.embedding_weight
    said: list[str] = []
    score([demo_inputs], tmp_path / "same", clf, cfg, progress=said.append)
    assert not [m for m in said if "embedding_weight" in m]
    score(
        [demo_inputs],
        tmp_path / "other",
        clf,
        cfg.replace("cascade", embedding_weight=0.5),
        progress=said.append,
    )
    warned = [m for m in said if "embedding_weight" in m]
    assert len(warned) == 1 and "calibrated on scores made with" in warned[0], said
    inputs = json.loads((tmp_path / "other" / "scores" / "_inputs.json").read_text())
    assert inputs["calibrated_embedding_weight"] == cfg.cascade.embedding_weight
    # select applies the thresholds: the manifest says they were fitted to other scores ...
    from selector.select.build import select

    m = select(tmp_path / "other", tmp_path / "other", cfg, progress=lambda m: None)
    assert [w for w in m["selection"]["warnings"] if "were calibrated on scores made with" in w]
    assert m["classifier"]["card"]["cascade"]["embedding_weight"] == cfg.cascade.embedding_weight
    # ... but not when the themes' thresholds are given
    given = cfg
    for t in THEMES:
        given = given.replace_theme(t, threshold=0.3)
    m = select(tmp_path / "other", tmp_path / "given", given, progress=lambda m: None)
    assert not [w for w in m["selection"]["warnings"] if "embedding_weight" in w]


def test_a_card_without_the_weight_was_calibrated_at_the_old_default():
    from selector.score.cascade import LEGACY_EMBEDDING_WEIGHT, calibrated_weight

    assert calibrated_weight({"thresholds": {"honesty": 0.2}}) == LEGACY_EMBEDDING_WEIGHT == 0.9
    assert calibrated_weight({"thresholds": {"honesty": 0.2}, "cascade": {"embedding_weight": 0.7}}) == 0.7
    assert calibrated_weight({"cascade": {"embedding_weight": 0.7}}) is None  # no thresholds to mismatch


def test_two_workers_give_the_same_scores_as_one(trained, demo_inputs, cfg, tmp_path):
    clf, _ = trained
    score([demo_inputs], tmp_path / "one", clf, cfg, progress=lambda m: None)
    score([demo_inputs], tmp_path / "two", clf, cfg, workers=2, progress=lambda m: None)
    assert read_scores(tmp_path / "one").equals(read_scores(tmp_path / "two"))


def test_gate_zero_embeds_everything(trained, demo_inputs, cfg, tmp_path):
    clf, _ = trained
    score([demo_inputs], tmp_path, clf, cfg.replace("cascade", gate=0.0), progress=lambda m: None)
    df = read_scores(tmp_path)
    assert df["embedded"].all()
    c = Classifier.load(clf)
    assert df["seed_honesty"].is_in(c.index.pos_ids["honesty"]).all()


def test_human_labels_reach_the_card(demo_inputs, cfg, tmp_path):
    first = pl.read_ndjson(sorted(demo_inputs.glob("*.jsonl"))[0]).head(3)["id"].to_list()
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "doc_id,theme,label,reviewer,time\n"
        f"{first[0]},honesty,on_theme,ann,2026-01-01\n{first[1]},honesty,off_theme,ann,x\n"
        f"{first[2]},cooperation,unsure,ann,x\n"
    )
    assert read_label_csv(labels, THEMES) == {(first[0], "honesty"): 1, (first[1], "honesty"): 0}
    card = train([demo_inputs], cfg, tmp_path / "c", labels_path=labels, progress=lambda m: None)
    assert card["trained_on"]["human_labels"] == 2


def test_is_current_tracks_inputs_settings_and_seeds(trained, demo_inputs, cfg, tmp_path):
    from selector.train.run import is_current

    clf, _ = trained
    assert is_current(clf, [demo_inputs], cfg, None)
    assert not is_current(clf, [demo_inputs], cfg.replace("train", sample_size=399), None)
    extra = demo_inputs / "zz-extra.jsonl"
    extra.write_text('{"id": "x", "text": "one more document"}\n')
    try:
        assert not is_current(clf, [demo_inputs], cfg, None)
    finally:
        extra.unlink()


def test_score_select_export_materialize_from_the_command_line(trained, demo_inputs, cfg, tmp_path):
    """The product path on the demo: scores -> manifest -> every export re-derives the budget -> the
    materialized rows are the manifest's repeats, with the input's text."""
    from click.testing import CliRunner

    from selector.cli import cli

    clf, _ = trained
    score([demo_inputs], tmp_path, clf, cfg, progress=lambda m: None)
    run = CliRunner().invoke
    res = run(
        cli,
        ["select", "--scores", str(tmp_path), "--out", str(tmp_path), "--target-share", "honesty=0.1",
         "--target-share", "cooperation=0.1", "--target-share", "cooperative_ai=0.1", "--silent"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    docs = pl.read_parquet(tmp_path / "manifest" / "documents.parquet")
    assert docs.height > 0 and docs["doc_id"].n_unique() == docs.height
    assert [s["theme"] for s in out["streams"]] == ["honesty", "cooperation", "cooperative_ai"]
    for fmt in ("megatron", "olmo-core", "mosaic", "nanotron", "dolma"):
        res = run(cli, ["export", str(tmp_path / "manifest"), "--format", fmt, "--out", str(tmp_path / "x" / fmt),
                        "--seq-len", "64"])  # fmt: skip
        assert res.exit_code == 0, (fmt, res.output)
        rel = json.loads(res.stdout)["streams"]
        assert all(v["rel_error"] <= 0.005 for v in rel.values()), (fmt, rel)
    res = run(cli, ["materialize", str(tmp_path / "manifest"), "--out", str(tmp_path / "mat"), "--silent"])
    assert res.exit_code == 0, res.output
    rows = pl.concat(
        [pl.read_ndjson(p) for p in sorted((tmp_path / "mat").glob("*/part-*.jsonl.gz"))],
        how="vertical_relaxed",
    )
    copies = rows.group_by("doc_id").len()
    want = docs.select("doc_id", pl.col("repeats").cast(pl.UInt32).alias("len"))
    assert copies.sort("doc_id").equals(want.sort("doc_id"))
    originals = {
        json.loads(line)["id"]: json.loads(line)["text"]
        for p in demo_inputs.glob("*.jsonl")
        for line in p.read_text().splitlines()
        if line.strip()
    }
    assert all(originals[d] == t for d, t in zip(rows["doc_id"], rows["text"], strict=True))
    # the effective epochs past select.hard_max_epochs are refused with a message that names the fix
    res = run(cli, ["select", "--scores", str(tmp_path), "--out", str(tmp_path / "big"), "--max-repeats", "40",
                    "--target-share", "cooperation=0.9", "--silent"])  # fmt: skip
    assert res.exit_code != 0 and "past select.hard_max_epochs = 16" in res.output


def test_warc_provenance_flows_into_scores_manifest_and_materialized_rows(trained, cfg, tmp_path):
    from selector.export.documents import materialize
    from selector.select.build import select

    from .test_formats import write_warc

    clf, _ = trained
    warc = write_warc(tmp_path / "cc.warc.gz")
    score([warc], tmp_path / "run", clf, cfg, progress=lambda m: None)
    df = read_scores(tmp_path / "run")
    assert df.height == 2 and df["warc_record_id"].null_count() == 0
    assert df["domain"].to_list() == ["example.org", "example.org"]
    assert df["crawl_date"].to_list() == ["2020-01-02T03:04:05Z"] * 2 and df["lang"].to_list() == ["en", "de"]
    assert df["content_sha1"].str.len_chars().to_list() == [40, 40]
    # select everything (a threshold of 0) once, then materialize: provenance rides along
    c = cfg.replace("select", max_domain_share=1.0)
    for t in ("honesty", "cooperation", "cooperative_ai"):
        c = c.replace_theme(t, threshold=0.0, target_share=0.0)
    m = select(tmp_path / "run", tmp_path / "run", c, progress=lambda m: None)
    docs = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert set(docs["warc_record_id"]) == set(df["warc_record_id"])
    shares = [v["provenance_share"] for v in m["organic"]["streams"].values()]
    assert 1.0 in shares and set(shares) <= {1.0, None}  # None: a stream with no documents
    materialize(tmp_path / "run" / "manifest", tmp_path / "mat", progress=lambda m: None)
    rows = pl.concat([pl.read_ndjson(p) for p in (tmp_path / "mat").glob("*/part-*.jsonl.gz")])
    assert set(rows["warc_record_id"]) == set(df["warc_record_id"]) and rows["offset"].null_count() == 0


def test_a_remote_dump_scores_selects_and_materializes(trained, demo_inputs, cfg, tmp_path):
    """The same readers behind a URI: the demo in an fsspec in-memory filesystem."""
    fsspec = pytest.importorskip("fsspec")
    from selector.export.documents import materialize
    from selector.select.build import select

    clf, _ = trained
    mem = fsspec.filesystem("memory")
    for f in sorted(demo_inputs.glob("*.jsonl")):
        mem.pipe(f"/remote-demo/{f.name}", f.read_bytes())
    score(["memory://remote-demo"], tmp_path / "remote", clf, cfg, progress=lambda m: None)
    score([demo_inputs], tmp_path / "local", clf, cfg, progress=lambda m: None)
    remote, local = read_scores(tmp_path / "remote"), read_scores(tmp_path / "local")
    assert remote.drop("source").equals(local.drop("source"))
    assert remote["source"].str.starts_with("memory://").all()
    c = cfg.replace_theme("cooperation", target_share=0.05)
    select(tmp_path / "remote", tmp_path / "remote", c, progress=lambda m: None)
    summary = materialize(tmp_path / "remote" / "manifest", tmp_path / "mat", progress=lambda m: None)
    assert sum(s["rows"] for s in summary["streams"]) > 0
