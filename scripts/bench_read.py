"""Reading throughput by input format, side by side: JSONL (gzipped), Parquet, WARC (HTML main-text
extraction with resiliparse) and WET, from real documents of ../shared/corpus, with and without language
identification. Documents per second and MB per second of input file.

    python scripts/bench_read.py --corpus ../shared/corpus --repeat 40 --out runs/bench_read.json

The WARC input is the corpus's real Common Crawl archives (raw_formats/*.warc.gz, HTML responses) repeated
`--repeat` times; the WET input holds the same pages' extracted text as conversion records; JSONL and
Parquet hold `--docs` haystack documents. `scripts/bench_score.py` measures scoring on top of reading.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selector.core.config import ReadConfig
from selector.read.formats import ShardCounts, discover_shards, read_shard


def haystack_docs(corpus: Path) -> Iterator[dict[str, Any]]:
    """The documents of `corpus`/haystack (`id`, `url`, `text`), file by file in name order; exits with a message
    when there are none (a benchmark that repeats them would otherwise never reach its size)."""
    files = sorted((corpus / "haystack").glob("*.jsonl.gz"))
    if not files:
        sys.exit(
            f"no {corpus / 'haystack'}/*.jsonl.gz: pass --corpus PATH to the shared corpus (../shared/corpus)"
        )
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                yield {"id": d["id"], "url": d.get("url"), "text": d["text"]}


def _wet_record(i: int, url: str, date: str, text: str) -> bytes:
    block = text.encode()
    head = (
        "WARC/1.0\r\nWARC-Type: conversion\r\n"
        f"WARC-Record-ID: <urn:uuid:bench-{i}>\r\nWARC-Date: {date}\r\nWARC-Target-URI: {url}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(block)}\r\n\r\n"
    )
    return gzip.compress(head.encode() + block + b"\r\n\r\n", mtime=0)


def build_inputs(corpus: Path, out: Path, repeat: int, n_docs: int) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    warcs = sorted((corpus / "raw_formats").glob("*.warc.gz"))
    warcs = [w for w in warcs if not w.name.endswith((".wet.gz", ".wat.gz"))]
    (out / "warc").mkdir(exist_ok=True)
    for r in range(repeat):
        for w in warcs:
            shutil.copy(w, out / "warc" / f"{r:03d}-{w.name}")
    # the same pages as WET: their extracted text in conversion records
    pages = pl.concat([pl.concat(list(read_shard(s, ReadConfig(detect_language=False))))
                       for s in discover_shards(warcs)])  # fmt: skip
    (out / "wet").mkdir(exist_ok=True)
    for r in range(repeat):
        blob = b"".join(
            _wet_record(i, u, d, t)
            for i, (u, d, t) in enumerate(pages.select("url", "crawl_date", "text").iter_rows())
        )
        (out / "wet" / f"{r:03d}.warc.wet.gz").write_bytes(blob)
    df = pl.DataFrame(list(itertools.islice(haystack_docs(corpus), n_docs)))
    (out / "jsonl").mkdir(exist_ok=True)
    with gzip.open(out / "jsonl" / "docs.jsonl.gz", "wb", compresslevel=6) as fh:
        df.write_ndjson(fh)
    (out / "parquet").mkdir(exist_ok=True)
    df.write_parquet(out / "parquet" / "docs.parquet", compression="zstd")
    return {k: out / k for k in ("jsonl", "parquet", "warc", "wet")}


def measure(path: Path, detect: bool) -> dict[str, float]:
    cfg = ReadConfig(detect_language=detect)
    shards = discover_shards([path])
    size = sum(Path(s.source).stat().st_size for s in shards)
    t0 = time.perf_counter()
    n = skipped = 0
    for s in shards:
        counts = ShardCounts()
        for batch in read_shard(s, cfg, counts):
            n += batch.height
        skipped += counts.n_skipped
    dt = time.perf_counter() - t0
    return {
        "documents": n,
        "skipped": skipped,
        "input_mb": round(size / 1e6, 2),
        "seconds": round(dt, 2),
        "docs_per_s": round(n / dt, 1),
        "mb_per_s": round(size / 1e6 / dt, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--work", type=Path, default=Path("runs/bench_read"))
    ap.add_argument("--repeat", type=int, default=40, help="copies of the real WARC files")
    ap.add_argument("--docs", type=int, default=50_000, help="haystack documents for JSONL and Parquet")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    inputs = build_inputs(a.corpus, a.work, a.repeat, a.docs)
    results = {}
    for fmt, path in inputs.items():
        for detect in (False, True):
            key = f"{fmt}{'+lang' if detect else ''}"
            results[key] = measure(path, detect)
            print(key, results[key], file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
