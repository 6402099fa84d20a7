from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from selector.audit.report import audit, passages, precision_report, wilson_interval
from selector.core.errors import SelectorError
from selector.core.labels import read_label_csv
from selector.core.paths import demo_corpus_dir
from selector.score.run import score
from selector.score.urls import domain_of
from selector.select.build import select
from selector.train.run import train

from .conftest import quick_config

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


def test_wilson_interval_hand_computed():
    # p = 0.8, n = 10: centre (0.8 + z^2/20) / (1 + z^2/10) = 0.7167, half-width 0.2266
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert tuple(round(x, 4) for x in wilson_interval(0, 10)) == (0.0, 0.2775)
    assert tuple(round(x, 4) for x in wilson_interval(10, 10)) == (0.7225, 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_domain_of():
    assert domain_of("https://www.example.org/a?b=1") == "example.org"
    assert domain_of("http://blog.example.co.uk:8080/x") == "blog.example.co.uk"
    assert domain_of(None) is None and domain_of("not a url") is None


def test_passages_cover_the_text_in_order():
    text = " ".join(f"Sentence number {i} says something." for i in range(200))
    spans = passages(text, target_chars=100)
    assert 1 < len(spans) <= 24
    assert all(0 <= a < b <= len(text) for a, b in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    assert passages("") == []


# --- an audit of the demo, with the quick classifier (hash embedder) -----------------------------------------


@pytest.fixture(scope="module")
def demo_manifest(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("auditdemo")
    inputs = d / "in"
    inputs.mkdir()
    for f in sorted(demo_corpus_dir().glob("*.jsonl")):
        shutil.copy(f, inputs / f.name)
    cfg = quick_config()
    for t in ("honesty", "cooperation", "cooperative_ai"):
        cfg = cfg.replace_theme(t, target_share=0.1, threshold=0.05)
    train([inputs], cfg, d / "clf", progress=lambda m: None)
    score([inputs], d / "run", d / "clf", cfg, progress=lambda m: None)
    select(d / "run", d / "run", cfg, progress=lambda m: None)
    return d / "run" / "manifest"


def test_audit_draws_a_stratified_seeded_sample_with_evidence(demo_manifest, tmp_path):
    info = audit(demo_manifest, tmp_path / "a", sample_size=30, progress=lambda m: None)
    sample = pl.read_parquet(tmp_path / "a" / "sample.parquet")
    docs = pl.read_parquet(demo_manifest / "documents.parquet")
    streams = [
        s for s in ("honesty", "cooperation", "cooperative_ai") if docs.filter(pl.col("theme") == s).height
    ]
    sel = sample.filter(pl.col("kind") == "selected")
    assert sample.height <= 30 and set(sel["stream"]) == set(streams)
    # selected rows are really selected, for their stream, with their repeats
    joined = sel.join(docs, left_on=["doc_id", "stream"], right_on=["doc_id", "theme"], how="inner")
    assert joined.height == sel.height and (joined["repeats"] == joined["repeats_right"]).all()
    # rejects are below the threshold and in no stream
    manifest = json.loads((demo_manifest / "manifest.json").read_text())
    rej = sample.filter(pl.col("kind") == "near_threshold_reject")
    assert rej.height > 0 and not set(rej["doc_id"]) & set(docs["doc_id"])
    for r in rej.iter_rows(named=True):
        assert r[f"score_{r['stream']}"] < manifest["thresholds"][r["stream"]]
    # every bucket with documents is sampled; the strata sizes add up to the stream
    for s in streams:
        st = info["strata"][s]["buckets"]
        assert sum(b["documents"] for b in st.values()) == docs.filter(pl.col("theme") == s).height
        assert set(sel.filter(pl.col("stream") == s)["bucket"]) == {
            b for b, v in st.items() if v["documents"]
        }
    # texts come from the input shards
    originals = {
        json.loads(line)["id"]: json.loads(line)["text"] for f in demo_corpus_dir().glob("*.jsonl")
        for line in f.read_text().splitlines() if line.strip()
    }  # fmt: skip
    assert all(originals[d] == t for d, t in zip(sample["doc_id"], sample["text"], strict=True))
    page = json.loads((tmp_path / "a" / "page.json").read_text())
    assert [d["doc_id"] for d in page["documents"]] == sample["doc_id"].to_list()
    first = page["documents"][0]
    assert len(first["seeds"][first["stream"]]) == 3 and first["passages"]
    assert all(0 <= p["start"] < p["end"] <= len(first["text"]) for p in first["passages"])
    assert set(page["charts"]) == {"score_hist", "tokens_by_domain", "yield", "repetition"}
    assert sum(page["charts"]["score_hist"]["honesty"]["counts"]) == manifest["base"]["documents"]
    assert (tmp_path / "a" / "index.html").exists() and (tmp_path / "a" / "sample.csv").exists()
    # seeded: the same sample again; another seed, another sample
    audit(demo_manifest, tmp_path / "b", sample_size=30, evidence=False, progress=lambda m: None)
    assert pl.read_parquet(tmp_path / "b" / "sample.parquet").equals(sample)
    audit(demo_manifest, tmp_path / "c", sample_size=30, seed=5, evidence=False, progress=lambda m: None)
    assert not pl.read_parquet(tmp_path / "c" / "sample.parquet").equals(sample)


def _hand_audit(d: Path) -> None:
    """An audit directory written by hand: stream honesty, three buckets of 10 documents each."""
    d.mkdir()
    rows = []
    for b, n in (("near threshold", 4), ("middle", 4), ("top", 4)):
        rows += [
            {"doc_id": f"{b[0]}{i}", "stream": "honesty", "kind": "selected", "bucket": b} for i in range(n)
        ]
    rows += [
        {"doc_id": f"r{i}", "stream": "honesty", "kind": "near_threshold_reject", "bucket": "below threshold"}
        for i in range(2)
    ]
    pl.DataFrame(rows).with_columns(score_honesty=pl.lit(0.5)).write_parquet(d / "sample.parquet")
    strata = {
        "honesty": {
            "buckets": {
                "near threshold": {"documents": 10, "unique_tokens": 1000, "stream_tokens": 2000},
                "middle": {"documents": 10, "unique_tokens": 2000, "stream_tokens": 6000},
                "top": {"documents": 10, "unique_tokens": 3000, "stream_tokens": 12000},
            }
        }
    }
    (d / "audit.json").write_text(json.dumps({"themes": THEMES, "strata": strata}))


def test_precision_report_hand_computed(tmp_path):
    _hand_audit(tmp_path / "a")
    lines = ["doc_id,theme,label,reviewer,time"]
    lines += [f"n{i},honesty,off_theme,ana,2026-11-30T03:00:00Z" for i in range(4)]  # near threshold: 0 of 4
    lines += [
        f"m{i},honesty,{'on_theme' if i < 3 else 'off_theme'},ana,t" for i in range(4)
    ]  # middle: 3 of 4
    lines += [f"t{i},honesty,on_theme,ana,t" for i in range(4)]  # top: 4 of 4
    lines += ["t0,cooperation,off_theme,ana,t", "m3,honesty,unsure,bo,t"]  # another theme; unsure ignored
    lines += ["r0,honesty,on_theme,ana,t", "r1,honesty,off_theme,ana,t", "zz,honesty,on_theme,ana,t"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    rep = precision_report(tmp_path / "a", tmp_path / "labels.csv", target_precision=0.8)
    h = rep["themes"]["honesty"]
    # the later "unsure" for m3 is dropped, so its off_theme label stands: middle is 3 of 4
    assert (h["on"], h["labelled"], h["precision"]) == (7, 12, round(7 / 12, 4))
    lo, hi = wilson_interval(7, 12)
    assert (h["low"], h["high"]) == (round(lo, 4), round(hi, 4))
    b = h["buckets"]
    assert (b["near threshold"]["on"], b["middle"]["on"], b["top"]["on"]) == (0, 3, 4)
    # near threshold: Wilson(0, 4) = (0, 0.49) lies below 0.8; middle (0.30, 0.95) and top (0.51, 1) do not
    assert h["below_target"] == ["near threshold"]
    assert h["estimated_on_theme_documents"] == 10 * 0 + 10 * 0.75 + 10 * 1.0
    assert h["estimated_on_theme_unique_tokens"] == 1000 * 0 + 2000 * 0.75 + 3000 * 1.0
    assert h["near_threshold_rejects"]["on"] == 1 and h["near_threshold_rejects"]["labelled"] == 2
    assert rep["labels_not_in_sample"] == 1  # zz
    # the same file is training input: `selector train --labels` reads it (unsure rows ignored)
    parsed = read_label_csv(tmp_path / "labels.csv", THEMES)
    assert (
        parsed[("t0", "honesty")] == 1
        and parsed[("t0", "cooperation")] == 0
        and parsed[("m3", "honesty")] == 0
    )


def test_precision_report_needs_an_audit(tmp_path):
    from selector.core.errors import SelectorError

    (tmp_path / "labels.csv").write_text("doc_id,theme,label\n")
    with pytest.raises(SelectorError, match=r"holds no audit .* Run `selector audit MANIFEST --out"):
        precision_report(tmp_path, tmp_path / "labels.csv")


def test_labels_exported_from_the_page_round_trip(demo_manifest, tmp_path):
    """The real audit page in headless Chromium: label two documents with the keyboard, export labels.csv,
    and feed it back to the precision report and to training."""
    pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    if shutil.which("/usr/bin/chromium") is None:
        pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from .test_audit_page import CHROMIUM, LAUNCH_ARGS, Page

    out = tmp_path / "audit"
    audit(demo_manifest, out, sample_size=12, progress=lambda m: None)
    sample = pl.read_parquet(out / "sample.parquet")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = Page(browser, (out / "index.html").as_uri())
            assert page.page.locator("[data-doc-id]").count() == sample.height
            for key in ("j", "1", "j", "2"):
                page.page.keyboard.press(key)
            rows = page.export()
            assert page.problems() == []
        finally:
            browser.close()
    assert rows[0] == ["doc_id", "theme", "label", "reviewer", "time"]
    labelled = rows[1:]
    assert [r[2] for r in labelled] == ["on_theme", "off_theme"]
    assert [r[0] for r in labelled] == sample["doc_id"].to_list()[:2]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    rep = precision_report(out, labels)
    assert sum(v["labelled"] + v["near_threshold_rejects"]["labelled"] for v in rep["themes"].values()) == 2
    parsed = read_label_csv(labels, THEMES)
    assert len(parsed) == 2
    card = train([demo_manifest.parent.parent / "in"], quick_config(), tmp_path / "clf2", labels_path=labels,
                 progress=lambda m: None)  # fmt: skip
    assert card["trained_on"]["human_labels"] == 2


def test_weighted_precision_corrects_the_domain_round_robin():
    from selector.audit.report import _weighted_prec

    # a bucket of 11 documents: 9 from one site (one drawn, weight 9) and 2 singletons (weight 1 each)
    r = _weighted_prec([True, False, False], [9.0, 1.0, 1.0])
    assert r["precision"] == round(9 / 11, 4) and r["effective_n"] == round(121 / 83, 2)
    lo, hi = wilson_interval(9 / 11 * 121 / 83, 121 / 83)
    assert (r["low"], r["high"]) == (round(lo, 4), round(hi, 4))
    # equal weights: the plain Wilson interval
    assert _weighted_prec([True, False], [1.0, 1.0])["low"] == round(wilson_interval(1, 2)[0], 4)


def test_audit_refuses_a_directory_holding_other_files(demo_manifest, tmp_path):
    """Bug: `audit --out DIR` wrote its page into any directory (a run's own, say), mixed with what was there;
    `select` and `materialize` refuse the like."""
    out = tmp_path / "audit"
    audit(demo_manifest, out, sample_size=6, evidence=False, progress=lambda m: None)
    (out / "labels.csv").write_text("doc_id,theme,label\n")  # the page's own export may sit beside it
    (out / "labels (1).csv").write_text("doc_id,theme,label\n")
    audit(demo_manifest, out, sample_size=6, evidence=False, progress=lambda m: None)
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(SelectorError) as e:
        audit(demo_manifest, out, sample_size=6, evidence=False, progress=lambda m: None)
    assert str(e.value) == (
        f"{out} holds my_notes.txt, which `selector audit` did not write and the review page would be mixed "
        f"with. Move it out of {out}, or choose another --out."
    )
    with pytest.raises(SelectorError, match=r"run holds manifest/documents.parquet and \d+ more"):
        audit(demo_manifest, demo_manifest.parent, sample_size=6, evidence=False, progress=lambda m: None)


def test_an_audit_that_draws_nothing_writes_an_empty_page(demo_manifest, tmp_path):
    """Bug: an audit whose sample is empty (streams with no document, as when nothing qualifies) failed with
    polars' SchemaError: the empty sample's `row` column was a string."""
    cfg = quick_config()
    for t in ("honesty", "cooperation", "cooperative_ai"):
        cfg = cfg.replace_theme(t, target_share=0.0, threshold=1.0)
    select(demo_manifest.parent, tmp_path / "empty", cfg, progress=lambda m: None)
    info = audit(
        tmp_path / "empty" / "manifest",
        tmp_path / "a",
        sample_size=6,
        evidence=False,
        progress=lambda m: None,
    )
    assert pl.read_parquet(tmp_path / "a" / "sample.parquet").height == 0
    assert (tmp_path / "a" / "index.html").is_file() and info["sample_size"] == 0
