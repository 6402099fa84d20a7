"""Audit a manifest: a stratified sample of what was selected (and of what was just left out) for people to
read and label, and precision estimates from their labels.

`audit(manifest, out_dir)` -> out_dir/index.html (the review page), sample.parquet, sample.csv, audit.json.
`precision_report(out_dir, labels_csv)` -> precision per theme and score bucket with 95% Wilson intervals,
and the estimated on-theme documents and tokens in the selection.

Sampling design (seeded, deterministic): the sample is split evenly over the streams; within a stream,
`near_fraction` of it goes to near-threshold rejects (the highest-scoring documents below the threshold
that are in no stream) and the rest evenly over three score buckets of the selected documents (tertiles
of the stream's score: "near threshold", "middle", "top"); within a bucket documents are drawn round-robin
over source domains (the first document of every domain before the second of any), in seeded order.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from selector.core.errors import ManifestError, SelectorError
from selector.core.keys import seeded_key
from selector.core.labels import read_label_csv
from selector.core.paths import foreign_files, foreign_files_message
from selector.read.back import read_back, read_config
from selector.select.manifest import load_manifest

log = logging.getLogger(__name__)

BUCKETS = ("near threshold", "middle", "top")
REJECT_BUCKET = "below threshold"
Z95 = 1.959963984540054
HIST_BINS = 40
MAX_PASSAGES = 24
SAMPLE_COLUMNS = ["doc_id", "stream", "kind", "bucket", "source", "row", "url", "domain", "n_tokens", "repeats",
                  "weight", "reason"]  # fmt: skip


def wilson_interval(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials (n may be an effective sample size);
    (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _round_robin(df: pl.DataFrame, m: int, seed: int, salt: str) -> pl.DataFrame:
    """m rows of df, the first of every domain (in seeded order) before the second of any, with
    `sample_weight` = the domain's documents in df / its documents drawn: the inverse of each document's
    chance to be drawn, so that estimates from the sample are not biased toward small sites."""
    dom = pl.col("domain").fill_null(pl.col("source"))
    keyed = df.with_columns(
        _k=pl.Series(
            [seeded_key(seed, salt, f"{s}\x00{r}") for s, r in df.select("source", "row").iter_rows()],
            dtype=pl.UInt64,
        ),  # fmt: skip
        _dom=dom,
    )
    keyed = keyed.with_columns(_rank=pl.col("_k").rank("ordinal").over("_dom"), _n_dom=pl.len().over("_dom"))
    picked = keyed.sort("_rank", "_k").head(m)
    picked = picked.with_columns(sample_weight=(pl.col("_n_dom") / pl.len().over("_dom")).cast(pl.Float64))
    return picked.drop("_k", "_dom", "_rank", "_n_dom")


def _split_even(total: int, n: int) -> list[int]:
    return [total // n + (1 if i < total % n else 0) for i in range(n)] if n else []


def _bucket_edges(scores: np.ndarray) -> tuple[float, float]:
    if len(scores) == 0:
        return 0.0, 0.0
    q1, q2 = np.quantile(scores.astype(np.float64), [1 / 3, 2 / 3])
    return float(q1), float(q2)


def _bucket_expr(col: str, edges: tuple[float, float]) -> pl.Expr:
    return (
        pl.when(pl.col(col) < edges[0])
        .then(pl.lit(BUCKETS[0]))
        .when(pl.col(col) < edges[1])
        .then(pl.lit(BUCKETS[1]))
        .otherwise(pl.lit(BUCKETS[2]))
    )


def _scores_parts(manifest: dict[str, Any], mdir: Path) -> list[Path]:
    sdir = Path(manifest.get("scores_dir") or mdir.parent / "scores")
    if not sdir.is_dir() and (mdir.parent / "scores").is_dir():
        sdir = mdir.parent / "scores"
    parts = [sdir / f"{i['part']}.parquet" for i in manifest["inputs"]]
    missing = [p for p in parts if not p.exists()]
    if missing:
        raise ManifestError(
            f"the scores behind {mdir} are gone ({missing[0]} missing). The audit needs them for evidence and "
            "near-threshold rejects: rerun `selector score` into the same directory."
        )
    return parts


def draw_sample(
    documents: pl.DataFrame,
    scores: pl.LazyFrame,
    manifest: dict[str, Any],
    n: int,
    near_fraction: float,
    seed: int,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The stratified sample (one row per document and stream) and the strata sizes behind it."""
    streams = [s["theme"] for s in manifest["streams"]]
    thresholds = manifest["thresholds"]
    docs = documents  # its `domain` column is the one selection used (urls.domain_expr)
    selected_ids = set(docs["doc_id"].to_list())
    rows: list[pl.DataFrame] = []
    strata: dict[str, Any] = {}
    for stream, n_stream in zip(streams, _split_even(n, len(streams)), strict=True):
        mine = docs.filter(pl.col("theme") == stream)
        col = f"score_{stream}"
        edges = _bucket_edges(mine[col].to_numpy())
        mine = mine.with_columns(bucket=_bucket_expr(col, edges))
        n_rej = round(n_stream * near_fraction)
        per_bucket = _split_even(n_stream - n_rej, len(BUCKETS))
        strata[stream] = {"bucket_edges": list(edges), "buckets": {}}
        for b, m in zip(BUCKETS, per_bucket, strict=True):
            cell = mine.filter(pl.col("bucket") == b)
            strata[stream]["buckets"][b] = {
                "documents": cell.height,
                "unique_tokens": int(cell["n_tokens"].sum()),
                "stream_tokens": int((cell["n_tokens"] * cell["repeats"]).sum()),
            }
            rows.append(_round_robin(cell, m, seed, f"{stream}/{b}").with_columns(kind=pl.lit("selected")))
        # near-threshold rejects: the best-scoring documents below the threshold that joined no stream
        below = (
            scores.filter(pl.col(col) < thresholds[stream])
            .sort([col, "source", "row"], descending=[True, False, False])  # ties broken by position
            .head(3 * n_rej + len(selected_ids))
            .collect()
            .filter(~pl.col("doc_id").is_in(list(selected_ids)))
            .head(3 * n_rej)
        )
        strata[stream]["rejects_pool"] = below.height
        if below.height:
            below = below.with_columns(
                theme=pl.lit(stream),
                repeats=pl.lit(0, dtype=pl.Int64),
                weight=pl.lit(1.0 if manifest["base"]["in_mix"] else 0.0),
                reason=pl.format(
                    f"not selected: {stream} score {{}} < threshold {thresholds[stream]:.3f}",
                    pl.col(col).round(3),
                ),
                bucket=pl.lit(REJECT_BUCKET),
                kind=pl.lit("near_threshold_reject"),
            )
            rows.append(_round_robin(below, n_rej, seed, f"{stream}/reject"))
    cols = [
        *SAMPLE_COLUMNS,
        "sample_weight",
        "n_chars",
        *(c for c in documents.columns if c.startswith("score_")),
    ]
    sample = (
        pl.concat(
            [r.rename({"theme": "stream"}).select(cols) for r in rows if r.height], how="vertical_relaxed"
        )
        if any(r.height for r in rows)
        else pl.DataFrame(
            schema={
                c: documents.schema.get(c, pl.Float64 if c == "sample_weight" else pl.String) for c in cols
            }
        )  # typed as the documents are, so the joins on (source, row) below work on an empty sample
    )
    order = {s: i for i, s in enumerate(streams)}
    kinds = {"selected": 0, "near_threshold_reject": 1}
    sample = (
        sample.with_columns(
            _s=pl.col("stream").replace_strict(order, return_dtype=pl.Int64),
            _k=pl.col("kind").replace_strict(kinds, return_dtype=pl.Int64),
        )
        .sort("_s", "_k", "source", "row")
        .drop("_s", "_k")
    )
    return sample, strata


