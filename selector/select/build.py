"""Turn scores into a data-mix manifest: `select(scores_dir, out_dir, cfg)` -> OUT/manifest/ (see docs/manifest.md).

`build_selection` runs these steps in order, one function each, sharing their state in a `_Pool`:

1. `_load`: check that the scores have every theme and the provenance columns; read their totals and each
   theme's threshold (the config's number, or the classifier's calibrated one, or the score at the theme's
   `top_fraction` of all scored documents).
2. `_qualify`: per theme, documents whose `score_<theme>` reaches its threshold; labels veto (off) or confirm
   (on) a theme's qualification, whatever the score.
3. `_exclude`: documents at or above `select.exclude_above` (e.g. `ai_risk = 0.5`) join no stream.
4. `_organic_rules`: `select.require_provenance` and `select.exclude_generated` (score/organic.py).
5. `_deduplicate`: one representative, the best-scoring, of each group of exact or near duplicates (select/dedup.py).
6. `_assign`: a document that qualifies for several upsampled themes joins one stream, the theme it scores
   highest on (ties: config order), so no document is multiplied by two streams.
7. `_cap_domains`: no domain holds more than `select.max_domain_share` of a stream's unique tokens (domain_cap;
   `_cap_stream` and `_domain_cap_warnings` per stream).
8. `_budget`: a stream's target is `target_share * total_tokens` (or `target_tokens`; neither: each document
   once), and the base mix's passes in the run follow from the total.
9. Per stream, `_stream_documents` (its documents and target), then `_repeats`: its mean repeats are
   `target / unique tokens`. Under `rule = "score"` a document's expected repeats are proportional to its
   score (token-weighted mean 1), under `"uniform"` equal; both are capped at `max_repeats`, the excess going
   to the documents below the cap until the target is met or every document is capped (the shortfall is
   reported).
10. `_sample`: expected repeats become whole copies by systematic sampling over a seeded order of the
   documents (each gets floor(e) or ceil(e) copies, ceil with probability e - floor(e)); deterministic for a
   seed. `_keep_drawn` keeps the drawn documents, `_record_stream` the stream's figures.
11. Refuse, unless forced, when a document would be seen more than `hard_max_epochs` times in the run
   (`_refuse_base_epochs` before any stream, `_refuse_stream_epochs` per stream), or when the streams overfill
   an explicit total (`_refuse_overfull`).
12. `_base_passes` settles the run's total and the base mix's passes; `_assemble` makes the `Selection`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from selector import __version__
from selector.core.config import Config, SelectConfig, ThemeConfig
from selector.core.errors import ManifestError
from selector.core.keys import seeded_key
from selector.core.labels import UNNAMED_REVIEWER, LabelSet
from selector.core.paths import foreign_files, foreign_files_message, make_temp_dir, replace_dir
from selector.score.cascade import PROVENANCE_COLUMNS, weight_mismatch
from selector.score.organic import GENERATED_PATTERNS, PRE_LLM_CUTOFF
from selector.select.dedup import candidate_fingerprints, near_duplicates
from selector.select.manifest import MANIFEST_DIR, MANIFEST_FORMAT
from selector.select.scores import ScoresInfo, load_scores_info, stream_thresholds

log = logging.getLogger(__name__)

PACKAGES = ("polars", "numpy", "pyarrow", "fasttext-numpy2", "faiss-cpu", "sentence-transformers", "torch")
ID_COLUMNS = ["doc_id", "source", "row", "url", "n_chars", "n_tokens"]
PROV_COLUMNS = ["domain", "crawl_date", "warc_record_id", "offset", "payload_digest", "content_sha1", "lang",
                "generated_pattern"]  # fmt: skip


@dataclass
class Selection:
    documents: pl.DataFrame
    streams: pl.DataFrame
    rejected: pl.DataFrame
    thresholds: dict[str, float]
    total_tokens: int
    base: dict[str, Any]
    warnings: list[str]
    domains: dict[str, Any]
    dedup: dict[str, int]


def _unit_key(seed: int, theme: str, doc_ids: list[str]) -> np.ndarray:
    """A seeded, order-independent uniform number in [0, 1) per document."""
    return np.array([seeded_key(seed, theme, d) for d in doc_ids], dtype=np.float64) / 2.0**64


def expected_repeats(
    tokens: np.ndarray, scores: np.ndarray, target: float, cap: int, rule: str
) -> tuple[np.ndarray, bool]:
    """Expected copies per document so that sum(tokens * e) = target, e <= cap; (e, cap_binds)."""
    tokens = tokens.astype(np.float64)
    unique = float(tokens.sum())
    if unique <= 0 or target <= 0:
        return np.zeros(len(tokens)), False
    if cap * unique <= target:
        return np.full(len(tokens), float(cap)), cap * unique < target
    w = np.maximum(scores.astype(np.float64), 1e-6) if rule == "score" else np.ones(len(tokens))
    e = np.zeros(len(tokens))
    free = np.ones(len(tokens), dtype=bool)
    left = float(target)
    # water-filling: scale the free documents to the tokens still wanted; cap those that overflow; repeat
    for _ in range(len(tokens) + 1):
        scale = left / float((tokens[free] * w[free]).sum())
        e[free] = scale * w[free]
        over = free & (e > cap)
        if not over.any():
            break
        e[over] = cap
        free &= ~over
        left = target - float((tokens[~free] * cap).sum())
    return e, False


def whole_copies(e: np.ndarray, u0: float, order: np.ndarray) -> np.ndarray:
    """Systematic sampling: floor(e) copies each, plus one more for documents where the running sum of the
    fractional parts (in `order`) crosses an integer offset by `u0`."""
    base = np.floor(e + 1e-9)
    frac = np.clip(e - base, 0.0, 1.0)
    cum = np.cumsum(frac[order])
    extra_sorted = np.floor(cum + u0) - np.floor(np.concatenate([[0.0], cum[:-1]]) + u0)
    extra = np.zeros(len(e))
    extra[order] = extra_sorted
    return (base + extra).astype(np.int64)


def _num(x: float) -> str:
    """21 -> "21", 17.96 -> "18.0", 14521186.3 -> "14,521,186.3": no scientific notation in messages."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _auto_total(base_tokens: int, up: list[Any], unique: dict[str, int], cap: int) -> int:
    """The run's tokens when it is the base mix once plus the streams, each `target_share` of the run: streams
    that cannot reach their share even at the cap contribute what they can, the rest their share, so
    total = (base + sum of short streams at the cap) / (1 - sum of the other shares)."""
    short: set[str] = set()
    while True:
        free = sum(t.target_share for t in up if t.target_share and t.name not in short)
        fixed = sum(cap * unique[t.name] for t in up if t.name in short)
        total = (base_tokens + fixed) / (1 - free)
        more = {t.name for t in up if t.target_share and t.target_share * total > cap * unique[t.name]}
        if more <= short:
            return round(total)
        short |= more


