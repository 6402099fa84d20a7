"""Throughput and memory benchmark of scoring, on ../shared/corpus/haystack repeated to >= 500,000 documents.

Phases, each in its own process so its peak memory is its own: `read` (the polars reader alone),
`fasttext` (read + fastText on every document, no embedding), `cascade` (the full `selector score`).

    python scripts/bench_score.py --corpus ../shared/corpus --docs 500000 --classifier classifiers/default
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def build_dump(corpus: Path, out: Path, n_docs: int, shard_docs: int) -> tuple[int, int]:
    """Write haystack repeated (ids suffixed with the repetition) as plain JSONL shards; returns (docs, bytes)."""
    out.mkdir(parents=True, exist_ok=True)
    base = []
    for f in sorted((corpus / "haystack").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                base.append({"id": d["id"], "url": d.get("url"), "text": d["text"]})
    written = size = 0
    shard = None
    rep = 0
    while written < n_docs:
        for d in base:
            if written >= n_docs:
                break
            if written % shard_docs == 0:
                if shard:
                    shard.close()
                shard = (out / f"bench-{written // shard_docs:04d}.jsonl").open("w", encoding="utf-8")
            line = json.dumps({"id": f"{d['id']}~{rep}", "url": d["url"], "text": d["text"]}) + "\n"
            shard.write(line)
            size += len(line.encode())
            written += 1
        rep += 1
    if shard:
        shard.close()
    return written, size


def phase(name: str, dump: Path, classifier: str, out: Path, workers: int) -> dict:
    from selector.config import load_config
    from selector.read import discover_shards, read_shard

    cfg = load_config()
    t0 = time.time()
    n = 0
    if name == "read":
        for sh in discover_shards([dump]):
            for b in read_shard(sh, cfg.read):
                n += b.height
    elif name == "fasttext":
        from selector.classifier import Classifier
        from selector.text import fasttext_input

        clf = Classifier.load(classifier)
        for sh in discover_shards([dump]):
            for b in read_shard(sh, cfg.read):
                clf.ft_scores(fasttext_input(b["text"], clf.max_chars))
                n += b.height
    elif name == "cascade":
        from selector.score import score

        s = score([dump], out, classifier, cfg, workers=workers, force=True, progress=lambda m: None)
        tot = s.totals()
        n = tot["scored"]
        secs = time.time() - t0
        return {
            "phase": name,
            "workers": workers,
            "docs": n,
            "seconds": round(secs, 1),
            "docs_per_s": round(n / secs, 1),
            "embedded_fraction": tot["embedded_fraction"],
        }
    secs = time.time() - t0
    return {"phase": name, "docs": n, "seconds": round(secs, 1), "docs_per_s": round(n / secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--docs", type=int, default=500_000)
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--classifier", default="classifiers/default")
    ap.add_argument("--work", default="/tmp/selector-bench")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="runs/bench.json")
    args = ap.parse_args()
    work = Path(args.work)
    dump = work / "dump"
    if args.phase:
        res = phase(args.phase, dump, args.classifier, work / "out", args.workers[0])
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        res["peak_rss_mb"] = round(max(peak_self, peak_children) / 1024, 1)
        print(json.dumps(res))
        return
    if dump.exists():
        shutil.rmtree(dump)
    t0 = time.time()
    n, size = build_dump(Path(args.corpus), dump, args.docs, args.shard_docs)
    print(f"dump: {n:,} documents, {size / 1e9:.2f} GB in {time.time() - t0:.0f}s", file=sys.stderr)
    results = {"docs": n, "bytes": size, "cpus": os.cpu_count(), "phases": []}
    runs = [("read", 1), ("fasttext", 1)] + [("cascade", w) for w in args.workers]
    for name, w in runs:
        cmd = [
            sys.executable,
            __file__,
            "--phase",
            name,
            "--work",
            str(work),
            "--classifier",
            args.classifier,
            "--workers",
            str(w),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        res = json.loads(out)
        if name == "read":
            res["mb_per_s"] = round(size / 1e6 / res["seconds"], 1)
        results["phases"].append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    ft = next(p for p in results["phases"] if p["phase"] == "fasttext")["docs_per_s"]
    for p in results["phases"]:
        if p["phase"] == "cascade":
            p["share_of_fasttext_rate"] = round(p["docs_per_s"] / ft, 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
