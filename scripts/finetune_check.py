"""Does fine-tuning the embedding model on the labels beat the frozen MiniLM head (issue 11, part 3)?

The label-efficiency set-up of `scripts/label_curve.py`, by work: for each of two folds of works, the
strategy (selector/label/sampling.py) spends `--budget` labels on one fold's documents, the development labels
answering for the annotator. Then, on the same labels:

- `frozen`: the teacher `selector train --labels` fits (selector.train.run.fit_teacher) on frozen MiniLM
  embeddings, scoring every document (label_curve.py's "head" figure);
- `finetuned`: MiniLM fine-tuned on the labels and the seeds by `selector train`'s own fine-tuning step
  (`selector.train.finetune.finetune_model`: a masked, class-balanced binary cross-entropy per theme through
  a linear layer on the normalised sentence embedding, all layers trained), then every document and seed
  embedded again with it and the same teacher fitted on those embeddings: what `train.finetune_epochs`
  does;
- `finetuned-direct`: the fine-tuned model's own linear layer as the score.

Average precision per theme on the other fold's documents, never labelled and sharing no work with a
labelled one (haystack documents weighted as in label_curve.py); the two folds averaged.

    python scripts/finetune_check.py --budget 1000 --epochs 3 --out runs/finetune
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from label_curve import Curve, weighted_ap  # noqa: E402
from quality_ceiling import THEMES, Bench  # noqa: E402

from selector.core.config import load_config
from selector.score.text import embedding_input
from selector.train.finetune import finetune_model


def encode(model: Any, texts: list[str], max_tokens: int) -> np.ndarray:
    import torch

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        e = model.encode(
            embedding_input(texts, max_tokens),
            batch_size=32,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    e = np.asarray(e, dtype=np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="runs/devsub")
    ap.add_argument("--classifier", default="runs/devsub/classifier")
    ap.add_argument("--work", default="runs/devsub/cache")
    ap.add_argument("--labels", default="runs/devsub/labels.jsonl")
    ap.add_argument("--out", default="runs/finetune")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    def log(m: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)

    cfg = load_config()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b = Bench(Path(args.corpus), Path(args.work), Path(args.labels), cfg)
    c = Curve(b, Path(args.corpus), Path(args.classifier), args.seed, "work")
    frozen_emb, frozen_seed, frozen_x64 = b.emb, b.seed_emb, b.x64
    results: dict[str, Any] = {"budget": args.budget, "epochs": args.epochs, "lr": args.lr, "folds": {}}
    for test_fold in map(int, args.folds.split(",")):
        b.emb, b.seed_emb, b.x64 = frozen_emb, frozen_seed, frozen_x64
        pool = np.flatnonzero(c.fold != test_fold)
        picked = c.choose("plan", pool, args.budget, c.r0, args.seed, c.r0_emb, set())
        human: dict[str, dict[int, int]] = {t: {} for t in THEMES}
        for r in picked:
            for t in THEMES:
                if int(b.truth[t][r]) >= 0:
                    human[t][r] = int(b.truth[t][r])
        test = c.fold == test_fold
        masks = {}
        for t in THEMES:
            m = test & (b.truth[t] >= 0)
            m[picked] = False
            masks[t] = m

        def aps(scores: dict[str, np.ndarray], masks: dict[str, np.ndarray] = masks) -> dict[str, float]:
            return {
                t: round(weighted_ap(scores[t][masks[t]], b.truth[t][masks[t]] == 1, c.weight[masks[t]]), 4)
                for t in THEMES
            }

        row: dict[str, Any] = {"labelled": len(picked)}
        row["frozen"] = aps(b.teacher(human=human))
        log(f"fold {test_fold}: frozen {row['frozen']}")
        # training examples: the labelled documents and the seeds (positive: on, near miss: off, per theme)
        texts = [c.texts[r] for r in picked]
        tgt = np.full((len(texts) + len(b.seeds), len(THEMES)), -1, dtype=np.int8)
        for i, r in enumerate(picked):
            for j, t in enumerate(THEMES):
                tgt[i, j] = human[t].get(r, -1)
        for i, s in enumerate(b.seeds):
            if s.theme in THEMES:
                tgt[len(picked) + i, THEMES.index(s.theme)] = 1 if s.label == "positive" else 0
            texts.append(s.text)
        t0 = time.time()
        tcfg = dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train,
                finetune_epochs=args.epochs,
                finetune_lr=args.lr,
                finetune_batch=args.batch,
                seed=args.seed,
            ),
        )
        model, head, _info = finetune_model(tcfg, texts, tgt, log)
        row["train_seconds"] = round(time.time() - t0, 1)
        t0 = time.time()
        emb = encode(model, c.texts, cfg.embedding.max_tokens)
        seed_emb = encode(model, [s.text for s in b.seeds], cfg.embedding.max_tokens)
        row["embed_seconds"] = round(time.time() - t0, 1)
        import torch

        with torch.no_grad():
            direct = head(torch.tensor(emb) * 10.0).numpy()
        row["finetuned-direct"] = aps({t: direct[:, j] for j, t in enumerate(THEMES)})
        b.emb, b.seed_emb, b.x64 = emb, seed_emb, emb.astype(np.float64)
        row["finetuned"] = aps(b.teacher(human=human))
        log(f"fold {test_fold}: {json.dumps(row)}")
        results["folds"][test_fold] = row
        (out / f"finetune-b{args.budget}-e{args.epochs}.json").write_text(
            json.dumps(results, indent=2) + "\n"
        )
    folds = list(results["folds"].values())
    for k in ("frozen", "finetuned", "finetuned-direct"):
        results[k] = {t: round(float(np.mean([f[k][t] for f in folds])), 3) for t in THEMES}
        print(f"| {k} | " + " | ".join(f"{results[k][t]:.3f}" for t in THEMES) + " |")
    (out / f"finetune-b{args.budget}-e{args.epochs}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
