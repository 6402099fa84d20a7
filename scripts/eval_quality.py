"""Quality evaluation on the development set built from ../shared/corpus (see docs/quality.md).

Trains a classifier on the development corpus itself (teacher-student from the seeds; the corpus labels
are never used for training), scores it with the cascade and with every document embedded, and compares
against a keyword-regex baseline and fastText alone. Writes a markdown report and a JSON of the figures.

    python scripts/eval_quality.py --corpus ../shared/corpus --work runs/devset --report runs/devset/report.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from selector.audit.baselines import keyword_scores
from selector.audit.evaluation import evaluate, read_labels, top_false_positives
from selector.core.config import load_config
from selector.read.formats import read_documents
from selector.score.run import read_scores

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]
GOALS = {"honesty": 0.6, "cooperation": 0.6, "cooperative_ai": 0.8, "ai_risk": 0.8}


def sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--work", default="runs/devset")
    ap.add_argument("--report", default="runs/devset/report.md")
    ap.add_argument("--classifier", default=None, help="Evaluate this classifier instead of training one.")
    ap.add_argument("--skip-embed-all", action="store_true", help="Skip the (slow) embed-everything run.")
    args = ap.parse_args()
    corpus, work = Path(args.corpus), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    inputs = [str(corpus / d) for d in ("haystack", "themes", "hardneg")]
    exe = str(Path(sys.executable).with_name("selector"))

    sh(
        [
            sys.executable,
            str(Path(__file__).with_name("build_devset.py")),
            "--corpus",
            str(corpus),
            "--out",
            str(work / "labels.jsonl"),
        ]
    )
    clf = args.classifier or str(work / "classifier")
    timings = {}
    if not (Path(clf) / "card.json").exists():
        t0 = time.time()
        sh([exe, "train", *inputs, "--out", clf])
        timings["train_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    sh([exe, "score", *inputs, "--out", str(work / "cascade"), "--classifier", clf])
    timings["cascade_s"] = round(time.time() - t0, 1)
    if not args.skip_embed_all:
        t0 = time.time()
        sh([exe, "score", *inputs, "--out", str(work / "embed_all"), "--classifier", clf, "--gate", "0"])
        timings["embed_all_s"] = round(time.time() - t0, 1)

    labels = read_labels(work / "labels.jsonl", THEMES)
    cascade = read_scores(work / "cascade")

    cfg = load_config()
    ids, kws = [], {t: [] for t in THEMES}
    for batch in read_documents(inputs, cfg.read):
        ids.extend(batch["doc_id"].to_list())
        ks = keyword_scores(batch["text"].to_list(), THEMES)
        for t in THEMES:
            kws[t].extend(ks[t].tolist())
    keyword = pl.DataFrame({"doc_id": ids, **{f"score_{t}": kws[t] for t in THEMES}})

    rows = {
        "keyword regex": evaluate(keyword, labels, THEMES, "score"),
        "fastText alone": evaluate(cascade, labels, THEMES, "ft"),
    }
    if not args.skip_embed_all:
        everything = read_scores(work / "embed_all")
        rows["embedding head, every document"] = evaluate(everything, labels, THEMES, "emb")
        rows["embedding + fastText, every document"] = evaluate(everything, labels, THEMES, "score")
    rows["cascade"] = evaluate(cascade, labels, THEMES, "score")

    card = json.loads((Path(clf) / "card.json").read_text())
    lines = ["| method | " + " | ".join(THEMES) + " | embedded |", "|---" * (len(THEMES) + 2) + "|"]
    for name, rep in rows.items():
        cells = []
        for t in THEMES:
            m = rep["themes"][t]
            if m["average_precision"] is None:  # no labelled positive for this theme
                cells.append("n/a")
                continue
            cells.append(f"{m['average_precision']:.3f} / {m['recall_at_budget']:.2f}")
        emb = {"keyword regex": "0%", "fastText alone": "0%"}.get(
            name, f"{100 * rep.get('embedded_fraction', 1.0):.2f}%"
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {emb} |")
    lines.append("")
    lines.append(
        "Cells: average precision / recall within the top 1% of labelled documents. Goals (AP): "
        + ", ".join(f"{t} >= {g}" for t, g in GOALS.items())
        + "."
    )
    lines.append("")
    pos = rows["cascade"]["themes"]
    lines.append(
        "Labelled documents: "
        + str(rows["cascade"]["documents_labelled"])
        + "; positives: "
        + ", ".join(f"{t} {pos[t]['positives']}" for t in THEMES)
        + "."
    )
    lines.append("")
    lines.append(
        "Classifier gates: "
        + ", ".join(f"{t} {g:.4f}" for t, g in card["gates"].items())
        + f"; validation embed fraction {card['validation_embed_fraction']}."
    )
    lines.append("")
    files = pl.read_ndjson(work / "labels.jsonl").select("doc_id", "file").unique("doc_id")
    for t in THEMES:
        fp = top_false_positives(cascade, labels, t, n=8).join(files, on="doc_id", how="left")
        lines.append(f"### Top false positives: {t}")
        lines.append("")
        lines.append("| doc_id | file | score | ft | emb |")
        lines.append("|---|---|---|---|---|")
        for r in fp.iter_rows(named=True):
            e = r[f"emb_{t}"]
            lines.append(
                f"| {r['doc_id']} | {r['file']} | {r[f'score_{t}']:.3f} | {r[f'ft_{t}']:.3f} | "
                f"{'-' if e is None else f'{e:.3f}'} |"
            )
        lines.append("")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text("\n".join(lines) + "\n")
    (Path(args.report).with_suffix(".json")).write_text(
        json.dumps({"rows": rows, "timings": timings, "gates": card["gates"]}, indent=2)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
