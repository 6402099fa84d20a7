"""How much better the shipped default classifier is for its labels, measured on works it has never seen.

The development set's honesty and cooperation labels are the assessed passages the new default learns
from, so it cannot be judged on them directly. Instead, per fold K of the assessed works (as
scripts/train_default.py cuts them), a default is trained without fold K's works (neither their text nor
their labels) and both it and the old default (seeds only; it never saw the assessed passages) score the
development corpus. The test documents are the haystack (off-theme), the AI-safety FAQ answers (never in
any default's training: research use only) and the assessed passages of fold K's works; files a default
trained on are left out. Figures are averaged over the folds; per-fold figures are in the JSON.

    python scripts/eval_default.py --corpus ../shared/corpus --old classifiers/default --work runs/default-eval
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from selector.audit.evaluation import evaluate
from selector.score.run import read_scores

sys.path.insert(0, str(Path(__file__).parent))
from train_default import ASSESSED, OPEN_FILES, THEMES, work_fold  # noqa: E402


def sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def test_labels(corpus: Path, fold: int, folds: int) -> pl.DataFrame:
    rows: list[dict[str, object]] = []

    def add(doc: str, on: list[str] | None) -> None:
        rows.append({"doc_id": doc, **{f"label_{t}": None if on is None else t in on for t in THEMES}})

    for f in sorted((corpus / "haystack").glob("*.jsonl.gz")):
        if f"haystack/{f.name}" in OPEN_FILES:  # trained on (unlabelled)
            continue
        with gzip.open(f, "rt") as fh:
            for line in fh:
                add(json.loads(line)["id"], [])
    with gzip.open(corpus / "themes" / "stampy_aisafety_faq_dev.jsonl.gz", "rt") as fh:
        for line in fh:
            d = json.loads(line)
            add(d["id"], (d.get("meta") or {}).get("themes"))
    with gzip.open(corpus / ASSESSED, "rt") as fh:
        for line in fh:
            d = json.loads(line)
            if work_fold(d["meta"]["work"], folds) == fold:
                add(d["id"], d["meta"]["themes"])
    schema = {"doc_id": pl.String, **{f"label_{t}": pl.Boolean for t in THEMES}}
    return pl.DataFrame(rows, schema=schema).unique("doc_id", keep="first")


def figures(scores: pl.DataFrame, labels: pl.DataFrame, thresholds: dict[str, float]) -> dict[str, object]:
    rep = evaluate(scores, labels, THEMES, "score")
    out: dict[str, object] = {"embedded": rep.get("embedded_fraction")}
    joined = scores.join(labels, on="doc_id", how="inner")
    for t in THEMES:
        sub = joined.filter(pl.col(f"label_{t}").is_not_null())
        sel = sub.filter(pl.col(f"score_{t}") >= thresholds[t])
        truth = sel[f"label_{t}"].to_numpy().astype(bool)
        out[t] = {
            "ap": rep["themes"][t]["average_precision"],
            "positives": rep["themes"][t]["positives"],
            "above_threshold": sel.height,
            "precision_above_threshold": round(float(truth.mean()), 3) if sel.height else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--old", default="classifiers/default", help="The default to compare with.")
    ap.add_argument("--work", default="runs/default-eval")
    ap.add_argument("--folds", type=int, default=2)
    args = ap.parse_args()
    corpus, work = Path(args.corpus), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("selector"))
    inputs = [str(corpus / d) for d in ("haystack", "themes", "hardneg")]
    here = Path(__file__).parent

    def scored(clf: str, name: str) -> tuple[pl.DataFrame, dict[str, float]]:
        out = work / f"scores-{name}"
        sh([exe, "score", *inputs, "--out", str(out), "--classifier", clf, "--silent"])
        card = json.loads((Path(clf) / "card.json").read_text())
        return read_scores(out), {t: float(v) for t, v in card["thresholds"].items()}

    old_scores, old_thr = scored(args.old, "old")
    res: dict[str, object] = {"folds": []}
    for k in range(args.folds):
        clf = work / f"default-without-fold{k}"
        if not (clf / "card.json").exists():
            sh([sys.executable, str(here / "train_default.py"), "--corpus", str(corpus), "--out", str(clf),
                "--hold-out-fold", str(k), "--folds", str(args.folds)])  # fmt: skip
        new_scores, new_thr = scored(str(clf), f"fold{k}")
        labels = test_labels(corpus, k, args.folds)
        res["folds"].append(  # type: ignore[attr-defined]
            {
                "fold": k,
                "old": figures(old_scores, labels, old_thr),
                "new": figures(new_scores, labels, new_thr),
            }
        )
    lines = ["| default | " + " | ".join(THEMES) + " | embedded |", "|---" * (len(THEMES) + 2) + "|"]
    for who in ("old", "new"):
        cells = []
        for t in THEMES:
            aps = [f[who][t]["ap"] for f in res["folds"]]  # type: ignore[index]
            prec = [f[who][t]["precision_above_threshold"] for f in res["folds"]]  # type: ignore[index]
            n = sum(f[who][t]["above_threshold"] for f in res["folds"])  # type: ignore[index]
            pv = [p for p in prec if p is not None]
            cells.append(f"{np.mean(aps):.3f} ({n} above threshold, {np.mean(pv):.2f} on-theme)" if pv
                         else f"{np.mean(aps):.3f} (0 above threshold)")  # fmt: skip
        emb = np.mean([f[who]["embedded"] for f in res["folds"]])  # type: ignore[index]
        lines.append(f"| {who} | " + " | ".join(cells) + f" | {100 * emb:.2f}% |")
    print("\n".join(lines))
    (work / "eval_default.json").write_text(json.dumps(res, indent=2) + "\n")
    (work / "eval_default.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