def plan_sample(
    documents: pl.DataFrame, manifest: dict[str, Any], mdir: Path, plan_path: str | Path
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The page's sample from a labelling plan (selector/label/sampling.py, as `annotate --scores` draws it): each
    planned document under the stream that selected it, else the stream of the theme it was drawn for, else
    the upsampled theme it scores highest on relative to its threshold; `bucket` is the stratum it was drawn
    from and `sample_weight` 1 / pi, so that the labels give `plan_report`'s estimates."""
    pp = Path(plan_path)
    if not pp.exists():
        raise SelectorError(f"labelling plan {pp} not found; `selector annotate --scores DIR` writes one.")
    plan = pl.read_parquet(pp)
    meta_path = pp.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("population") and int(meta["population"]) != int(manifest["base"]["documents"]):
        raise SelectorError(
            f"{pp} was drawn from {meta['population']:,} scored documents, but {mdir} selected from "
            f"{manifest['base']['documents']:,}: the plan belongs to other scores."
        )
    streams = [st["theme"] for st in manifest["streams"]]
    if not streams:
        raise SelectorError(f"{mdir} has no upsampled stream to audit.")
    thr = manifest["thresholds"]
    chosen = {(d, src, r): (t, rep, w, why) for d, src, r, t, rep, w, why in documents.select(
        "doc_id", "source", "row", "theme", "repeats", "weight", "reason").iter_rows()}  # fmt: skip
    base_w = 1.0 if manifest["base"]["in_mix"] else 0.0
    rows = []
    for r in plan.iter_rows(named=True):
        tags = (r["strata"] or "").split()
        hit = chosen.get((r["doc_id"], r["source"], r["row"]))
        drawn_for = [t.split(":")[0] for t in tags if ":" in t and t.split(":")[0] in streams]
        if hit:
            stream = hit[0]
        elif drawn_for:
            stream = drawn_for[0]
        else:
            stream = max(streams, key=lambda t: (r.get(f"score_{t}") or 0.0) / max(float(thr[t]), 1e-9))
        bucket = next((t.split(":")[1] for t in tags if t.startswith(f"{stream}:")), tags[0] if tags else "")
        bucket = bucket.split(":")[-1]
        rows.append(
            {
                "doc_id": r["doc_id"], "stream": stream, "kind": "selected" if hit else "near_threshold_reject",
                "bucket": bucket, "source": r["source"], "row": r["row"], "url": r.get("url"),
                "domain": r.get("domain"), "n_tokens": r.get("n_tokens"),
                "repeats": hit[1] if hit else 0, "weight": hit[2] if hit else base_w,
                "reason": hit[3] if hit else f"not selected: {stream} score {(r.get(f'score_{stream}') or 0):.3f}",
                "sample_weight": 1.0 / float(r["pi"]), "n_chars": r.get("n_chars"),
                **{c: r[c] for c in plan.columns if c.startswith("score_")},
            }
        )  # fmt: skip
    sample = pl.DataFrame(rows, infer_schema_length=None)
    return sample, {"plan": str(pp), "planned": plan.height, "plan_hash": meta.get("plan_hash")}


def fetch_texts(manifest: dict[str, Any], mdir: Path, sample: pl.DataFrame) -> dict[tuple[str, int], str]:
    """The text of each sampled document, read from its input shard (checked unchanged since scoring)."""
    where = mdir / "manifest.json"
    needed = sample.select("source", "row", "doc_id", "n_chars").unique(["source", "row"])
    out: dict[tuple[str, int], str] = {}
    for hit in read_back(manifest["inputs"], read_config(manifest, where), needed, where):
        for src, row, text in hit.select("source", "row", "text").iter_rows():
            out[(src, int(row))] = text
    return out


_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n+|$)")


