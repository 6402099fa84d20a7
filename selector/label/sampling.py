"""Which documents to label: `plan_labels(scores, ...)` -> a probability sample of N scored documents that
spends the budget where labels teach the classifier the most and still lets prevalence, precision and
recall be estimated without bias; `estimate(plan, labels, ...)` -> those estimates with 95% intervals.

The design (docs/labelling.md):

- **Strata per theme.** `top`: the best-scored documents (the head of the ranking, where precision is
  decided); `threshold`: a window of documents ranked around the theme's selection threshold, above and
  below (where one label moves the decision most); `disagree`: embedded documents on which the fastText
  student and the embedding head disagree most (rank against rank: what distillation gets wrong). Each
  theme gets an equal share of the non-background budget, split over its strata by `SampleConfig`.
- **Background.** A uniform sample of every scored document: the only part of the design that reaches
  the documents no classifier ranks high, so the only way to estimate recall and prevalence.
- **Near duplicates spread out.** Within the ranked strata, exact duplicates (same text hash) and near
  duplicates (MinHash Jaccard >= `near_dup_threshold`) form a cluster that shares one document's worth of
  inclusion probability: a cluster of 30 passages costs the budget what one document does.
- **Inclusion probabilities.** A document's probability in a stratum is the stratum's quota over its size
  (divided by its cluster's size); over all strata, pi = 1 - (1 - pi_background) * prod(1 - pi_stratum):
  the strata are combined as independent draws. The background rate is then solved so the expected sample
  size is the budget, and exactly `budget` documents are drawn by Pareto pips sampling (Rosen 1997): rank
  by (u / (1 - u)) / (pi / (1 - pi)) with a seeded uniform u per document, keep the smallest. Documents
  already labelled (earlier rounds) are included with certainty at no cost.
- **Estimator.** Every labelled document carries weight 1 / pi. Prevalence, precision and recall are Hajek
  ratios (sum of weights of on-theme documents over sum of weights), with a linearized variance under
  Poisson sampling, sum (1 - pi) w^2 (a - R b)^2 / (sum w b)^2, turned into an effective sample size for a
  Wilson interval. Documents the labeller answered `unsure` (or could not answer) are left out of the
  ratios: the estimates assume they are on-theme at the same rate as their stratum's other documents.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from selector.core.errors import SelectorError
from selector.core.keys import seeded_key

if TYPE_CHECKING:
    from selector.core.config import Config
    from selector.label.annotate import AnnotateOptions
    from selector.select.scores import ScoresInfo

STRATA = ("top", "threshold", "disagree")
BACKGROUND = "background"
KNOWN = "labelled"
Z95 = 1.959963984540054


@dataclass(frozen=True)
class SampleConfig:
    """How a labelling budget is split. Shares of each theme's part of the budget: `top`, `threshold`,
    `disagree`; `background`: the share of the whole budget drawn uniformly from every document."""

    background: float = 0.3
    top: float = 0.3
    threshold: float = 0.45
    disagree: float = 0.25
    window: float = 4.0  # the threshold and disagreement strata hold `window` times their quota of documents
    near_dup_threshold: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.background < 1:
            raise SelectorError(f"sample background share must be in (0, 1), got {self.background}")
        for k in ("top", "threshold", "disagree"):
            if getattr(self, k) < 0:
                raise SelectorError(f"sample {k} share must be >= 0, got {getattr(self, k)}")
        if self.top + self.threshold + self.disagree <= 0:
            raise SelectorError("sample top + threshold + disagree shares must add up to more than 0")
        if self.window < 1:
            raise SelectorError(f"sample window must be >= 1, got {self.window}")


def _uniform(seed: int, salt: str, source: list[str], row: list[int]) -> np.ndarray:
    """A seeded uniform number in (0, 1) per document, independent of input order."""
    keys = np.array(
        [seeded_key(seed, salt, s, r) for s, r in zip(source, row, strict=True)], dtype=np.float64
    )
    return (keys + 0.5) / 2.0**64


def _pct_rank(x: np.ndarray) -> np.ndarray:
    """Rank of each value among `x`, scaled to [0, 1] (ties share their mean rank)."""
    if len(x) <= 1:
        return np.zeros(len(x))
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # mean rank for ties
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return np.asarray(sums[inv] / counts[inv] / (len(x) - 1))


def clusters(
    frame: pl.DataFrame,
    rows: np.ndarray,
    texts: Callable[[pl.DataFrame], Iterable[tuple[int, str]]] | None,
    near_dup_threshold: float,
) -> np.ndarray:
    """A cluster id per row of `frame` (its own index unless it duplicates another): exact duplicates by
    `content_sha1` everywhere, near duplicates (MinHash) among `rows` when `texts` can read them (it
    yields (frame index, text) for the frame rows it is given)."""
    n = frame.height
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    if "content_sha1" in frame.columns:
        first: dict[str, int] = {}
        for i, h in enumerate(frame["content_sha1"].to_list()):
            if h is None:
                continue
            if h in first:
                union(first[h], i)
            else:
                first[h] = i
    if texts is not None and near_dup_threshold < 1 and len(rows):
        from datasketch.lsh import _optimal_param

        from selector.select.dedup import MINHASH_PERMS, minhash_signature

        bands, width = _optimal_param(near_dup_threshold, MINHASH_PERMS, 0.5, 0.5)
        buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
        sigs: dict[int, np.ndarray] = {}
        sub = frame[np.sort(rows).tolist()].with_columns(_i=pl.Series(np.sort(rows)))
        for i, text in texts(sub):
            sig = minhash_signature(text)
            sigs[i] = sig
            for b in range(bands):
                key = sig[b * width : (b + 1) * width].tobytes()
                for j in buckets[b].get(key, ()):
                    if float((sigs[j] == sig).mean()) >= near_dup_threshold:
                        union(i, j)
                buckets[b].setdefault(key, []).append(i)
    return np.array([find(i) for i in range(n)])


def _quota_split(total: float, shares: Sequence[float]) -> list[float]:
    s = sum(shares)
    return [total * x / s for x in shares]


def plan_labels(
    scores: pl.DataFrame,
    thresholds: Mapping[str, float],
    budget: int,
    cfg: SampleConfig = SampleConfig(),
    labelled: Iterable[str] = (),
    texts: Callable[[pl.DataFrame], Iterable[tuple[int, str]]] | None = None,
    candidates_only: bool = False,
) -> pl.DataFrame:
    """Draw the documents to label from `scores` (one row per scored document: doc_id, source, row, and per
    theme in `thresholds` score_/ft_/emb_ columns). Returns one row per drawn document: doc_id, source,
    row, `pi` (its inclusion probability), `strata` (where it was drawn from, e.g. "honesty:top
    background"), `new` (false for documents in `labelled`, which cost nothing) and the score columns.
    With `candidates_only`, the plan is every document that reaches a threshold (pi = 1), for vetting."""
    if budget < 1:
        raise SelectorError(f"the labelling budget must be at least 1 document, got {budget}")
    themes = list(thresholds)
    n = scores.height
    if n == 0:
        raise SelectorError("no scored document to draw from: the scores are empty.")
    for t in themes:
        if f"score_{t}" not in scores.columns:
            raise SelectorError(f"the scores have no column score_{t}; score with a classifier that has {t}.")
    source, row = scores["source"].to_list(), scores["row"].to_list()
    known = np.isin(scores["doc_id"].to_numpy(), np.array(sorted(set(labelled)), dtype=object))
    score_cols = [c for c in scores.columns if c.split("_", 1)[0] in ("score", "ft", "emb")]
    keep = [
        "doc_id",
        "source",
        "row",
        *(c for c in ("url", "domain", "n_chars", "n_tokens") if c in scores.columns),
    ]

    if candidates_only:
        hit = np.zeros(n, dtype=bool)
        cand_tags: list[list[str]] = [[] for _ in range(n)]
        for t in themes:
            s = scores[f"score_{t}"].to_numpy()
            for i in np.flatnonzero(s >= thresholds[t]):
                hit[i] = True
                cand_tags[int(i)].append(f"{t}:candidate")
        idx = np.flatnonzero(hit)
        return (
            scores[idx.tolist()]
            .select(*keep, *score_cols)
            .with_columns(
                pi=pl.lit(1.0),
                strata=pl.Series([" ".join(cand_tags[int(i)]) for i in idx], dtype=pl.String),
                new=pl.Series(~known[idx]),
            )
        )

    per_theme = budget * (1 - cfg.background) / max(len(themes), 1)
    q_top, q_thr, q_dis = _quota_split(per_theme, [cfg.top, cfg.threshold, cfg.disagree])
    stratum_pi: dict[str, np.ndarray] = {}  # "theme:stratum" -> per-document probability (0 outside)
    ranked_rows: set[int] = set()
    members: dict[str, np.ndarray] = {}
    for t in themes:
        s = scores[f"score_{t}"].fill_null(0.0).to_numpy().astype(np.float64)
        order = np.argsort(-s, kind="stable")
        n_top = min(n, math.ceil(q_top))
        top = order[:n_top]
        r_thr = int((s >= thresholds[t]).sum())  # the threshold's rank
        w = min(n, max(1, math.ceil(cfg.window * q_thr)))
        lo = min(max(n_top, r_thr - w // 2), max(n - w, n_top))
        band = order[lo : lo + w]
        taken = np.zeros(n, dtype=bool)
        taken[top] = True
        taken[band] = True
        dis = np.zeros(0, dtype=np.int64)
        emb_col, ft_col = f"emb_{t}", f"ft_{t}"
        if emb_col in scores.columns and ft_col in scores.columns and q_dis > 0:
            e = scores[emb_col].to_numpy()
            f = scores[ft_col].fill_null(0.0).to_numpy().astype(np.float64)
            emb_rows = np.flatnonzero(~np.isnan(np.asarray(e, dtype=np.float64)) & ~taken)
            if len(emb_rows):
                d = np.abs(_pct_rank(np.asarray(e, dtype=np.float64)[emb_rows]) - _pct_rank(f[emb_rows]))
                wd = min(len(emb_rows), max(1, math.ceil(cfg.window * q_dis)))
                dis = emb_rows[np.argsort(-d, kind="stable")[:wd]]
        members[f"{t}:top"], members[f"{t}:threshold"], members[f"{t}:disagree"] = top, band, dis
        ranked_rows.update(top.tolist(), band.tolist(), dis.tolist())
    rows = np.array(sorted(ranked_rows), dtype=np.int64)
    cl = clusters(scores, rows, texts, cfg.near_dup_threshold)
    for t in themes:
        for name, quota in (("top", q_top), ("threshold", q_thr), ("disagree", q_dis)):
            m = members[f"{t}:{name}"]
            p = np.zeros(n)
            if len(m) and quota > 0:
                # clusters share one document's probability: a cluster's members in the stratum split it
                cid = cl[m]
                uniq, inv, counts = np.unique(cid, return_inverse=True, return_counts=True)
                n_units = len(uniq)
                unit_p = 1.0 if name == "top" else min(1.0, quota / n_units)
                p[m] = unit_p / counts[inv]
            stratum_pi[f"{t}:{name}"] = p

    not_bg = np.ones(n)
    for p in stratum_pi.values():
        not_bg *= 1 - p
    not_bg[known] = 0.0  # already labelled: certain, free
    free_budget = budget

    # the background rate that makes the expected number of new documents equal to the budget
    def expected(rate: float) -> float:
        pi = 1 - (1 - rate) * not_bg
        return float(pi[~known].sum())

    if expected(0.0) >= free_budget:
        rate = 0.0
        scale = free_budget / max(expected(0.0), 1e-12)
        pi = np.where(known, 1.0, np.minimum(1.0, (1 - not_bg) * scale))
    else:
        lo_r, hi_r = 0.0, 1.0
        for _ in range(60):
            mid = (lo_r + hi_r) / 2
            if expected(mid) < free_budget:
                lo_r = mid
            else:
                hi_r = mid
        rate = hi_r
        pi = np.minimum(1.0, 1 - (1 - rate) * not_bg)
        pi[known] = 1.0
    u = _uniform(cfg.seed, "label-plan", source, row)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (u / (1 - u)) / (pi / (1 - pi))
    q[pi >= 1] = -1.0  # certain
    q[pi <= 0] = np.inf
    cand = np.flatnonzero(~known)
    pick_new = cand[np.argsort(q[cand], kind="stable")[: min(free_budget, int(np.isfinite(q[cand]).sum()))]]
    chosen = np.sort(np.concatenate([pick_new, np.flatnonzero(known)]))
    # which chosen documents the background drew (for the tags only): a seeded draw per chosen document
    bg_u = _uniform(cfg.seed, "label-plan-bg", [source[i] for i in chosen], [row[i] for i in chosen])
    tags: list[str] = []
    for k, i in enumerate(chosen.tolist()):
        tg = [s for s, p in stratum_pi.items() if p[i] > 0]
        if known[i]:
            tg.append(KNOWN)
        elif not tg or bg_u[k] < rate:
            tg.append(BACKGROUND)
        tags.append(" ".join(tg))
    return (
        scores[chosen.tolist()]
        .select(*keep, *score_cols)
        .with_columns(
            pi=pl.Series(pi[chosen], dtype=pl.Float64),
            strata=pl.Series(tags, dtype=pl.String),
            new=pl.Series(~known[chosen]),
        )
    )


def plan_hash(plan: pl.DataFrame) -> str:
    """A short hash of which documents a plan drew with which probabilities (pinned in tests)."""
    blob = "\n".join(f"{d}\t{p:.12g}" for d, p in plan.select("doc_id", "pi").iter_rows())
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def wilson(p: float, n_eff: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion p at an (effective) sample size n_eff."""
    if n_eff <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p), 0.0) / n_eff + z * z / (4 * n_eff * n_eff))
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio(a: np.ndarray, b: np.ndarray, pi: np.ndarray) -> dict[str, Any]:
    """The Hajek ratio sum(w a) / sum(w b) (w = 1 / pi) with its linearized variance under Poisson sampling
    and a 95% Wilson interval at the effective sample size it implies."""
    w = 1.0 / pi
    den = float((w * b).sum())
    if den <= 0:
        return {"estimate": None, "low": None, "high": None, "n": int((b > 0).sum()), "effective_n": 0.0}
    r = float((w * a).sum()) / den
    var = float(((1 - pi) * w * w * (a - r * b) ** 2).sum()) / (den * den)
    n_b = int((b > 0).sum())
    n_eff = r * (1 - r) / var if var > 0 else float(n_b)
    n_eff = min(n_eff, float(n_b)) if n_b else 0.0
    lo, hi = wilson(r, n_eff)
    return {
        "estimate": round(r, 4),
        "low": round(lo, 4),
        "high": round(hi, 4),
        "n": n_b,
        "effective_n": round(n_eff, 1),
    }


