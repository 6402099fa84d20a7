"""Measure a labelling loop run through the CLI (docs/quality.md, "The whole loop through the CLI").

After `selector annotate --scores ... --out LABELS.csv` and `selector run --labels LABELS.csv --out RUN` on the
development subset (scripts/devset_subset.py), this reads RUN/scores and RUN/manifest and reports, against
the development labels (scripts/build_devset.py):

- per theme, the cascade's average precision on the documents never labelled (every document in LABELS.csv
  left out, and the development set's unlabelled ones), each kept haystack document weighted by the subset's
  `haystack_weight` so the figure estimates the whole haystack's;
- how many of those positives the gates let through to the embedding stage;
- per upsampled stream of the manifest, how many of its documents the development set labels on-theme;
- the share of documents embedded, raw and weighted as above (a dump's composition).

    python scripts/loop_eval.py --run runs/loop/r1 --labels runs/loop/labels-r1.csv [--run ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from label_curve import doc_weights, weighted_ap  # noqa: E402

THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run",
        action="append",
        required=True,
        help="A `selector run --out` (or `selector score`) directory.",
    )
    ap.add_argument(
        "--labels", required=True, help="The labels the run learnt from (left out of the figures)."
    )
    ap.add_argument("--corpus", default="runs/devsub")
    ap.add_argument("--truth", default="runs/devsub/labels.jsonl", help="scripts/build_devset.py's output.")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    truth = {}
    for line in Path(args.truth).read_text().splitlines():
        d = json.loads(line)
        truth[d["doc_id"]] = d["themes"]  # None: not labelled in the development set
    labelled = set(pl.read_csv(args.labels)["doc_id"].to_list())
    out = {}
    for run in args.run:
        s = pl.read_parquet(f"{run}/scores/*.parquet")
        ids = s["doc_id"].to_list()
        w = doc_weights(corpus, ids)
        embedded = s["embedded"].to_numpy()
        keep = np.array([d not in labelled and truth.get(d) is not None for d in ids])
        res: dict[str, object] = {
            "embedded": round(float(embedded.mean()), 4),
            "embedded_weighted": round(float((w * embedded).sum() / w.sum()), 4),
        }
        for t in THEMES:
            y = np.array([truth.get(d) is not None and t in truth[d] for d in ids])
            res[t] = {
                "ap_never_labelled": round(
                    weighted_ap(s[f"score_{t}"].to_numpy()[keep], y[keep], w[keep]), 3
                ),
                "positives_never_labelled": int((y & keep).sum()),
                "of_them_embedded": int((y & keep & embedded).sum()),
            }
        man = Path(run) / "manifest" / "documents.parquet"  # absent for a directory `selector score` wrote
        docs = pl.read_parquet(man) if man.exists() else pl.DataFrame({"doc_id": [], "theme": []})
        for t in sorted(set(docs["theme"].to_list())):
            in_stream = docs.filter(pl.col("theme") == t)["doc_id"].unique().to_list()
            known = [d for d in in_stream if truth.get(d) is not None]
            on = sum(t in truth[d] for d in known)
            res[f"stream_{t}"] = {
                "documents": len(in_stream),
                "labelled_in_devset": len(known),
                "on_theme": on,
            }
        out[run] = res
        print(run, file=sys.stderr)
        print("  AP never labelled: " + " / ".join(f"{res[t]['ap_never_labelled']:.3f}" for t in THEMES)  # type: ignore[index]
              + "  (positives embedded: " + ", ".join(f"{res[t]['of_them_embedded']}/{res[t]['positives_never_labelled']}" for t in THEMES) + ")",  # type: ignore[index]
              file=sys.stderr)  # fmt: skip
        for t in THEMES:
            st = res.get(f"stream_{t}")
            if st:
                n, k, on = st["documents"], st["labelled_in_devset"], st["on_theme"]  # type: ignore[index]
                print(
                    f"  stream {t}: {on} / {k} on-theme ({100 * on / max(k, 1):.0f}%), {n} documents",
                    file=sys.stderr,
                )
        print(f"  embedded {100 * res['embedded']:.2f}% (weighted to a dump: {100 * res['embedded_weighted']:.2f}%)",  # type: ignore[operator]
              file=sys.stderr)  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
