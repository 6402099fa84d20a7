"""Read selected documents back from the inputs they were scored from, after checking each input is
unchanged: what deduplication, the audit, materialize, the dolma export and the labelling plan read
texts with."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from selector.core.config import ReadConfig
from selector.core.errors import ManifestError
from selector.read.formats import Shard, read_shard, source_exists, stat_source

log = logging.getLogger(__name__)


RERUN = "Re-run `selector score` and `selector select` on the current inputs, then this command again."


def read_config(manifest: dict[str, Any], where: Path) -> ReadConfig:
    """The reader settings the documents were scored with (`config.read`), so rows and ids line up."""
    raw = manifest["config"].get("read")
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} lacks config.read. Run `selector select` again.")
    names = {f.name for f in dataclasses.fields(ReadConfig)}
    return ReadConfig(**{k: v for k, v in raw.items() if k in names})


def read_back(
    inputs: list[dict[str, Any]], cfg: ReadConfig, needed: pl.DataFrame, where: Path
) -> Iterator[pl.DataFrame]:
    """The documents `needed` (`source, row, doc_id, n_chars` and any other columns) with their `text`, read
    back shard by shard from the `inputs` they were scored from (each checked unchanged first), batch by
    batch: what audit, deduplication and (through `matched_rows`) materialize read texts with."""
    sources = sorted(needed["source"].unique().to_list())
    shards = check_inputs({"inputs": inputs}, sources, where)
    for src in sources:
        want = needed.filter(pl.col("source") == src).drop("source").sort("row")
        for hit in matched_rows(shards[src], cfg, want):
            yield hit.with_columns(source=pl.lit(src))


def check_inputs(manifest: dict[str, Any], sources: list[str], where: Path) -> dict[str, Shard]:
    """The shards holding selected documents, after checking each is the file that was scored."""
    by_source = {str(i["source"]): i for i in manifest["inputs"]}
    shards: dict[str, Shard] = {}
    for src in sources:
        entry = by_source[src]
        if not source_exists(src):
            raise ManifestError(f"input {src} (listed in {where}) no longer exists. {RERUN}")
        size, stamp = stat_source(
            src
        )  # local: size and mtime in ns; remote (fsspec): size and the store's stamp
        if "size" not in entry or "mtime_ns" not in entry:
            raise ManifestError(f"{where} records no size and mtime_ns for {src}. {RERUN}")
        if size != entry["size"] or stamp != entry["mtime_ns"]:
            raise ManifestError(
                f"input {src} changed since it was scored (size {entry['size']} -> {size}, mtime_ns "
                f"{entry['mtime_ns']} -> {stamp}); {where} no longer describes it. {RERUN}"
            )
        shards[src] = Shard(src, str(entry["label"]), str(entry["format"]))
    return shards


def matched_rows(shard: Shard, cfg: ReadConfig, needed: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """The rows of `shard` listed in `needed` (`row, doc_id, n_chars` and any other columns), with their
    `text`, batch by batch; checks each id and length, and that every needed row was found."""
    wanted = needed.rename({"doc_id": "manifest_doc_id", "n_chars": "manifest_n_chars"})
    found: set[int] = set()
    last = int(wanted["row"].max())  # type: ignore[arg-type]
    for batch in read_shard(shard, cfg):
        hit = batch.select("row", "doc_id", "text").join(wanted, on="row", how="inner")
        if hit.height:
            bad = hit.filter(pl.col("doc_id") != pl.col("manifest_doc_id"))
            if bad.height:
                r = bad.row(0, named=True)
                raise ManifestError(
                    f"{shard.source} row {r['row']}: the manifest expects document {r['manifest_doc_id']!r} "
                    f"but the shard holds {r['doc_id']!r} there. {RERUN}"
                )
            bad = hit.filter(pl.col("text").str.len_chars() != pl.col("manifest_n_chars"))
            if bad.height:
                r = bad.row(0, named=True)
                raise ManifestError(
                    f"{shard.source} row {r['row']}: document {r['doc_id']!r} has {len(r['text']):,} "
                    f"characters, the manifest {r['manifest_n_chars']:,}. {RERUN}"
                )
            found.update(hit["row"].to_list())
            yield hit.drop("manifest_doc_id").rename({"manifest_n_chars": "n_chars"})
        if len(found) == wanted.height or (batch.height and int(batch["row"][-1]) >= last):  # type: ignore[arg-type]
            break
    if len(found) != wanted.height:
        r = wanted.filter(~pl.col("row").is_in(sorted(found))).row(0, named=True)
        raise ManifestError(
            f"{shard.source} row {r['row']}: document {r['manifest_doc_id']!r} is not there (the row is "
            f"missing, blank or unreadable now). {RERUN}"
        )
