"""The cascade on one shard: `score_shard(scorer, task)` -> one part, DIR/scores/part-NNNNN.parquet.

`ShardScorer.score_batch`: fastText scores every document for every theme; documents whose fastText
probability reaches the gate of any theme are embedded and scored by the embedding head against the
seed index; `score_<theme> = w * emb_<theme> + (1 - w) * ft_<theme>`, with `emb = 0` for documents that
were not embedded (w = `cascade.embedding_weight`). `score_shard` writes the part to a temporary name and
renames it, then its `part-NNNNN.stats.json`, then the `part-NNNNN.done` marker holding the part's
signature (shard, scoring settings, classifier). The executors (`score/executors.py`) run it per shard;
`score/run.py` plans the parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from selector.core.config import Config
from selector.core.errors import ClassifierError, SelectorError
from selector.core.paths import atomic_write
from selector.read.formats import Shard, ShardCounts, read_shard
from selector.score.classifier import Classifier
from selector.score.embed import make_embedder
from selector.score.organic import generated_pattern_expr
from selector.score.text import fasttext_input, n_tokens_expr
from selector.score.urls import domain_expr

log = logging.getLogger(__name__)


def part_name(i: int) -> str:
    return f"part-{i:05d}"


# where each document came from and what it is, for the manifest's provenance, dedup and organic-ness figures
PROVENANCE_COLUMNS: dict[str, Any] = {
    "warc_record_id": pl.String,
    "offset": pl.Int64,
    "crawl_date": pl.String,
    "payload_digest": pl.String,
    "domain": pl.String,
    "content_sha1": pl.String,  # of the text as read (UTF-8)
    "lang": pl.String,
    "lang_score": pl.Float32,
    "generated_pattern": pl.String,  # the first generated-text tell-tale it matches (organic.py), else null
}


def provenance(batch: pl.DataFrame) -> pl.DataFrame:
    """The PROVENANCE_COLUMNS of a reader batch."""
    texts = batch["text"].to_list()
    return batch.select(
        "warc_record_id",
        "offset",
        "crawl_date",
        "payload_digest",
        domain_expr("url").alias("domain"),
        pl.Series("content_sha1", [hashlib.sha1(t.encode()).hexdigest() for t in texts], dtype=pl.String),
        "lang",
        "lang_score",
        generated_pattern_expr("text").alias("generated_pattern"),
    )


def output_schema(themes: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "doc_id": pl.String,
        "source": pl.String,
        "row": pl.Int64,
        "url": pl.String,
        "n_chars": pl.Int64,
        "n_tokens": pl.Int64,
        **PROVENANCE_COLUMNS,
    }
    for t in themes:
        schema[f"ft_{t}"] = pl.Float32
    for t in themes:
        schema[f"emb_{t}"] = pl.Float32
    for t in themes:
        schema[f"score_{t}"] = pl.Float32
    schema["embedded"] = pl.Boolean
    for t in themes:
        schema[f"seed_{t}"] = pl.String
        schema[f"seed_sim_{t}"] = pl.Float32
    return schema


class ShardScorer:
    """Holds the classifier and (once a document passes the gate) the embedding model, for one process."""

    def __init__(self, cfg: Config, classifier_dir: str | Path):
        self.cfg = cfg
        self.clf = Classifier.load(classifier_dir)
        missing = [t for t in cfg.theme_names if t not in self.clf.themes]
        if missing:
            raise ClassifierError(
                f"classifier {classifier_dir} was trained for {', '.join(self.clf.themes)} and lacks "
                f"{', '.join(missing)}. Retrain it with this config, or use a config with its themes."
            )
        self.themes = self.clf.themes
        g = cfg.cascade.gate
        self.gates = self.clf.gates if g == "auto" else {t: float(g) for t in self.themes}
        self.thresholds = resolve_thresholds(cfg, self.clf.card)
        self.emb_cfg = self.clf.embedding_config(cfg.embedding)
        self._embedder: Any = None
        self.w = cfg.cascade.embedding_weight

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = make_embedder(self.emb_cfg)
        return self._embedder

    def score_batch(self, batch: pl.DataFrame) -> pl.DataFrame:
        n = batch.height
        ft_text = fasttext_input(batch["text"], self.clf.max_chars)
        ft = self.clf.ft_scores(ft_text)
        gate = np.zeros(n, dtype=bool)
        for t in self.themes:
            gate |= ft[t] >= self.gates[t]
        idx = np.flatnonzero(gate)
        emb_full = {t: np.full(n, np.nan, dtype=np.float32) for t in self.themes}
        seed_id: dict[str, list[str | None]] = {t: [None] * n for t in self.themes}
        seed_sim = {t: np.full(n, np.nan, dtype=np.float32) for t in self.themes}
        if len(idx):
            texts = batch["text"].gather(idx).to_list()
            emb = self.embedder.encode(texts)
            es, ev = self.clf.emb_scores(emb)
            for t in self.themes:
                emb_full[t][idx] = es[t]
                seed_sim[t][idx] = ev[t]["nn_sim"]
                ids = self.clf.index.pos_ids[t]
                for j, k in zip(idx, ev[t]["nn_idx"], strict=True):
                    seed_id[t][j] = ids[int(k)]
        cols: dict[str, Any] = {}
        for t in self.themes:
            cols[f"ft_{t}"] = pl.Series(ft[t], dtype=pl.Float32)
        for t in self.themes:
            cols[f"emb_{t}"] = pl.Series(emb_full[t], dtype=pl.Float32, nan_to_null=True)
        for t in self.themes:
            e = np.nan_to_num(emb_full[t], nan=0.0)
            cols[f"score_{t}"] = pl.Series(np.clip(self.w * e + (1 - self.w) * ft[t], 0, 1), dtype=pl.Float32)
        cols["embedded"] = pl.Series(gate)
        for t in self.themes:
            cols[f"seed_{t}"] = pl.Series(seed_id[t], dtype=pl.String)
            cols[f"seed_sim_{t}"] = pl.Series(seed_sim[t], dtype=pl.Float32, nan_to_null=True)
        base = batch.select(
            "doc_id",
            "source",
            "row",
            "url",
            pl.col("text").str.len_chars().cast(pl.Int64).alias("n_chars"),
            n_tokens_expr("text"),
        )
        return pl.concat([base, provenance(batch)], how="horizontal").with_columns(**cols)


def resolve_thresholds(cfg: Config, card: dict[str, Any]) -> dict[str, float]:
    """Each theme's selection threshold: the config's number, or for "auto" the classifier's calibrated one
    (0.5 for a classifier trained before thresholds were calibrated)."""
    calibrated = card.get("thresholds") or {}
    return {
        t.name: float(calibrated.get(t.name, 0.5)) if t.threshold == "auto" else float(t.threshold)
        for t in cfg.themes
    }


# classifiers trained before cards recorded the weight were calibrated at the default of the time
LEGACY_EMBEDDING_WEIGHT = 0.9


def calibrated_weight(card: dict[str, Any]) -> float | None:
    """The `cascade.embedding_weight` a classifier's selection thresholds were calibrated with (None: it has no
    calibrated thresholds)."""
    if not card.get("thresholds"):
        return None
    return float(card.get("cascade", {}).get("embedding_weight", LEGACY_EMBEDDING_WEIGHT))


def weight_mismatch(cfg: Config, w: float, calibrated: float | None) -> str | None:
    """Why `cfg`'s automatic thresholds do not fit scores made with embedding weight `w`, or None."""
    auto = [t.name for t in cfg.themes if t.threshold == "auto" and t.top_fraction == 0]
    if calibrated is None or not auto or abs(calibrated - w) < 1e-9:
        return None
    return (
        f"cascade.embedding_weight is {w:g} but the classifier's selection thresholds were calibrated on scores "
        f"made with {calibrated:g}, so the automatic thresholds of {', '.join(auto)} do not match these scores. "
        f"Score with embedding_weight = {calibrated:g}, select with --threshold or --top-fraction, or retrain "
        "the classifier with this config."
    )