def _planned_stream_tokens(up: list[Any], unique: dict[str, int], total: int, cap: int) -> int:
    """The streams' tokens before sampling: each its target, at most the cap times its unique tokens."""
    out = 0
    for t in up:
        target = t.target_tokens or (round(t.target_share * total) if t.target_share else unique[t.name])
        out += min(target, cap * unique[t.name])
    return out


def domain_cap(
    stream: pl.DataFrame, score_col: str, share: float, min_documents: int = 0
) -> tuple[list[int], dict[str, float], float]:
    """Rows (`_i`) to drop so that no domain holds more than the cap of the tokens the stream keeps; each
    domain keeps at least its best document. Returns them, each capped domain's share before the cap, and the
    cap applied.

    The cap binds only where other sites exist: with n sites in the stream (documents without a domain
    count as one) and n < 1/share, no arrangement can keep every site under `share`, so the cap is 1/n
    (one site: nothing is dropped). Dropping stops when the stream would keep fewer than `min_documents`.
    A fixed point: dropping shrinks the stream, so shares are recomputed until none is over."""
    total = int(stream["n_tokens"].sum())
    docs: dict[str, list[tuple[int, int]]] = {}
    ranked = stream.filter(pl.col("domain").is_not_null()).sort(
        [score_col, "source", "row"], descending=[True, False, False]
    )
    for dom, idx, tok in ranked.select("domain", "_i", "n_tokens").iter_rows():
        docs.setdefault(dom, []).append((idx, tok))
    n_sites = len(docs) + (1 if ranked.height < stream.height else 0)
    cap = max(share, 1 / n_sites) if n_sites else 1.0
    kept = {d: sum(t for _, t in v) for d, v in docs.items()}
    before = {d: kept[d] / total for d in kept} if total else {}
    n_kept = {d: len(v) for d, v in docs.items()}
    n_left = stream.height
    dropped: list[int] = []
    changed = cap < 1
    while changed:
        changed = False
        allowed = cap * total
        for d, v in docs.items():
            while n_kept[d] > 1 and kept[d] > allowed and n_left > min_documents:
                idx, tok = v[n_kept[d] - 1]
                n_kept[d] -= 1
                n_left -= 1
                kept[d] -= tok
                total -= tok
                allowed = cap * total
                dropped.append(idx)
                changed = True
    capped = {d: before[d] for d in docs if n_kept[d] < len(docs[d])}
    return sorted(dropped), capped, cap


def organic_figures(chosen: pl.DataFrame) -> dict[str, Any]:
    """Per stream: the share of its tokens (repeats included) with full provenance (URL and crawl date), from
    crawls before PRE_LLM_CUTOFF, and the documents and tokens matching a generated-text pattern."""
    tok = chosen["n_tokens"] * chosen["repeats"]
    total = int(tok.sum())
    full = chosen["url"].is_not_null() & chosen["crawl_date"].is_not_null()
    day = chosen["crawl_date"].str.slice(0, 10)
    early = day.str.contains(r"^\d{4}-\d{2}-\d{2}$").fill_null(False) & (day < PRE_LLM_CUTOFF).fill_null(
        False
    )
    flagged = chosen["generated_pattern"].is_not_null()

    def share(mask: pl.Series) -> float | None:
        return round(int(tok.filter(mask).sum()) / total, 4) if total else None  # None: an empty stream

    return {
        "provenance_share": share(full),
        "pre_llm_share": share(early),
        "generated_flagged_documents": int(flagged.sum()),
        "generated_flagged_tokens": int(tok.filter(flagged).sum()),
    }


def domain_distribution(chosen: pl.DataFrame, top: int = 20) -> dict[str, Any]:
    """A stream's tokens (repeats included) by source domain: the top domains and how many there are."""
    d = (
        chosen.with_columns(
            tok=pl.col("n_tokens") * pl.col("repeats"), dom=pl.col("domain").fill_null("(no url)")
        )
        .group_by("dom")
        .agg(pl.col("tok").sum())
        .sort(["tok", "dom"], descending=[True, False])
    )
    total = int(d["tok"].sum())
    return {
        "domains": d.height,
        "top": [
            {"domain": dom, "tokens": int(t), "share": round(int(t) / total, 4) if total else 0.0}
            for dom, t in d.head(top).iter_rows()
        ],
    }


def label_columns(labels: LabelSet | None, themes: list[str]) -> pl.DataFrame | None:
    """One row per labelled doc_id: `_on_<theme>` / `_off_<theme>` (the label, if any) and `_why_<theme>`
    (who said so, and why), for `build_selection` to join onto the scores."""
    if labels is None or not labels.labels:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for (doc, t), v in labels.labels.items():
        if t not in themes:
            continue
        r = rows.setdefault(doc, {"doc_id": doc})
        r[f"_on_{t}"], r[f"_off_{t}"] = v == 1, v == 0
        who = labels.reviewer.get((doc, t)) or UNNAMED_REVIEWER
        who = "a person" if who == UNNAMED_REVIEWER else who
        why = labels.reason.get((doc, t)) or ""
        r[f"_why_{t}"] = f"{who}{': ' + why if why else ''}"
    schema: dict[str, Any] = {"doc_id": pl.String}
    for t in themes:
        schema |= {f"_on_{t}": pl.Boolean, f"_off_{t}": pl.Boolean, f"_why_{t}": pl.String}
    return pl.DataFrame(list(rows.values()), schema=schema)


