"""Build the development set's labels from ../shared/corpus: haystack/ (off-theme, []) with themes/ and
hardneg/ injected (their `meta.themes`; null = unlabelled). The documents stay where they are; score the
three directories and evaluate against the labels file this writes.

    python scripts/build_devset.py --corpus ../shared/corpus --out runs/devset/labels.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--out", default="runs/devset/labels.jsonl")
    args = ap.parse_args()
    root = Path(args.corpus)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    with out.open("w") as fh:
        for part in ("haystack", "themes", "hardneg"):
            for f in sorted((root / part).glob("*.jsonl.gz")):
                with gzip.open(f, "rt", encoding="utf-8") as src:
                    for line in src:
                        d = json.loads(line)
                        meta = d.get("meta") or {}
                        labs = [] if part == "haystack" else meta.get("themes")
                        if labs is None:
                            counts["unlabelled"] += 1
                        else:
                            counts["labelled"] += 1
                            for t in labs:
                                counts[t] += 1
                        fh.write(json.dumps({"doc_id": d["id"], "themes": labs, "file": f.name}) + "\n")
    print(json.dumps({"labels": str(out), **counts}, indent=2))


if __name__ == "__main__":
    main()
