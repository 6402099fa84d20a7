"""Throughput and memory benchmark of scoring, on ../shared/corpus/haystack repeated to >= 500,000 documents.

Phases, each in its own process so its peak memory is its own: `read` (the polars reader alone),
`fasttext` (read + fastText on every document, no embedding), `cascade` (the full `selector score` with the
local executor, once per `--workers`). With `--executor ray`, also `cascade-ray` (the Ray executor on a local
Ray instance, once per `--workers`; the instance's start is timed apart as `ray_start_s`) and, per
`--embed-workers K`, `cascade-ray-staged` (one scoring worker per `--workers` plus K embedding actors).

    python scripts/bench_score.py --corpus ../shared/corpus --docs 500000 --classifier classifiers/default
    python scripts/bench_score.py --docs 100000 --shard-docs 10000 --executor ray --embed-workers 1
"""

from __future__ import annotations

import argparse
import json
import math
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
    from bench_read import haystack_docs

    base = list(haystack_docs(corpus))
    if not base:
        sys.exit(f"{corpus / 'haystack'} holds no documents to repeat into a dump")
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


def phase(
    name: str, dump: Path, classifier: str, out: Path, workers: int, embed_workers: int = 0, cpus: float = 1.0
) -> dict:
    from selector.core.config import load_config
    from selector.read.formats import discover_shards, read_shard

    cfg = load_config()
    t0 = time.time()
    n = 0
    if name == "read":
        for sh in discover_shards([dump]):
            for b in read_shard(sh, cfg.read):
                n += b.height
    elif name == "fasttext":
        from selector.score.classifier import Classifier
        from selector.score.text import fasttext_input

        clf = Classifier.load(classifier)
        for sh in discover_shards([dump]):
            for b in read_shard(sh, cfg.read):
                clf.ft_scores(fasttext_input(b["text"], clf.max_chars))
                n += b.height
    elif name.startswith("cascade"):
        from selector.score.run import score

        extra: dict = {}
        if name.startswith("cascade-ray"):
            import logging

            import ray

            from selector.score.executors import RayOptions

            t_ray = time.time()
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, math.ceil((workers + embed_workers) * cpus)),
                include_dashboard=False,
                logging_level=logging.ERROR,
            )
            extra = {"ray_start_s": round(time.time() - t_ray, 1)}
            kw = {"executor": "ray", "ray": RayOptions(cpus_per_worker=cpus, embed_workers=embed_workers)}
            t0 = time.time()
        else:
            kw = {}
        s = score([dump], out, classifier, cfg, workers=workers, force=True, progress=lambda m: None, **kw)
        tot = s.totals()
        n = tot["scored"]
        secs = time.time() - t0
        return {
            "phase": name,
            "workers": workers,
            **({"embed_workers": embed_workers} if embed_workers else {}),
            **({"cpus_per_worker": cpus} if name.startswith("cascade-ray") else {}),
            "docs": n,
            "seconds": round(secs, 1),
            "docs_per_s": round(n / secs, 1),
            "embedded_fraction": tot["embedded_fraction"],
            **extra,
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
    ap.add_argument(
        "--executor", choices=["local", "ray"], default="local", help="ray: also the Ray executor"
    )
    ap.add_argument(
        "--embed-workers", type=int, nargs="*", default=[], help="with --executor ray: embedding actors"
    )
    ap.add_argument("--cpus-per-worker", type=float, default=1.0, help="with --executor ray: CPUs per actor")
    ap.add_argument(
        "--formats",
        action="store_true",
        help="also read JSONL, Parquet, WARC and WET side by side (scripts/bench_read.py's measurement)",
    )
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="runs/bench.json")
    args = ap.parse_args()
    work = Path(args.work)
    dump = work / "dump"
    if args.phase:
        embed = args.embed_workers[0] if args.embed_workers else 0
        res = phase(
            args.phase, dump, args.classifier, work / "out", args.workers[0], embed, args.cpus_per_worker
        )
        if not args.phase.startswith("cascade-ray"):  # Ray's workers are not this process's children
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
    runs = [("read", 1, 0), ("fasttext", 1, 0)] + [("cascade", w, 0) for w in args.workers]
    if args.executor == "ray":
        runs += [("cascade-ray", w, 0) for w in args.workers]
        runs += [("cascade-ray-staged", w, k) for k in args.embed_workers for w in args.workers]
    results["shard_docs"] = args.shard_docs
    for name, w, k in runs:
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
            *(["--embed-workers", str(k)] if k else []),
            "--cpus-per-worker",
            str(args.cpus_per_worker),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        res = json.loads(out)
        if name == "read":
            res["mb_per_s"] = round(size / 1e6 / res["seconds"], 1)
        results["phases"].append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    ft = next(p for p in results["phases"] if p["phase"] == "fasttext")["docs_per_s"]
    for p in results["phases"]:
        if p["phase"].startswith("cascade"):
            p["share_of_fasttext_rate"] = round(p["docs_per_s"] / ft, 3)
    if args.formats:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_read import build_inputs, measure

        inputs = build_inputs(Path(args.corpus), work / "formats", repeat=40, n_docs=50_000)
        results["formats"] = {
            f"{fmt}{'+lang' if detect else ''}": measure(path, detect)
            for fmt, path in inputs.items()
            for detect in (False, True)
        }
        print(json.dumps(results["formats"]), file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