def passages(text: str, target_chars: int = 250) -> list[tuple[int, int]]:
    """Character spans of consecutive sentences grouped to about `target_chars`, at most MAX_PASSAGES."""
    spans: list[tuple[int, int]] = []
    start = end = None
    for m in _SENTENCE.finditer(text):
        if not m.group().strip():
            continue
        if start is None:
            start = m.start()
        end = m.end()
        if end - start >= target_chars:
            spans.append((start, end))
            start = None
    if start is not None and end is not None:
        spans.append((start, end))
    if len(spans) > MAX_PASSAGES:  # merge neighbours until few enough
        step = math.ceil(len(spans) / MAX_PASSAGES)
        spans = [(spans[i][0], spans[min(i + step, len(spans)) - 1][1]) for i in range(0, len(spans), step)]
    return spans


def _evidence(
    manifest: dict[str, Any], sample: pl.DataFrame, texts: list[str], progress: Callable[[str], None]
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], str | None]:
    """Per sampled document: nearest seed exemplars per theme, and the passages that drive its stream score.
    Needs the classifier and its embedding model; returns a note instead when they are unavailable."""
    from selector.core.config import EmbeddingConfig
    from selector.score.classifier import Classifier
    from selector.score.embed import make_embedder
    from selector.train.seeds import load_seed_file

    clf_path = (manifest.get("classifier") or {}).get("path")
    empty: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]] = (
        [{} for _ in texts],
        [[] for _ in texts],
    )
    if not clf_path or not Path(clf_path).exists():
        return (*empty, f"classifier {clf_path} not found: no seed exemplars or passage highlights")
    try:
        clf = Classifier.load(clf_path)
    except SelectorError as e:
        return (*empty, f"classifier unavailable ({e}): no seed exemplars or passage highlights")
    ecfg = manifest["config"].get("embedding", {})
    run = EmbeddingConfig(
        batch_size=int(ecfg.get("batch_size", 32)),
        bf16=str(ecfg.get("bf16", "auto")),
        device=str(ecfg.get("device", "cpu")),
    )
    embedder = make_embedder(clf.embedding_config(run))
    seed_text: dict[str, str] = {}
    for t in manifest["config"]["themes"]:
        if Path(t["seeds"]).exists():
            seed_text.update({s.seed_id: s.text for s in load_seed_file(t["name"], Path(t["seeds"]))})
    spans = [passages(t) for t in texts]
    flat = [t[a:b] for t, sp in zip(texts, spans, strict=True) for a, b in sp]
    progress(f"embedding {len(texts)} sampled documents and {len(flat)} passages for the evidence")
    doc_emb = embedder.encode(texts)
    pas_emb = embedder.encode(flat) if flat else np.zeros((0, doc_emb.shape[1]), dtype=np.float32)
    pas_scores, _ = clf.emb_scores(pas_emb) if len(flat) else ({t: np.zeros(0) for t in clf.themes}, {})
    seeds_out: list[dict[str, Any]] = []
    passages_out: list[list[dict[str, Any]]] = []
    streams = sample["stream"].to_list()
    offset = 0
    for i, stream in enumerate(streams):
        per_theme: dict[str, Any] = {}
        for t in [stream, *(x for x in clf.themes if x != stream)]:
            sims, idx = clf.index.nearest(doc_emb[i : i + 1], t, 3)
            ids = clf.index.pos_ids[t]
            per_theme[t] = [
                {"seed_id": ids[int(j)], "text": seed_text.get(ids[int(j)], ""), "sim": round(float(s), 4)}
                for s, j in zip(sims[0], idx[0], strict=True)
                if j >= 0
            ]
        seeds_out.append(per_theme)
        n_sp = len(spans[i])
        ps: np.ndarray = pas_scores.get(stream, np.zeros(0))[offset : offset + n_sp]
        # the top third of the passages (1 to 3) are the ones that drove the score
        keep = max(1, min(3, n_sp // 3))
        ranked = sorted(zip(spans[i], ps, strict=True), key=lambda x: -float(x[1]))[:keep]
        passages_out.append(
            [{"start": int(a), "end": int(b), "score": round(float(s), 4)} for (a, b), s in ranked]
        )
        offset += n_sp
    return seeds_out, passages_out, None


def charts(manifest: dict[str, Any], documents: pl.DataFrame, scores: pl.LazyFrame) -> dict[str, Any]:
    """The data of the page's pictures: score histograms, tokens by domain, yield curves, repetition."""
    themes = [t["name"] for t in manifest["config"]["themes"]]
    thresholds = manifest["thresholds"]
    hist: dict[str, Any] = {}
    yields: dict[str, Any] = {}
    grid = np.round(np.linspace(0, 1, 101), 2)
    for t in themes:
        col = f"score_{t}"
        binned = (
            scores.select(
                (pl.col(col).clip(0, 1) * HIST_BINS).floor().clip(0, HIST_BINS - 1).cast(pl.Int64).alias("b"),
                pl.col("n_tokens"),
            )
            .group_by("b")
            .agg(pl.len().alias("n"), pl.col("n_tokens").sum().alias("tok"))
            .collect()
        )
        counts = np.zeros(HIST_BINS, dtype=np.int64)
        counts[binned["b"].to_numpy()] = binned["n"].to_numpy()
        hist[t] = {
            "edges": [round(i / HIST_BINS, 4) for i in range(HIST_BINS + 1)],
            "counts": counts.tolist(),
            "threshold": float(thresholds[t]),
        }
        fine = (
            scores.select((pl.col(col).clip(0, 1) * 100).floor().cast(pl.Int64).alias("b"), "n_tokens")
            .group_by("b")
            .agg(pl.col("n_tokens").sum())
            .collect()
        )
        tok = np.zeros(101, dtype=np.int64)
        tok[fine["b"].to_numpy()] = fine["n_tokens"].to_numpy()
        yields[t] = {
            "thresholds": grid.tolist(),
            "tokens": np.cumsum(tok[::-1])[::-1].tolist(),  # unique tokens at or above each threshold
            "current": float(thresholds[t]),
        }
    # tokens by domain: the manifest's own distribution (select.domain_distribution), top 15 and the rest
    by_domain: dict[str, Any] = {}
    for s in manifest["streams"]:
        top = [[d["domain"], int(d["tokens"])] for d in manifest["domains"][s["theme"]]["top"][:15]]
        rest = int(s["achieved_tokens"]) - sum(t for _, t in top)
        by_domain[s["theme"]] = top + ([["other", rest]] if rest else [])
    repetition = []
    for s in manifest["streams"]:
        counts_r = documents.filter(pl.col("theme") == s["theme"])["repeats"].value_counts().sort("repeats")
        repetition.append(
            {
                "stream": s["theme"],
                "epochs": s["epochs"],
                "effective_epochs": s["effective_epochs"],
                "cap": s["cap"],
                "repeats_hist": {str(r): int(c) for r, c in counts_r.iter_rows()},
            }
        )
    return {"score_hist": hist, "tokens_by_domain": by_domain, "yield": yields, "repetition": repetition}


# what `selector audit` writes into its directory, and the labels its page exports (a browser saves a second
# export as "labels (1).csv")
AUDIT_FILES = ("index.html", "page.json", "sample.parquet", "sample.csv", "audit.json", "precision.json")
_LABELS_FILE = re.compile(r"labels.*\.csv")


def _audit_owns(rel: str) -> bool:
    return rel in AUDIT_FILES or ("/" not in rel and bool(_LABELS_FILE.fullmatch(rel)))


def audit(
    manifest_path: str | Path,
    out_dir: str | Path,
    sample_size: int = 200,
    near_fraction: float = 0.15,
    seed: int | None = None,
    evidence: bool = True,
    progress: Callable[[str], None] = log.info,
    plan_path: str | Path | None = None,
) -> dict[str, Any]:
    """Write the review page and the sample for `manifest_path` into `out_dir` (drawn by buckets of the
    streams, or the documents of a labelling plan); returns audit.json's content."""
    from selector.audit.page import render_page

    foreign = foreign_files(Path(out_dir), _audit_owns)
    if foreign:
        raise SelectorError(
            foreign_files_message(
                Path(out_dir), foreign, "selector audit", "the review page would be mixed with"
            )
        )
    if sample_size < 1:
        raise SelectorError(f"--sample must be at least 1, got {sample_size}")
    if not 0 <= near_fraction < 1:
        raise SelectorError(f"--near-fraction must be in [0, 1), got {near_fraction}")
    mdir, manifest = load_manifest(
        manifest_path, ("inputs", "streams", "config", "seed", "thresholds", "base")
    )
    seed = int(manifest["seed"]) if seed is None else seed
    documents = pl.read_parquet(mdir / "documents.parquet")
    themes = [t["name"] for t in manifest["config"]["themes"]]
    parts = _scores_parts(manifest, mdir)
    score_cols = [f"{p}_{t}" for p in ("score", "ft", "emb") for t in themes]
    scores = pl.scan_parquet(parts).select(
        "doc_id", "source", "row", "url", "domain", "n_chars", "n_tokens", *score_cols
    )
    if plan_path is not None:
        sample, strata = plan_sample(documents, manifest, mdir, plan_path)
    else:
        sample, strata = draw_sample(documents, scores, manifest, sample_size, near_fraction, seed)
    progress(
        f"sampled {sample.height} documents ({int((sample['kind'] != 'selected').sum())} near-threshold rejects)"
    )
    texts_by = fetch_texts(manifest, mdir, sample)
    texts = [texts_by[(s, int(r))] for s, r in sample.select("source", "row").iter_rows()]
    ev = (
        sample.select("source", "row")
        .lazy()
        .join(
            scores.select("source", "row", *score_cols),
            on=["source", "row"],
            how="left",
            maintain_order="left",
        )
        .collect()
    )
    if evidence and sample.height:
        seeds, spans, note = _evidence(manifest, sample, texts, progress)
    else:
        seeds, spans, note = [{} for _ in texts], [[] for _ in texts], "evidence skipped (--no-evidence)"
    docs_out = []
    for i, r in enumerate(sample.iter_rows(named=True)):
        e = ev.row(i, named=True)
        docs_out.append(
            {
                **{k: r[k] for k in SAMPLE_COLUMNS if k != "stream"},
                "stream": r["stream"],
                "text": texts[i],
                "scores": {t: e[f"score_{t}"] for t in themes},
                "ft": {t: e[f"ft_{t}"] for t in themes},
                "emb": {t: e[f"emb_{t}"] for t in themes},
                "seeds": seeds[i],
                "passages": spans[i],
            }
        )
    stance = [t["name"] for t in manifest["config"]["themes"] if not t.get("upsample", True)]
    data = {
        "title": f"selector audit: {mdir}",
        "created_at": manifest.get("created_at", ""),
        "manifest": str(mdir),
        "seed": seed,
        "reviewer_hint": "Label each document for its stream's theme, as the README's Themes section defines it: "
        "substantially about the theme, not a passing mention.",
        "themes": themes,
        "upsampled": [s["theme"] for s in manifest["streams"]],
        "stance": stance,
        "thresholds": manifest["thresholds"],
        "max_repeats": manifest.get("selection", {}).get("max_repeats"),
        "documents": docs_out,
        "charts": charts(manifest, documents, scores),
        "precision": None,
        "note": "; ".join(x for x in (organic_note(manifest), note) if x),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample_out = sample.with_columns(pl.Series("text", texts, dtype=pl.String))
    sample_out.write_parquet(out / "sample.parquet")
    sample_out.write_csv(out / "sample.csv")
    (out / "page.json").write_text(json.dumps(data, default=str))
    render_page(out, data)
    info = {
        "manifest": str(mdir),
        "themes": themes,
        "seed": seed,
        "sample_size": sample.height,
        "near_fraction": near_fraction,
        "strata": strata,
        "plan": str(plan_path) if plan_path is not None else None,
        "evidence_note": note,
        "files": {"page": "index.html", "sample": "sample.parquet", "csv": "sample.csv"},
    }
    (out / "audit.json").write_text(json.dumps(info, indent=2) + "\n")
    progress(f"review page: {out / 'index.html'}")
    return info


def organic_note(manifest: dict[str, Any]) -> str:
    """One line on the streams' organic-ness, for the page's header."""
    org = (manifest.get("organic") or {}).get("streams") or {}
    parts = [
        f"{t}: {100 * v['provenance_share']:.0f}% of tokens with URL and crawl date, "
        f"{100 * v['pre_llm_share']:.0f}% crawled before {manifest['organic']['pre_llm_cutoff'][:7]}, "
        f"{v['generated_flagged_documents']} flagged as generated-looking"
        for t, v in org.items()
        if v.get("provenance_share") is not None
    ]
    return ("Organic: " + "; ".join(parts)) if parts else ""


def read_review_labels(path: str | Path, themes: list[str]) -> pl.DataFrame:
    """labels.csv (doc_id,theme,label[,reviewer,time], as the page exports it) -> doc_id, theme, on (bool),
    parsed by the same reader as `selector train --labels` (unsure rows dropped, the last label wins)."""
    rows = read_label_csv(path, themes)
    return pl.DataFrame(
        {
            "doc_id": [k[0] for k in rows],
            "theme": [k[1] for k in rows],
            "on": [bool(v) for v in rows.values()],
        },
        schema={"doc_id": pl.String, "theme": pl.String, "on": pl.Boolean},
    )


def _prec(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {
        "labelled": n,
        "on": k,
        "precision": round(k / n, 4) if n else None,
        "low": round(lo, 4),
        "high": round(hi, 4),
    }


def _weighted_prec(on: list[bool], w: list[float]) -> dict[str, Any]:
    """Precision of a weighted sample (weights: inverse draw probabilities) with a Wilson interval at the
    effective sample size (sum w)^2 / sum w^2; equal weights give the plain Wilson interval."""
    n = len(on)
    out = _prec(sum(on), n)
    if not n:
        return out
    sw = sum(w)
    p = sum(x for x, y in zip(w, on, strict=True) if y) / sw
    n_eff = sw * sw / sum(x * x for x in w)
    lo, hi = wilson_interval(p * n_eff, n_eff)
    out.update(precision=round(p, 4), low=round(lo, 4), high=round(hi, 4), effective_n=round(n_eff, 2))
    return out


def precision_report(
    audit_dir: str | Path, labels_path: str | Path, target_precision: float = 0.8
) -> dict[str, Any]:
    """Precision per stream theme and score bucket (95% Wilson), the estimated on-theme documents and tokens
    in the selection (bucket precision times bucket size, summed), buckets below `target_precision`, and
    the on-theme rate among the near-threshold rejects."""
    d = Path(audit_dir)
    if not (d / "sample.parquet").exists() or not (d / "audit.json").exists():
        raise SelectorError(
            f"{d} holds no audit (sample.parquet, audit.json). Run `selector audit MANIFEST --out {d}` first, "
            "label on its page, then pass the exported labels.csv with --labels."
        )
    info = json.loads((d / "audit.json").read_text())
    sample = pl.read_parquet(d / "sample.parquet")
    if "sample_weight" not in sample.columns:
        sample = sample.with_columns(sample_weight=pl.lit(1.0))
    themes = info.get("themes") or sorted(
        {*sample["stream"].unique().to_list(), *(c[6:] for c in sample.columns if c.startswith("score_"))}
    )
    labels = read_review_labels(labels_path, themes)
    joined = sample.join(labels.rename({"theme": "stream"}), on=["doc_id", "stream"], how="inner")
    unmatched = labels.join(sample.select("doc_id").unique(), on="doc_id", how="anti").height
    report: dict[str, Any] = {"labels": str(labels_path), "target_precision": target_precision, "themes": {}}
    for stream, st in info["strata"].items():
        sel = joined.filter((pl.col("stream") == stream) & (pl.col("kind") == "selected"))
        buckets: dict[str, Any] = {}
        est_docs = est_tokens = lo_docs = hi_docs = 0.0
        covered = True
        # overall: each label weighted by its bucket's size over the bucket's labelled weight (stratified)
        all_on: list[bool] = []
        all_w: list[float] = []
        for b, pop in st["buckets"].items():
            cell = sel.filter(pl.col("bucket") == b)
            on = cell["on"].to_list()
            w = cell["sample_weight"].to_list()
            pb = _weighted_prec(on, w)
            pb.update(pop)
            pb["below_target"] = bool(on) and pb["high"] < target_precision
            buckets[b] = pb
            if not on:
                covered = covered and pop["documents"] == 0
                continue
            est_docs += pop["documents"] * pb["precision"]
            est_tokens += pop["unique_tokens"] * pb["precision"]
            lo_docs += pop["documents"] * pb["low"]
            hi_docs += pop["documents"] * pb["high"]
            scale = pop["documents"] / sum(w)
            all_on += on
            all_w += [x * scale for x in w]
        rej = joined.filter((pl.col("stream") == stream) & (pl.col("kind") != "selected"))
        report["themes"][stream] = {
            **_weighted_prec(all_on, all_w),
            "buckets": buckets,
            "below_target": [b for b, v in buckets.items() if v["below_target"]],
            "estimated_on_theme_documents": round(est_docs, 1) if all_on and covered else None,
            "estimated_on_theme_documents_range": [round(lo_docs, 1), round(hi_docs, 1)]
            if all_on and covered
            else None,
            "estimated_on_theme_unique_tokens": round(est_tokens) if all_on and covered else None,
            "selected_documents": sum(v["documents"] for v in st["buckets"].values()),
            "near_threshold_rejects": _weighted_prec(rej["on"].to_list(), rej["sample_weight"].to_list()),
        }
    report["labels_not_in_sample"] = unmatched
    return report


def plan_report(
    manifest_path: str | Path, plan_path: str | Path, labels_paths: list[str | Path]
) -> dict[str, Any]:
    """Prevalence, precision and recall, with 95% intervals, of each stream of a manifest and of each theme's
    threshold over the whole scored corpus, from labels of a labelling plan (`selector annotate --scores`
    writes LABELS.plan.parquet and LABELS.plan.json beside LABELS.csv; selector/label/sampling.py's design)."""
    from selector.core.labels import read_label_files
    from selector.label.sampling import estimate

    mdir, manifest = load_manifest(manifest_path, ("streams", "config", "thresholds", "base"))
    pp = Path(plan_path)
    if not pp.exists():
        raise SelectorError(
            f"labelling plan {pp} not found. `selector annotate --scores DIR` writes it beside its labels "
            "(LABELS.plan.parquet); pass it with --plan."
        )
    plan = pl.read_parquet(pp)
    meta_path = pp.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    population = int(meta.get("population") or manifest["base"]["documents"])
    if meta.get("population") and int(meta["population"]) != int(manifest["base"]["documents"]):
        raise SelectorError(
            f"{pp} was drawn from {meta['population']:,} scored documents, but {mdir} selected from "
            f"{manifest['base']['documents']:,}: the plan belongs to other scores. Draw a plan from the scores "
            "behind this manifest (`selector annotate --scores DIR ...`)."
        )
    themes = [t["name"] for t in manifest["config"]["themes"]]
    labels = read_label_files(labels_paths, themes)
    documents = pl.read_parquet(mdir / "documents.parquet", columns=["doc_id", "theme"])
    streams = [s["theme"] for s in manifest["streams"]]
    selected = {t: set(documents.filter(pl.col("theme") == t)["doc_id"].to_list()) for t in streams}
    thresholds = {t: float(v) for t, v in manifest["thresholds"].items() if t in themes}
    by_stream = estimate(plan, labels.labels, {t: thresholds[t] for t in streams}, population, selected)
    by_threshold = estimate(plan, labels.labels, thresholds, population)
    matched = sum(1 for d in plan["doc_id"].to_list() if any((d, t) in labels.labels for t in themes))
    return {
        "manifest": str(mdir),
        "plan": str(pp),
        "labels": labels.info,
        "population": population,
        "planned_documents": plan.height,
        "labelled_planned_documents": matched,
        "streams": by_stream["themes"],
        "thresholds": by_threshold["themes"],
        "estimator": "Hajek ratios with weights 1/pi, linearized variance, Wilson intervals at the effective n "
        "(docs/labelling.md)",
    }
