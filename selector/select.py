"""Turn scores into a data-mix manifest: `select(scores_dir, out_dir, cfg)` -> OUT/manifest/ (see docs/manifest.md).

1. Qualify: per theme, documents whose `score_<theme>` reaches its threshold (the config's number, or the
   classifier's calibrated one), or the theme's `top_fraction` of all scored documents.
2. Exclude: documents at or above `select.exclude_above` (e.g. `ai_risk = 0.5`) join no stream.
3. Assign: a document that qualifies for several upsampled themes joins one stream, the theme it scores
   highest on (ties: config order), so no document is multiplied by two streams.
4. Budget: a stream's target is `target_share * total_tokens` (or `target_tokens`; neither: each document
   once). Its mean repeats are `target / unique tokens`. Under `rule = "score"` a document's expected repeats
   are proportional to its score (token-weighted mean 1), under `"uniform"` equal; both are capped at
   `max_repeats`, the excess going to the documents below the cap until the target is met or every document
   is capped (the shortfall is reported).
5. Sample: expected repeats become whole copies by systematic sampling over a seeded order of the documents
   (each gets floor(e) or ceil(e) copies, ceil with probability e - floor(e)); deterministic for a seed.
6. Refuse, unless forced, when a document would be seen more than `hard_max_epochs` times in the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import __version__
from .config import Config
from .errors import ManifestError
from .manifest import MANIFEST_DIR, MANIFEST_FORMAT
from .paths import make_temp_dir
from .score import SCORES

log = logging.getLogger(__name__)

PACKAGES = ("polars", "numpy", "pyarrow", "fasttext-numpy2", "faiss-cpu", "sentence-transformers", "torch")
ID_COLUMNS = ["doc_id", "source", "row", "url", "n_chars", "n_tokens"]


@dataclass(frozen=True)
class ScoresInfo:
    """A finished scores directory: its parts, what made them, and the selection thresholds."""

    dir: Path
    parts: list[Path]
    inputs: list[dict[str, Any]]
    meta: dict[str, Any]
    themes: list[str]


def load_scores_info(scores_dir: str | Path) -> ScoresInfo:
    d = Path(scores_dir)
    if (d / SCORES).is_dir():
        d = d / SCORES
    meta_path = d / "_inputs.json"
    if not meta_path.exists():
        raise ManifestError(
            f"{d} is not a scores directory (no _inputs.json). Run `selector score INPUT --out DIR`."
        )
    meta = json.loads(meta_path.read_text())
    shards = meta.get("shards") or [
        {"part": p, "source": s, "label": Path(s).name, "format": None} for p, s in meta["parts"].items()
    ]
    unfinished = [sh["part"] for sh in shards if not (d / f"{sh['part']}.done").exists()]
    if unfinished:
        raise ManifestError(
            f"scores in {d} are incomplete: {len(unfinished)} of {len(shards)} part(s) unfinished "
            f"({', '.join(unfinished[:5])}). Rerun the same `selector score` command to finish them."
        )
    inputs = []
    for sh in shards:
        stats = json.loads((d / f"{sh['part']}.stats.json").read_text())
        fp = stats.get("signature", {}).get("shard", {})
        inputs.append(
            {
                **sh,
                "size": fp.get("size"),
                "mtime_ns": fp.get("mtime_ns"),
                "documents_in": stats["documents_in"],
                "scored": stats["scored"],
                "skipped": stats["skipped"],
                "skipped_by_reason": stats.get("skipped_by_reason", {}),
            }
        )
    parts = [d / f"{sh['part']}.parquet" for sh in shards]
    themes = [c[len("score_") :] for c in pl.read_parquet_schema(parts[0]) if c.startswith("score_")]
    return ScoresInfo(d, parts, inputs, meta, themes)


@dataclass
class Selection:
    documents: pl.DataFrame
    streams: pl.DataFrame
    rejected: pl.DataFrame
    thresholds: dict[str, float]
    total_tokens: int
    base: dict[str, Any]
    warnings: list[str]


def _thresholds(cfg: Config, info: ScoresInfo, lf: pl.LazyFrame, n_docs: int) -> dict[str, float]:
    calibrated = info.meta.get("calibrated_thresholds") or {}
    out: dict[str, float] = {}
    for t in cfg.themes:
        if t.top_fraction > 0:
            k = max(1, math.ceil(t.top_fraction * n_docs))
            top = lf.select(pl.col(f"score_{t.name}").top_k(k).min()).collect().item()
            out[t.name] = float(top) if top is not None else 1.0
        elif t.threshold == "auto":
            if t.name not in calibrated:
                raise ManifestError(
                    f'themes.{t.name}.threshold is "auto" but the classifier behind {info.dir} has no calibrated '
                    "threshold for it (trained by an older selector). Give --threshold "
                    f"{t.name}=SCORE or --top-fraction {t.name}=FRACTION, or retrain."
                )
            out[t.name] = float(calibrated[t.name])
        else:
            out[t.name] = float(t.threshold)
    return out


def _unit_key(seed: int, theme: str, doc_ids: list[str]) -> np.ndarray:
    """A seeded, order-independent uniform number in [0, 1) per document."""
    vals = [
        int.from_bytes(hashlib.blake2b(f"{seed}\x00{theme}\x00{d}".encode(), digest_size=8).digest(), "big")
        for d in doc_ids
    ]
    return np.array(vals, dtype=np.float64) / 2.0**64


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


def build_selection(cfg: Config, info: ScoresInfo, force: bool = False) -> Selection:
    sc = cfg.select
    missing = [t for t in cfg.theme_names if t not in info.themes]
    if missing:
        raise ManifestError(
            f"{info.dir} has no scores for {', '.join(missing)} (it has {', '.join(info.themes)}). "
            "Use the config the scores were made with, or rescore."
        )
    themes = cfg.theme_names
    score_cols = [f"score_{t}" for t in themes]
    lf = pl.scan_parquet(info.parts).select(*ID_COLUMNS, *score_cols)
    totals = lf.select(pl.len().alias("n"), pl.col("n_tokens").sum().alias("tokens")).collect().row(0)
    n_docs, base_tokens = int(totals[0]), int(totals[1] or 0)
    thr = _thresholds(cfg, info, lf, n_docs)

    qualify = pl.any_horizontal([pl.col(f"score_{t}") >= thr[t] for t in themes])
    cand = lf.filter(qualify).collect().sort("source", "row")
    up = [t for t in cfg.themes if t.upsample]
    rejected: list[pl.DataFrame] = []

    def reject(df: pl.DataFrame, theme: str, reason: pl.Expr) -> None:
        if df.height:
            rejected.append(
                df.select(
                    "doc_id",
                    "source",
                    "row",
                    pl.lit(theme).alias("theme"),
                    pl.col(f"score_{theme}").alias("score"),
                    reason.alias("reason"),
                )
            )

    n_candidates = {t.name: int((cand[f"score_{t.name}"] >= thr[t.name]).sum()) for t in up}
    # exclusions (e.g. ai_risk) come first: an excluded document joins no stream
    excluded = pl.lit(False)
    for ex_theme, ex_at in sc.exclude_above.items():
        excluded = excluded | (pl.col(f"score_{ex_theme}") >= ex_at)
    cand = cand.with_columns(_excluded=excluded)
    for t in up:
        q = cand.filter((pl.col(f"score_{t.name}") >= thr[t.name]) & pl.col("_excluded"))
        why = [
            pl.when(pl.col(f"score_{x}") >= v).then(
                pl.format(f"excluded: {x} score {{}} >= {v:g}", pl.col(f"score_{x}").round(3))
            )
            for x, v in sc.exclude_above.items()
        ]
        reject(q, t.name, pl.coalesce(why) if why else pl.lit("excluded"))
    early_warnings: list[str] = []
    for ex_theme, ex_at in sc.exclude_above.items():
        col = cand[f"score_{ex_theme}"]
        top = float(col.max()) if col.len() else 0.0  # type: ignore[arg-type]
        if not int((col >= ex_at).sum()):
            early_warnings.append(
                f"exclude_above {ex_theme} = {ex_at:g} excluded no document: the highest {ex_theme} score among the "
                f"candidates is {top:.3f} (its threshold: {thr[ex_theme]:.3f}). Scores are "
                "on the classifier's scale; compare with the thresholds in the manifest."
            )
    cand = cand.filter(~pl.col("_excluded")).drop("_excluded")

    # each document joins the stream of the upsampled theme it scores highest on among those it qualifies for
    if up:
        qual_scores = [
            pl.when(pl.col(f"score_{t.name}") >= thr[t.name]).then(pl.col(f"score_{t.name}")).otherwise(-1.0)
            for t in up
        ]
        best = pl.concat_list(qual_scores).list.arg_max()
        cand = cand.with_columns(
            _best=pl.when(pl.max_horizontal(qual_scores) >= 0).then(best).otherwise(None)
        )
    else:
        cand = cand.with_columns(_best=pl.lit(None, dtype=pl.UInt32))
    for i, t in enumerate(up):
        other = cand.filter((pl.col(f"score_{t.name}") >= thr[t.name]) & (pl.col("_best") != i))
        names = {j: u.name for j, u in enumerate(up)}
        reject(
            other.with_columns(_to=pl.col("_best").replace_strict(names, return_dtype=pl.String)),
            t.name,
            pl.format(
                "assigned to {}: it scores higher there ({} > {})",
                pl.col("_to"),
                pl.concat_list([pl.col(f"score_{u.name}") for u in up]).list.get(pl.col("_best")).round(3),
                pl.col(f"score_{t.name}").round(3),
            ),
        )

    # the budget
    stream_tokens = {
        t.name: int(cand.filter(pl.col("_best") == i)["n_tokens"].sum()) for i, t in enumerate(up)
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

    docs: list[pl.DataFrame] = []
    stream_rows: list[dict[str, Any]] = []
    warnings: list[str] = list(early_warnings)
    stance = [t.name for t in cfg.themes if not t.upsample]
    # the base mix's passes in the run: 1 under "auto"; with an explicit total, the tokens the streams leave
    # for it over its size (known once the streams are drawn, so the refusal below uses an upper bound)
    if not sc.base_in_mix:
        base_add = 0.0
    elif sc.total_tokens == "auto":
        base_add = 1.0
    else:
        base_add = max(0.0, total - _planned_stream_tokens(up, stream_tokens, total, sc.max_repeats)) / max(
            base_tokens, 1
        )
    for i, t in enumerate(up):
        s = cand.filter(pl.col("_best") == i).drop("_best").sort("source", "row")
        unique = int(s["n_tokens"].sum())
        if t.target_tokens:
            target = int(t.target_tokens)
        elif t.target_share:
            target = round(t.target_share * total)
        else:
            target = unique
        tokens = s["n_tokens"].to_numpy()
        e, capped = expected_repeats(tokens, s[f"score_{t.name}"].to_numpy(), target, sc.max_repeats, sc.rule)
        ids = s["doc_id"].to_list()
        keys = _unit_key(sc.seed, t.name, ids)
        order = np.argsort(keys, kind="stable")
        u0 = float(_unit_key(sc.seed, t.name, ["\x00offset"])[0])
        reps = whole_copies(e, u0, order) if len(e) else np.zeros(0, dtype=np.int64)
        s = s.with_columns(
            pl.Series("repeats", reps, dtype=pl.Int64), pl.Series("_expected", e, dtype=pl.Float64)
        )
        if int(reps.max(initial=0)) + base_add > sc.hard_max_epochs and not force:
            raise ManifestError(
                f"stream {t.name}: documents would be seen {int(reps.max()) + base_add:g} times, past "
                f"select.hard_max_epochs = {sc.hard_max_epochs} (returns from repetition vanish around 16 epochs). "
                "Lower max_repeats or the target, or allow it: --force (selector select), --force-epochs "
                "(selector run)."
            )
        chosen = s.filter(pl.col("repeats") > 0)
        dropped = s.filter(pl.col("repeats") == 0)
        reject(
            dropped,
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
                f"{t.name}: score {{}} >= {thr_txt}; {{}} of at most {sc.max_repeats} repeats{{}}",
                pl.col(f"score_{t.name}").round(3),
                pl.col("repeats"),
                pl.when(pl.col("repeats") >= sc.max_repeats)
                .then(pl.lit(" (cap reached)"))
                .otherwise(pl.lit("")),
            ),
        ).drop("_expected")
        docs.append(chosen)
        achieved = int((chosen["n_tokens"] * chosen["repeats"]).sum())
        sel_unique = int(chosen["n_tokens"].sum())
        row: dict[str, Any] = {
            "theme": t.name,
            "threshold": thr[t.name],
            "candidates": n_candidates[t.name],
            "qualifying_documents": s.height,
            "qualifying_tokens": unique,
            "unique_documents": chosen.height,
            "unique_tokens": sel_unique,
            "target_tokens": target,
            "achieved_tokens": achieved,
            "epochs": round(achieved / sel_unique, 4) if sel_unique else 0.0,
            "effective_epochs": round((achieved + base_add * sel_unique) / sel_unique, 4)
            if sel_unique
            else 0.0,
            "cap": sc.max_repeats,
            "capped": bool(capped),
            "shortfall_tokens": max(0, target - achieved),
            "shortfall_share": round(max(0, target - achieved) / target, 4) if target else 0.0,
        }
        for x in stance:
            hit = chosen.filter(pl.col(f"score_{x}") >= thr[x])
            row[f"{x}_documents"] = hit.height
            row[f"{x}_tokens"] = int((hit["n_tokens"] * hit["repeats"]).sum())
        stream_rows.append(row)
        if capped:
            warnings.append(
                f"stream {t.name}: max_repeats = {sc.max_repeats} binds; it reaches {achieved:,} of {target:,} "
                f"target tokens ({100 * row['shortfall_share']:.1f}% short). Lower the target or find more documents."
            )
        if not s.height:
            warnings.append(f"stream {t.name}: no document reaches the threshold {thr[t.name]:.3f}")

    achieved_all = sum(int(r["achieved_tokens"]) for r in stream_rows)
    if sc.total_tokens == "auto":
        # the run is the base mix once (if kept) plus the streams as drawn (targets were set from the shares)
        total = (base_tokens if sc.base_in_mix else 0) + achieved_all
    elif achieved_all > total:
        raise ManifestError(
            f"the streams hold {achieved_all:,} tokens, more than --total-tokens {total:,}. Give the training "
            "run's real size, or lower the targets."
        )
    base_epochs = (total - achieved_all) / base_tokens if sc.base_in_mix and base_tokens else 0.0
    if sc.total_tokens != "auto" and sc.base_in_mix and abs(base_epochs - 1) > 0.01:
        warnings.append(
            f"with total_tokens {total:,}, the base mix ({base_tokens:,} tokens) fills the rest of the run: "
            f"{base_epochs:.2f} passes over the scored corpus, which the weights and effective epochs include"
        )

    doc_cols = [
        "doc_id", "source", "row", "url", "theme", *score_cols, "n_chars", "n_tokens", "repeats", "weight", "reason",
    ]  # fmt: skip
    doc_schema = {
        "doc_id": pl.String, "source": pl.String, "row": pl.Int64, "url": pl.String, "theme": pl.String,
        **dict.fromkeys(score_cols, pl.Float32), "n_chars": pl.Int64, "n_tokens": pl.Int64,
        "repeats": pl.Int64, "weight": pl.Float64, "reason": pl.String,
    }  # fmt: skip
    documents = pl.concat([d.select(doc_cols) for d in docs]) if docs else pl.DataFrame(schema=doc_schema)
    documents = documents.cast(doc_schema)  # type: ignore[arg-type]
    rej_schema = {"doc_id": pl.String, "source": pl.String, "row": pl.Int64, "theme": pl.String,
                  "score": pl.Float32, "reason": pl.String}  # fmt: skip
    rej = pl.concat([r.cast(rej_schema) for r in rejected]) if rejected else pl.DataFrame(schema=rej_schema)  # type: ignore[arg-type]
    theme_order = {t: i for i, t in enumerate(themes)}
    rej = rej.sort(pl.col("theme").replace_strict(theme_order, return_dtype=pl.Int64), "source", "row")
    streams = pl.DataFrame(stream_rows) if stream_rows else pl.DataFrame(schema={"theme": pl.String})
    return Selection(
        documents=documents,
        streams=streams,
        rejected=rej,
        thresholds=thr,
        total_tokens=total,
        base={
            "in_mix": sc.base_in_mix,
            "documents": n_docs,
            "tokens": base_tokens,
            "epochs": round(base_epochs, 4),
            "run_tokens": total - achieved_all if sc.base_in_mix else 0,
        },
        warnings=warnings,
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
                "embedding", "created")  # fmt: skip
        card = {k: full[k] for k in keep if k in full}
    return {"path": path, "fingerprint": meta.get("classifier_fingerprint"), "card": card}


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    df.write_parquet(path, compression="zstd", statistics=True)


def select(
    scores_dir: str | Path,
    out_dir: str | Path,
    cfg: Config,
    force: bool = False,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Select from `scores_dir` and write `out_dir/manifest/` atomically; returns manifest.json's content."""
    info = load_scores_info(scores_dir)
    sel = build_selection(cfg, info, force=force)
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
            "warnings": sel.warnings,
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
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
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
    stance = sorted({k[: -len("_tokens")] for s in streams for k in s if k.endswith("_tokens")} - {
        "qualifying", "unique", "target", "achieved", "shortfall"})  # fmt: skip
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
