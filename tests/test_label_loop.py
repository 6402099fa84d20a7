"""The labelling loop end to end, over HTTP: `selector annotate --scores` draws the plan from real scores and
asks a real OpenAI-compatible server (scripts/label_server.py, answering from the demo corpus's own labels,
as an assessor would), then `train --labels`, `select --labels` and `audit --labels` use what it wrote."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import polars as pl
import pytest
from click.testing import CliRunner

from selector.cli import cli
from selector.core.paths import demo_corpus_dir
from selector.score.run import score
from selector.train.run import train

from .conftest import REPO, quick_config

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def label_server():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "label_server.py"), "--docs", str(demo_corpus_dir()),
         "--port", str(port), "--off-unlabelled"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("scripts/label_server.py did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    cfg = quick_config()
    cfg_path = root / "config.toml"
    # the CLI runs with the same quick settings: the default config with the hashing embedder
    cfg_path.write_text(
        f'extends = "{REPO / "configs" / "default.toml"}"\n[embedding]\nmodel = "hash:64"\n'
        "[fasttext]\nepoch = 5\ndim = 16\nbucket = 20000\n[train]\nsample_size = 400\n"
        "[annotate]\nconcurrency = 2\nretries = 1\nbackoff_s = 0.05\n"
    )
    clf = root / "clf"
    train([demo_corpus_dir()], cfg, clf, progress=lambda m: None)
    score([demo_corpus_dir()], root / "run", clf, cfg, progress=lambda m: None)
    return root, cfg_path


def demo_truth() -> dict[str, list[str]]:
    out = {}
    for f in sorted(demo_corpus_dir().glob("*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            out[d["id"]] = (d.get("meta") or {}).get("themes") or []
    return out


def test_annotate_scores_then_train_select_and_audit(scored, label_server, tmp_path):
    root, cfg_path = scored
    run = CliRunner().invoke
    labels = tmp_path / "r1.csv"
    args = ["annotate", "--scores", str(root / "run"), "--endpoint", label_server, "--model", "labels",
            "--budget", "60", "--out", str(labels), "--config", str(cfg_path), "--silent"]  # fmt: skip
    res = run(cli, args)
    assert res.exit_code == 0, res.output
    rows = pl.read_csv(labels)
    assert rows.select("doc_id").n_unique() == 60
    assert set(rows["theme"].unique().to_list()) == set(THEMES)
    assert set(rows["reviewer"].unique().to_list()) == {"llm:labels"}
    truth = demo_truth()
    for d, t, lab in rows.select("doc_id", "theme", "label").iter_rows():  # the server answered the truth
        assert lab == ("on" if t in truth[d] else "off"), (d, t, lab)
    plan = pl.read_parquet(tmp_path / "r1.plan.parquet")
    assert plan.height == 60 and (plan["pi"] > 0).all()
    meta = json.loads((tmp_path / "r1.plan.json").read_text())
    assert meta["population"] == 310
    assert json.loads((tmp_path / "r1.json").read_text())["plan"]["plan_hash"] == meta["plan_hash"]

    # round 2 from the same scores: the round-1 documents are known, so only new documents are asked for
    r2 = tmp_path / "r2.csv"
    res = run(
        cli, [*args[:-5], "--out", str(r2), "--labels", str(labels), "--config", str(cfg_path), "--silent"]
    )
    assert res.exit_code == 0, res.output
    assert not set(pl.read_csv(r2)["doc_id"].to_list()) & set(rows["doc_id"].to_list())

    # train on both rounds: the card records the source and the labelled themes learn from their labels
    res = run(cli, ["train", str(demo_corpus_dir()), "--out", str(tmp_path / "clf1"), "--labels", str(labels),
                    "--labels", str(r2), "--config", str(cfg_path), "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "clf1" / "card.json").read_text())
    assert card["label_sources"]["sources"]["llm:labels"]["labels"] == 2 * 60 * 4
    assert any(v["fitted_on"] == "labels, seeds as a prior (label_mix 0.5)" for v in card["teacher"].values())

    # select vets the candidates with the labels; audit estimates precision and recall from the plan
    res = run(cli, ["select", "--scores", str(root / "run"), "--out", str(tmp_path / "sel"), "--labels",
                    str(labels), "--config", str(cfg_path), "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    docs = pl.read_parquet(tmp_path / "sel" / "manifest" / "documents.parquet")
    on = {(d, t) for d, t, lab in rows.select("doc_id", "theme", "label").iter_rows() if lab == "on"}
    off = {(d, t) for d, t, lab in rows.select("doc_id", "theme", "label").iter_rows() if lab == "off"}
    kept = set(docs.select("doc_id", "theme").iter_rows())
    assert not kept & off  # no document labelled off rides in that theme's stream
    assert all("confirmed on by llm:labels" in r for d, t, r in docs.select("doc_id", "theme", "reason").iter_rows()
               if (d, t) in on)  # fmt: skip
    res = run(cli, ["audit", str(tmp_path / "sel" / "manifest"), "--out", str(tmp_path / "audit"), "--labels",
                    str(labels), "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    est = json.loads((tmp_path / "audit" / "estimates.json").read_text())
    assert est["labelled_planned_documents"] == 60
    for t in THEMES:
        th = est["thresholds"][t]
        assert th["labelled"] == 60
        prev = th["prevalence"]
        assert 0 <= prev["low"] <= prev["estimate"] <= prev["high"] <= 1


def test_candidates_labels_exactly_what_qualifies(scored, label_server, tmp_path):
    root, cfg_path = scored
    out = tmp_path / "cand.csv"
    res = CliRunner().invoke(cli, ["annotate", "--scores", str(root / "run"), "--candidates", "--endpoint",
                                   label_server, "--model", "labels", "--budget", "1000", "--out", str(out),
                                   "--config", str(cfg_path), "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    plan = pl.read_parquet(tmp_path / "cand.plan.parquet")
    scores = pl.read_parquet(sorted((root / "run" / "scores").glob("part-*.parquet")))
    thr = json.loads((tmp_path / "cand.plan.json").read_text())["thresholds"]
    qualify = scores.filter(pl.any_horizontal([pl.col(f"score_{t}") >= v for t, v in thr.items()]))
    assert sorted(plan["doc_id"].to_list()) == sorted(qualify["doc_id"].to_list())
    assert pl.read_csv(out).select("doc_id").n_unique() == qualify.height


def test_annotate_needs_inputs_or_scores(tmp_path):
    res = CliRunner().invoke(cli, ["annotate", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                                   "--budget", "1", "--out", str(tmp_path / "x.csv")])  # fmt: skip
    assert res.exit_code == 2
    assert "give INPUTS" in res.output


def test_the_audit_page_can_show_a_plan_and_estimate_from_its_labels(scored, label_server, tmp_path):
    """The page's sample and the annotator share one strategy: `audit --plan` lays out the plan's documents
    (weights 1 / pi, buckets = strata); labels of them give plan estimates without naming the plan again."""
    root, cfg_path = scored
    run = CliRunner().invoke
    labels = tmp_path / "r1.csv"
    res = run(cli, ["annotate", "--scores", str(root / "run"), "--endpoint", label_server, "--model", "labels",
                    "--budget", "40", "--out", str(labels), "--config", str(cfg_path), "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = run(cli, ["select", "--scores", str(root / "run"), "--out", str(tmp_path / "sel"), "--config",
                    str(cfg_path), "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    page = tmp_path / "page"
    res = run(cli, ["audit", str(tmp_path / "sel" / "manifest"), "--out", str(page), "--plan",
                    str(tmp_path / "r1.plan.parquet"), "--no-evidence", "--silent"])  # fmt: skip
    assert res.exit_code == 0, res.output
    sample = pl.read_parquet(page / "sample.parquet")
    plan = pl.read_parquet(tmp_path / "r1.plan.parquet")
    assert sorted(sample["doc_id"].to_list()) == sorted(plan["doc_id"].to_list())
    pis = dict(zip(plan["doc_id"].to_list(), plan["pi"].to_list(), strict=True))
    for d, w in sample.select("doc_id", "sample_weight").iter_rows():
        assert abs(w - 1 / pis[d]) < 1e-9
    assert set(sample["bucket"].unique().to_list()) <= {"top", "threshold", "disagree", "background"}
    res = run(cli, ["audit", str(tmp_path / "sel" / "manifest"), "--out", str(page), "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    assert "the page was drawn from" in res.output
    est = json.loads((page / "estimates.json").read_text())
    assert est["labelled_planned_documents"] == 40