@dataclass
class _Pool:
    """What the steps of `build_selection` share: the scores, thresholds, candidates, rejections and warnings."""

    cfg: Config
    info: ScoresInfo
    lf: pl.LazyFrame
    thr: dict[str, float]
    n_docs: int
    base_tokens: int
    up: list[ThemeConfig]  # the upsampled themes, in config order: one stream each
    cand: pl.DataFrame = field(default_factory=pl.DataFrame)
    n_candidates: dict[str, int] = field(default_factory=dict)
    rejected: list[pl.DataFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dedup: dict[str, int] = field(default_factory=lambda: {"exact": 0, "near": 0})
    docs: list[pl.DataFrame] = field(default_factory=list)
    stream_rows: list[dict[str, Any]] = field(default_factory=list)
    domains: dict[str, Any] = field(default_factory=dict)

    @property
    def sc(self) -> SelectConfig:
        """The config's select section."""
        return self.cfg.select

    @property
    def stance(self) -> list[str]:
        """The themes that are counted in the streams but never upsampled."""
        return [t.name for t in self.cfg.themes if not t.upsample]

    @property
    def achieved(self) -> int:
        """The streams' tokens as drawn, repeats included."""
        return sum(int(r["achieved_tokens"]) for r in self.stream_rows)

    def q(self, t: str) -> pl.Expr:
        """Qualifies for theme t: at or above its threshold, or labelled on; never when labelled off."""
        return ((pl.col(f"score_{t}") >= self.thr[t]) | pl.col(f"_on_{t}").fill_null(False)) & ~pl.col(
            f"_off_{t}"
        ).fill_null(False)

    def vetoed_for(self, t: str) -> pl.Expr:
        """At or above theme t's threshold but labelled off for it."""
        return (pl.col(f"score_{t}") >= self.thr[t]) & pl.col(f"_off_{t}").fill_null(False)

    def reject(self, df: pl.DataFrame, theme: str, reason: pl.Expr) -> None:
        """Record `df`'s documents as rejected from `theme`'s stream, for `reason`."""
        if df.height:
            self.rejected.append(
                df.select(
                    "doc_id",
                    "source",
                    "row",
                    pl.lit(theme).alias("theme"),
                    pl.col(f"score_{theme}").alias("score"),
                    reason.alias("reason"),
                )
            )

    def best_theme(self) -> pl.Expr:
        """The upsampled theme each candidate scores highest on among those it qualifies for."""
        if not self.up:
            return pl.lit(None, dtype=pl.String)
        qs = [pl.when(self.q(t.name)).then(pl.col(f"score_{t.name}")).otherwise(-1.0) for t in self.up]
        names = {j: t.name for j, t in enumerate(self.up)}
        return pl.concat_list(qs).list.arg_max().replace_strict(names, return_dtype=pl.String)

    def reject_each(self, df: pl.DataFrame, reason: pl.Expr) -> None:
        """Reject candidates once, under the theme each would have joined."""
        if not df.height or not self.up:
            return
        df = df.with_columns(_t=self.best_theme())
        for t in self.up:
            self.reject(df.filter(pl.col("_t") == t.name), t.name, reason)


@dataclass
class _Budget:
    """The run's tokens, the base mix's passes in it, and each stream's unique tokens once assigned."""

    total: int
    base_add: float
    stream_tokens: dict[str, int]
    base_epochs: float = 0.0


def build_selection(
    cfg: Config, info: ScoresInfo, force: bool = False, labels: LabelSet | None = None
) -> Selection:
    """Select from the scores in `info` by `cfg`, step by step (see the module docstring); `force` allows
    what `hard_max_epochs` would refuse, `labels` veto or confirm candidates theme by theme."""
    p = _load(cfg, info)
    _qualify(p, labels)
    _exclude(p)
    _organic_rules(p)
    _deduplicate(p)
    _assign(p)
    _cap_domains(p)
    b = _budget(p)
    _refuse_base_epochs(p, b, force)
    for i, t in enumerate(p.up):
        s, unique, target = _stream_documents(p, i, b)
        e, capped = _repeats(p, t, s, target)
        s = _sample(p, t, s, e)
        _refuse_stream_epochs(p, t, s, b, force)
        chosen = _keep_drawn(p, t, s, unique, target, b)
        _record_stream(p, t, s, chosen, unique, target, capped, b)
    _refuse_overfull(p, b)
    _base_passes(p, b)
    return _assemble(p, b)


def _load(cfg: Config, info: ScoresInfo) -> _Pool:
    """Check that the scores fit the config, and read their totals and each theme's threshold."""
    missing = [t for t in cfg.theme_names if t not in info.themes]
    if missing:
        raise ManifestError(
            f"{info.dir} has no scores for {', '.join(missing)} (it has {', '.join(info.themes)}). "
            "Use the config the scores were made with, or rescore."
        )
    score_cols = [f"score_{t}" for t in cfg.theme_names]
    have = set(pl.read_parquet_schema(info.parts[0]))
    if not set(PROV_COLUMNS) <= have:
        raise ManifestError(
            f"{info.dir} was scored by an older selector without provenance columns "
            f"({', '.join(sorted(set(PROV_COLUMNS) - have))}). Rescore with `selector score ... --force`."
        )
    lf = (
        pl.scan_parquet(info.parts)
        .select(*ID_COLUMNS, *PROV_COLUMNS, *score_cols)
        .cast({c: PROVENANCE_COLUMNS[c] for c in PROV_COLUMNS} | {"url": pl.String})  # type: ignore[arg-type]
    )
    totals = lf.select(pl.len().alias("n"), pl.col("n_tokens").sum().alias("tokens")).collect().row(0)
    n_docs, base_tokens = int(totals[0]), int(totals[1] or 0)
    thr = stream_thresholds(cfg, info, lf, n_docs)
    p = _Pool(cfg, info, lf, thr, n_docs, base_tokens, up=[t for t in cfg.themes if t.upsample])
    scored_with = (info.meta.get("config") or {}).get("cascade", {}).get("embedding_weight")
    if scored_with is not None and "calibrated_embedding_weight" in info.meta:
        # the thresholds are applied here: say so in the manifest when they were fitted to other scores
        mismatch = weight_mismatch(cfg, float(scored_with), info.meta["calibrated_embedding_weight"])
        if mismatch:
            p.warnings.append(mismatch)
    return p


def _qualify(p: _Pool, labels: LabelSet | None) -> None:
    """Keep as candidates the documents that qualify for some theme, rejecting those labels veto."""
    themes = p.cfg.theme_names
    # labels veto (off) or confirm (on) a theme's qualification, whatever the score
    lab = label_columns(labels, themes)
    if lab is not None:
        p.lf = p.lf.join(lab.lazy(), on="doc_id", how="left", maintain_order="left")
    else:
        p.lf = p.lf.with_columns(
            *(pl.lit(None, dtype=pl.Boolean).alias(f"_{k}_{t}") for t in themes for k in ("on", "off")),
            *(pl.lit(None, dtype=pl.String).alias(f"_why_{t}") for t in themes),
        )
    qualify = pl.any_horizontal([p.q(t) for t in themes])
    # a second pass over the scores only when there are labels to veto with
    vetoed = (
        p.lf.filter(pl.any_horizontal([p.vetoed_for(t.name) for t in p.up])).collect()
        if lab is not None and p.up
        else None
    )
    p.cand = p.lf.filter(qualify).collect().sort("source", "row")
    if vetoed is not None:
        for t in p.up:
            veto_reason = pl.format("label: off ({})", pl.col(f"_why_{t.name}"))
            p.reject(vetoed.filter(p.vetoed_for(t.name)), t.name, veto_reason)
    p.n_candidates = {t.name: int(p.cand.select(p.q(t.name)).to_series().sum()) for t in p.up}


def _exclude(p: _Pool) -> None:
    """Drop the candidates at or above a `select.exclude_above` score (or labelled on for that theme)."""
    sc = p.sc
    # exclusions (e.g. ai_risk) come first: an excluded document joins no stream
    excluded = pl.lit(False)
    for ex_theme, ex_at in sc.exclude_above.items():
        on, off = pl.col(f"_on_{ex_theme}").fill_null(False), pl.col(f"_off_{ex_theme}").fill_null(False)
        excluded = excluded | (((pl.col(f"score_{ex_theme}") >= ex_at) | on) & ~off)
    cand = p.cand.with_columns(_excluded=excluded)
    for t in p.up:
        hit = cand.filter(p.q(t.name) & pl.col("_excluded"))
        why = [
            pl.when(pl.col(f"_on_{x}").fill_null(False)).then(
                pl.format(f"excluded: labelled {x} ({{}})", f"_why_{x}")
            )
            for x in sc.exclude_above
        ] + [
            pl.when(pl.col(f"score_{x}") >= v).then(
                pl.format(f"excluded: {x} score {{}} >= {v:g}", pl.col(f"score_{x}").round(3))
            )
            for x, v in sc.exclude_above.items()
        ]
        p.reject(hit, t.name, pl.coalesce(why) if why else pl.lit("excluded"))
    for ex_theme, ex_at in sc.exclude_above.items():
        col = cand[f"score_{ex_theme}"]
        top = float(col.max()) if col.len() else 0.0  # type: ignore[arg-type]
        if not int((col >= ex_at).sum()):
            p.warnings.append(
                f"exclude_above {ex_theme} = {ex_at:g} excluded no document: the highest {ex_theme} score among the "
                f"candidates is {top:.3f} (its threshold: {p.thr[ex_theme]:.3f}). Scores are "
                "on the classifier's scale; compare with the thresholds in the manifest."
            )
    p.cand = cand.filter(~pl.col("_excluded")).drop("_excluded")


def _organic_rules(p: _Pool) -> None:
    """Drop the candidates without provenance or with generated text, where the config asks (score/organic.py)."""
    sc = p.sc
    if sc.require_provenance:
        bad = p.cand.filter(pl.col("url").is_null() | pl.col("crawl_date").is_null())
        p.reject_each(
            bad, pl.lit("no_provenance: a URL and a crawl date are required (select.require_provenance)")
        )
        p.cand = p.cand.filter(pl.col("url").is_not_null() & pl.col("crawl_date").is_not_null())
    if sc.exclude_generated:
        bad = p.cand.filter(pl.col("generated_pattern").is_not_null())
        p.reject_each(
            bad, pl.format("generated_text: matches {} (select.exclude_generated)", "generated_pattern")
        )
        p.cand = p.cand.filter(pl.col("generated_pattern").is_null())


def _deduplicate(p: _Pool) -> None:
    """Keep one candidate of each group of exact or near duplicates (select/dedup.py), and give each its text hash."""
    sc, up, cand = p.sc, p.up, p.cand
    # duplicates, before repeats multiply them: one representative per group, the best-scoring one. Only
    # candidates of upsampled themes take part; documents are told apart by where they are (shard, row),
    # since ids can repeat across shards
    if sc.dedup and up and cand.height:
        in_stream = pl.any_horizontal([p.q(t.name) for t in up])
        rest = cand.filter(~in_stream)
        pool = cand.filter(in_stream).with_columns(
            _rank=pl.max_horizontal([pl.col(f"score_{t.name}") for t in up]),
            _key=pl.format("{}\u0000{}", "source", "row"),
        )
        pool = pool.sort(["_rank", "source", "row"], descending=[True, False, False])
        hashes, sigs = candidate_fingerprints(pool, p.info, p.cfg, minhash=sc.near_dup_threshold < 1)
        pool = pool.with_columns(text_hash=pl.col("_key").replace_strict(hashes, return_dtype=pl.String))
        rep = pool.group_by("text_hash", maintain_order=True).agg(
            pl.col("_key").first().alias("_rep_key"), pl.col("doc_id").first().alias("_rep")
        )
        pool = pool.join(rep, on="text_hash", how="left", maintain_order="left")
        dups = pool.filter(pl.col("_rep_key") != pl.col("_key"))
        p.dedup["exact"] = dups.height
        p.reject_each(dups, pl.format("duplicate_of:{} (exact, normalized text)", "_rep"))
        pool = pool.filter(pl.col("_rep_key") == pl.col("_key")).drop("_rep_key", "_rep")
        if sc.near_dup_threshold < 1 and pool.height > 1:
            near = near_duplicates(pool, sigs, sc.near_dup_threshold)  # {key: representative's doc_id}
            if near:
                nd = pool.filter(pl.col("_key").is_in(list(near))).with_columns(
                    _rep=pl.col("_key").replace_strict(near, return_dtype=pl.String)
                )
                p.dedup["near"] = nd.height
                p.reject_each(
                    nd,
                    pl.format(
                        f"duplicate_of:{{}} (near, MinHash Jaccard >= {sc.near_dup_threshold:g})", "_rep"
                    ),
                )
                pool = pool.filter(~pl.col("_key").is_in(list(near)))
        p.cand = pl.concat(
            [pool.drop("_rank", "_key"), rest.with_columns(text_hash=pl.lit(None, dtype=pl.String))],
            how="vertical_relaxed",
        ).sort("source", "row")
    else:
        p.cand = cand.with_columns(text_hash=pl.lit(None, dtype=pl.String))


def _assign(p: _Pool) -> None:
    """Give each candidate its stream (`_best`: the index of its upsampled theme), rejecting it from the others."""
    up = p.up
    # each document joins the stream of the upsampled theme it scores highest on among those it qualifies for
    if up:
        qual_scores = [pl.when(p.q(t.name)).then(pl.col(f"score_{t.name}")).otherwise(-1.0) for t in up]
        best = pl.concat_list(qual_scores).list.arg_max()
        p.cand = p.cand.with_columns(
            _best=pl.when(pl.max_horizontal(qual_scores) >= 0).then(best).otherwise(None)
        )
    else:
        p.cand = p.cand.with_columns(_best=pl.lit(None, dtype=pl.UInt32))
    for i, t in enumerate(up):
        other = p.cand.filter(p.q(t.name) & (pl.col("_best") != i))
        names = {j: u.name for j, u in enumerate(up)}
        p.reject(
            other.with_columns(_to=pl.col("_best").replace_strict(names, return_dtype=pl.String)),
            t.name,
            pl.format(
                "assigned to {}: it scores higher there ({} > {})",
                pl.col("_to"),
                pl.concat_list([pl.col(f"score_{u.name}") for u in up]).list.get(pl.col("_best")).round(3),
                pl.col(f"score_{t.name}").round(3),
            ),
        )


def _cap_domains(p: _Pool) -> None:
    """Drop each stream's lowest-scored documents from domains over `select.max_domain_share` (see domain_cap)."""
    sc, cand = p.sc, p.cand
    # no single site dominates a stream: a domain above max_domain_share of the stream's unique tokens loses its
    # lowest-scored documents until it fits, counted against what the stream keeps (its best document stays);
    # only where other sites exist (see domain_cap), never below domain_cap_min_documents
    if not (sc.max_domain_share < 1 and cand.height):
        return
    drop_rows: list[pl.DataFrame] = []
    for i, t in enumerate(p.up):
        st = cand.filter(pl.col("_best") == i).with_row_index("_i")
        if not st.height:
            continue
        over = _cap_stream(p, t, st)
        if over is not None:
            drop_rows.append(over)
    if drop_rows:
        p.cand = cand.join(pl.concat(drop_rows), on=["source", "row"], how="anti", maintain_order="left")


def _cap_stream(p: _Pool, t: ThemeConfig, st: pl.DataFrame) -> pl.DataFrame | None:
    """The (source, row) of the documents the domain cap drops from one stream (`st`, rows numbered `_i`), or None."""
    sc = p.sc
    over_rows: pl.DataFrame | None = None
    dropped, share_before, cap = domain_cap(
        st, f"score_{t.name}", sc.max_domain_share, sc.domain_cap_min_documents
    )
    if dropped:
        over = st.filter(pl.col("_i").is_in(dropped)).with_columns(
            _share=pl.col("domain").replace_strict(share_before, return_dtype=pl.Float64)
        )
        p.reject(
            over,
            t.name,
            pl.format(
                f"domain_cap: {{}} would hold {{}}% of the {t.name} stream's unique tokens "
                f"(select.max_domain_share = {sc.max_domain_share:g}"
                + (f", {cap:.3g} with the stream's few sites" if cap > sc.max_domain_share else "")
                + ")",
                "domain",
                (100 * pl.col("_share")).round(1),
            ),
        )
        over_rows = over.select("source", "row")
        lost_tokens = int(over["n_tokens"].sum())
        p.warnings.append(
            f"stream {t.name}: the domain cap dropped {len(dropped):,} of its {st.height:,} documents "
            f"({lost_tokens:,} of {int(st['n_tokens'].sum()):,} unique tokens) from "
            f"{', '.join(sorted(share_before))} (max_domain_share {sc.max_domain_share:g}"
            + (f", {cap:.3g} as the stream has few sites" if cap > sc.max_domain_share else "")
            + f"; domain_cap_min_documents {sc.domain_cap_min_documents}); see rejected.parquet"
        )
    _domain_cap_warnings(p, t, st, dropped, cap)
    return over_rows


def _domain_cap_warnings(p: _Pool, t: ThemeConfig, st: pl.DataFrame, dropped: list[int], cap: float) -> None:
    """Warn where a domain still dominates a stream after the cap, or the stream has only one site."""
    sc = p.sc
    kept = st.filter(~pl.col("_i").is_in(dropped) & pl.col("domain").is_not_null())
    tok = (
        kept.group_by("domain")
        .agg(pl.col("n_tokens").sum())
        .sort(["n_tokens", "domain"], descending=[True, False])
    )
    total_kept = int(st.filter(~pl.col("_i").is_in(dropped))["n_tokens"].sum())
    if tok.height and total_kept and tok["n_tokens"][0] > cap * total_kept:
        top_share = 100 * tok["n_tokens"][0] / total_kept
        why_kept = (
            f"the cap keeps at least domain_cap_min_documents = {sc.domain_cap_min_documents} documents"
            if st.height - len(dropped) <= sc.domain_cap_min_documents
            else "only its best document is left"
        )
        p.warnings.append(
            f"stream {t.name}: {tok['domain'][0]} still holds {top_share:.0f}% of its unique tokens "
            f"(max_domain_share {sc.max_domain_share:g}): {why_kept}; the stream has too few other sites"
        )
    elif cap >= 1 and tok.height == 1 and st.height > 1:
        p.warnings.append(
            f"stream {t.name}: all {st.height:,} of its documents come from one site, {tok['domain'][0]}; "
            "the domain cap cannot apply without other sites (see the manifest's domains)"
        )


def _budget(p: _Pool) -> _Budget:
    """The run's total tokens and the base mix's passes in it, from the config and the streams' unique tokens."""
    sc, up, base_tokens = p.sc, p.up, p.base_tokens
    stream_tokens = {
        t.name: int(p.cand.filter(pl.col("_best") == i)["n_tokens"].sum()) for i, t in enumerate(up)
    }
    shares = sum(t.target_share for t in up)
    if sc.total_tokens == "auto":
        if not sc.base_in_mix and shares:
            raise ManifestError(
                'select.total_tokens = "auto" counts the scored corpus as the base mix, but base_in_mix is false. '
                "Give --total-tokens (the tokens of your training run)."
            )
        total = _auto_total(base_tokens, up, stream_tokens, sc.max_repeats) if sc.base_in_mix else 0
    else:
        total = int(sc.total_tokens)
    # the base mix's passes in the run: 1 under "auto"; with an explicit total, the tokens the streams leave
    # for it over its size (known once the streams are drawn, so _refuse_base_epochs uses an upper bound)
    if not sc.base_in_mix:
        base_add = 0.0
    elif sc.total_tokens == "auto":
        base_add = 1.0
    else:
        base_add = max(0.0, total - _planned_stream_tokens(up, stream_tokens, total, sc.max_repeats)) / max(
            base_tokens, 1
        )
    return _Budget(total, base_add, stream_tokens)


def _refuse_base_epochs(p: _Pool, b: _Budget, force: bool) -> None:
    """Refuse, unless forced, a run that reads the base mix alone more than `hard_max_epochs` times."""
    sc = p.sc
    if b.base_add > sc.hard_max_epochs and not force:
        # refused once, for the run, before any stream: it holds whether or not a stream has documents
        empty = [t.name for t in p.up if not b.stream_tokens[t.name]]
        raise ManifestError(
            f"the base mix alone is read {_num(b.base_add)} times: --total-tokens {b.total:,} over a scored corpus of "
            f"{p.base_tokens:,} tokens, past select.hard_max_epochs = {sc.hard_max_epochs}. Give the training run's "
            "real size, or score the whole corpus it draws from, or use --no-base-mix if the base is another "
            "corpus; or allow it: --force (selector select), --force-epochs (selector run)."
            + (
                f" Note also that no document qualifies for {', '.join(empty)} (their streams would be empty): "
                "see `selector score`'s calibration warning, or select by rank with --top-fraction THEME=0.001."
                if empty
                else ""
            )
        )


def _stream_documents(p: _Pool, i: int, b: _Budget) -> tuple[pl.DataFrame, int, int]:
    """Stream i's documents, their unique tokens and the stream's target tokens."""
    t = p.up[i]
    s = p.cand.filter(pl.col("_best") == i).drop("_best").sort("source", "row")
    unique = int(s["n_tokens"].sum())
    if t.target_tokens:
        target = int(t.target_tokens)
    elif t.target_share:
        target = round(t.target_share * b.total)
    else:
        target = unique
    return s, unique, target


def _repeats(p: _Pool, t: ThemeConfig, s: pl.DataFrame, target: int) -> tuple[np.ndarray, bool]:
    """Each document's expected repeats towards the stream's target (see expected_repeats), and whether the cap binds."""
    sc = p.sc
    tokens = s["n_tokens"].to_numpy()
    if t.target_tokens or t.target_share:
        e, capped = expected_repeats(tokens, s[f"score_{t.name}"].to_numpy(), target, sc.max_repeats, sc.rule)
    else:  # no target: each qualifying document once
        e, capped = np.ones(len(tokens)), False
    return e, capped


def _sample(p: _Pool, t: ThemeConfig, s: pl.DataFrame, e: np.ndarray) -> pl.DataFrame:
    """Whole copies from the expected repeats by seeded systematic sampling (see whole_copies), as `repeats`."""
    seed = p.sc.seed
    ids = s["doc_id"].to_list()
    keys = _unit_key(seed, t.name, ids)
    order = np.argsort(keys, kind="stable")
    u0 = float(_unit_key(seed, t.name, ["\x00offset"])[0])
    reps = whole_copies(e, u0, order) if len(e) else np.zeros(0, dtype=np.int64)
    return s.with_columns(
        pl.Series("repeats", reps, dtype=pl.Int64), pl.Series("_expected", e, dtype=pl.Float64)
    )


def _refuse_stream_epochs(p: _Pool, t: ThemeConfig, s: pl.DataFrame, b: _Budget, force: bool) -> None:
    """Refuse, unless forced, a stream whose documents would be seen more than `hard_max_epochs` times."""
    sc, base_add = p.sc, b.base_add
    top_reps = int(s["repeats"].to_numpy().max(initial=0))
    if top_reps and top_reps + base_add > sc.hard_max_epochs and not force:
        seen = top_reps + base_add
        if base_add > sc.hard_max_epochs - 1:
            fix = (
                f"the base mix alone is read {_num(base_add)} times: --total-tokens {b.total:,} over a scored "
                f"corpus of {p.base_tokens:,} tokens. Give the training run's real size, or score the whole "
                "corpus it draws from, or use --no-base-mix if the base is another corpus"
            )
        else:
            fix = "Lower max_repeats or the target"
        raise ManifestError(
            f"stream {t.name}: documents would be seen {_num(seen)} times ({top_reps} repeats + "
            f"{_num(base_add)} base pass(es)), past select.hard_max_epochs = {sc.hard_max_epochs} (returns from "
            f"repetition vanish around 16 epochs). {fix}; or allow it: --force (selector select), "
            "--force-epochs (selector run)."
        )


def _keep_drawn(
    p: _Pool, t: ThemeConfig, s: pl.DataFrame, unique: int, target: int, b: _Budget
) -> pl.DataFrame:
    """Keep the stream's drawn documents with their weights and reasons, and reject the undrawn ones."""
    sc, thr, base_add = p.sc, p.thr, b.base_add
    chosen = s.filter(pl.col("repeats") > 0)
    not_drawn = s.filter(pl.col("repeats") == 0)
    p.reject(
        not_drawn,
        t.name,
        pl.format(
            "not drawn: the stream's target ({} tokens) is below its unique tokens ({}); expected {} copies",
            pl.lit(f"{target:,}"),
            pl.lit(f"{unique:,}"),
            pl.col("_expected").round(2),
        ),
    )
    thr_txt = (
        f"top {t.top_fraction:g} (score >= {thr[t.name]:.3f})"
        if t.top_fraction
        else f"threshold {thr[t.name]:.3f}"
    )
    chosen = chosen.with_columns(
        theme=pl.lit(t.name),
        weight=(pl.col("repeats") + base_add).cast(pl.Float64),
        reason=pl.format(
            f"{t.name}: {{}}; {{}} of at most {sc.max_repeats} repeats{{}}{{}}",
            pl.when(pl.col(f"score_{t.name}") >= thr[t.name])
            .then(pl.format(f"score {{}} >= {thr_txt}", pl.col(f"score_{t.name}").round(3)))
            .otherwise(
                pl.format(f"score {{}} < {thr_txt} but labelled on", pl.col(f"score_{t.name}").round(3))
            ),
            pl.col("repeats"),
            pl.when(pl.col("repeats") >= sc.max_repeats).then(pl.lit(" (cap reached)")).otherwise(pl.lit("")),
            pl.when(pl.col(f"_on_{t.name}").fill_null(False))
            .then(pl.format("; confirmed on by {}", pl.col(f"_why_{t.name}")))
            .otherwise(pl.lit("")),
        ),
    ).drop("_expected")
    p.docs.append(chosen)
    return chosen


def _record_stream(
    p: _Pool,
    t: ThemeConfig,
    s: pl.DataFrame,
    chosen: pl.DataFrame,
    unique: int,
    target: int,
    capped: bool,
    b: _Budget,
) -> None:
    """Add the stream's figures (and domains) for the manifest, and warn where it falls short or is empty."""
    sc, thr, base_add = p.sc, p.thr, b.base_add
    achieved = int((chosen["n_tokens"] * chosen["repeats"]).sum())
    sel_unique = int(chosen["n_tokens"].sum())
    n_candidates = p.n_candidates[t.name]
    row: dict[str, Any] = {
        "theme": t.name,
        "threshold": thr[t.name],
        "candidates": n_candidates,
        "qualifying_documents": s.height,
        "qualifying_tokens": unique,
        "unique_documents": chosen.height,
        "unique_tokens": sel_unique,
        "target_tokens": target,
        "achieved_tokens": achieved,
        "epochs": round(achieved / sel_unique, 4) if sel_unique else 0.0,
        "effective_epochs": round((achieved + base_add * sel_unique) / sel_unique, 4) if sel_unique else 0.0,
        "cap": sc.max_repeats,
        "capped": bool(capped),
        "shortfall_tokens": max(0, target - achieved),
        "shortfall_share": round(max(0, target - achieved) / target, 4) if target else 0.0,
    }
    for x in p.stance:
        hit = chosen.filter(p.q(x))
        row[f"{x}_documents"] = hit.height
        row[f"{x}_tokens"] = int((hit["n_tokens"] * hit["repeats"]).sum())
    row.update(organic_figures(chosen))
    p.stream_rows.append(row)
    p.domains[t.name] = domain_distribution(chosen)
    if capped:
        p.warnings.append(
            f"stream {t.name}: max_repeats = {sc.max_repeats} binds; it reaches {achieved:,} of {target:,} "
            f"target tokens ({100 * row['shortfall_share']:.1f}% short). Lower the target or find more documents."
        )
    if not s.height:
        if n_candidates:
            p.warnings.append(
                f"stream {t.name}: all {n_candidates} document(s) at or above the threshold "
                f"{thr[t.name]:.3f} were left out (exclusions, provenance or generated-text rules, duplicates, "
                "other streams, the domain cap): see rejected.parquet"
            )
        else:
            p.warnings.append(f"stream {t.name}: no document reaches the threshold {thr[t.name]:.3f}")


def _refuse_overfull(p: _Pool, b: _Budget) -> None:
    """Refuse streams that, as drawn, hold more tokens than an explicit total."""
    if p.sc.total_tokens != "auto" and p.achieved > b.total:
        raise ManifestError(
            f"the streams hold {p.achieved:,} tokens, more than --total-tokens {b.total:,}. Give the training "
            "run's real size, or lower the targets."
        )


def _base_passes(p: _Pool, b: _Budget) -> None:
    """Settle the run's total and the base mix's passes over the scored corpus, now the streams are drawn."""
    sc, base_tokens, achieved_all = p.sc, p.base_tokens, p.achieved
    if sc.total_tokens == "auto":
        # the run is the base mix once (if kept) plus the streams as drawn (targets were set from the shares)
        b.total = (base_tokens if sc.base_in_mix else 0) + achieved_all
    b.base_epochs = (b.total - achieved_all) / base_tokens if sc.base_in_mix and base_tokens else 0.0
    if sc.total_tokens != "auto" and sc.base_in_mix and abs(b.base_epochs - 1) > 0.01:
        p.warnings.append(
            f"with total_tokens {b.total:,}, the base mix ({base_tokens:,} tokens) fills the rest of the run: "
            f"{b.base_epochs:.2f} passes over the scored corpus, which the weights and effective epochs include"
        )


def _assemble(p: _Pool, b: _Budget) -> Selection:
    """The Selection: the chosen documents, the streams' figures and the rejections, in their manifest schemas."""
    sc, themes = p.sc, p.cfg.theme_names
    score_cols = [f"score_{t}" for t in themes]
    doc_cols = [
        "doc_id", "source", "row", "url", "theme", *score_cols, "n_chars", "n_tokens", "repeats", "weight", "reason",
        *PROV_COLUMNS, "text_hash",
    ]  # fmt: skip
    doc_schema = {
        "doc_id": pl.String, "source": pl.String, "row": pl.Int64, "url": pl.String, "theme": pl.String,
        **dict.fromkeys(score_cols, pl.Float32), "n_chars": pl.Int64, "n_tokens": pl.Int64,
        "repeats": pl.Int64, "weight": pl.Float64, "reason": pl.String,
        "domain": pl.String, "crawl_date": pl.String, "warc_record_id": pl.String, "offset": pl.Int64,
        "payload_digest": pl.String, "content_sha1": pl.String, "text_hash": pl.String, "lang": pl.String, "generated_pattern": pl.String,
    }  # fmt: skip
    docs = p.docs
    documents = pl.concat([d.select(doc_cols) for d in docs]) if docs else pl.DataFrame(schema=doc_schema)
    documents = documents.cast(doc_schema)  # type: ignore[arg-type]
    rej_schema = {"doc_id": pl.String, "source": pl.String, "row": pl.Int64, "theme": pl.String,
                  "score": pl.Float32, "reason": pl.String}  # fmt: skip
    rejected = p.rejected
    rej = pl.concat([r.cast(rej_schema) for r in rejected]) if rejected else pl.DataFrame(schema=rej_schema)  # type: ignore[arg-type]
    theme_order = {t: i for i, t in enumerate(themes)}
    rej = rej.sort(pl.col("theme").replace_strict(theme_order, return_dtype=pl.Int64), "source", "row")
    streams = pl.DataFrame(p.stream_rows) if p.stream_rows else pl.DataFrame(schema={"theme": pl.String})
    achieved_all = p.achieved
    return Selection(
        documents=documents,
        streams=streams,
        rejected=rej,
        thresholds=p.thr,
        total_tokens=b.total,
        base={
            "in_mix": sc.base_in_mix,
            "documents": p.n_docs,
            "tokens": p.base_tokens,
            "epochs": round(b.base_epochs, 4),
            "run_tokens": b.total - achieved_all if sc.base_in_mix else 0,
        },
        warnings=p.warnings,
        domains=p.domains,
        dedup=p.dedup,
    )


def _packages() -> dict[str, str | None]:
    out: dict[str, str | None] = {"selector": __version__}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _classifier_info(meta: dict[str, Any]) -> dict[str, Any]:
    path = meta.get("classifier")
    card: dict[str, Any] | None = None
    if path and (Path(path) / "card.json").exists():
        full = json.loads((Path(path) / "card.json").read_text())
        keep = ("selector_version", "themes", "fingerprint", "trained_on", "validation", "gates", "thresholds",
                "embedding", "cascade", "created")  # fmt: skip
        card = {k: full[k] for k in keep if k in full}
    return {"path": path, "fingerprint": meta.get("classifier_fingerprint"), "card": card}


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    df.write_parquet(path, compression="zstd", statistics=True)


MANIFEST_FILES = ("documents.parquet", "streams.parquet", "rejected.parquet", "manifest.json")


def check_manifest_out(out_dir: str | Path) -> None:
    """Refuse (ManifestError) when `out_dir/manifest/` holds files `selector select` did not write: replacing
    the manifest would delete them."""
    mdir = Path(out_dir) / MANIFEST_DIR
    if mdir.exists() and not mdir.is_dir():
        raise ManifestError(
            f"{mdir} is a file, where `selector select` writes a directory; choose another --out."
        )
    foreign = foreign_files(mdir, lambda rel: rel in MANIFEST_FILES)
    if foreign:
        raise ManifestError(
            foreign_files_message(mdir, foreign, "selector select", "writing the new manifest would delete")
        )


def select(
    scores_dir: str | Path,
    out_dir: str | Path,
    cfg: Config,
    force: bool = False,
    progress: Callable[[str], None] = log.info,
    labels: LabelSet | None = None,
) -> dict[str, Any]:
    """Select from `scores_dir` and write `out_dir/manifest/` atomically; returns manifest.json's content.
    `labels` veto (off) or confirm (on) candidates theme by theme; their reasons go into `reason`."""
    check_manifest_out(out_dir)
    info = load_scores_info(scores_dir)
    sel = build_selection(cfg, info, force=force, labels=labels)
    for w in sel.warnings:
        progress(f"warning: {w}")
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_at": _created_at(),
        "selector_version": __version__,
        "seed": cfg.select.seed,
        "config": cfg.to_dict(),
        "config_hash": cfg.hash(),
        "scores_dir": str(info.dir.resolve()),
        "inputs": info.inputs,
        "classifier": _classifier_info(info.meta),
        "packages": _packages(),
        "total_tokens": sel.total_tokens,
        "base": sel.base,
        "thresholds": sel.thresholds,
        "streams": sel.streams.to_dicts(),
        "selection": {
            "rule": cfg.select.rule,
            "max_repeats": cfg.select.max_repeats,
            "hard_max_epochs": cfg.select.hard_max_epochs,
            "forced": force,
            "exclude_above": dict(cfg.select.exclude_above),
            "documents": sel.documents.height,
            "unique_tokens": int(sel.documents["n_tokens"].sum()),
            "stream_tokens": int((sel.documents["n_tokens"] * sel.documents["repeats"]).sum()),
            "rejected": sel.rejected.height,
            "rejected_by_reason": _reason_counts(sel.rejected),
            "duplicates_removed": sel.dedup,
            "labels": labels.info if labels is not None and labels.labels else None,
            "warnings": sel.warnings,
        },
        "domains": sel.domains,
        "organic": {
            "pre_llm_cutoff": PRE_LLM_CUTOFF,
            "generated_patterns": GENERATED_PATTERNS,
            "streams": {
                r["theme"]: {
                    k: r[k]
                    for k in (
                        "provenance_share",
                        "pre_llm_share",
                        "generated_flagged_documents",
                        "generated_flagged_tokens",
                    )
                }
                for r in sel.streams.to_dicts()
            },
        },
        "files": {
            "documents": "documents.parquet",
            "streams": "streams.parquet",
            "rejected": "rejected.parquet",
        },
    }
    out = Path(out_dir) / MANIFEST_DIR
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, ".manifest-")
    try:
        write_parquet(sel.documents, tmp / "documents.parquet")
        write_parquet(sel.streams, tmp / "streams.parquet")
        write_parquet(sel.rejected, tmp / "rejected.parquet")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _reason_counts(rej: pl.DataFrame) -> dict[str, int]:
    if not rej.height:
        return {}
    kind = rej["reason"].str.extract(r"^([^:]+?)(?::|$)", 1).fill_null("other")
    counts = kind.value_counts(sort=True)
    return {str(k): int(v) for k, v in counts.iter_rows()}


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    """A short human summary of a manifest, one line per stream (with the tokens of stance themes in it)."""
    streams = manifest["streams"]
    stance = [t["name"] for t in manifest["config"]["themes"] if not t.get("upsample", True)]
    cols = [("stream", "theme"), ("candidates", "candidates"), ("selected", "unique_documents"),
            ("unique tok", "unique_tokens"), ("target tok", "target_tokens"), ("achieved", "achieved_tokens"),
            ("epochs", "epochs"), ("shortfall", "shortfall_tokens"),
            *((f"{x} tok", f"{x}_tokens") for x in stance)]  # fmt: skip

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    table = [[h for h, _ in cols]] + [[cell(s[k]) for _, k in cols] for s in streams]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    lines = [
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    base = manifest["base"]
    passes = base.get("epochs", 1.0)
    kept = f"kept in the run, {passes:.2f} pass(es)" if base["in_mix"] else "not in the run"
    lines.append(
        f"base mix: {base['documents']:,} documents, {base['tokens']:,} tokens ({kept}); "
        f"run total {manifest['total_tokens']:,} tokens"
    )
    return lines