def estimate(
    plan: pl.DataFrame,
    labels: Mapping[tuple[str, str], int],
    thresholds: Mapping[str, float],
    population: int,
    selected: Mapping[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Prevalence, precision and recall per theme from a plan's labelled documents (`labels`: (doc_id,
    theme) -> 1/0). `selected`: per theme, the doc_ids a stream holds (a manifest); without it, a document
    is selected when its score reaches the theme's threshold."""
    out: dict[str, Any] = {"population": population, "planned": plan.height, "themes": {}}
    ids = plan["doc_id"].to_list()
    pi = plan["pi"].to_numpy().astype(np.float64)
    for t, thr in thresholds.items():
        y = np.array([labels.get((d, t), -1) for d in ids])
        have = y >= 0
        if not have.any():
            out["themes"][t] = {"labelled": 0}
            continue
        yy, pp = y[have].astype(np.float64), pi[have]
        if selected is not None and t in selected:
            sel = np.array([d in selected[t] for d in ids])[have].astype(np.float64)
            rule = "in the manifest's stream"
        else:
            sel = (plan[f"score_{t}"].fill_null(0.0).to_numpy()[have] >= thr).astype(np.float64)
            rule = f"score >= {thr:.4g}"
        ones = np.ones(len(yy))
        prev = ratio(yy, ones, pp)
        w = 1.0 / pp
        out["themes"][t] = {
            "labelled": int(have.sum()),
            "on_theme_labels": int(yy.sum()),
            "selected_if": rule,
            "prevalence": prev,
            "on_theme_documents": None
            if prev["estimate"] is None
            else round(prev["estimate"] * population, 1),
            "precision": ratio(yy * sel, sel, pp),
            "recall": ratio(yy * sel, yy, pp),
            "selected_documents": round(float((w * sel).sum() * population / w.sum()), 1),
        }
    return out


