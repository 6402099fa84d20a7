"""A smaller development corpus for experiments that embed every document on 2 cores: every document of
themes/ and hardneg/ and a seeded sample of the haystack, written as JSONL under --out with the same file
names and fields (so works and labels carry over). `haystack_weight` in --out/subset.json is how many
haystack documents each kept one stands for (for weighted average precision).

    python scripts/devset_subset.py --corpus ../shared/corpus --out runs/devsub --haystack 8000
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from selector.core.keys import seeded_key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--out", default="runs/devsub")
    ap.add_argument("--haystack", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    corpus, out = Path(args.corpus), Path(args.out)
    hay: list[tuple[int, str, str]] = []
    for f in sorted((corpus / "haystack").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                hay.append((seeded_key(args.seed, "subset", d["id"]), f.name, line))
    hay.sort()
    keep = hay[: args.haystack]
    (out / "haystack").mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[str]] = {}
    for _, name, line in keep:
        by_file.setdefault(name, []).append(line)
    for name, lines in by_file.items():
        with gzip.open(out / "haystack" / name, "wt", encoding="utf-8") as fh:
            fh.writelines(lines)
    n_other = 0
    for part in ("themes", "hardneg"):
        (out / part).mkdir(parents=True, exist_ok=True)
        for f in sorted((corpus / part).glob("*.jsonl.gz")):
            data = f.read_bytes()
            (out / part / f.name).write_bytes(data)
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                n_other += sum(1 for _ in fh)
    info = {"haystack_total": len(hay), "haystack_kept": len(keep), "haystack_weight": len(hay) / len(keep),
            "other_documents": n_other}  # fmt: skip
    (out / "subset.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
