"""The label-efficiency curve behind docs/labelling.md: how much each labelling budget lifts the classifier,
for selector's strategy (selector/label/sampling.py) against random sampling and against the top of the ranking.

Simulated annotation on the development set (../shared/corpus): the development labels answer for the
annotator (haystack documents "off", unlabelled ones such as the Aesop fables "unsure"). Measured **by
work**: the works (a book, a handbook, the constitution; each FAQ answer and each haystack document on its
own) are split in two folds; labels are drawn only from one fold's documents and average precision is
measured on the other fold's, which are never labelled and share no work with a labelled document; then
the folds swap and the two figures are averaged.

The first ranking is the real cascade of `--classifier` (a classifier `selector train` fitted on the
development corpus from the seeds alone): its fastText scores for every document and its head on the
cached embeddings of the documents its gates pass. After labelling, the teacher is refitted by the
training code itself (`selector.train.run.fit_teacher`, through quality_ceiling.Bench) on the training sample
plus the labelled documents, and its head scores every document ("head" figures: the embedding stage on
every document). `--rounds R` spends each budget in R rounds, re-planning from the refitted head.

`--split document` splits documents at random instead of works (labels and measured documents share works).
`--split all` is the loop a user runs on their own dump, and what `selector annotate --scores` then
`selector run --labels` do: the budget is drawn from every document, and average precision is measured on
all the documents never labelled (the top of each ranking, which the strategy labels, is not among them).

    python scripts/label_curve.py --corpus ../shared/corpus --classifier runs/devset/classifier \\
        --work runs/ceiling --out runs/labelcurve
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from quality_ceiling import PARTS, THEMES, Bench  # noqa: E402

from selector.core.config import load_config
from selector.core.keys import seeded_key
from selector.label.sampling import SampleConfig, plan_labels
from selector.read.formats import discover_shards, read_shard
from selector.score.classifier import Classifier
from selector.score.text import fasttext_input


def weighted_ap(scores: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> float:
    """Average precision where each document counts `weight` times (haystack documents of a subsampled
    corpus stand for the ones left out); equal weights give the usual average precision."""
    order = np.argsort(-scores, kind="stable")
    t, w = truth[order].astype(bool), weight[order]
    tp = np.cumsum(np.where(t, w, 0.0))
    seen = np.cumsum(w)
    if not t.any():
        return float("nan")
    return float(np.sum((tp / seen)[t] * w[t]) / np.sum(w[t]))


def doc_weights(corpus: Path, ids: list[str]) -> np.ndarray:
    """Per document of `ids`, its weight in average precision: a kept haystack document stands for
    `haystack_weight` of them (subset.json, scripts/devset_subset.py), every other document for itself."""
    sub = corpus / "subset.json"
    hw = json.loads(sub.read_text())["haystack_weight"] if sub.exists() else 1.0
    hay = haystack_ids(corpus)
    return np.array([hw if d in hay else 1.0 for d in ids])


def haystack_ids(corpus: Path) -> set[str]:
    out: set[str] = set()
    for f in sorted((corpus / "haystack").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            out.update(json.loads(line)["id"] for line in fh)
    return out


def works(corpus: Path) -> dict[str, str]:
    """doc id -> its work: `meta.work` where the corpus names one, the file for themes/ and hardneg/ files
    that are one work each, and the document itself for the haystack and the FAQ answers."""
    out: dict[str, str] = {}
    for part in PARTS:
        for f in sorted((corpus / part).glob("*.jsonl.gz")):
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    d = json.loads(line)
                    meta = d.get("meta") or {}
                    if part == "haystack" or f.name.startswith("stampy"):
                        out[d["id"]] = f"doc:{d['id']}"
                    elif meta.get("work"):
                        out[d["id"]] = f"work:{meta['work']}"
                    else:
                        out[d["id"]] = f"file:{f.name}"
    return out


class Curve:
    def __init__(self, b: Bench, corpus: Path, clf_dir: Path, seed: int, split: str = "work"):
        self.b = b
        cfg = b.cfg
        clf = Classifier.load(clf_dir)
        self.thresholds = {t: float(clf.card["thresholds"][t]) for t in THEMES}
        texts: list[str] = [""] * len(b.ids)
        for sh in discover_shards([str(corpus / p) for p in PARTS]):
            for batch in read_shard(sh, cfg.read):
                for d, t in zip(batch["doc_id"].to_list(), batch["text"].to_list(), strict=True):
                    texts[b.row[d]] = t
        self.texts = texts
        ft = clf.ft_scores(fasttext_input(pl.Series(texts), clf.max_chars))
        emb, _ = clf.emb_scores(b.emb)
        gates = clf.gates
        passed = np.zeros(len(texts), dtype=bool)
        for t in THEMES:
            passed |= ft[t] >= gates[t]
        w = float(clf.card.get("cascade", {}).get("embedding_weight", cfg.cascade.embedding_weight))
        self.w = w
        self.ft = ft
        self.embedded = passed
        self.r0 = {t: np.where(passed, w * emb[t], 0.0) + (1 - w) * ft[t] for t in THEMES}
        self.r0_emb = emb
        wk = works(corpus)
        self.weight = doc_weights(corpus, b.ids)
        unit = (lambda d: wk[d]) if split == "work" else (lambda d: d)
        self.split = split
        # "all": one fold holding every document, labelled and measured alike (run(test_fold=0))
        self.fold = np.array([0 if split == "all" else seeded_key(seed, "fold", unit(d)) % 2 for d in b.ids])
        self.sha = [hashlib.sha1(t.encode()).hexdigest() for t in texts]

    def frame(
        self, rows: np.ndarray, score: dict[str, np.ndarray], emb: dict[str, np.ndarray]
    ) -> pl.DataFrame:
        cols: dict[str, Any] = {
            "doc_id": [self.b.ids[i] for i in rows],
            "source": ["devset"] * len(rows),
            "row": rows.tolist(),
            "content_sha1": [self.sha[i] for i in rows],
        }
        for t in THEMES:
            cols[f"ft_{t}"] = self.ft[t][rows]
            cols[f"emb_{t}"] = np.where(self.embedded[rows], emb[t][rows], np.nan).astype(np.float32)
            cols[f"score_{t}"] = score[t][rows].astype(np.float32)
        return pl.DataFrame(cols)

    def texts_of(self, sub: pl.DataFrame) -> Any:
        for i, r in zip(sub["_i"].to_list(), sub["row"].to_list(), strict=True):
            yield i, self.texts[r]

    def choose(
        self, strategy: str, pool: np.ndarray, budget: int, score: dict[str, np.ndarray], seed: int,
        emb: dict[str, np.ndarray], labelled: set[int],
    ) -> list[int]:  # fmt: skip
        if budget <= 0:
            return []
        fresh = np.array([r for r in pool if r not in labelled])
        if strategy == "random":
            keys = np.array([seeded_key(seed, "random", int(r)) for r in fresh], dtype=np.uint64)
            return fresh[np.argsort(keys)[:budget]].tolist()
        if strategy == "top":
            chosen: list[int] = []
            per = budget // len(THEMES)
            for k, t in enumerate(THEMES):
                want = per + (1 if k < budget % len(THEMES) else 0)
                for r in fresh[np.argsort(-score[t][fresh], kind="stable")]:
                    if want == 0:
                        break
                    if int(r) not in chosen:
                        chosen.append(int(r))
                        want -= 1
            return chosen
        frame = self.frame(pool, score, emb)
        known = [self.b.ids[r] for r in pool if r in labelled]
        plan = plan_labels(frame, self.thresholds, budget, SampleConfig(seed=seed), labelled=known,
                           texts=self.texts_of)  # fmt: skip
        return [int(r) for r, new in zip(plan["row"].to_list(), plan["new"].to_list(), strict=True) if new]

    def run(self, strategy: str, budget: int, rounds: int, test_fold: int, seed: int) -> dict[str, Any]:
        pool = np.flatnonzero(self.fold != test_fold if self.split != "all" else self.fold == test_fold)
        test = self.fold == test_fold
        labelled: set[int] = set()
        human: dict[str, dict[int, int]] = {t: {} for t in THEMES}
        score, emb = self.r0, self.r0_emb
        head = self.b.teacher() if budget == 0 else None
        per_round = (
            [budget // rounds + (1 if k < budget % rounds else 0) for k in range(rounds)] if budget else []
        )
        for k, n in enumerate(per_round):
            picked = self.choose(strategy, pool, n, score, seed + 1000 * k, emb, labelled)
            for r in picked:
                labelled.add(r)
                for t in THEMES:
                    v = int(self.b.truth[t][r])
                    if v >= 0:  # unlabelled in the development set: the annotator is unsure
                        human[t][r] = v
            head = self.b.teacher(human=human)
            emb = head
            score = {t: self.w * head[t] + (1 - self.w) * self.ft[t] for t in THEMES}
        assert head is not None
        out: dict[str, Any] = {"labelled": len(labelled), "positives_labelled": {}, "ap": {}}
        for t in THEMES:
            m = test & (self.b.truth[t] >= 0)
            m[list(labelled)] = False
            out["ap"][t] = round(weighted_ap(head[t][m], self.b.truth[t][m] == 1, self.weight[m]), 4)
            out["positives_labelled"][t] = int(sum(v for v in human[t].values()))
        return out


class CachedEmbedder:
    """Serves embeddings of development documents from the Bench cache (looked up by the first 2,048
    characters, as the cache embedded them) and embeds anything else (the seeds) with the real model."""

    def __init__(self, b: Bench, texts: list[str], real: Any):
        self.by_prefix = {t[:2048]: i for i, t in enumerate(texts)}
        self.b, self.real = b, real

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [self.by_prefix.get(t[:2048]) for t in texts]
        missing = [i for i, r in enumerate(rows) if r is None]
        out = np.zeros((len(texts), self.b.emb.shape[1]), dtype=np.float32)
        if missing:
            out[missing] = self.real.encode([texts[i] for i in missing])
        have = [i for i, r in enumerate(rows) if r is not None]
        out[have] = self.b.emb[[rows[i] for i in have]]
        return out


def train_r0(b: Bench, corpus: Path, out: Path) -> None:
    """`selector train` on the development corpus from the seeds alone (as `scripts/eval_quality.py` trains
    it), with the sample's embeddings served from the cache instead of computed a second time."""
    from selector.score.embed import make_embedder
    from selector.train import run as tr

    texts: list[str] = [""] * len(b.ids)
    for sh in discover_shards([str(corpus / p) for p in PARTS]):
        for batch in read_shard(sh, b.cfg.read):
            for d, t in zip(batch["doc_id"].to_list(), batch["text"].to_list(), strict=True):
                texts[b.row[d]] = t
    real = make_embedder(b.cfg.embedding)
    tr.make_embedder = lambda cfg: CachedEmbedder(b, texts, real)  # type: ignore[assignment]
    tr.train([str(corpus / p) for p in PARTS], b.cfg, out, progress=lambda m: print(m, file=sys.stderr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--corpus", default="runs/devsub", help="scripts/devset_subset.py's output, or ../shared/corpus."
    )
    ap.add_argument("--classifier", default="runs/devsub/classifier")
    ap.add_argument("--work", default="runs/devsub/cache", help="Where the embeddings are cached.")
    ap.add_argument("--labels", default="runs/devsub/labels.jsonl")
    ap.add_argument("--out", default="runs/labelcurve")
    ap.add_argument("--budgets", default="0,100,250,500,1000")
    ap.add_argument("--strategies", default="plan,random,top")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--split",
        choices=["work", "document", "all"],
        default="work",
        help="Fold by work (transfer to unseen works), by document (labels from the same works), or all "
        "(labels from every document, measured on the rest: the CLI loop).",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", action="append", default=[], help="train.KEY=VALUE override (repeatable).")
    args = ap.parse_args()
    cfg = load_config()
    for kv in args.train:
        k, v = kv.split("=", 1)
        cfg = cfg.replace("train", **{k: type(getattr(cfg.train, k))(v)})
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    b = Bench(corpus, Path(args.work), Path(args.labels), cfg)
    if not (Path(args.classifier) / "card.json").exists():
        train_r0(b, corpus, Path(args.classifier))
    c = Curve(b, corpus, Path(args.classifier), args.seed, args.split)
    folds_run = (0,) if args.split == "all" else (0, 1)
    for f in folds_run:
        pos = {t: int(((c.fold == f) & (b.truth[t] == 1)).sum()) for t in THEMES}
        print(f"fold {f}: {int((c.fold == f).sum()):,} documents, positives {pos}", file=sys.stderr)
    results: dict[str, Any] = {"settings": dataclasses.asdict(cfg.train), "rounds": args.rounds, "rows": []}
    for strategy in args.strategies.split(","):
        for budget in map(int, args.budgets.split(",")):
            if budget == 0 and strategy != args.strategies.split(",")[0]:
                continue
            folds = [c.run(strategy, budget, args.rounds if budget else 1, f, args.seed) for f in folds_run]
            row = {
                "strategy": strategy if budget else "none (seeds only)",
                "budget": budget,
                "ap": {t: round(float(np.mean([r["ap"][t] for r in folds])), 3) for t in THEMES},
                "ap_by_fold": [r["ap"] for r in folds],
                "positives_labelled": {t: sum(r["positives_labelled"][t] for r in folds) for t in THEMES},
            }
            results["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    tag = "-".join([f"r{args.rounds}", args.split, *[kv.replace("=", "") for kv in args.train]])
    (out / f"curve-{tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| strategy | labels | " + " | ".join(THEMES) + " | positives labelled (both folds) |",
             "|---" * (len(THEMES) + 3) + "|"]  # fmt: skip
    for r in results["rows"]:
        pl_ = ", ".join(str(r["positives_labelled"][t]) for t in THEMES)
        lines.append(f"| {r['strategy']} | {r['budget']} | " + " | ".join(f"{r['ap'][t]:.3f}" for t in THEMES)
                     + f" | {pl_} |")  # fmt: skip
    print("\n".join(lines))
    print(f"({time.time() - t0:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