def plan_from_scores(
    budget: int,
    cfg: Config,
    scores_dir: str | Path,
    sample_cfg: SampleConfig = SampleConfig(),
    labelled: Iterable[str] = (),
    candidates_only: bool = False,
) -> tuple[pl.DataFrame, dict[str, float], ScoresInfo]:
    """The labelling plan over a finished scores directory (thresholds as `select` resolves them from
    `cfg`); near duplicates are found by reading the ranked strata's texts back from the scored shards."""
    from selector.select.scores import load_scores_info
    from selector.select.scores import stream_thresholds as _thresholds

    info = load_scores_info(scores_dir)
    themes = [t for t in cfg.theme_names if t in info.themes]
    if not themes:
        raise SelectorError(f"{info.dir} has none of the configured themes ({', '.join(cfg.theme_names)}).")
    scores = pl.concat([pl.read_parquet(p) for p in info.parts], how="vertical_relaxed")
    thr = _thresholds(cfg, info, scores.lazy(), scores.height)
    thr = {t: thr[t] for t in themes}

    def texts(sub: pl.DataFrame) -> Iterator[tuple[int, str]]:
        for hit in read_texts(info, cfg, sub.select("source", "row", "doc_id", "n_chars", "_i")):
            yield from zip(hit["_i"].to_list(), hit["text"].to_list(), strict=True)

    plan = plan_labels(scores, thr, budget, sample_cfg, labelled, texts, candidates_only)
    return plan, thr, info


