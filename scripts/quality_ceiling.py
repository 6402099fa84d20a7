"""How far can the embedding stage go on the development set? Experiments behind docs/quality.md's
"Where the ceiling is", on embeddings of every development document computed once and cached.

Each experiment uses the real training code (`selector.train.run.fit_teacher`) where it trains a teacher:

- `teacher`: the head `selector train` fits from the seeds alone (on the same 20,000-document sample),
  scored on every document; then the variants of its settings listed in `VARIANTS`.
- `ceiling`: heads trained on the development labels themselves, with 5-fold cross-validation that keeps
  the passages of one work in one fold (`--folds-by document` spreads them): a linear head (the form
  `selector` uses, best L2 of a grid) and a k-nearest-neighbour vote. It shows how much of each theme, and
  of the ai_risk stance in particular, this embedding carries at all.
- `audit_loop`: a simulated label loop: the seed-only head's top `--audit-labels` documents per theme are
  labelled (the development labels stand in for a reviewer), the teacher is refitted with them as human
  labels (as `selector train --labels` does), and average precision is measured on the documents not labelled.
- `gates` (with `--cascade`, `--classifier` and `--embed-all`, the scores `selector score --gate 0` wrote):
  every theme's gate moved so that a multiple of the documents it passes gets through (x1: the classifier's
  own gates), and the cascade's average precision recomputed from the fastText scores and, for the documents
  let through, their `--embed-all` embedding scores. Those were computed in other batches, so under bf16
  they differ slightly from the cascade's own. This is what a tighter gate, the only speed lever left on a
  CPU (docs/measured.md), costs in quality.
- `weights` (with `--cascade` and `--embed-all`): the cascade's and every document's average precision for
  `cascade.embedding_weight` w from 0.8 to 1, recomputed from the stored `emb_*` and `ft_*` columns.
- `windows` (with `--cascade` and `--classifier`): the cascade's embedded documents re-embedded as up to
  `--windows` consecutive windows of `embedding.max_tokens` tokens, the head's probability aggregated
  (first window, mean, max, mean embedding) and the cascade's average precision recomputed.

    python scripts/quality_ceiling.py --corpus ../shared/corpus --work runs/ceiling
    python scripts/quality_ceiling.py --max-tokens 128 --experiments teacher
    python scripts/quality_ceiling.py --experiments windows --cascade runs/devset/cascade \\
        --classifier runs/devset/classifier

Embedding the 54,764 development documents takes about 12 minutes on 2 cores (5 at 128 tokens); the
experiments take seconds each after that. Prints a table and writes `--work/ceiling-<max_tokens>.json`
(experiments run separately accumulate there).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from selector.audit.evaluation import read_labels
from selector.core.config import Config, load_config
from selector.core.metrics import average_precision
from selector.read.formats import discover_shards, read_shard
from selector.score.embed import Embedder, make_embedder
from selector.score.head import fit_logistic, predict_logistic
from selector.train.run import (
    NEAR_MISS_WEIGHT,
    fit_teacher,
    pseudo_positive_count,
    sample_corpus,
    seed_index,
    seed_ranking,
)
from selector.train.seeds import Seed, load_seeds

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]
PARTS = ("haystack", "themes", "hardneg")
# teacher settings tried against the default (train.* keys; "neg_weight" and "knn" are the round-0 ranking's)
VARIANTS: list[dict[str, Any]] = [
    {"teacher_rounds": 1},
    {"teacher_rounds": 3},
    {"pseudo_positive_fraction": 0.0005},
    {"pseudo_positive_fraction": 0.002},
    {"background_weight": 3.0},
    {"background_weight": 30.0},
    {"neg_weight": 0.0},
    {"neg_weight": 1.0},
    {"knn": 3},
    {"contrast_seeds": True},
]


def embed_corpus(corpus: Path, cfg: Config, cache: Path) -> tuple[np.ndarray, list[str]]:
    """Unit embeddings of every development document (as `selector score --gate 0` computes them), cached."""
    if cache.exists():
        z = np.load(cache)
        return z["emb"], z["ids"].tolist()
    ids: list[str] = []
    texts: list[str] = []
    for sh in discover_shards([str(corpus / p) for p in PARTS]):
        for b in read_shard(sh, cfg.read):
            ids += b["doc_id"].to_list()
            texts += b["text"].str.slice(0, cfg.embedding.max_tokens * 8).to_list()
    emb = make_embedder(cfg.embedding)
    out = np.zeros((len(ids), 0), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")  # length-sorted batches pad least
    t0 = time.time()
    step = 2048
    for i in range(0, len(order), step):
        idx = order[i : i + step]
        e = emb.encode([texts[j] for j in idx])
        if out.shape[1] == 0:
            out = np.zeros((len(ids), e.shape[1]), dtype=np.float32)
        out[idx] = e
        print(f"  embedded {min(i + step, len(ids)):,}/{len(ids):,} ({time.time() - t0:.0f}s)", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, emb=out, ids=np.array(ids))
    return out, ids


class Bench:
    """The cached embeddings, the labels and the training sample, and average precision over them."""

    def __init__(self, corpus: Path, work: Path, labels: Path, cfg: Config):
        self.cfg = cfg
        # the cache is specific to the model, its input length and what the reader keeps
        key = json.dumps(
            [cfg.embedding.model, cfg.embedding.max_tokens, dataclasses.asdict(cfg.read)], default=str
        )
        tag = f"{cfg.embedding.max_tokens}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        self.emb, self.ids = embed_corpus(corpus, cfg, work / f"embeddings-{tag}.npz")
        self.row = {d: i for i, d in enumerate(self.ids)}
        lab = read_labels(labels, THEMES)
        self.truth: dict[str, np.ndarray] = {}  # per theme: 1 / 0 / -1 (unlabelled) for every document
        for t in THEMES:
            arr = np.full(len(self.ids), -1, dtype=np.int8)
            for d, v in zip(lab["doc_id"].to_list(), lab[f"label_{t}"].to_list(), strict=True):
                if v is not None and d in self.row:
                    arr[self.row[d]] = int(v)
            self.truth[t] = arr
        shards = discover_shards([str(corpus / p) for p in PARTS])
        sample, _ = sample_corpus(shards, cfg, cfg.train.sample_size, cfg.train.seed)
        self.sample_rows = np.array([self.row[d] for d in sample["doc_id"].to_list()])
        self.seeds = load_seeds(cfg)
        self.seed_emb = make_embedder(cfg.embedding).encode([s.text for s in self.seeds])
        self.x64 = self.emb.astype(np.float64)

    def truth_at(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Per theme, the labels (1 / 0 / -1 unlabelled) of the documents `ids`, in that order."""
        return {t: self.truth[t][[self.row[d] for d in ids]] for t in THEMES}

    def ap(
        self, scores: dict[str, np.ndarray], exclude: dict[str, set[int]] | None = None
    ) -> dict[str, float]:
        out = {}
        for t in THEMES:
            m = self.truth[t] >= 0
            if exclude and exclude.get(t):
                m[list(exclude[t])] = False
            out[t] = round(average_precision(scores[t][m], self.truth[t][m] == 1), 3)
        return out

    def teacher(
        self,
        tc: Any = None,
        neg_weight: float = NEAR_MISS_WEIGHT,
        knn: int | None = None,
        contrast_seeds: bool = False,
        human: dict[str, dict[int, int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Fit the teacher as `selector train` does (seeds, the sample, optional human labels keyed by row
        of the corpus) and score every document with its head."""
        tc = tc or self.cfg.train
        seeds, seed_emb = list(self.seeds), self.seed_emb
        if contrast_seeds:  # the other stance theme's positives as near misses (ai_risk <-> cooperative_ai)
            other = {"ai_risk": "cooperative_ai", "cooperative_ai": "ai_risk"}
            extra = [
                (Seed(t, s.seed_id + "~contrast", "near_miss", s.text), i)
                for i, s in enumerate(seeds)
                for t, o in other.items()
                if s.label == "positive" and s.theme == o
            ]
            seeds = seeds + [s for s, _ in extra]
            seed_emb = np.vstack([seed_emb, seed_emb[[i for _, i in extra]]])
        rows = list(self.sample_rows)
        have = set(rows)
        for labs in (human or {}).values():  # `selector train` puts human-labelled documents in the sample
            for r in labs:
                if r not in have:
                    rows.append(r)
                    have.add(r)
        rows_arr = np.array(rows)
        pos_in_sample = {int(r): k for k, r in enumerate(rows_arr)}
        hr = {t: {pos_in_sample[r]: v for r, v in (human or {}).get(t, {}).items()} for t in THEMES}
        xd = self.emb[rows_arr]
        ev = seed_index(THEMES, seeds, seed_emb, knn or self.cfg.cascade.knn).evidence(xd)
        for t in THEMES:  # fit_teacher's round 0 weighs the near misses by NEAR_MISS_WEIGHT
            ev[t]["neg"] = ev[t]["neg"] * (neg_weight / NEAR_MISS_WEIGHT)
        teacher = fit_teacher(THEMES, seeds, seed_emb, xd, ev, hr, tc, lambda m: None)
        return teacher.probs(
            self.emb
        )  # the head with the label neighbours' evidence, as the classifier scores


def exp_teacher(b: Bench) -> dict[str, Any]:
    res: dict[str, Any] = {"default": b.ap(b.teacher())}
    # how many of the round-0 pseudo positives (seed similarity, as fit_teacher ranks them) are labelled on-theme
    ev = seed_index(THEMES, b.seeds, b.seed_emb, b.cfg.cascade.knn).evidence(b.emb[b.sample_rows])
    m = pseudo_positive_count(len(b.sample_rows), b.cfg.train)
    hits = {}
    for t in THEMES:
        top = b.sample_rows[np.argsort(-seed_ranking(ev[t]), kind="stable")[:m]]
        hits[t] = f"{int((b.truth[t][top] == 1).sum())}/{m}"
    res["round-0 pseudo positives labelled on-theme"] = hits
    for v in VARIANTS:
        kw = {k: v[k] for k in ("neg_weight", "knn", "contrast_seeds") if k in v}
        train_kw = {k: x for k, x in v.items() if k not in kw}
        tc = dataclasses.replace(b.cfg.train, **train_kw)
        res[", ".join(f"{k}={x}" for k, x in v.items())] = b.ap(b.teacher(tc, **kw))
    return res


def work_of(doc_id: str) -> str:
    """The work a development document was cut from: passages of one book, the constitution's sections and
    the Axelrod library's pages each form one work; every other document is its own."""
    for prefix in ("axelrod", "constitution"):
        if doc_id.startswith(prefix):
            return prefix
    if doc_id.startswith(("pg", "ncase")):
        return doc_id.rsplit("-", 1)[0]
    return doc_id


def exp_ceiling(
    b: Bench, by: str = "work", folds: int = 5, l2s: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
) -> dict[str, Any]:
    """Out-of-fold heads trained on the labels, with the passages of one work in one fold (so a head cannot
    copy a label from another passage of the same book). The linear head is fitted at each L2 in `l2s` and
    the best one per theme is kept (chosen on the same folds: optimistic, as a ceiling should be).
    `by="document"` spreads the passages of a work over the folds instead."""
    group = work_of if by == "work" else (lambda d: d)
    fold = np.array([zlib.crc32(group(d).encode()) % folds for d in b.ids])
    stampy = np.array([d.startswith("stampy-") for d in b.ids])
    import faiss

    res: dict[str, Any] = {
        "linear": {},
        "linear_l2": {},
        "knn": {},
        "linear_within_aisafety_faq": {},
        "knn_within_aisafety_faq": {},
    }
    e32 = np.ascontiguousarray(b.emb)
    for t in THEMES:
        y, known = b.truth[t] == 1, b.truth[t] >= 0
        lins = {l2: np.zeros(len(b.ids)) for l2 in l2s}
        knn = np.zeros(len(b.ids))
        for f in range(folds):
            tr, te = np.flatnonzero((fold != f) & known), np.flatnonzero(fold == f)
            w = np.where(y[tr], 1.0, 10 * y[tr].sum() / max((~y[tr]).sum(), 1))
            for l2 in l2s:
                coef, bias = fit_logistic(b.x64[tr], y[tr].astype(float), w, l2)
                lins[l2][te] = predict_logistic(b.x64[te], coef, bias)
            ix = faiss.IndexFlatIP(e32.shape[1])
            ix.add(e32[tr])
            sims, nn = ix.search(e32[te], 15)
            wk = np.exp(10 * sims)
            knn[te] = (y[tr][nn] * wk).sum(1) / wk.sum(1)
        best = max(l2s, key=lambda l2: average_precision(lins[l2][known], y[known]))
        res["linear_l2"][t] = best
        for name, s in (("linear", lins[best]), ("knn", knn)):
            res[name][t] = round(average_precision(s[known], y[known]), 3)
            m = known & stampy
            if y[m].any():
                res[f"{name}_within_aisafety_faq"][t] = round(average_precision(s[m], y[m]), 3)
        m = known & stampy
        if y[m].any():
            res.setdefault("random_within_aisafety_faq", {})[t] = round(float(y[m].mean()), 3)
    return res


def exp_audit_loop(b: Bench, n_labels: int) -> dict[str, Any]:
    base = b.teacher()
    human: dict[str, dict[int, int]] = {}
    for t in THEMES:
        order = np.argsort(-base[t], kind="stable")
        picked = [int(i) for i in order if b.truth[t][i] >= 0][:n_labels]
        human[t] = {i: int(b.truth[t][i]) for i in picked}
    refit = b.teacher(human=human)
    held = {t: set(human[t]) for t in THEMES}
    return {
        "labels_per_theme": {t: {"labelled": len(h), "on_theme": sum(h.values())} for t, h in human.items()},
        "seed_only_heldout": b.ap(base, held),
        "with_labels_heldout": b.ap(refit, held),
    }


def exp_windows(b: Bench, cascade: Path, classifier: Path, corpus: Path, k_max: int) -> dict[str, Any]:
    from selector.score.classifier import Classifier
    from selector.score.run import read_scores

    clf = Classifier.load(classifier)
    sc = read_scores(cascade)
    w = b.cfg.cascade.embedding_weight
    emb_cfg = dataclasses.replace(b.cfg.embedding, max_tokens=int(clf.card["embedding"]["max_tokens"]))
    ids = sc["doc_id"].to_list()
    known = b.truth_at(ids)
    gated = set(sc.filter(pl.col("embedded"))["doc_id"].to_list())
    texts: dict[str, str] = {}
    for sh in discover_shards([str(corpus / p) for p in PARTS]):
        for batch in read_shard(sh, b.cfg.read):
            batch = batch.filter(pl.col("doc_id").is_in(list(gated)))
            texts.update(zip(batch["doc_id"].to_list(), batch["text"].to_list(), strict=True))
    emb = make_embedder(emb_cfg)
    if not isinstance(emb, Embedder):
        sys.exit(
            "the windows experiment needs a sentence-transformers model (its tokenizer cuts the windows)"
        )
    tok = emb.model.tokenizer
    width = emb_cfg.max_tokens - 2
    win_text, win_doc, win_k = [], [], []
    for d, text in texts.items():
        text = text[: k_max * width * 8]
        offs = tok(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)[
            "offset_mapping"
        ]
        for k in range(k_max):
            seg = offs[k * width : (k + 1) * width]
            if not seg or (k and len(seg) < width // 4):  # a short tail is not a window of its own
                break
            win_text.append(text[seg[0][0] : seg[-1][1]])
            win_doc.append(d)
            win_k.append(k)
    x = emb.encode(win_text).astype(np.float64)
    at = {d: i for i, d in enumerate(ids)}
    wd, wk = np.array([at[d] for d in win_doc]), np.array(win_k)
    res: dict[str, Any] = {"documents": len(texts), "windows": len(win_text)}

    def cascade_ap(e: dict[str, np.ndarray]) -> dict[str, float]:
        out = {}
        for t in THEMES:
            s = w * e[t] + (1 - w) * sc[f"ft_{t}"].to_numpy()
            m = known[t] >= 0
            out[t] = round(average_precision(s[m], known[t][m] == 1), 3)
        return out

    p, _ = clf.emb_scores(x.astype(np.float32))  # the head as the classifier scores (label neighbours too)
    for k in range(1, k_max + 1):
        sel = wk < k
        for agg in ("mean", "max", "mean embedding") if k > 1 else ("first window",):
            e = {}
            for t in THEMES:
                v = np.zeros(len(ids))
                if agg == "mean embedding":
                    s = np.zeros((len(ids), x.shape[1]))
                    np.add.at(s, wd[sel], x[sel])
                    nz = np.linalg.norm(s, axis=1) > 0
                    s[nz] /= np.linalg.norm(s[nz], axis=1, keepdims=True)
                    v[nz] = clf.emb_scores(s[nz].astype(np.float32))[0][t]
                else:
                    g = pl.DataFrame({"d": wd[sel], "k": wk[sel], "p": p[t][sel]}).group_by("d")
                    col = {
                        "first window": pl.col("p").sort_by("k").first(),
                        "mean": pl.col("p").mean(),
                        "max": pl.col("p").max(),
                    }[agg]
                    r = g.agg(col.alias("v"))
                    v[r["d"].to_numpy()] = r["v"].to_numpy()
                e[t] = v
            res[f"{agg}, {k} windows" if k > 1 else "first window (as scored)"] = cascade_ap(e)
    return res


def exp_gates(b: Bench, cascade: Path, embed_all: Path, classifier: Path) -> dict[str, Any]:
    from selector.score.classifier import Classifier
    from selector.score.run import read_scores

    gates = Classifier.load(classifier).gates
    w = b.cfg.cascade.embedding_weight
    # joined by shard and row: a few development documents share an id
    sc = read_scores(cascade).select("doc_id", "source", "row", *[f"ft_{t}" for t in THEMES])
    emb_all = read_scores(embed_all).select("source", "row", *[f"emb_{t}" for t in THEMES])
    sc = sc.join(emb_all, on=["source", "row"])
    ids = sc["doc_id"].to_list()
    known = b.truth_at(ids)
    ft = {t: sc[f"ft_{t}"].to_numpy() for t in THEMES}
    emb = {t: sc[f"emb_{t}"].to_numpy() for t in THEMES}
    n_pass = {t: int((ft[t] >= gates[t]).sum()) for t in THEMES}
    desc = {t: np.sort(ft[t])[::-1] for t in THEMES}
    res: dict[str, Any] = {}
    for mult in (0.3, 0.5, 0.7, 1.0, 1.5, 2.0):
        passed = np.zeros(len(ids), dtype=bool)
        for t in THEMES:
            # x1 is the classifier's own gate; other multiples let through the top mult * (its count)
            k = min(len(ids), round(mult * n_pass[t]))
            cut = gates[t] if mult == 1.0 else (desc[t][k - 1] if k else np.inf)
            passed |= ft[t] >= cut
        row = {}
        for t in THEMES:
            s = np.where(passed, w * emb[t], 0.0) + (1 - w) * ft[t]
            m = known[t] >= 0
            row[t] = round(average_precision(s[m], known[t][m] == 1), 3)
        res[f"gates x{mult} ({100 * passed.mean():.2f}% embedded)"] = row
    return res


def exp_weights(b: Bench, cascade: Path, embed_all: Path) -> dict[str, Any]:
    from selector.score.run import read_scores

    res: dict[str, Any] = {}
    for name, path in (("cascade", cascade), ("every document", embed_all)):
        sc = read_scores(path)
        ids = sc["doc_id"].to_list()
        known = b.truth_at(ids)
        for w in (0.8, 0.9, 0.95, 0.99, 1.0):
            row = {}
            for t in THEMES:
                s = w * np.nan_to_num(sc[f"emb_{t}"].to_numpy()) + (1 - w) * sc[f"ft_{t}"].to_numpy()
                m = known[t] >= 0
                row[t] = round(average_precision(s[m], known[t][m] == 1), 3)
            res[f"{name}, w = {w}"] = row
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--work", default="runs/ceiling")
    ap.add_argument("--labels", default=None, help="development labels (default: built into --work)")
    ap.add_argument("--config", default=None)
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="embed this many tokens (default: the config's)"
    )
    ap.add_argument(
        "--experiments",
        nargs="+",
        default=["teacher", "ceiling", "audit_loop"],
        choices=["teacher", "ceiling", "audit_loop", "windows", "gates", "weights"],
    )
    ap.add_argument(
        "--audit-labels", type=int, default=100, help="labels per theme in the simulated audit loop"
    )
    ap.add_argument(
        "--folds-by",
        choices=["work", "document"],
        default="work",
        help="ceiling: keep the passages of one work in one fold (default), or spread them",
    )
    ap.add_argument("--windows", type=int, default=4, help="windows per document for the windows experiment")
    ap.add_argument("--cascade", default="runs/devset/cascade", help="scores of the cascade (windows, gates)")
    ap.add_argument("--classifier", default="runs/devset/classifier", help="its classifier (windows, gates)")
    ap.add_argument("--embed-all", default="runs/devset/embed_all", help="scores with --gate 0 (gates)")
    args = ap.parse_args()
    corpus, work = Path(args.corpus), Path(args.work)
    if not (corpus / "haystack").is_dir():
        sys.exit(f"no development corpus at {corpus} (expected haystack/, themes/, hardneg/); pass --corpus.")
    cfg = load_config(args.config) if args.config else load_config()
    if args.max_tokens:
        cfg = dataclasses.replace(
            cfg, embedding=dataclasses.replace(cfg.embedding, max_tokens=args.max_tokens)
        )
    labels = Path(args.labels) if args.labels else work / "labels.jsonl"
    if not labels.exists():
        import subprocess

        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("build_devset.py")),
                "--corpus",
                str(corpus),
                "--out",
                str(labels),
            ],
            check=True,
        )
    t0 = time.time()
    b = Bench(corpus, work, labels, cfg)
    results: dict[str, Any] = {"max_tokens": cfg.embedding.max_tokens, "model": cfg.embedding.model}
    for name in args.experiments:
        t1 = time.time()
        key = name
        if name == "teacher":
            results[key] = exp_teacher(b)
        elif name == "ceiling":
            key = name if args.folds_by == "work" else f"{name}_by_document"
            results[key] = exp_ceiling(b, args.folds_by)
        elif name == "audit_loop":
            results[key] = exp_audit_loop(b, args.audit_labels)
        elif name == "weights":
            results[key] = exp_weights(b, Path(args.cascade), Path(args.embed_all))
        elif name == "gates":
            results[key] = exp_gates(b, Path(args.cascade), Path(args.embed_all), Path(args.classifier))
        else:
            results[key] = exp_windows(b, Path(args.cascade), Path(args.classifier), corpus, args.windows)
        print(f"{name} ({time.time() - t1:.0f}s)", flush=True)
        for k, v in results[key].items():
            if isinstance(v, dict) and all(t in v for t in THEMES):
                print(f"  {k:44s} " + "  ".join(f"{t} {v[t]}" for t in THEMES), flush=True)
            else:
                print(f"  {k}: {v}", flush=True)
    results["seconds"] = round(time.time() - t0, 1)
    out = work / f"ceiling-{cfg.embedding.max_tokens}.json"
    if out.exists():  # experiments run separately accumulate in one file
        results = {**json.loads(out.read_text()), **results}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
