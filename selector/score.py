"""Score shards with the cascade: `score(inputs, out_dir, classifier, cfg)` -> DIR/scores/part-NNNNN.parquet.

Per shard (one part each): fastText scores every document for every theme; documents whose fastText
probability reaches the gate of any theme are embedded and scored by the embedding head against the
seed index; `score_<theme> = w * emb_<theme> + (1 - w) * ft_<theme>`, with `emb = 0` for documents that
were not embedded (w = `cascade.embedding_weight`). Each part is written to a temporary name and renamed,
then its `part-NNNNN.stats.json`, then the `part-NNNNN.done` marker; a rerun skips parts whose marker
matches the same shard, config and classifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .classifier import Classifier
from .config import Config, ReadConfig
from .embed import make_embedder
from .errors import ClassifierError, ConfigError, SelectorError
from .organic import generated_pattern_expr
from .paths import atomic_write
from .read import Shard, ShardCounts, check_shard, discover_shards, read_shard
from .text import fasttext_input, n_tokens_expr
from .urls import domain_expr

if TYPE_CHECKING:
    from .executors import RayOptions

log = logging.getLogger(__name__)
SCORES = "scores"


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
        emb_card = self.clf.card["embedding"]
        self.emb_cfg = cfg.embedding.__class__(
            model=emb_card["model"],
            max_tokens=int(emb_card["max_tokens"]),
            batch_size=cfg.embedding.batch_size,
            bf16=cfg.embedding.bf16,
            device=cfg.embedding.device,
        )
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


def _marker_matches(path: Path, signature: dict[str, Any]) -> bool:
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


@dataclass
class ScoreSummary:
    out_dir: Path
    parts: list[dict[str, Any]]
    skipped_parts: int
    seconds: float
    failed: list[dict[str, Any]] = field(default_factory=list)
    executor: str = "local"
    calibration_warning: str | None = None

    def totals(self) -> dict[str, Any]:
        keys = ("documents_in", "scored", "skipped", "embedded")
        tot: dict[str, Any] = {k: sum(int(p.get(k, 0)) for p in self.parts) for k in keys}
        reasons: dict[str, int] = {}
        for p in self.parts:
            for r, c in p.get("skipped_by_reason", {}).items():
                reasons[r] = reasons.get(r, 0) + c
        tot["skipped_by_reason"] = dict(sorted(reasons.items()))
        above: dict[str, int] = {}
        for p in self.parts:
            for t, c in p.get("above_threshold", {}).items():
                above[t] = above.get(t, 0) + c
        tot["above_threshold"] = above
        top: dict[str, float] = {}
        for p in self.parts:
            for t, v in p.get("max_score", {}).items():
                top[t] = max(top.get(t, 0.0), float(v))
        tot["max_score"] = top
        tot["embedded_fraction"] = round(tot["embedded"] / tot["scored"], 6) if tot["scored"] else 0.0
        tot["parts"] = len(self.parts)
        tot["parts_reused"] = self.skipped_parts
        tot["parts_failed"] = len(self.failed)
        tot["failed"] = self.failed
        tot["complete"] = not self.failed
        tot["executor"] = self.executor
        tot["seconds"] = round(self.seconds, 2)
        tot["calibration_warning"] = self.calibration_warning
        return tot


def score(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    classifier_dir: str | Path,
    cfg: Config,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[str], None] = log.info,
    executor: str = "local",
    retries: int = 2,
    ray: RayOptions | None = None,
    progress_every: float = 10.0,
) -> ScoreSummary:
    """Score every shard of `inputs` into `out_dir/scores/`; finished parts are reused unless `force`.

    `executor` "local" scores in this process (`workers` 1) or in `workers` processes; "ray" in `workers`
    Ray actors (see executors.run_ray and `ray`). A shard that fails is tried `retries` more times, then
    listed in the summary's `failed` while the other shards go on; rerunning scores only what is unfinished.
    """
    from . import executors

    if executor not in executors.EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(executors.EXECUTORS)}, got {executor!r}")
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    if executor == "ray":
        executors.import_ray()  # fails here, before any work, when Ray is not installed
    elif ray is not None and ray != executors.RayOptions():
        raise ConfigError("Ray options (--ray-address, --embed-workers, ...) need --executor ray.")
    if cfg.embedding.bf16 == "auto":
        # decided once, here, and sent to every worker: nodes that differ must not mix bf16 and fp32 parts
        from .embed import cpu_has_bf16

        on = cfg.embedding.device.startswith("cuda") or cpu_has_bf16()
        cfg = cfg.replace("embedding", bf16="on" if on else "off")
    t0 = time.time()
    shards = discover_shards(inputs)
    scorer = ShardScorer(cfg, classifier_dir)  # loads early so a bad classifier fails before any work
    card_w = calibrated_weight(scorer.clf.card)
    mismatch = weight_mismatch(cfg, cfg.cascade.embedding_weight, card_w)
    if mismatch:
        progress(f"warning: {mismatch}")
    sdir = Path(out_dir) / SCORES
    base_sig = {"scoring": scoring_hash(cfg), "classifier": scorer.clf.identity}
    # absolute, so workers started elsewhere (Ray) write to the same place
    where = os.path.abspath(sdir)
    tasks = [Task(i, sh, where, {**base_sig, "shard": sh.fingerprint()}) for i, sh in enumerate(shards)]
    todo, done = [], []
    for task in tasks:
        name = part_name(task.index)
        if (
            not force
            and _marker_matches(sdir / f"{name}.done", task.signature)
            and (sdir / f"{name}.parquet").exists()
            and (sdir / f"{name}.stats.json").exists()
        ):
            done.append(json.loads((sdir / f"{name}.stats.json").read_text()))
        else:
            todo.append(task)
    # shards still to do are checked before anything is written, so a bad one leaves no output behind
    for task in todo:
        check_shard(task.shard, cfg.read)
    sdir.mkdir(parents=True, exist_ok=True)
    # leftovers of an interrupted run (a killed worker cannot clean up after itself)
    _remove_leftovers(sdir)
    (sdir / "_summary.json").unlink(missing_ok=True)  # written again when this run ends
    for task in todo:
        (sdir / f"{part_name(task.index)}.done").unlink(missing_ok=True)
    # parts left over from an earlier run with more shards would be read as results: remove them
    for stale in sdir.glob("part-*"):
        try:
            idx = int(stale.name[5:10])
        except ValueError:
            continue
        if idx >= len(tasks):
            stale.unlink()
    atomic_write(
        sdir / "_inputs.json",
        json.dumps(
            {
                "parts": {part_name(t.index): t.shard.source for t in tasks},
                "shards": [
                    {
                        "part": part_name(t.index),
                        "source": t.shard.source,
                        "label": t.shard.label,
                        "format": t.shard.format,
                    }
                    for t in tasks
                ],
                "config": cfg.to_dict(),
                "config_hash": cfg.hash(),
                "classifier": str(classifier_dir),
                "classifier_fingerprint": scorer.clf.identity,
                "gates": scorer.gates,
                "thresholds": scorer.thresholds,
                "calibrated_thresholds": scorer.clf.card.get("thresholds"),
                "calibrated_embedding_weight": card_w,
            },
            indent=2,
        )
        + "\n",
    )
    if done:
        progress(f"{len(done)} of {len(tasks)} part(s) already finished; reusing them (--force redoes them)")
    tracker = executors.Tracker(todo, progress, retries, every=progress_every, batch_size=cfg.read.batch_size)
    executors.run(executor, todo, tracker, cfg, os.path.abspath(classifier_dir), scorer, workers, ray)
    # temporary files of attempts whose worker was killed (the retry wrote its part under another name)
    _remove_leftovers(sdir)
    parts = sorted(done + tracker.results, key=lambda s: s["part"])
    failed = sorted(tracker.failed, key=lambda f: f["part"])
    summary = ScoreSummary(Path(out_dir), parts, len(done), time.time() - t0, failed, executor)
    summary.calibration_warning = calibration_warning(
        summary.totals(), scorer.clf.card, cfg, scorer.thresholds, str(classifier_dir), inputs, out_dir
    )
    if summary.calibration_warning:
        log.warning("warning: %s", summary.calibration_warning)  # shown under --silent too
    atomic_write(sdir / "_summary.json", json.dumps(summary.totals(), indent=2) + "\n")
    return summary


# An embedded share this many times what the classifier's gates embedded when they were calibrated says the
# dump is unlike the text it was trained on.
EMBED_RATIO = 3.0
# The threshold check needs enough documents that a theme's expected share (the card's pseudo-positive
# fraction) comes to at least this many.
MIN_EXPECTED_ON_THEME = 5


def calibration_warning(
    totals: dict[str, Any],
    card: dict[str, Any],
    cfg: Config,
    thresholds: dict[str, float],
    classifier_dir: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
) -> str | None:
    """One line saying the classifier's calibration does not fit the scored documents, from their score
    distribution and the figures on the classifier's card, and what to run instead; None when it fits.

    It does not fit when the gates embed several times (EMBED_RATIO) the share they were calibrated to
    (the larger of the card's cascade.target_embed_fraction and validation_embed_fraction), or when no
    document reaches the calibrated threshold of an upsampled theme although enough were scored for the
    card's pseudo-positive fraction to expect MIN_EXPECTED_ON_THEME of them."""
    n = int(totals.get("scored") or 0)
    if not n:
        return None
    problems = []
    calibrated = card.get("cascade", {}).get("target_embed_fraction", cfg.cascade.target_embed_fraction)
    expected = max(float(calibrated), float(card.get("validation_embed_fraction") or 0.0))
    share = float(totals.get("embedded_fraction") or 0.0)
    embed_note = (
        f"{100 * share:.1f}% of the documents were embedded (its gates were calibrated to embed about "
        f"{100 * float(calibrated):.1f}%"
        + (
            f", {100 * float(card['validation_embed_fraction']):.1f}% on its validation split)"
            if card.get("validation_embed_fraction") is not None
            else ")"
        )
    )
    if cfg.cascade.gate == "auto" and share > EMBED_RATIO * expected:
        problems.append(embed_note)
    rate = float(card.get("train", {}).get("pseudo_positive_fraction") or cfg.train.pseudo_positive_fraction)
    auto = [t.name for t in cfg.themes if t.upsample and t.threshold == "auto" and t.top_fraction == 0]
    above, top = totals.get("above_threshold", {}), totals.get("max_score", {})
    none = [t for t in auto if t in above and not above[t] and t in thresholds]
    if none and n * rate >= MIN_EXPECTED_ON_THEME:
        problems.insert(
            0,
            "no document reaches the calibrated threshold of "
            + ", ".join(
                f"{t} (highest score {float(top[t]):.3f} < {thresholds[t]:.3f})" if t in top else t
                for t in none
            ),
        )
    if not problems:
        return None
    if embed_note not in problems:
        problems.append(embed_note)  # context for the threshold finding
    shown = [str(i) for i in inputs[:2]] + (["..."] if len(inputs) > 2 else [])
    ins = " ".join(shown) or "INPUT"
    r = cfg.read  # the reading options the user gave, so the commands run as printed
    flags = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("text-column", r.text_column, ReadConfig.text_column),
            ("id-column", r.id_column, ReadConfig.id_column),
        )
        if value != default
    )
    theme = (none or auto or cfg.theme_names)[0]
    return (
        f"the classifier {classifier_dir} does not fit these {n:,} documents: {'; '.join(problems)}. Train one "
        f"on this dump: `selector train {ins} --out classifiers/mine{flags}`, then score with `--classifier "
        f"classifiers/mine`; or run the whole job: `selector run --input {ins} --out DIR{flags}`; or select by "
        f"rank: `selector select --scores {out_dir} --out {out_dir} --top-fraction {theme}=0.001`."
    )


def _remove_leftovers(sdir: Path) -> None:
    for leftover in sdir.glob(".*.tmp-*"):
        leftover.unlink(missing_ok=True)


def read_scores(scores_dir: str | Path) -> pl.DataFrame:
    """All finished parts of a scores directory (DIR or DIR/scores) as one frame."""
    d = Path(scores_dir)
    if (d / SCORES).is_dir():
        d = d / SCORES
    parts = sorted(p for p in d.glob("part-*.parquet") if p.with_suffix(".done").exists())
    if not parts:
        raise SelectorError(f"no finished score parts in {d}. Run `selector score INPUT --out DIR` first.")
    return pl.concat([pl.read_parquet(p) for p in parts], how="vertical")
