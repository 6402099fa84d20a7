"""Teacher-student training from seeds: `train(inputs, cfg, out_dir)` -> a classifier directory and its card.

`train` reads the seeds and any human labels (`read_supervision`), then calls one function per step:

1. `draw_sample`: sample `train.sample_size` documents of the user's corpus (seeded, order-independent hash
   sample, every human-labelled document included).
2. `finetune_step` (only with `train.finetune_epochs` > 0; train/finetune.py): the embedding model is
   fine-tuned on the human-labelled documents of the sample and the seeds, and everything after it uses the
   fine-tuned model, which the classifier carries in `encoder/`.
   `embed_sample`, `teach`: embed the sample and the seeds. Per theme, faiss ranks the sample by
   similarity to the positive seeds minus half the similarity to the near misses; the top
   `train.pseudo_positive_fraction` become pseudo positives (real documents in the corpus's own style, which
   seeds written by one hand lack). The teacher (`fit_teacher`) is a logistic head on the embedding fitted
   to seeds and pseudo positives versus near misses and the rest of the sample (background); it re-ranks
   the sample and picks the pseudo positives again, `train.teacher_rounds` times. Its probability >=
   `train.teacher_threshold`, or being a final pseudo positive, labels a document on-theme.
3. `student_lines`, `train_student`: fastText learns the teacher's labels (plus the seeds and any human
   labels) on one thread, so the same inputs, seeds and settings give byte-identical models; a held-out split
   measures it. With `train.distill_size`, it is trained again with the head's labels of further documents
   (`distill_lines`).
4. `calibrate`: gates are calibrated on the held-out split: the lowest fastText probability per theme that
   lets at most `cascade.target_embed_fraction / n_themes` of teacher-negative documents through
   (`calibrate_gates`); then each theme's selection threshold is fitted to the teacher's labels
   (`fit_thresholds`).
5. `save_head`, `make_card`, `write_classifier`: the head, the models and the card are written to a
   temporary directory beside `out_dir`, which then takes its place in one rename.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from selector import __version__
from selector.core.config import Config, EmbeddingConfig, TrainConfig
from selector.core.errors import InputError, SelectorError
from selector.core.fasttext import load_fasttext
from selector.core.keys import seeded_key
from selector.core.labels import LabelSet, read_label_files
from selector.core.metrics import average_precision, best_f1_threshold, precision_recall_at
from selector.core.paths import file_sha256, make_temp_dir, replace_dir
from selector.read.formats import Shard, ShardCounts, check_shard, discover_shards, read_shard
from selector.score.classifier import CARD, HEAD, NONE_LABEL, classifier_fingerprint, fasttext_probs
from selector.score.embed import SeedIndex, make_embedder
from selector.score.head import fit_logistic, predict_logistic
from selector.score.neighbours import LabelNeighbours, build_neighbours, head_probs
from selector.score.text import fasttext_input
from selector.train.finetune import ENCODER_DIR, check_finetunable, epochs_for, finetune_encoder, targets
from selector.train.seeds import Seed, load_seeds, seed_hashes

log = logging.getLogger(__name__)

MAX_REPEAT = 50


MIN_VALIDATION_POSITIVES = (
    10  # fewer teacher positives in the validation split: thresholds use the whole sample
)
MIN_THRESHOLD_POSITIVES = 3  # fewer in the whole sample: the threshold falls back to 0.5, with a warning


def inputs_fingerprint(shards: Sequence[Shard]) -> str:
    """Changes when any shard is added, removed, resized or touched."""
    blob = json.dumps([s.fingerprint() | {"source": s.label} for s in shards], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


LabelPaths = str | Path | Sequence[str | Path] | None


def label_paths(labels: LabelPaths) -> list[Path]:
    """One label file, several, or none -> a list of paths."""
    if labels is None:
        return []
    if isinstance(labels, str | Path):
        return [Path(labels)]
    return [Path(p) for p in labels]


def labels_fingerprint(labels: LabelPaths) -> str | None:
    """The hash of the label files' contents, in order (None without labels)."""
    paths = label_paths(labels)
    if not paths:
        return None
    if len(paths) == 1:
        return file_sha256(paths[0])
    return hashlib.sha256("".join(file_sha256(p) for p in paths).encode()).hexdigest()


def is_current(out_dir: str | Path, inputs: Sequence[str | Path], cfg: Config, labels: LabelPaths) -> bool:
    """True when `out_dir` holds a classifier trained from these inputs, seeds, labels and settings."""
    card_path = Path(out_dir) / CARD
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return False
    labels_hash = labels_fingerprint(labels)
    return bool(
        card.get("config_hash") == cfg.training_hash()
        and card.get("trained_on", {}).get("shard_fingerprints_sha256")
        == inputs_fingerprint(discover_shards(inputs))
        and card.get("trained_on", {}).get("human_labels_sha256") == labels_hash
        and {t: v.get("sha256") for t, v in card.get("seeds", {}).items()} == seed_hashes(cfg)
    )


