"""Does distillation (`train.distill_size`) help the fastText student? On the development corpus subset
(scripts/devset_subset.py), a classifier is trained with a `--sample-size` sample, once without and once with
`--distill` further documents the head labels through the first student's cascade; each is run as the
cascade over every document (fastText on all, the head on the cached embeddings of those its gates pass),
and compared: the share embedded, the labelled positives the gates let through, and the cascade's average
precision (haystack weighted as in scripts/label_curve.py).

    python scripts/distill_check.py --corpus runs/devsub --sample-size 4000 --distill 5000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from label_curve import Curve, train_r0  # noqa: E402
from quality_ceiling import THEMES, Bench  # noqa: E402

from selector.core.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="runs/devsub")
    ap.add_argument("--work", default="runs/devsub/cache")
    ap.add_argument("--labels", default="runs/devsub/labels.jsonl")
    ap.add_argument("--out", default="runs/distill")
    ap.add_argument("--sample-size", type=int, default=4000)
    ap.add_argument("--distill", type=int, default=5000)
    args = ap.parse_args()
    corpus, out = Path(args.corpus), Path(args.out)
    base = load_config().replace("train", sample_size=args.sample_size)
    b = Bench(corpus, Path(args.work), Path(args.labels), base)
    rows = {}
    for name, d in (("without", 0), ("with", args.distill)):
        cfg = base.replace("train", distill_size=d)
        b.cfg = cfg
        clf = out / f"clf-{name}"
        if not (clf / "card.json").exists():
            train_r0(b, corpus, clf)
        c = Curve(b, corpus, clf, 0)
        r: dict[str, object] = {"embedded": round(float(c.embedded.mean()), 4)}
        from label_curve import weighted_ap

        for t in THEMES:
            m = b.truth[t] >= 0
            pos = m & (b.truth[t] == 1)
            r[t] = {
                "ap": round(weighted_ap(c.r0[t][m], b.truth[t][m] == 1, c.weight[m]), 3),
                "positives_through_gates": f"{int((c.embedded & pos).sum())}/{int(pos.sum())}",
            }
        r["distillation"] = json.loads((clf / "card.json").read_text())["distillation"]
        rows[name] = r
        print(name, json.dumps(r), file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