def scoring_hash(cfg: Config) -> str:
    """Hash of the settings that change a part's rows (not training settings, paths or batch sizes)."""
    r = cfg.read
    keys = {
        "read": [
            r.text_column,
            r.id_column,
            r.url_column,
            r.max_doc_chars,
            r.min_doc_chars,
            r.date_column,
            r.lang_column,
            r.detect_language,
            r.trust_lang_column,
            sorted(r.languages),
        ],  # fmt: skip
        "cascade": [cfg.cascade.gate, cfg.cascade.embedding_weight],
        "embedding": [cfg.embedding.bf16, cfg.embedding.device],
        "themes": cfg.theme_names,
    }
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    index: int
    shard: Shard
    out_dir: str
    signature: dict[str, Any]


def marker_matches(path: Path, signature: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("signature") == signature)
    except (OSError, json.JSONDecodeError):
        return False


def _scored_batches(
    scorer: ShardScorer, batches: Iterator[pl.DataFrame], depth: int
) -> Generator[pl.DataFrame, None, None]:
    """`scorer.score_batch` of each non-empty batch, in order; with `depth` > 1, that many batches are scored
    at once in threads, so one runs fastText while another waits for a remote embedding stage."""
    batches = (b for b in batches if b.height)
    if depth <= 1:
        for b in batches:
            yield scorer.score_batch(b)
        return
    with ThreadPoolExecutor(depth) as pool:
        queued: deque[Future[pl.DataFrame]] = deque()
        for b in batches:
            queued.append(pool.submit(scorer.score_batch, b))
            if len(queued) >= depth:
                yield queued.popleft().result()
        while queued:
            yield queued.popleft().result()