def sample_corpus(
    shards: Sequence[Shard], cfg: Config, n: int, seed: int, force_ids: set[str] | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A seeded sample of `n` documents whose choice does not depend on shard or batch order; documents in
    `force_ids` are always included. Returns (doc_id, shard, row, text) and what was read."""
    force_ids = force_ids or set()
    keep_chars = max(cfg.fasttext.max_chars, cfg.embedding.max_tokens * 8)
    parts: list[pl.DataFrame] = []
    forced: list[pl.DataFrame] = []
    seen = 0
    counts_total: Counter[str] = Counter()
    for shard in shards:
        counts = ShardCounts()
        for batch in read_shard(shard, cfg.read, counts):
            seen += batch.height
            keys = [seeded_key(seed, "sample", shard.label, r) for r in batch["row"].to_list()]
            b = batch.select(
                pl.col("doc_id"),
                pl.lit(shard.label).alias("shard"),
                pl.col("row"),
                pl.col("text").str.slice(0, keep_chars),
            ).with_columns(pl.Series("key", keys, dtype=pl.UInt64))
            if force_ids:
                forced.append(b.filter(pl.col("doc_id").is_in(list(force_ids))))
            parts.append(b)
            if sum(p.height for p in parts) > 2 * n:
                parts = [pl.concat(parts).sort("key").head(n)]
        counts_total.update(counts.skipped)
    if seen == 0:
        raise InputError(
            f"no readable document in {len(shards)} shard(s) ({shards[0].source}, ...); cannot train."
        )
    sample = pl.concat(parts).sort("key").head(n)
    if forced:
        sample = pl.concat([sample, *forced]).unique(subset=["shard", "row"], keep="first").sort("key")
    info = {
        "shards": len(shards),
        "documents_read": seen,
        "documents_skipped": dict(counts_total),
        "shard_fingerprints_sha256": inputs_fingerprint(shards),
        "shard_names": [s.label for s in shards[:1000]],
    }
    return sample.drop("key"), info


def _write_fasttext_file(
    path: Path, texts: list[str], labels: list[list[str]], repeats: list[int], seed: int
) -> int:
    lines = []
    for text, labs, r in zip(texts, labels, repeats, strict=True):
        tag = " ".join(f"__label__{t}" for t in labs) if labs else NONE_LABEL
        lines.extend([f"{tag} {text}"] * r)
    order = np.random.default_rng(seed).permutation(len(lines))
    with path.open("w", encoding="utf-8") as fh:
        for i in order:
            fh.write(lines[i] + "\n")
    return len(lines)


def _train_fasttext(path: Path, cfg: Config, loss: str, out_bin: Path, out_ftz: Path | None) -> None:
    """Train in a fresh process (see selector/train/fasttext_worker.py for why); writes `out_bin` and, when
    asked, the quantized `out_ftz`."""
    ft = cfg.fasttext
    job = {
        "input": str(path),
        "bin": str(out_bin),
        "ftz": str(out_ftz) if out_ftz else None,
        "cutoff": 100_000,
        "params": {
            "lr": ft.lr,
            "dim": ft.dim,
            "epoch": ft.epoch,
            "wordNgrams": ft.word_ngrams,
            "minCount": ft.min_count,
            "bucket": ft.bucket,
            "loss": loss,
            "thread": ft.threads,
            "seed": ft.seed,
        },
    }
    res = subprocess.run(
        [sys.executable, "-m", "selector.train.fasttext_worker", json.dumps(job)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SelectorError(f"fastText training on {path} failed: {res.stderr.strip()[-2000:]}")


def seed_index(themes: Sequence[str], seeds: Sequence[Seed], seed_emb: np.ndarray, k: int) -> SeedIndex:
    """The faiss index of each theme's positive and near-miss seeds (rows of `seed_emb`, in `seeds`' order)."""

    def rows(t: str, label: str) -> list[int]:
        return [i for i, s in enumerate(seeds) if s.theme == t and s.label == label]

    return SeedIndex(
        themes=list(themes),
        pos={t: seed_emb[rows(t, "positive")] for t in themes},
        neg={t: seed_emb[rows(t, "near_miss")] for t in themes},  # (0, dim) for a theme without near misses
        pos_ids={t: [seeds[i].seed_id for i in rows(t, "positive")] for t in themes},
        k=k,
    )


# the teacher's first ranking: similarity to a theme's positive seeds minus this much of that to its near misses
NEAR_MISS_WEIGHT = 0.5


def seed_ranking(evidence: dict[str, np.ndarray]) -> np.ndarray:
    """Round 0 of the teacher: one theme's seed evidence (SeedIndex.evidence) -> a score to rank documents by."""
    return evidence["pos"] - NEAR_MISS_WEIGHT * evidence["neg"]


