from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import polars as pl
import pytest

from selector.cli import parse_tokens
from selector.core.config import Config
from selector.core.errors import ManifestError
from selector.select.build import expected_repeats, select, whole_copies
from selector.select.manifest import load_manifest

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


def _fingerprint(source: str, p: int) -> dict:
    st = Path(source).stat() if Path(source).exists() else None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns} if st else {"size": 100 + p, "mtime_ns": 7}


def make_scores(
    root: Path, rows: list[dict], thresholds: dict[str, float] | None = None, parts: int = 2
) -> Path:
    """A finished scores directory written by hand: rows need doc_id, n_tokens and score_<theme>."""
    sdir = root / "scores"
    sdir.mkdir(parents=True)
    thresholds = thresholds or dict.fromkeys(THEMES, 0.5)
    shards = []
    for p in range(parts):
        part = f"part-{p:05d}"
        mine = rows[p::parts]
        source = str(root / f"shard-{p}.jsonl")
        for r in mine:
            if "text" in r:  # a real shard behind the scores, for the steps that read texts back
                r["n_tokens"] = -(-len(r["text"]) // 4)
        if any("text" in r for r in mine):
            Path(source).write_text(
                "".join(json.dumps({"id": r["doc_id"], "text": r["text"]}) + "\n" for r in mine)
            )
        df = pl.DataFrame(
            {
                "doc_id": [r["doc_id"] for r in mine],
                "source": [source] * len(mine),
                "row": list(range(len(mine))),
                "url": [r.get("url", f"https://{r['doc_id']}.example.org/page") for r in mine],
                "n_chars": [len(r["text"]) if "text" in r else 4 * r["n_tokens"] for r in mine],
                "n_tokens": [r["n_tokens"] for r in mine],
                "domain": [r.get("domain", f"{r['doc_id']}.example.org") for r in mine],
                "crawl_date": [r.get("crawl_date", "2021-05-01T00:00:00Z") for r in mine],
                "warc_record_id": [None] * len(mine),
                "offset": [None] * len(mine),
                "payload_digest": [None] * len(mine),
                "content_sha1": [r["doc_id"] for r in mine],
                "lang": ["en"] * len(mine),
                "generated_pattern": [r.get("generated_pattern") for r in mine],
                **{f"score_{t}": [float(r.get(f"score_{t}", 0.0)) for r in mine] for t in THEMES},
            },
            schema_overrides={
                **{f"score_{t}": pl.Float32 for t in THEMES},
                "warc_record_id": pl.String,
                "offset": pl.Int64,
                "payload_digest": pl.String,
                "generated_pattern": pl.String,
            },
        )
        df.write_parquet(sdir / f"{part}.parquet")
        stats = {
            "part": part,
            "documents_in": len(mine) + 1,
            "scored": len(mine),
            "skipped": 1,
            "skipped_by_reason": {"empty_text": 1},
            # the real file's fingerprint where the test wrote one (steps that read texts back check it)
            "signature": {"shard": {"source": source, **_fingerprint(source, p)}},
        }
        (sdir / f"{part}.stats.json").write_text(json.dumps(stats))
        (sdir / f"{part}.done").write_text("{}")
        shards.append({"part": part, "source": source, "label": f"shard-{p}.jsonl", "format": "jsonl"})
    meta = {
        "parts": {s["part"]: s["source"] for s in shards},
        "shards": shards,
        "thresholds": thresholds,
        "calibrated_thresholds": thresholds,
    }
    (sdir / "_inputs.json").write_text(json.dumps(meta))
    return sdir


def docs(
    n: int, theme: str, score: float = 0.9, tokens: int = 100, prefix: str = "d", **extra: float
) -> list[dict]:
    return [
        {"doc_id": f"{prefix}{i:03d}", "n_tokens": tokens, f"score_{theme}": score - 0.001 * i, **extra}
        for i in range(n)
    ]


def background(n: int, tokens: int = 100) -> list[dict]:
    return [{"doc_id": f"bg{i:04d}", "n_tokens": tokens} for i in range(n)]


def sel_cfg(cfg: Config, **select_changes: object) -> Config:
    """No targets unless a test sets them; deduplication off (it reads texts back from the shards, which most
    of these hand-written scores do not have; the dedup tests write real ones)."""
    cfg = cfg.replace("select", dedup=False, near_dup_threshold=1.0)
    c = cfg.replace_theme("honesty", target_share=0.0, target_tokens=0)
    c = c.replace_theme("cooperation", target_share=0.0, target_tokens=0)
    c = c.replace_theme("cooperative_ai", target_share=0.0, target_tokens=0)
    return c.replace("select", **select_changes) if select_changes else c


def run_select(tmp_path: Path, cfg: Config, rows: list[dict], force: bool = False, name: str = "run") -> dict:
    root = tmp_path / name
    make_scores(root, rows)
    return select(root, root, cfg, force=force, progress=lambda m: None)


def stream(m: dict, theme: str) -> dict:
    return next(s for s in m["streams"] if s["theme"] == theme)


# --- the arithmetic, against hand-computed values ----------------------------------------------------------


def test_expected_repeats_uniform_scales_to_target():
    e, capped = expected_repeats(np.array([100, 300]), np.array([0.9, 0.6]), 1000, 4, "uniform")
    np.testing.assert_allclose(e, [2.5, 2.5])
    assert not capped


def test_expected_repeats_by_score_water_fills_under_the_cap():
    # proportional to score: 600 / (100 * (1 + .5 + .5)) = 3 -> [3, 1.5, 1.5]
    e, _ = expected_repeats(np.array([100, 100, 100]), np.array([1.0, 0.5, 0.5]), 600, 4, "score")
    np.testing.assert_allclose(e, [3.0, 1.5, 1.5])
    # cap 2.5: the first is capped, the 350 tokens left go to the other two -> 1.75 each
    e, capped = expected_repeats(np.array([100, 100, 100]), np.array([1.0, 0.5, 0.5]), 600, 2.5, "score")  # type: ignore[arg-type]
    np.testing.assert_allclose(e, [2.5, 1.75, 1.75])
    assert not capped


def test_expected_repeats_reports_a_binding_cap():
    e, capped = expected_repeats(np.array([100, 200]), np.array([0.9, 0.8]), 5000, 4, "score")
    np.testing.assert_allclose(e, [4, 4])
    assert capped


def test_whole_copies_is_systematic():
    e = np.array([1.5, 1.5, 1.5, 1.5, 0.25, 0.25, 0.25, 0.25])
    order = np.arange(8)
    c = whole_copies(e, 0.3, order)
    assert c.sum() == round(e.sum())  # 7: the fractional parts add to 3
    assert set(c[:4]) <= {1, 2} and set(c[4:]) <= {0, 1}
    # hand-computed: the running fractional sums 0.5, 1, 1.5, 2, 2.25, 2.5, 2.75, 3 cross 0.7, 1.7 and 2.7
    # (integers minus the offset 0.3) at the 2nd, 4th and 7th document, which get the extra copies
    assert c.tolist() == [1, 2, 1, 2, 0, 0, 1, 0]


# --- selection end to end on hand-written scores -----------------------------------------------------------


def test_budget_repeats_and_weights(tmp_path, cfg):
    c = sel_cfg(cfg, rule="uniform").replace_theme("honesty", target_tokens=2500)
    m = run_select(tmp_path, c, docs(10, "honesty") + background(30))
    s = stream(m, "honesty")
    assert (s["unique_documents"], s["unique_tokens"], s["target_tokens"]) == (10, 1000, 2500)
    assert s["achieved_tokens"] == 2500 and s["epochs"] == 2.5 and s["effective_epochs"] == 3.5
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert sorted(d["repeats"].to_list()) == [2] * 5 + [3] * 5
    assert (d["weight"] == d["repeats"] + 1).all()
    assert d["reason"][0].startswith("honesty: score 0.9")
    assert m["base"] == {"in_mix": True, "documents": 40, "tokens": 4000, "epochs": 1.0, "run_tokens": 4000}
    assert [x["skipped"] for x in m["inputs"]] == [1, 1]


def test_cap_binds_and_the_shortfall_is_reported(tmp_path, cfg):
    c = sel_cfg(cfg).replace_theme("honesty", target_tokens=10_000)
    m = run_select(tmp_path, c, docs(5, "honesty") + background(5))
    s = stream(m, "honesty")
    assert s["capped"] and s["achieved_tokens"] == 2000 and s["shortfall_tokens"] == 8000
    assert s["shortfall_share"] == 0.8
    assert any("max_repeats = 4 binds" in w for w in m["selection"]["warnings"])
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert (d["repeats"] == 4).all() and d["reason"].str.contains("cap reached").all()


def test_refuses_past_hard_max_epochs_unless_forced(tmp_path, cfg):
    c = sel_cfg(cfg, max_repeats=20).replace_theme("honesty", target_tokens=10_000)
    rows = docs(5, "honesty") + background(5)
    with pytest.raises(
        ManifestError,
        match=r"seen 21 times \(20 repeats \+ 1 base pass\(es\)\), past select.hard_max_epochs = 16.*--force",
    ):
        run_select(tmp_path, c, rows)
    assert not (tmp_path / "run" / "manifest").exists()
    m = run_select(tmp_path, c, rows, force=True, name="forced")
    assert stream(m, "honesty")["epochs"] == 20 and m["selection"]["forced"]


def test_higher_scores_get_more_repeats(tmp_path, cfg):
    rows = [
        {"doc_id": f"h{i}", "n_tokens": 100, "score_honesty": s} for i, s in enumerate([0.95, 0.9, 0.6, 0.55])
    ]
    c = sel_cfg(cfg, rule="score").replace_theme("honesty", target_tokens=1000)
    run_select(tmp_path, c, rows)
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet").sort("doc_id")
    reps = dict(zip(d["doc_id"], d["repeats"], strict=True))
    assert reps["h0"] >= reps["h2"] and reps["h1"] >= reps["h3"] and reps["h0"] > reps["h3"]


def test_sampler_is_seeded_and_pinned(tmp_path, cfg):
    rows = docs(12, "honesty")
    c = sel_cfg(cfg, rule="uniform", seed=0).replace_theme("honesty", target_tokens=1800)
    run_select(tmp_path, c, rows, name="a")
    d = pl.read_parquet(tmp_path / "a" / "manifest" / "documents.parquet").sort("doc_id")
    assert d["repeats"].to_list() == [1, 2, 2, 2, 1, 2, 2, 2, 1, 1, 1, 1]  # 6 of 12 drawn twice: 1800 tokens
    run_select(tmp_path, c.replace("select", seed=1), rows, name="b")
    d1 = pl.read_parquet(tmp_path / "b" / "manifest" / "documents.parquet").sort("doc_id")
    assert d1["repeats"].sum() == d["repeats"].sum() and d1["repeats"].to_list() != d["repeats"].to_list()


def test_target_below_unique_tokens_draws_a_subset(tmp_path, cfg):
    c = sel_cfg(cfg, rule="uniform").replace_theme("honesty", target_tokens=400)
    m = run_select(tmp_path, c, docs(10, "honesty"))
    s = stream(m, "honesty")
    assert s["unique_documents"] == 4 and s["achieved_tokens"] == 400 and s["epochs"] == 1.0
    rej = pl.read_parquet(tmp_path / "run" / "manifest" / "rejected.parquet")
    assert rej.height == 6 and rej["reason"].str.starts_with("not drawn").all()


def test_a_document_joins_only_its_best_stream(tmp_path, cfg):
    rows = [
        {"doc_id": "both", "n_tokens": 100, "score_honesty": 0.7, "score_cooperation": 0.9},
        {"doc_id": "hon", "n_tokens": 100, "score_honesty": 0.8},
    ]
    m = run_select(tmp_path, sel_cfg(cfg), rows)
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert dict(zip(d["doc_id"], d["theme"], strict=True)) == {"both": "cooperation", "hon": "honesty"}
    rej = pl.read_parquet(tmp_path / "run" / "manifest" / "rejected.parquet")
    assert rej.to_dicts()[0]["reason"] == "assigned to cooperation: it scores higher there (0.9 > 0.7)"
    # no target: each qualifying document once
    assert stream(m, "honesty")["epochs"] == 1.0


def test_ai_risk_is_reported_never_upsampled_and_can_be_excluded(tmp_path, cfg):
    rows = docs(4, "cooperative_ai", prefix="ok") + docs(
        2, "cooperative_ai", prefix="risk", score_ai_risk=0.8
    )
    c = sel_cfg(cfg, rule="uniform").replace_theme("cooperative_ai", target_tokens=1200)
    m = run_select(tmp_path, c, rows)
    assert [s["theme"] for s in m["streams"]] == ["honesty", "cooperation", "cooperative_ai"]
    s = stream(m, "cooperative_ai")
    assert s["ai_risk_documents"] == 2 and s["ai_risk_tokens"] == 400  # 2 documents x 100 tokens x 2 repeats
    m2 = run_select(tmp_path, c.replace("select", exclude_above={"ai_risk": 0.5}), rows, name="ex")
    s2 = stream(m2, "cooperative_ai")
    assert s2["ai_risk_tokens"] == 0 and s2["unique_documents"] == 4
    rej = pl.read_parquet(tmp_path / "ex" / "manifest" / "rejected.parquet")
    assert rej["reason"].to_list() == ["excluded: ai_risk score 0.8 >= 0.5"] * 2


def test_top_fraction_and_total_tokens_auto(tmp_path, cfg):
    c = sel_cfg(cfg, rule="uniform").replace_theme("honesty", top_fraction=0.1, target_share=0.2)
    rows = [{"doc_id": f"x{i:02d}", "n_tokens": 100, "score_honesty": i / 100} for i in range(50)]
    m = run_select(tmp_path, c, rows)
    s = stream(m, "honesty")
    assert s["unique_documents"] == 5  # the top 10% of 50
    # the run is the base once plus a stream of 20% of it: 5000 / 0.8 = 6250, so the target is 1250
    assert s["target_tokens"] == 1250
    assert m["total_tokens"] == 5000 + s["achieved_tokens"]


def test_no_base_mix_weights_are_repeats(tmp_path, cfg):
    c = sel_cfg(cfg, base_in_mix=False, total_tokens=10_000).replace_theme("honesty", target_tokens=300)
    run_select(tmp_path, c, docs(3, "honesty"))
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert (d["weight"] == d["repeats"]).all()


def test_manifest_is_byte_identical_when_rebuilt(tmp_path, cfg, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    c = sel_cfg(cfg).replace_theme("honesty", target_tokens=2000)
    root = tmp_path / "run"
    make_scores(root, docs(8, "honesty") + docs(4, "cooperation", prefix="c") + background(20))
    select(root, root / "a", c, progress=lambda m: None)
    select(root, root / "b", c, progress=lambda m: None)
    files = sorted(p.name for p in (root / "a" / "manifest").iterdir())
    assert files == ["documents.parquet", "manifest.json", "rejected.parquet", "streams.parquet"]
    for f in files:
        assert (root / "a" / "manifest" / f).read_bytes() == (root / "b" / "manifest" / f).read_bytes(), f
    mdir, m = load_manifest(root / "a")
    assert mdir == (root / "a" / "manifest").resolve() and m["created_at"] == "2023-11-14T22:13:20Z"
    assert m["config_hash"] == c.hash() and m["format"] == "selector-manifest/1"


def test_incomplete_scores_are_refused(tmp_path, cfg):
    root = tmp_path / "run"
    sdir = make_scores(root, docs(4, "honesty"))
    (sdir / "part-00001.done").unlink()
    with pytest.raises(ManifestError, match=r"incomplete: 1 of 2 part\(s\) unfinished \(part-00001\)"):
        select(root, root, cfg)


def test_parse_tokens():
    assert parse_tokens("2B") == 2_000_000_000
    assert parse_tokens("1.5t") == 1_500_000_000_000
    assert parse_tokens("500M") == 500_000_000
    assert parse_tokens("1e6") == 1_000_000 and parse_tokens("1_000") == 1000
    with pytest.raises(click.BadParameter, match="not a token count"):
        parse_tokens("lots")


def test_an_explicit_total_sets_the_base_mix_passes(tmp_path, cfg):
    c = sel_cfg(cfg, rule="uniform", total_tokens=10_000).replace_theme("honesty", target_tokens=2500)
    m = run_select(tmp_path, c, docs(10, "honesty") + background(30))
    # the base (4,000 tokens) fills the 7,500 tokens the stream leaves: 1.875 passes
    assert m["base"]["epochs"] == 1.875 and m["base"]["run_tokens"] == 7500
    s = stream(m, "honesty")
    assert s["effective_epochs"] == 2.5 + 1.875
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert (d["weight"] == d["repeats"] + 1.875).all()
    assert any("1.88 passes over the scored corpus" in w for w in m["selection"]["warnings"])
    small = sel_cfg(cfg, total_tokens=1000).replace_theme("honesty", target_tokens=2500)
    with pytest.raises(ManifestError, match=r"the streams hold 2,500 tokens, more than --total-tokens 1,000"):
        run_select(tmp_path, small, docs(10, "honesty"), name="small")


def test_an_empty_stream_reports_its_whole_target_short(tmp_path, cfg):
    c = sel_cfg(cfg).replace_theme("honesty", target_tokens=1000, threshold=0.99)
    m = run_select(tmp_path, c, docs(5, "honesty"))
    s = stream(m, "honesty")
    assert (s["achieved_tokens"], s["shortfall_tokens"], s["shortfall_share"]) == (0, 1000, 1.0)
    assert any("no document reaches the threshold 0.990" in w for w in m["selection"]["warnings"])


def test_candidates_count_excluded_documents(tmp_path, cfg):
    rows = docs(4, "honesty", prefix="ok") + docs(2, "honesty", prefix="risk", score_ai_risk=0.9)
    m = run_select(tmp_path, sel_cfg(cfg, exclude_above={"ai_risk": 0.5}), rows)
    s = stream(m, "honesty")
    assert (s["candidates"], s["unique_documents"]) == (6, 4)


def test_auto_total_keeps_the_shares_of_streams_that_reach_them(tmp_path, cfg):
    c = sel_cfg(cfg, rule="uniform").replace_theme("honesty", target_share=0.5)
    c = c.replace_theme("cooperation", target_share=0.1)
    rows = docs(10, "honesty") + docs(10, "cooperation", prefix="c") + background(20)
    m = run_select(tmp_path, c, rows)
    h, co = stream(m, "honesty"), stream(m, "cooperation")
    # honesty cannot reach half the run (4 x 1,000 tokens at most): total = (4,000 + 4,000) / (1 - 0.1)
    assert h["achieved_tokens"] == 4000 and h["capped"]
    assert co["target_tokens"] == round(0.1 * 8000 / 0.9)
    assert abs(co["achieved_tokens"] / m["total_tokens"] - 0.1) < 0.01


def test_auto_thresholds_come_from_the_classifier_not_the_scoring_config(tmp_path, cfg):
    root = tmp_path / "run"
    sdir = make_scores(root, docs(4, "honesty"))
    meta = json.loads((sdir / "_inputs.json").read_text())
    meta["thresholds"] = dict.fromkeys(THEMES, 0.95)  # what the scoring config said
    meta["calibrated_thresholds"] = dict.fromkeys(THEMES, 0.2)  # what the classifier calibrated
    (sdir / "_inputs.json").write_text(json.dumps(meta))
    m = select(root, root, sel_cfg(cfg), progress=lambda m: None)
    assert m["thresholds"]["honesty"] == 0.2 and stream(m, "honesty")["unique_documents"] == 4
    del meta["calibrated_thresholds"]
    (sdir / "_inputs.json").write_text(json.dumps(meta))
    with pytest.raises(
        ManifestError, match=r'threshold is "auto" but the classifier .* no calibrated threshold'
    ):
        select(root, root, sel_cfg(cfg), progress=lambda m: None)


def test_exact_duplicates_collapse_to_the_best_scoring(tmp_path, cfg):
    rows = [
        {"doc_id": "a", "text": "Tell the truth, even when it costs you.", "score_honesty": 0.7},
        {"doc_id": "b", "text": "TELL the truth -- even when it costs you!", "score_honesty": 0.9},
        {"doc_id": "c", "text": "tell the truth even when it costs you", "score_cooperation": 0.8},
        {"doc_id": "d", "text": "Keep your promises to your neighbours.", "score_honesty": 0.6},
    ]
    m = run_select(tmp_path, sel_cfg(cfg, dedup=True), rows)
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert sorted(d["doc_id"]) == ["b", "d"]
    rej = pl.read_parquet(tmp_path / "run" / "manifest" / "rejected.parquet")
    reasons = dict(zip(rej["doc_id"], rej["reason"], strict=True))
    assert reasons["a"] == reasons["c"] == "duplicate_of:b (exact, normalized text)"
    assert m["selection"]["duplicates_removed"] == {"exact": 2, "near": 0}


PARAGRAPH = (
    "When the bakery on our street burned down, the neighbours organised a rota so that the owners could keep "
    "selling bread from a borrowed van. Nobody was paid, nobody kept score, and within a month the whole "
    "street had learned the names of people they had passed for years without a word. "
) + " ".join(f"On day {i} the rota had {i % 7 + 2} volunteers and sold {30 + i} loaves." for i in range(40))


def test_minhash_estimates_jaccard():
    from selector.select.dedup import _shingles, minhash_signature

    a, b = PARAGRAPH, PARAGRAPH.replace("borrowed van", "rented van")
    exact = len(set(_shingles(a)) & set(_shingles(b))) / len(set(_shingles(a)) | set(_shingles(b)))
    est = float((minhash_signature(a) == minhash_signature(b)).mean())
    assert 0.9 < exact < 1 and abs(est - exact) < 0.06  # 128 permutations: standard error about 0.02
    assert (minhash_signature(a) == minhash_signature(a)).all()
    assert (
        float((minhash_signature(a) == minhash_signature("an unrelated text about choirs " * 5)).mean()) < 0.1
    )


def test_near_duplicates_are_found_with_minhash(tmp_path, cfg):
    rows = [
        {"doc_id": "orig", "text": PARAGRAPH, "score_cooperation": 0.9},
        {"doc_id": "copy", "text": PARAGRAPH.replace("borrowed van", "rented van"), "score_cooperation": 0.8},
        {"doc_id": "other", "text": "A different story about a choir that shares its rehearsal room. " * 8,
         "score_cooperation": 0.85},
    ]  # fmt: skip
    c = sel_cfg(cfg).replace("select", dedup=True, near_dup_threshold=0.8)
    m = run_select(tmp_path, c, rows, name="near")
    d = pl.read_parquet(tmp_path / "near" / "manifest" / "documents.parquet")
    assert sorted(d["doc_id"]) == ["orig", "other"]
    rej = pl.read_parquet(tmp_path / "near" / "manifest" / "rejected.parquet")
    assert rej.row(0, named=True)["reason"] == "duplicate_of:orig (near, MinHash Jaccard >= 0.8)"
    assert m["selection"]["duplicates_removed"] == {"exact": 0, "near": 1}


def test_domain_cap_keeps_one_site_from_dominating(tmp_path, cfg):
    big = [{"doc_id": f"big{i}", "n_tokens": 100, "score_honesty": 0.9 - 0.01 * i, "domain": "bigsite.org"}
           for i in range(5)]  # fmt: skip
    small = [{"doc_id": f"s{i}", "n_tokens": 100, "score_honesty": 0.5} for i in range(5)]
    m = run_select(tmp_path, sel_cfg(cfg, max_domain_share=0.2, domain_cap_min_documents=0), big + small)
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    # counted against what the stream keeps: with 2 of its documents the site would hold 200 of 700 tokens
    # (29%), with 1 it holds 100 of 600 (17%), under the cap; its best document is the one that stays
    assert sorted(x for x in d["doc_id"] if x.startswith("big")) == ["big0"]
    rej = pl.read_parquet(tmp_path / "run" / "manifest" / "rejected.parquet")
    assert sorted(rej["doc_id"]) == ["big1", "big2", "big3", "big4"]
    assert set(rej["reason"]) == {
        "domain_cap: bigsite.org would hold 50.0% of the honesty stream's unique tokens "
        "(select.max_domain_share = 0.2)"
    }
    top = m["domains"]["honesty"]["top"][0]
    assert top == {"domain": "bigsite.org", "tokens": 100, "share": round(100 / 600, 4)}


def test_organic_figures_and_options(tmp_path, cfg):
    rows = [
        {"doc_id": "old", "n_tokens": 100, "score_honesty": 0.9, "crawl_date": "2019-07-17T13:39:42Z"},
        {"doc_id": "new", "n_tokens": 300, "score_honesty": 0.8, "crawl_date": "2024-05-18T01:58:10Z"},
        {"doc_id": "nodate", "n_tokens": 100, "score_honesty": 0.7, "crawl_date": None},
        {
            "doc_id": "bot",
            "n_tokens": 100,
            "score_honesty": 0.6,
            "generated_pattern": "as_an_ai_language_model",
        },
    ]
    m = run_select(tmp_path, sel_cfg(cfg), rows)
    o = m["organic"]["streams"]["honesty"]
    # 600 tokens: 500 with URL and date, 100 crawled before 2022-12 (the bot's date is 2021 by default: 200)
    assert o == {"provenance_share": round(500 / 600, 4), "pre_llm_share": round(200 / 600, 4),
                 "generated_flagged_documents": 1, "generated_flagged_tokens": 100}  # fmt: skip
    m2 = run_select(
        tmp_path, sel_cfg(cfg, require_provenance=True, exclude_generated=True), rows, name="strict"
    )
    d = pl.read_parquet(tmp_path / "strict" / "manifest" / "documents.parquet")
    assert sorted(d["doc_id"]) == ["new", "old"]
    rej = pl.read_parquet(tmp_path / "strict" / "manifest" / "rejected.parquet")
    reasons = dict(zip(rej["doc_id"], rej["reason"], strict=True))
    assert reasons["nodate"].startswith("no_provenance")
    assert reasons["bot"] == "generated_text: matches as_an_ai_language_model (select.exclude_generated)"
    assert m2["organic"]["streams"]["honesty"]["provenance_share"] == 1.0


def test_dedup_tells_documents_apart_by_place_not_id(tmp_path, cfg):
    # the same id in two shards (overlapping dumps), same text: one is a duplicate of the other
    rows = [
        {"doc_id": "x", "text": PARAGRAPH, "score_honesty": 0.9},
        {"doc_id": "x", "text": PARAGRAPH, "score_honesty": 0.8},
    ]
    m = run_select(tmp_path, sel_cfg(cfg, dedup=True), rows)
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert d.height == 1 and d["score_honesty"][0] == pytest.approx(0.9)
    assert m["selection"]["duplicates_removed"]["exact"] == 1


def test_documents_only_on_a_stance_theme_are_not_deduplicated(tmp_path, cfg):
    rows = [
        {"doc_id": "a", "text": PARAGRAPH, "score_ai_risk": 0.9},
        {"doc_id": "b", "text": PARAGRAPH, "score_ai_risk": 0.8},
        {"doc_id": "c", "text": "Something else entirely, about promises.", "score_honesty": 0.9},
    ]
    m = run_select(tmp_path, sel_cfg(cfg, dedup=True), rows)
    assert m["selection"]["duplicates_removed"] == {"exact": 0, "near": 0}
    assert pl.read_parquet(tmp_path / "run" / "manifest" / "rejected.parquet").height == 0


def test_the_refusal_names_base_passes_when_the_total_is_too_large(tmp_path, cfg):
    c = sel_cfg(cfg, total_tokens=1_000_000_000).replace_theme("honesty", target_tokens=400)
    with pytest.raises(
        ManifestError, match=r"the base mix alone is read [\d,.]+ times: --total-tokens 1,000,000,000"
    ):
        run_select(tmp_path, c, docs(2, "honesty") + background(8))


def test_a_stream_emptied_by_the_rules_says_so(tmp_path, cfg):
    rows = docs(3, "honesty", crawl_date=None)
    m = run_select(tmp_path, sel_cfg(cfg, require_provenance=True), rows)
    assert any("all 3 document(s) at or above the threshold" in w for w in m["selection"]["warnings"])


def test_no_qualifying_document_with_a_huge_total_is_a_clear_error_not_a_traceback(tmp_path, cfg):
    """Bug: `select --total-tokens 1T --target-share honesty=0.01` over scores where no document qualifies
    crashed with numpy's "zero-size array to reduction operation maximum" (reps.max() of an empty stream)."""
    c = sel_cfg(cfg, total_tokens=10**12).replace_theme("honesty", target_share=0.01)
    rows = background(20)
    with pytest.raises(
        ManifestError,
        match=r"the base mix alone is read [\d,.]+ times: --total-tokens 1,000,000,000,000 over a scored corpus "
        r"of 2,000 tokens.*no document qualifies for honesty, cooperation, cooperative_ai",
    ):
        run_select(tmp_path, c, rows)
    assert not (tmp_path / "run" / "manifest").exists()
    # forced (or without the base mix), the manifest is written with empty streams and says why
    m = run_select(tmp_path, c, rows, force=True, name="forced")
    s = stream(m, "honesty")
    assert (s["unique_documents"], s["achieved_tokens"], s["shortfall_tokens"]) == (0, 0, 10**10)
    assert "stream honesty: no document reaches the threshold 0.500" in m["selection"]["warnings"]
    nb = run_select(tmp_path, c.replace("select", base_in_mix=False), rows, name="nobase")
    assert stream(nb, "honesty")["shortfall_tokens"] == 10**10
    assert pl.read_parquet(tmp_path / "nobase" / "manifest" / "documents.parquet").height == 0


def test_select_cli_reports_an_empty_selection_without_a_traceback(tmp_path):
    """Bug: the same crash through the CLI: exit 1 with a traceback instead of an `Error:` line."""
    from click.testing import CliRunner

    from selector.cli import cli

    root = tmp_path / "run"
    make_scores(root, background(20))
    args = ["select", "--scores", str(root), "--out", str(root), "--total-tokens", "1T", "--target-share",
            "honesty=0.01", "--silent"]  # fmt: skip
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and r.exception is not None and isinstance(r.exception, SystemExit)
    assert r.output.startswith("Error: the base mix alone is read 500,000,000 times")
    r = CliRunner().invoke(cli, [*args, "--no-base-mix"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{") :])
    assert "stream honesty: no document reaches the threshold 0.500" in out["warnings"]


def site_docs(n: int, site: str, prefix: str, score: float = 0.9) -> list[dict]:
    return [{"doc_id": f"{prefix}{i:03d}", "n_tokens": 100, "score_cooperative_ai": score - 0.001 * i,
             "domain": site} for i in range(n)]  # fmt: skip


def test_the_domain_cap_does_not_empty_a_stream_from_one_site(tmp_path, cfg):
    """Bug: `selector run` qualified 61 documents for cooperative_ai, all from one site, and kept 1: the cap
    (max_domain_share 0.2) removed the other 60. With no other site the cap cannot apply; it says so."""
    m = run_select(tmp_path, sel_cfg(cfg), site_docs(61, "one.example", "c") + background(20))
    s = stream(m, "cooperative_ai")
    assert (s["qualifying_documents"], s["unique_documents"]) == (61, 61)
    assert (
        "stream cooperative_ai: all 61 of its documents come from one site, one.example; the domain cap cannot "
        "apply without other sites (see the manifest's domains)"
    ) in m["selection"]["warnings"]


def test_the_domain_cap_keeps_a_floor_of_documents_and_says_what_it_dropped(tmp_path, cfg):
    """Bug (same): with one other site of one document, the cap would again leave 2 of 31 documents; it stops
    at select.domain_cap_min_documents (20) and the warning says what was lost."""
    rows = site_docs(30, "big.example", "c") + site_docs(1, "other.example", "o", score=0.5)
    m = run_select(tmp_path, sel_cfg(cfg), rows)
    s = stream(m, "cooperative_ai")
    assert s["unique_documents"] == 20
    d = pl.read_parquet(tmp_path / "run" / "manifest" / "documents.parquet")
    assert "o000" in d["doc_id"].to_list()
    assert sorted(d["doc_id"])[:19] == [f"c{i:03d}" for i in range(19)]  # the site's best documents stay
    w = m["selection"]["warnings"]
    assert (
        "stream cooperative_ai: the domain cap dropped 11 of its 31 documents (1,100 of 3,100 unique tokens) from "
        "big.example (max_domain_share 0.2, 0.5 as the stream has few sites; domain_cap_min_documents 20); see "
        "rejected.parquet"
    ) in w
    assert (
        "stream cooperative_ai: big.example still holds 95% of its unique tokens (max_domain_share 0.2): the cap "
        "keeps at least domain_cap_min_documents = 20 documents; the stream has too few other sites"
    ) in w
    rej = pl.read_parquet(tmp_path / "run" / "manifest" / "rejected.parquet")
    assert rej.height == 11 and rej["reason"][0] == (
        "domain_cap: big.example would hold 96.8% of the cooperative_ai stream's unique tokens "
        "(select.max_domain_share = 0.2, 0.5 with the stream's few sites)"
    )
    # without the floor, the cap of a two-site stream is one half: the big site keeps as many tokens as the other
    m = run_select(tmp_path, sel_cfg(cfg, domain_cap_min_documents=0), rows, name="nofloor")
    assert stream(m, "cooperative_ai")["unique_documents"] == 2