def score_shard(
    scorer: ShardScorer,
    task: Task,
    on_batch: Callable[[int], None] | None = None,
    pipeline: int = 1,
) -> dict[str, Any]:
    """Score one shard into its part; returns the part's stats. `on_batch(n)` is called after each batch of
    n documents is written; `pipeline` batches are scored at once (see `_scored_batches`)."""
    import pyarrow.parquet as pq

    t0 = time.time()
    out = Path(task.out_dir)
    name = part_name(task.index)
    final = out / f"{name}.parquet"
    tmp = out / f".{name}.parquet.tmp-{os.getpid()}"
    counts = ShardCounts()
    schema = pl.DataFrame(schema=output_schema(scorer.themes)).to_arrow().schema
    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
    n_scored = n_embedded = 0
    thresholds = {t: thr for t, thr in scorer.thresholds.items() if t in scorer.themes}
    above = dict.fromkeys(thresholds, 0)
    top: dict[str, float] = {}
    scored = _scored_batches(scorer, read_shard(task.shard, scorer.cfg.read, counts), pipeline)
    try:
        for df in scored:
            n_scored += df.height
            n_embedded += int(df["embedded"].sum())
            for t, thr in thresholds.items():
                above[t] += int((df[f"score_{t}"] >= thr).sum())
                top[t] = max(top.get(t, 0.0), float(df[f"score_{t}"].max() or 0.0))  # type: ignore[arg-type]
            writer.write_table(df.to_arrow().cast(schema))
            if on_batch is not None:
                on_batch(df.height)
        writer.close()
        if counts.documents_in != n_scored + counts.n_skipped:
            raise SelectorError(
                f"{task.shard.source}: {counts.documents_in} documents read but {n_scored} scored and "
                f"{counts.n_skipped} skipped; this is a bug, please report it."
            )
    except BaseException:
        scored.close()
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    seconds = time.time() - t0
    stats = {
        "part": name,
        "shard": task.shard.source,
        "documents_in": counts.documents_in,
        "scored": n_scored,
        "skipped": counts.n_skipped,
        "skipped_by_reason": dict(sorted(counts.skipped.items())),
        "blank_lines": counts.blank_lines,
        "embedded": n_embedded,
        "embedded_fraction": round(n_embedded / n_scored, 6) if n_scored else 0.0,
        "above_threshold": above,
        "max_score": {t: round(v, 6) for t, v in top.items()},
        "seconds": round(seconds, 3),
        "docs_per_second": round(n_scored / seconds, 1) if seconds > 0 else None,
        "warnings": counts.warnings,
        "signature": task.signature,
    }
    atomic_write(out / f"{name}.stats.json", json.dumps(stats, indent=2) + "\n")
    atomic_write(out / f"{name}.done", json.dumps({"signature": task.signature}) + "\n")
    return stats