def pseudo_positive_count(n: int, tc: TrainConfig) -> int:
    """How many of an `n`-document sample the teacher takes as pseudo positives per theme."""
    return min(max(tc.min_pseudo_positives, round(tc.pseudo_positive_fraction * n)), n // 4)


def fit_labelled_head(
    seed_pos: np.ndarray,
    seed_neg: np.ndarray,
    xd: np.ndarray,
    h_pos: Sequence[int],
    h_neg: Sequence[int],
    free: np.ndarray,
    tc: TrainConfig,
) -> tuple[np.ndarray, float]:
    """The head of a theme with enough labels: labelled sample documents (weight 1; positives and negatives
    each reweighted to half the labels' total, so a rare theme's few positives are not drowned), seeds as a
    prior (`train.seed_weight` each), and the unlabelled documents of the sample as background negatives of
    total weight `train.label_background_weight` times the labelled positives'."""
    n_lab = len(h_pos) + len(h_neg)
    w_pos = n_lab / (2 * len(h_pos))
    w_neg = n_lab / (2 * len(h_neg))
    x = np.vstack([xd[list(h_pos)], seed_pos, xd[list(h_neg)], seed_neg, xd[free]])
    y = np.concatenate(
        [np.ones(len(h_pos) + len(seed_pos)), np.zeros(len(h_neg) + len(seed_neg) + len(free))]
    )
    w_bg = tc.label_background_weight * w_pos * len(h_pos) / max(len(free), 1)
    w = np.concatenate(
        [
            np.full(len(h_pos), w_pos),
            np.full(len(seed_pos), tc.seed_weight),
            np.full(len(h_neg), w_neg),
            np.full(len(seed_neg), tc.seed_weight),
            np.full(len(free), w_bg),
        ]
    )
    return fit_logistic(x, y, w, tc.label_head_l2)


@dataclass
class Teacher:
    """The teacher's output per theme: the embedding head, the sample's labels for the student (`doc`,
    with the extra recall positives), the strict labels selection thresholds are fitted to, the seeds'
    labels, and what the card records; with the label neighbours (None without labels) and each sample
    row's place among them (-1 when not labelled)."""

    heads: dict[str, tuple[np.ndarray, float]]
    doc: dict[str, np.ndarray]
    strict: dict[str, np.ndarray]
    seed: dict[str, np.ndarray]
    info: dict[str, Any]
    neighbours: LabelNeighbours | None = None
    label_where: np.ndarray | None = None

    def probs(self, x: np.ndarray, exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The head's probability per theme for the embeddings `x`, with the label neighbours' evidence (each
        labelled document without itself where `exclude` says which it is): what the classifier scores."""
        return head_probs(x, self.heads, self.neighbours, exclude)


def fit_teacher(
    themes: Sequence[str],
    seeds: Sequence[Seed],
    seed_emb: np.ndarray,
    doc_emb: np.ndarray,
    ev_docs: dict[str, dict[str, np.ndarray]],
    human_rows: dict[str, dict[int, int]],
    tc: TrainConfig,
    progress: Callable[[str], None] = log.info,
) -> Teacher:
    """Step 2 of the module docstring, on the embedded seeds and sample (`ev_docs`: seed evidence of the
    sample; `human_rows`: theme -> {sample row: 0/1} from human labels). The teacher's judgement of a document
    is its head's probability with the label neighbours' evidence (selector/score/neighbours.py)."""
    n = len(doc_emb)
    neighbours, where = build_neighbours(
        themes, doc_emb, human_rows, tc.neighbour_k, tc.neighbour_weight, tc.min_label_positives
    )
    # the evidence of every sample document and seed, once (a labelled document counts itself: its label
    # replaces the teacher's judgement of it below)
    ev_nb = neighbours.evidence(doc_emb) if neighbours is not None else {}
    ev_nb_seeds = neighbours.evidence(seed_emb) if neighbours is not None else {}
    xs = seed_emb.astype(np.float64)
    xd = doc_emb.astype(np.float64)
    m_pseudo = pseudo_positive_count(n, tc)
    heads: dict[str, tuple[np.ndarray, float]] = {}
    teacher_doc: dict[str, np.ndarray] = {}
    teacher_strict: dict[str, np.ndarray] = {}
    teacher_seed: dict[str, np.ndarray] = {}
    head_info: dict[str, Any] = {}
    for t in themes:
        own = np.array([s.theme == t for s in seeds])
        ys = np.array([1.0 if s.label == "positive" else 0.0 for s in seeds])
        seed_pos, seed_neg = xs[own & (ys > 0.5)], xs[own & (ys < 0.5)]
        hl = human_rows[t]
        h_pos = [i for i, v in hl.items() if v]
        h_neg = [i for i, v in hl.items() if not v]
        free = np.array([i for i in range(n) if i not in hl], dtype=np.int64)
        # round 0 ranks the sample by seed similarity; later rounds by the head itself
        rank = seed_ranking(ev_docs[t])
        coef, bias = np.zeros(xs.shape[1]), 0.0
        pseudo = free[:0]
        from_labels = len(h_pos) >= tc.min_label_positives and len(h_neg) >= tc.min_label_positives
        mix = tc.label_mix if from_labels else 0.0
        for _round in range(tc.teacher_rounds if mix < 1 else 0):
            order = free[np.argsort(-rank[free], kind="stable")]
            pseudo, rest = order[:m_pseudo], order[m_pseudo:]
            n_pos = len(seed_pos) + len(pseudo) + len(h_pos)
            x = np.vstack([seed_pos, xd[pseudo], xd[h_pos], seed_neg, xd[h_neg], xd[rest]])
            y = np.concatenate([np.ones(n_pos), np.zeros(len(seed_neg) + len(h_neg) + len(rest))])
            w_bg = tc.background_weight * n_pos / max(len(rest), 1)
            w = np.concatenate([np.ones(n_pos + len(seed_neg) + len(h_neg)), np.full(len(rest), w_bg)])
            coef, bias = fit_logistic(x, y, w, tc.head_l2)
            rank = predict_logistic(xd, coef, bias)
        if from_labels:
            # enough labels: a head fitted to them (the seeds a prior, the unlabelled sample weak background
            # negatives), its logit averaged with the seed teacher's by train.label_mix
            lcoef, lbias = fit_labelled_head(seed_pos, seed_neg, xd, h_pos, h_neg, free, tc)
            coef, bias = (1 - mix) * coef + mix * lcoef, (1 - mix) * bias + mix * lbias
            if mix >= 1:
                pseudo = free[:0]
        heads[t] = (coef, bias)
        p_docs = predict_logistic(xd, coef, bias)
        ps = predict_logistic(xs, coef, bias)
        if neighbours is not None:
            p_docs = neighbours.add({t: p_docs}, ev_nb)[t]
            ps = neighbours.add({t: ps}, ev_nb_seeds)[t]
        lab = p_docs >= tc.teacher_threshold
        lab[pseudo] = True
        strict = lab.copy()  # without the student's extra positives: what selection thresholds are fitted to
        for i, v in hl.items():
            strict[i] = bool(v)
        teacher_strict[t] = strict
        n_student = round(tc.student_positive_fraction * len(free))
        if n_student:
            lab[free[np.argsort(-p_docs[free], kind="stable")[:n_student]]] = True
        for i, v in hl.items():
            lab[i] = bool(v)
        teacher_doc[t] = lab
        # seeds: their own theme's label as written; other themes as the teacher sees them
        teacher_seed[t] = np.where(own, ys > 0.5, ps >= tc.teacher_threshold)
        head_info[t] = {
            "fitted_on": (
                f"labels, seeds as a prior (label_mix {mix:g})"
                if from_labels
                else "seeds and pseudo positives"
            ),
            "labelled_positive": len(h_pos),
            "labelled_negative": len(h_neg),
            "pseudo_positives": len(pseudo),
            "teacher_positives_in_sample": int(lab.sum()),
            "teacher_positive_rate": round(float(lab.mean()) if n else 0.0, 6),
            "seed_recall_in_sample": round(float((ps[own & (ys > 0.5)] >= tc.teacher_threshold).mean()), 4),
            "near_miss_pass_rate_in_sample": round(
                float((ps[own & (ys < 0.5)] >= tc.teacher_threshold).mean())
                if (own & (ys < 0.5)).any()
                else 0.0,
                4,
            ),
        }
        progress(
            f"teacher {t}: {int(lab.sum()):,} of {n:,} sample documents on-theme "
            f"({100 * lab.mean() if n else 0:.2f}%, {len(pseudo)} of them pseudo positives)"
        )

    if neighbours is not None:
        for t, nb in neighbours.info()["themes"].items():
            head_info[t]["label_neighbours"] = nb
    return Teacher(heads, teacher_doc, teacher_strict, teacher_seed, head_info, neighbours, where)


def distill_lines(
    shards: Sequence[Shard],
    cfg: Config,
    sample: pl.DataFrame,
    embedder: Any,
    teacher: Teacher,
    files: dict[str, str],
    model_dir: Path,
    progress: Callable[[str], None] = log.info,
) -> tuple[list[str], list[list[str]], dict[str, Any]]:
    """More fastText training lines from `train.distill_size` further documents of the corpus, labelled by the
    teacher's head through a cascade of its own: the first student scores them all, the `distill_embed_fraction`
    it ranks highest (per theme) are embedded and take the head's labels (probability >= teacher_threshold, plus
    the head's top `student_positive_fraction`), and the rest are negatives. So the student learns the head's
    judgement on many more documents while embedding only a few of them."""
    tc = cfg.train
    themes = cfg.theme_names
    extra, _ = sample_corpus(shards, cfg, tc.distill_size + sample.height, tc.seed + 1)
    extra = extra.join(sample.select("shard", "row"), on=["shard", "row"], how="anti").head(tc.distill_size)
    m = extra.height
    if m == 0:
        return [], [], {"documents": 0}
    ft_text = fasttext_input(extra["text"], cfg.fasttext.max_chars)
    probs: dict[str, np.ndarray] = {}
    for key, fname in files.items():
        probs.update(fasttext_probs(load_fasttext(model_dir / fname), ft_text, themes, key))
    per_theme = max(1, math.ceil(tc.distill_embed_fraction * m / len(themes)))
    chosen = np.zeros(m, dtype=bool)
    for t in themes:
        chosen[np.argsort(-probs[t], kind="stable")[:per_theme]] = True
    rows = np.flatnonzero(chosen)
    texts = extra["text"].to_list()
    progress(f"distillation: the student ranks {m:,} more documents; embedding its top {len(rows):,}")
    emb = embedder.encode([texts[i] for i in rows]) if len(rows) else np.zeros((0, 1), dtype=np.float32)
    judged = teacher.probs(emb) if len(rows) else {t: np.zeros(0) for t in themes}
    labels: list[list[str]] = [[] for _ in range(m)]
    positives: dict[str, int] = {}
    n_top = round(tc.student_positive_fraction * m)
    for t in themes:
        p = judged[t]
        on = set(rows[p >= tc.teacher_threshold].tolist())
        if n_top:
            on |= set(rows[np.argsort(-p, kind="stable")[:n_top]].tolist())
        for i in on:
            labels[i].append(t)
        positives[t] = len(on)
    info = {"documents": m, "embedded": int(len(rows)), "positives": positives}
    progress(f"distillation: {m:,} documents labelled by the head ({positives})")
    return ft_text, labels, info


@dataclass
class Supervision:
    """What training learns from besides the corpus: the seeds, the human labels and their files."""

    seeds: list[Seed]
    labels: LabelSet
    label_files: list[Path]


@dataclass
class Sample:
    """The corpus sample: the shards it was drawn from, its documents (doc_id, shard, row, text), what was
    read (for the card) and the human labels by sample row (theme -> {row: 1 on, 0 off})."""

    shards: list[Shard]
    docs: pl.DataFrame
    info: dict[str, Any]
    label_rows: dict[str, dict[int, int]]


@dataclass
class Embedded:
    """The embedder and its embeddings of the seeds and of the sample's documents (in sample order)."""

    embedder: Any
    seeds: np.ndarray
    docs: np.ndarray


@dataclass
class Labelled:
    """The teacher step's output: the seed index, the human labels by sample row (theme -> {row: 0/1}) and the
    teacher."""

    index: SeedIndex
    human_rows: dict[str, dict[int, int]]
    teacher: Teacher


@dataclass
class StudentLines:
    """What the student learns and is measured on: the held-out split of the sample, the sample's fastText
    text, the training lines (sample documents outside the split, then the seeds) with their teacher labels,
    and the split's texts and teacher labels."""

    split: np.ndarray
    doc_text: list[str]
    text: list[str]
    labels: list[list[str]]
    val_idx: np.ndarray
    val_text: list[str]
    val_truth: dict[str, np.ndarray]


@dataclass
class Student:
    """The kept fastText model(s): file per job, probabilities on the validation split and on the whole sample
    per theme, whether each job's model is the quantized one and what quantizing cost, the validation figures
    per theme, the training labels they learnt, and what distillation added."""

    labels: list[list[str]]
    files: dict[str, str] = field(default_factory=dict)
    val_probs: dict[str, np.ndarray] = field(default_factory=dict)
    all_probs: dict[str, np.ndarray] = field(default_factory=dict)
    quantized: dict[str, bool] = field(default_factory=dict)
    quant_drop: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, Any] = field(default_factory=dict)
    distillation: dict[str, Any] = field(default_factory=lambda: {"documents": 0})


@dataclass
class Calibration:
    """Per theme the gate and the selection threshold, the share of the validation split some gate passes
    (None without one), and the warnings for the card."""

    gates: dict[str, float]
    embed_fraction: float | None
    thresholds: dict[str, float]
    warnings: list[str]


def read_supervision(cfg: Config, labels_path: LabelPaths) -> Supervision:
    """Read the human label files (if any) and the configured seeds."""
    paths = label_paths(labels_path)
    label_set = read_label_files(paths, cfg.theme_names) if paths else LabelSet()
    return Supervision(load_seeds(cfg), label_set, paths)


def draw_sample(
    inputs: Sequence[str | Path], cfg: Config, sup: Supervision, progress: Callable[[str], None]
) -> Sample:
    """Step 1: find and check the shards and draw the seeded sample, every human-labelled document in it."""
    tc = cfg.train
    shards = discover_shards(inputs)
    for sh in shards:
        check_shard(sh, cfg.read)
    progress(f"sampling up to {tc.sample_size:,} documents from {len(shards)} shard(s)")
    sample, read_info = sample_corpus(shards, cfg, tc.sample_size, tc.seed, {d for d, _ in sup.labels.labels})
    progress(
        f"sampled {sample.height:,} of {read_info['documents_read']:,} documents; embedding them and "
        f"{len(sup.seeds)} seeds with {cfg.embedding.model}"
    )
    return Sample(shards, sample, read_info, sample_label_rows(cfg.theme_names, sup.labels, sample))


def embed_sample(
    ecfg: EmbeddingConfig, sup: Supervision, sample: Sample, progress: Callable[[str], None]
) -> Embedded:
    """Step 2b: embed the seeds, then the sample's documents in batches, reporting the rate."""
    embedder = make_embedder(ecfg)  # looked up at call time: scripts/label_curve.py replaces it
    seed_emb = embedder.encode([s.text for s in sup.seeds])
    texts = sample.docs["text"].to_list()
    n = len(texts)
    chunks = []
    t_emb = time.time()
    step = 1024
    for i in range(0, n, step):
        chunks.append(embedder.encode(texts[i : i + step]))
        done = min(i + step, n)
        rate = done / max(time.time() - t_emb, 1e-9)
        progress(f"embedded {done:,}/{n:,} sample documents ({rate:.0f} docs/s)")
    doc_emb = np.vstack(chunks) if chunks else np.zeros((0, seed_emb.shape[1]), dtype=np.float32)
    return Embedded(embedder, seed_emb, doc_emb)


def sample_label_rows(
    themes: Sequence[str], labels: LabelSet, docs: pl.DataFrame
) -> dict[str, dict[int, int]]:
    """The human labels by row of the sample `docs`: theme -> {row: 1 on, 0 off}."""
    human = labels.labels
    rows: dict[str, dict[int, int]] = {t: {} for t in themes}
    for i, d in enumerate(docs["doc_id"].to_list()):
        for t in themes:
            if (d, t) in human:
                rows[t][i] = human[(d, t)]
    return rows


@dataclass
class FineTuned:
    """The embedding settings the rest of training uses (the fine-tuned encoder's, when there is one) and what
    the card records of the fine-tuning (None when off)."""

    embedding: EmbeddingConfig
    info: dict[str, Any] | None = None


def finetune_step(
    cfg: Config, sup: Supervision, sample: Sample, tmp: Path, progress: Callable[[str], None]
) -> FineTuned:
    """Step 2a (with `train.finetune_epochs` > 0): fine-tune the embedding model on the sample's human-labelled
    documents and the seeds into `tmp`/encoder."""
    themes = cfg.theme_names
    rows = sample.label_rows
    labelled = sorted({r for by_row in rows.values() for r in by_row})
    epochs, why_not = epochs_for(cfg, len(labelled))
    if why_not and labelled:
        progress(f'not fine-tuning {cfg.embedding.model} (train.finetune_epochs = "auto"): {why_not}')
    if epochs == 0:
        return FineTuned(cfg.embedding)
    at = {r: i for i, r in enumerate(labelled)}
    seed_y = np.full((len(sup.seeds), len(themes)), -1, dtype=np.int8)
    for i, sd in enumerate(sup.seeds):
        seed_y[i, themes.index(sd.theme)] = 1 if sd.label == "positive" else 0
    y = targets(
        themes,
        len(labelled),
        {t: {at[r]: v for r, v in by_row.items()} for t, by_row in rows.items()},
        seed_y,
    )
    texts = [sample.docs["text"][r] for r in labelled] + [sd.text for sd in sup.seeds]
    progress(
        f"fine-tuning {cfg.embedding.model} on {len(labelled):,} labelled documents and {len(sup.seeds)} seeds "
        f"({epochs} epoch(s))"
    )
    enc = tmp / ENCODER_DIR
    info = finetune_encoder(cfg, epochs, texts, y, enc, progress)
    return FineTuned(dataclasses.replace(cfg.embedding, model=str(enc)), info)


def teach(
    cfg: Config, sup: Supervision, sample: Sample, emb: Embedded, progress: Callable[[str], None]
) -> Labelled:
    """Step 2c: index the seeds and fit the teacher to them and the sample's human labels."""
    themes = cfg.theme_names
    index = seed_index(themes, sup.seeds, emb.seeds, cfg.cascade.knn)
    ev_docs = index.evidence(emb.docs)
    teacher = fit_teacher(
        themes, sup.seeds, emb.seeds, emb.docs, ev_docs, sample.label_rows, cfg.train, progress
    )
    return Labelled(index, sample.label_rows, teacher)


def student_lines(cfg: Config, sup: Supervision, sample: Sample, teacher: Teacher) -> StudentLines:
    """Step 3a: split off the seeded validation documents and label the rest, and the seeds, as the teacher
    does."""
    themes = cfg.theme_names
    tc = cfg.train
    docs = sample.docs
    split = np.array(
        [
            seeded_key(tc.seed, "split", sh, r) / 2**64 < tc.validation_fraction
            for sh, r in zip(docs["shard"].to_list(), docs["row"].to_list(), strict=True)
        ]
    )
    ft_doc_text = fasttext_input(docs["text"], cfg.fasttext.max_chars)
    ft_seed_text = fasttext_input(pl.Series([s.text for s in sup.seeds]), cfg.fasttext.max_chars)
    train_text = [x for x, v in zip(ft_doc_text, split, strict=True) if not v] + ft_seed_text
    train_labels = [[t for t in themes if teacher.doc[t][i]] for i in range(docs.height) if not split[i]] + [
        [t for t in themes if teacher.seed[t][j]] for j in range(len(sup.seeds))
    ]
    val_idx = np.flatnonzero(split)
    val_text = [ft_doc_text[i] for i in val_idx]
    val_truth = {t: teacher.doc[t][val_idx] for t in themes}
    return StudentLines(split, ft_doc_text, train_text, train_labels, val_idx, val_text, val_truth)


def line_repeats(labels: list[list[str]], themes: Sequence[str], tc: TrainConfig) -> list[int]:
    """How many times each training line is written to the fastText file."""
    # lines carrying a theme are repeated so each theme reaches about `positive_share` of the file
    n_lines = len(labels)
    pos_counts = Counter(t for ll in labels for t in ll)
    rep_of = {
        t: min(MAX_REPEAT, math.ceil(tc.positive_share * n_lines / max(pos_counts[t], 1))) for t in themes
    }
    return [max([1, *(rep_of[t] for t in ll)]) for ll in labels]


def fit_students(
    cfg: Config,
    lines: StudentLines,
    train_text: list[str],
    train_labels: list[list[str]],
    tmp: Path,
    progress: Callable[[str], None],
) -> Student:
    """Train the fastText student(s) on these lines into `tmp`; keep the model(s) and their figures."""
    themes = cfg.theme_names
    val_text, val_truth = lines.val_text, lines.val_truth
    reps = line_repeats(train_labels, themes, cfg.train)
    st = Student(train_labels)
    jobs: list[tuple[str, str, list[list[str]]]]
    if cfg.fasttext.mode == "ova":
        jobs = [("ova", "fasttext", train_labels)]
    else:
        jobs = [
            (t, f"fasttext-{t}", [["pos"] if t in ll else ["neg"] for ll in train_labels]) for t in themes
        ]
    for key, stem, job_labels in jobs:
        train_file = tmp / f"{stem}.train.txt"
        n_written = _write_fasttext_file(train_file, train_text, job_labels, reps, cfg.train.seed)
        loss = "ova" if key == "ova" else "softmax"
        progress(f"training fastText ({key}) on {n_written:,} lines")
        bin_path, ftz_path = tmp / f"{stem}.bin", tmp / f"{stem}.ftz"
        want_q = cfg.fasttext.quantize and len(val_text) > 0
        _train_fasttext(train_file, cfg, loss, bin_path, ftz_path if want_q else None)

        full = fasttext_probs(load_fasttext(bin_path), val_text, themes, key)
        suffix = ".bin"
        if want_q:
            q = fasttext_probs(load_fasttext(ftz_path), val_text, themes, key)
            drops = [
                average_precision(full[t], val_truth[t]) - average_precision(q[t], val_truth[t])
                for t in full
                if val_truth[t].any()
            ]
            st.quant_drop[key] = round(float(np.mean(drops)), 4) if drops else 0.0
            if st.quant_drop[key] < cfg.fasttext.max_quantize_ap_drop:
                suffix, full = ".ftz", q
        (bin_path if suffix == ".ftz" else ftz_path).unlink(missing_ok=True)
        st.quantized[key] = suffix == ".ftz"
        fname = stem + suffix
        st.files[key] = fname
        st.val_probs.update(full)
        # the kept model on the whole sample, for selection thresholds when validation is too small
        st.all_probs.update(fasttext_probs(load_fasttext(tmp / fname), lines.doc_text, themes, key))
        for t, p in full.items():
            truth = val_truth[t]
            prec, rec = precision_recall_at(p, truth, 0.5)
            st.val_metrics[t] = {
                "n_validation": len(val_text),
                "n_positive": int(truth.sum()),
                "average_precision": round(average_precision(p, truth), 4) if truth.any() else None,
                "precision_at_0.5": None if prec is None else round(prec, 4),
                "recall_at_0.5": None if rec is None else round(rec, 4),
            }
        os.remove(train_file)
    return st


def train_student(
    cfg: Config,
    sample: Sample,
    emb: Embedded,
    teacher: Teacher,
    lines: StudentLines,
    tmp: Path,
    progress: Callable[[str], None],
) -> Student:
    """Step 3b: train the fastText student, then, with `train.distill_size`, train it again with the head's
    labels of further documents added."""
    st = fit_students(cfg, lines, lines.text, lines.labels, tmp, progress)
    if cfg.train.distill_size > 0:
        extra_text, extra_labels, distill_info = distill_lines(
            sample.shards, cfg, sample.docs, emb.embedder, teacher, st.files, tmp, progress
        )
        if extra_text:
            for fname in st.files.values():  # the first student is replaced
                (tmp / fname).unlink(missing_ok=True)
            st = fit_students(cfg, lines, lines.text + extra_text, lines.labels + extra_labels, tmp, progress)
        st.distillation = distill_info
    return st


def calibrate_gates(cfg: Config, lines: StudentLines, st: Student) -> tuple[dict[str, float], float | None]:
    """Step 4a: each theme's gate (and the recall at it, into the validation figures) and the share of the
    validation split some gate passes."""
    themes = cfg.theme_names
    val_probs, val_truth, n_val = st.val_probs, lines.val_truth, len(lines.val_text)
    per_theme = cfg.cascade.target_embed_fraction / len(themes)
    gates: dict[str, float] = {}
    for t in themes:
        negs = np.sort(val_probs[t][~val_truth[t]])[::-1] if n_val else np.zeros(0)
        m_allowed = int(math.floor(per_theme * len(negs)))
        if len(negs) == 0:
            gates[t] = 0.5
        elif m_allowed >= len(negs):
            gates[t] = 0.0
        else:
            gates[t] = float(np.nextafter(np.float32(negs[m_allowed]), np.float32(1.0)))
        truth = val_truth[t]
        st.val_metrics[t]["gate"] = round(gates[t], 6)
        st.val_metrics[t]["recall_at_gate"] = (
            round(float((val_probs[t][truth] >= gates[t]).mean()), 4) if truth.any() else None
        )
    if not n_val:
        return gates, None
    passed = np.zeros(n_val, dtype=bool)
    for t in themes:
        passed |= val_probs[t] >= gates[t]
    return gates, round(float(passed.mean()), 4)


def matched_threshold(before: np.ndarray, threshold: float, after: np.ndarray) -> float:
    """The threshold on the scores `after` that lets as many documents through as `threshold` does on the
    scores `before` (the same documents): `threshold` itself when none pass."""
    n_above = int((before >= threshold).sum())
    return float(np.sort(after)[::-1][n_above - 1]) if n_above else threshold


def fit_thresholds(
    cfg: Config,
    emb: Embedded,
    labelled: Labelled,
    lines: StudentLines,
    st: Student,
    gates: dict[str, float],
    progress: Callable[[str], None],
) -> tuple[dict[str, float], list[str]]:
    """Step 4b: each theme's selection threshold (and its figures, into the validation figures) and the
    warnings for themes with too few teacher positives to fit one."""
    # where the cascade score agrees best (F1) with the teacher's own labels (pseudo positives, head
    # probability >= teacher_threshold, human labels; not the student's extra positives, which are there for
    # recall): on the held-out split when it holds enough of them, else on the whole sample (small corpora).
    # A theme with label neighbours: the labelled documents are each other's neighbours (a work's passages, the
    # strategy's strata), so even judged without itself a labelled negative sits among labelled negatives and
    # scores lower than an unlabelled document like it would: a threshold fitted to them would let too much
    # through. So the threshold is fitted to the head alone, and the neighbours' threshold is the score that
    # lets the same number of sample documents through: they re-rank, they do not change how many qualify.
    themes = cfg.theme_names
    teacher, human_rows, head_info = labelled.teacher, labelled.human_rows, labelled.teacher.info
    nb = teacher.neighbours
    p_plain = head_probs(emb.docs, teacher.heads, None)
    # each labelled document judged without itself among the neighbours
    p_head = p_plain if nb is None else nb.adjust(p_plain, emb.docs, teacher.label_where)
    with_neighbours = set(nb.active) if nb is not None else set()
    w_emb = cfg.cascade.embedding_weight
    all_passed = np.zeros(len(emb.docs), dtype=bool)
    for t in themes:
        all_passed |= st.all_probs[t] >= gates[t]

    def cascade_score(p: np.ndarray, t: str) -> np.ndarray:
        return np.clip(w_emb * np.where(all_passed, p, 0.0) + (1 - w_emb) * st.all_probs[t], 0, 1)

    thresholds: dict[str, float] = {}
    warnings: list[str] = []
    for t in themes:
        s_nb = cascade_score(p_head[t], t)
        s_all = cascade_score(p_plain[t], t)
        truth_all = labelled.teacher.strict[t]
        where = "validation"
        s_fit, truth_fit = s_all[lines.val_idx], truth_all[lines.val_idx]
        lab_rows = np.array(sorted(human_rows[t]), dtype=np.int64)
        lab_pos = int(sum(human_rows[t].values()))
        if head_info[t]["fitted_on"].startswith("labels") and lab_pos >= MIN_VALIDATION_POSITIVES:
            # a theme learnt from labels: its threshold agrees best with the labels themselves
            where, s_fit, truth_fit = "labels", s_all[lab_rows], truth_all[lab_rows]
        elif int(truth_fit.sum()) < MIN_VALIDATION_POSITIVES:
            where, s_fit, truth_fit = "whole sample", s_all, truth_all
        if int(truth_fit.sum()) < MIN_THRESHOLD_POSITIVES:
            thr, prec, rec = 0.5, None, None
            where = "default"
            warnings.append(
                f"{t}: {int(truth_fit.sum())} teacher positive(s) in the sample, fewer than "
                f"{MIN_THRESHOLD_POSITIVES}: its selection threshold falls back to 0.5. Train on a larger "
                "corpus, raise train.pseudo_positive_fraction if the corpus is rich in the theme "
                "(configs/demo.toml), or select with --threshold / --top-fraction."
            )
            progress(f"warning: {warnings[-1]}")
        else:
            thr, prec, rec = best_f1_threshold(s_fit, truth_fit)
        m = st.val_metrics[t]
        if t in with_neighbours and where != "default":
            m["threshold_head_only"] = round(thr, 6)
            thr = matched_threshold(s_all, thr, s_nb)
            # (on the labels, these figures flatter the threshold: see above)
            rows = {"validation": lines.val_idx, "labels": lab_rows}.get(where, np.arange(len(s_nb)))
            prec, rec = precision_recall_at(s_nb[rows], truth_all[rows], thr)
        thresholds[t] = thr
        m["threshold"] = round(thr, 6)
        m["threshold_fitted_on"] = where
        m["threshold_positives"] = int(truth_fit.sum())
        m["precision_at_threshold"] = None if prec is None else round(prec, 4)
        m["recall_at_threshold"] = None if rec is None else round(rec, 4)
    return thresholds, warnings


def calibrate(
    cfg: Config,
    emb: Embedded,
    labelled: Labelled,
    lines: StudentLines,
    st: Student,
    progress: Callable[[str], None],
) -> Calibration:
    """Step 4: calibrate the gates on the validation split, then the selection thresholds."""
    gates, embed_fraction = calibrate_gates(cfg, lines, st)
    thresholds, warnings = fit_thresholds(cfg, emb, labelled, lines, st, gates, progress)
    return Calibration(gates, embed_fraction, thresholds, warnings)


def save_head(tmp: Path, themes: Sequence[str], labelled: Labelled) -> None:
    """Step 5a: write each theme's teacher head and seed vectors, and the label neighbours, to `tmp`/head.npz."""
    heads = labelled.teacher.heads
    arrays: dict[str, np.ndarray] = {}
    for t in themes:
        arrays[f"coef_{t}"] = heads[t][0]
        arrays[f"bias_{t}"] = np.array(heads[t][1])
        arrays[f"pos_{t}"] = labelled.index.pos[t]
        arrays[f"neg_{t}"] = labelled.index.neg[t]
    if labelled.teacher.neighbours is not None:
        arrays |= labelled.teacher.neighbours.arrays()
    np.savez(tmp / HEAD, **arrays)  # type: ignore[arg-type]


def make_card(
    cfg: Config,
    tmp: Path,
    t0: float,
    sup: Supervision,
    sample: Sample,
    emb: Embedded,
    labelled: Labelled,
    lines: StudentLines,
    st: Student,
    cal: Calibration,
    ft: FineTuned,
) -> dict[str, Any]:
    """Step 5b: the card of the classifier in `tmp` (its files already written) trained since `t0`."""
    themes = cfg.theme_names
    seeds, paths, index, split = sup.seeds, sup.label_files, labelled.index, lines.split
    files: dict[str, Any] = {"fasttext": st.files, "head": HEAD}
    fingerprinted = [*st.files.values(), HEAD]
    embedding: dict[str, Any] = {
        "model": cfg.embedding.model,
        "max_tokens": cfg.embedding.max_tokens,
        "dim": int(emb.seeds.shape[1]),
    }
    if ft.info is not None:  # the fine-tuned encoder is part of the classifier, and of its fingerprint
        files["encoder"] = ENCODER_DIR
        fingerprinted += sorted(
            str(f.relative_to(tmp)) for f in (tmp / ENCODER_DIR).rglob("*") if f.is_file()
        )
        embedding |= {"encoder": ENCODER_DIR, "finetune": ft.info}
    return {
        "selector_version": __version__,
        "themes": themes,
        "files": files,
        "fingerprint": classifier_fingerprint(tmp, fingerprinted),
        "trained_on": {
            **sample.info,
            "sample_size": sample.docs.height,
            "n_train": int((~split).sum()),
            "n_validation": int(split.sum()),
            "human_labels": len(sup.labels.labels),
            "human_labels_file": ", ".join(map(str, paths)) if paths else None,
            "human_labels_sha256": labels_fingerprint(paths),
            "labels_in_sample": sum(len(v) for v in labelled.human_rows.values()),
        },
        "label_sources": sup.labels.info,
        "seeds": {
            t: {
                "file": cfg.theme(t).seeds.name,
                "sha256": h,
                "positive": sum(1 for s in seeds if s.theme == t and s.label == "positive"),
                "near_miss": sum(1 for s in seeds if s.theme == t and s.label == "near_miss"),
                "positive_ids": index.pos_ids[t],
            }
            for t, h in seed_hashes(cfg).items()
        },
        "label_counts": {
            t: {
                "train_positive": int(sum(t in ll for ll in st.labels)),
                "train_negative": int(sum(t not in ll for ll in st.labels)),
                "validation_positive": int(lines.val_truth[t].sum()),
            }
            for t in themes
        },
        "teacher": labelled.teacher.info,
        "label_neighbours": None
        if labelled.teacher.neighbours is None
        else labelled.teacher.neighbours.info(),
        "distillation": st.distillation,
        "validation": st.val_metrics,
        "gates": cal.gates,
        "thresholds": cal.thresholds,
        "warnings": cal.warnings,
        "validation_embed_fraction": cal.embed_fraction,
        "quantized": st.quantized,
        "quantization_mean_ap_drop": st.quant_drop,
        "embedding": embedding,
        "fasttext": {**cfg.fasttext.__dict__},
        "train": {**cfg.train.__dict__},
        "cascade": {
            "knn": cfg.cascade.knn,
            "target_embed_fraction": cfg.cascade.target_embed_fraction,
            # the weight the thresholds were calibrated with
            "embedding_weight": cfg.cascade.embedding_weight,
        },
        "config_hash": cfg.training_hash(),
        "determinism": "fastText is trained on fasttext.threads threads (default 1, the only setting under "
        "which it is deterministic); sampling, splitting and the head are seeded or exact.",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1),
    }