def read_texts(info: ScoresInfo, cfg: Config, rows: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """`rows` of a scores directory (source, row, doc_id, n_chars and any other columns) with their text,
    read back from the shards they were scored from (checked unchanged first)."""
    from selector.read.back import read_back

    yield from read_back(info.inputs, cfg.read, rows, info.dir / "_inputs.json")


def annotate_scores(
    scores_dir: str | Path,
    cfg: Config,
    opts: AnnotateOptions,
    sample_cfg: SampleConfig = SampleConfig(),
    labels_paths: Sequence[str | Path] = (),
    candidates_only: bool = False,
    progress: Callable[[str], None] = lambda m: None,
) -> dict[str, Any]:
    """`selector annotate --scores DIR`: draw the labelling plan (`opts.budget` new documents; documents in
    `labels_paths` are certain and free), write it beside the labels (LABELS.plan.parquet and .plan.json,
    for `selector audit --labels`), read the new documents' texts back from the scored shards and label
    them with `selector annotate`'s client. Returns the annotation card, with the plan's summary."""
    import json

    from selector.core.labels import read_label_files
    from selector.label.annotate import annotate_documents

    known = (
        {d for d, _t in read_label_files(list(labels_paths), cfg.theme_names).labels}
        if labels_paths
        else set()
    )
    plan, thr, info = plan_from_scores(opts.budget, cfg=cfg, scores_dir=scores_dir, sample_cfg=sample_cfg,
                                       labelled=known, candidates_only=candidates_only)  # fmt: skip
    population = sum(int(i["scored"]) for i in info.inputs)
    new = plan.filter(pl.col("new"))
    if candidates_only and new.height > opts.budget:
        best = pl.max_horizontal([pl.col(f"score_{t}") for t in thr])
        keep = new.sort(best, descending=True).head(opts.budget).select("source", "row")
        progress(
            f"warning: {new.height:,} candidates reach a threshold; labelling the {opts.budget:,} best-scored "
            "(raise --budget to vet them all: the rest stay unvetted in the streams)"
        )
        plan = (
            plan.join(keep.with_columns(_k=pl.lit(True)), on=["source", "row"], how="left")
            .filter(pl.col("_k").fill_null(False) | ~pl.col("new"))
            .drop("_k")
        )
        new = plan.filter(pl.col("new"))
    counts: dict[str, int] = {}
    for tags in plan["strata"].to_list():
        for tag in tags.split():
            counts[tag] = counts.get(tag, 0) + 1
    strategy = (
        f"every document at or above a threshold ({new.height:,}) of {info.dir}"
        if candidates_only
        else f"labelling plan over {population:,} scored documents of {info.dir} (selector/label/sampling.py: top, "
        f"threshold, disagree strata per theme and a {sample_cfg.background:.0%} background; Pareto pips)"
    )
    progress(
        f"plan: {new.height:,} documents to label ({plan.height - new.height:,} already labelled); {counts}"
    )
    stem = opts.out.with_suffix("")
    plan_path = stem.with_name(stem.name + ".plan.parquet")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan.write_parquet(plan_path)
    plan_meta = {
        "scores_dir": str(info.dir.resolve()),
        "population": population,
        "thresholds": thr,
        "budget": opts.budget,
        "candidates_only": candidates_only,
        "design": {k: getattr(sample_cfg, k) for k in sample_cfg.__dataclass_fields__},
        "strata_counts": counts,
        "plan_hash": plan_hash(plan),
        "labels_known": [str(p) for p in labels_paths],
    }
    plan_path.with_suffix(".json").write_text(json.dumps(plan_meta, indent=2) + "\n")
    if new.height == 0:
        raise SelectorError(
            f"the plan holds no document to label ({plan.height:,} already labelled"
            + (", no document reaches a threshold" if candidates_only else "")
            + f"); wrote {plan_path}."
        )
    rows = new.select("source", "row", "doc_id", "n_chars") if "n_chars" in new.columns else new

    def docs() -> Iterator[tuple[str, str]]:
        for hit in read_texts(info, cfg, rows):
            yield from zip(hit["doc_id"].to_list(), hit["text"].to_list(), strict=True)

    card = annotate_documents(docs(), cfg, dataclasses.replace(opts, budget=new.height), strategy, progress)
    card["plan"] = {
        "file": str(plan_path),
        **{k: plan_meta[k] for k in ("population", "plan_hash", "strata_counts")},
    }
    opts.card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card