def write_classifier(out: Path, tmp: Path, card: dict[str, Any]) -> None:
    """Step 5c: write the card into `tmp` and put `tmp` in place of `out` (never over a directory that is
    not a classifier)."""
    (tmp / CARD).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    if out.exists():
        if not (out / CARD).exists() and any(out.iterdir()):
            raise SelectorError(f"{out} exists and is not a classifier directory; choose another --out.")
    replace_dir(tmp, out)


def train(
    inputs: Sequence[str | Path],
    cfg: Config,
    out_dir: str | Path,
    labels_path: LabelPaths = None,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Train a classifier on `inputs` from the configured seeds and any labels (one CSV or several; a
    person's label beats an annotator's); write it to `out_dir`; return its card."""
    t0 = time.time()
    check_finetunable(cfg)
    sup = read_supervision(cfg, labels_path)
    sample = draw_sample(inputs, cfg, sup, progress)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, ".train-")
    try:
        ft = finetune_step(cfg, sup, sample, tmp, progress)
        emb = embed_sample(ft.embedding, sup, sample, progress)
        labelled = teach(cfg, sup, sample, emb, progress)
        lines = student_lines(cfg, sup, sample, labelled.teacher)
        st = train_student(cfg, sample, emb, labelled.teacher, lines, tmp, progress)
        cal = calibrate(cfg, emb, labelled, lines, st, progress)
        save_head(tmp, cfg.theme_names, labelled)
        card = make_card(cfg, tmp, t0, sup, sample, emb, labelled, lines, st, cal, ft)
        write_classifier(out, tmp, card)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    progress(f"classifier written to {out} in {time.time() - t0:.0f}s")
    return card
