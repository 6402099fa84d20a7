"""Materialize a manifest: `materialize(RUN/manifest, OUT)` -> `OUT/<theme>/part-NNNNN.jsonl.gz` + `materialize.json`.

Each stream's selected documents are written with their text, `repeats` copies each, shuffled across the
whole stream, for a tokenizer. Every copy gets a 64-bit key, `copy_key(seed, id, copy)`; a stream's output
is its copies sorted by that key, so the order is a seeded pseudo-random permutation that does not depend
on the shard order, the batch size or the output shard size.

Memory is bounded by the read batch and one spill bucket, not by the dump: pass 1 streams each input
shard that holds selected documents and appends their copies to per-bucket spill files (a bucket is a
range of keys, sized from the stream's estimated bytes); pass 2 loads one bucket at a time, sorts it by
key and appends it to the stream's output files, starting a new file before one would exceed
`max_shard_bytes`. Everything is written to a temporary directory beside `out_dir` and renamed into place
after the counts are verified, so a killed run leaves nothing that looks finished.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from selector import __version__
from selector.core.config import ReadConfig
from selector.core.errors import ManifestError, SelectorError
from selector.core.paths import file_sha256, replace_dir
from selector.read.back import check_inputs, matched_rows, read_config
from selector.read.formats import Shard
from selector.select.manifest import load_manifest

log = logging.getLogger(__name__)

FORMAT = "selector-materialized/1"
SUMMARY = "materialize.json"
FILE_FORMATS = {"jsonl.gz": ".jsonl.gz", "parquet": ".parquet"}
ID_FORMAT = "{doc_id}#copy{copy}"
COLUMNS = ("id", "doc_id", "copy", "theme", "source", "row", "url", "warc_record_id", "offset", "domain",
           "crawl_date", "payload_digest", "content_sha1", "score", "repeats", "text")  # fmt: skip

# JSON keys and metadata of one output line, on top of its text (used to size the spill buckets)
ROW_OVERHEAD_BYTES = 256
# a spill bucket holds about max(max_shard_bytes, this) bytes: pass 2 sorts one bucket in memory
SPILL_MIN_BUCKET_BYTES = 32 * 2**20
# pass 1 buffers at most this many bytes of copies before appending them to the spill files
SPILL_BUFFER_BYTES = 64 * 2**20
# pass 2 writes a file in chunks of about this many bytes (one Parquet row group each)
WRITE_CHUNK_BYTES = 64 * 2**20
# gzip's own default: level 9 is 2-5x slower for about 5% smaller files
GZIP_LEVEL = 6
KEY_PREFIX = 17  # a spill record is b"<16 hex digits of the key>\t<JSON line>"

_DOC_COLUMNS = ("doc_id", "source", "row", "url", "theme", "n_chars", "n_tokens", "repeats")
# provenance kept in every output row (null where the manifest predates them or the input lacks them)
PROVENANCE_OUT = {"warc_record_id": pl.String, "offset": pl.Int64, "domain": pl.String, "crawl_date": pl.String,
                  "payload_digest": pl.String, "content_sha1": pl.String}  # fmt: skip


def copy_key(seed: int, uid: str, copy: int) -> int:
    """The 64-bit sort key of one copy of a document: blake2b of the seed, the document's id and the copy."""
    h = hashlib.blake2b(f"{seed}\x1f{uid}\x1f{copy}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def short_float(x: float | None) -> float | None:
    """A float32 score as the shortest decimal that reads back as the same float32 (0.912, not 0.9120000004)."""
    return None if x is None else float(str(np.float32(x)))


# str.splitlines() also breaks at these; escaped, a line of output is a line to every reader
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _json(obj: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON on one line."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS).encode()


@dataclass
class _Stream:
    """One theme's stream: what the manifest plans, and what pass 1 and pass 2 counted."""

    index: int
    theme: str
    achieved_tokens: int
    n_buckets: int = 1
    planned_rows: int = 0
    planned_documents: int = 0
    planned_tokens: int = 0
    spilled_rows: int = 0
    documents: int = 0
    tokens: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)

    def spill_name(self, bucket: int) -> str:
        return f"{self.index:03d}-{bucket:06d}.spill"


class _Spill:
    """Per-bucket spill files in `directory`; records are buffered and appended in bulk."""

    def __init__(self, directory: Path, limit: int):
        self.directory = directory
        self.limit = limit
        self.buffers: dict[str, list[bytes]] = {}
        self.size = 0

    def add(self, name: str, record: bytes) -> None:
        self.buffers.setdefault(name, []).append(record)
        self.size += len(record)
        if self.size >= self.limit:
            self.flush()

    def flush(self) -> None:
        for name in sorted(self.buffers):
            with (self.directory / name).open("ab") as fh:
                fh.writelines(self.buffers[name])
        self.buffers.clear()
        self.size = 0


class _PartWriter:
    """Writes one stream's sorted lines into `part-NNNNN` files of at most `max_bytes` of JSONL each."""

    def __init__(self, directory: Path, rel: str, fmt: str, max_bytes: int):
        self.directory = directory
        self.rel = rel
        self.fmt = fmt
        self.max_bytes = max_bytes
        self.files: list[dict[str, Any]] = []
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.rows = 0  # rows of the open file
        self.size = 0  # JSONL bytes of the open file
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        self._pq: Any = None

    def add(self, line: bytes) -> None:
        n = len(line) + 1
        if self.rows and self.size + n > self.max_bytes:
            self._close_file()
        self.pending.append(line)
        self.pending_bytes += n
        self.rows += 1
        self.size += n
        if self.pending_bytes >= WRITE_CHUNK_BYTES:
            self._write_pending()

    def close(self) -> None:
        self._close_file()

    @property
    def path(self) -> Path:
        return self.directory / f"part-{len(self.files):05d}{FILE_FORMATS[self.fmt]}"

    def _write_pending(self) -> None:
        if not self.pending:
            return
        if self.fmt == "jsonl.gz":
            if self._gz is None:
                self._raw = self.path.open("wb")
                # no file name and mtime 0 in the header: the same rows give the same bytes
                self._gz = gzip.GzipFile(
                    filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0
                )
            self._gz.write(b"\n".join(self.pending) + b"\n")
        else:
            import pyarrow.parquet as pq

            frame = pl.read_ndjson(io.BytesIO(b"\n".join(self.pending)), schema=_output_schema())
            table = frame.to_arrow().cast(_arrow_schema())
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._pq.write_table(table)
        self.pending = []
        self.pending_bytes = 0

    def _close_file(self) -> None:
        self._write_pending()
        if not self.rows:
            return
        path = self.path
        if self._gz is not None and self._raw is not None:
            self._gz.close()
            self._raw.close()
        if self._pq is not None:
            self._pq.close()
        self._raw, self._gz, self._pq = None, None, None
        self.files.append(
            {
                "path": f"{self.rel}/{path.name}",
                "rows": self.rows,
                "bytes": path.stat().st_size,
                "jsonl_bytes": self.size,
                "sha256": file_sha256(path),
            }
        )
        self.rows = 0
        self.size = 0


def _output_schema() -> dict[str, Any]:
    return {
        "id": pl.String,
        "doc_id": pl.String,
        "copy": pl.Int64,
        "theme": pl.String,
        "source": pl.String,
        "row": pl.Int64,
        "url": pl.String,
        **PROVENANCE_OUT,
        "score": pl.Float32,
        "repeats": pl.Int64,
        "text": pl.String,
    }


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {pl.String: pa.string(), pl.Int64: pa.int64(), pl.Float32: pa.float32()}
    return pa.schema([(name, types[dtype]) for name, dtype in _output_schema().items()])


def _load_documents(mdir: Path, manifest: dict[str, Any], labels: dict[str, str]) -> pl.DataFrame:
    """documents.parquet with `score` (the stream theme's score) and `uid`, the unique base of output ids."""
    name = (manifest.get("files") or {}).get("documents", "documents.parquet")
    path = mdir / name
    if not path.is_file():
        raise ManifestError(f"{path} not found. Run `selector select` again.")
    themes = [str(s["theme"]) for s in manifest["streams"]]
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    wanted = [*_DOC_COLUMNS, *(f"score_{t}" for t in themes)]
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ManifestError(f"{path} lacks column(s) {', '.join(missing)}. Run `selector select` again.")
    docs = pl.read_parquet(path, columns=wanted + [c for c in PROVENANCE_OUT if c in present])
    docs = docs.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in PROVENANCE_OUT.items() if c not in docs.columns]
    )
    unknown = sorted(set(docs["theme"].unique().to_list()) - set(themes))
    if unknown:
        raise ManifestError(
            f"{path} assigns documents to {', '.join(map(str, unknown))}, which manifest.json lists no "
            "stream for. Run `selector select` again."
        )
    if docs.height and int(docs["repeats"].min()) < 1:  # type: ignore[arg-type]
        raise ManifestError(f"{path} holds a document with repeats < 1. Run `selector select` again.")
    dup = docs.filter(pl.struct("source", "row").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise ManifestError(f"{path} lists {r['source']} row {r['row']} twice. Run `selector select` again.")
    unlisted = sorted(set(docs["source"].unique().to_list()) - set(labels))
    if unlisted:
        raise ManifestError(
            f"{path} selects documents from {unlisted[0]}, which manifest.json inputs[] does not list. "
            "Run `selector select` again."
        )
    score = pl.lit(None, dtype=pl.Float32)
    for t in reversed(themes):
        score = pl.when(pl.col("theme") == t).then(pl.col(f"score_{t}")).otherwise(score)
    # a doc_id shared by two documents (an id column with repeats) gets its shard label and row added
    label = pl.col("source").replace_strict(labels, return_dtype=pl.String)
    uid = (
        pl.when(pl.col("doc_id").is_duplicated())
        .then(pl.format("{}@{}#{}", "doc_id", label, "row"))
        .otherwise(pl.col("doc_id"))
    )
    docs = docs.select(*_DOC_COLUMNS, *PROVENANCE_OUT, score.alias("score"), uid.alias("uid"))
    n_dup = int(docs["doc_id"].is_duplicated().sum())
    if n_dup:
        log.warning(f"{n_dup} selected documents share a doc_id; their output ids use <doc_id>@<label>#<row>")
    if docs["uid"].is_duplicated().any():
        raise ManifestError(f"{path}: document ids are not unique even with their shard and row added.")
    return docs


def _check_out_dir(out: Path) -> None:
    """`out` may be new, empty, or an earlier materialization holding only the files it wrote: anything else
    there (a tokenizer's output, say) would be deleted when the new output replaces it."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / SUMMARY).is_file()):
        raise ManifestError(
            f"{out} exists and is not the output of `selector materialize` (no {SUMMARY}); "
            "choose another --out or remove it."
        )
    if not (out / SUMMARY).is_file():
        return
    try:
        listed = {f["path"] for st in json.loads((out / SUMMARY).read_text())["streams"] for f in st["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    foreign = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name != SUMMARY and p.relative_to(out).as_posix() not in listed
    )
    if foreign:
        raise ManifestError(
            f"{out} holds {len(foreign)} file(s) `selector materialize` did not write (e.g. {foreign[0]}), which "
            "replacing it would delete. Write tokenized data elsewhere (the exports' --data-root, default "
            "`tokenized`), or choose another --out."
        )


def _copies(docs: pl.DataFrame, streams: dict[str, _Stream], seed: int, spill: _Spill) -> tuple[int, int]:
    """Spill every copy of the matched documents `docs` (with `text`); returns (documents, copies)."""
    n_copies = 0
    cols = ("doc_id", "uid", "theme", "source", "row", "url", "score", "repeats", "n_tokens", "text")
    prov = docs.select(*PROVENANCE_OUT).iter_rows()
    for (doc_id, uid, theme, source, row, url, score, repeats, n_tokens, text), pv in zip(
        docs.select(cols).iter_rows(), prov, strict=True
    ):
        stream = streams[theme]
        body = {
            "theme": theme,
            "source": source,
            "row": row,
            "url": url,
            **dict(zip(PROVENANCE_OUT, pv, strict=True)),
            "score": short_float(score),
            "repeats": repeats,
            "text": text,
        }
        tail = _json(body)[1:]
        for k in range(repeats):
            head = {"id": ID_FORMAT.format(doc_id=uid, copy=k), "doc_id": doc_id, "copy": k}
            line = _json(head)[:-1] + b"," + tail
            key = copy_key(seed, uid, k)
            bucket = (key * stream.n_buckets) >> 64  # key ranges: bucket order is key order
            spill.add(stream.spill_name(bucket), b"%016x\t%s\n" % (key, line))
        stream.spilled_rows += repeats
        stream.documents += 1
        stream.tokens += n_tokens * repeats
        n_copies += repeats
    return docs.height, n_copies


def _spill_shard(
    shard: Shard,
    cfg: ReadConfig,
    needed: pl.DataFrame,
    streams: dict[str, _Stream],
    seed: int,
    spill: _Spill,
) -> tuple[int, int]:
    """Pass 1 for one input shard: find the needed rows, check their ids and lengths, spill their copies."""
    n_docs = n_copies = 0
    for hit in matched_rows(shard, cfg, needed):
        d, c = _copies(hit, streams, seed, spill)
        n_docs += d
        n_copies += c
    return n_docs, n_copies


def _write_stream(stream: _Stream, spill_dir: Path, out: Path, fmt: str, max_shard_bytes: int) -> int:
    """Pass 2 for one stream: sort each spill bucket by key and append it to the output files."""
    d = out / stream.theme
    d.mkdir(parents=True, exist_ok=True)
    writer = _PartWriter(d, stream.theme, fmt, max_shard_bytes)
    rows = 0
    for bucket in range(stream.n_buckets):
        path = spill_dir / stream.spill_name(bucket)
        if not path.exists():
            continue
        records = path.read_bytes().split(b"\n")
        path.unlink()
        records.pop()  # after the last newline
        records.sort()  # by key, then by the line itself (ids are unique, so the order is total)
        for rec in records:
            writer.add(rec[KEY_PREFIX:])
        rows += len(records)
        del records
    writer.close()
    stream.files = writer.files
    return rows


def _stream_summary(s: _Stream) -> dict[str, Any]:
    return {
        "theme": s.theme,
        "files": s.files,
        "rows": sum(f["rows"] for f in s.files),
        "unique_documents": s.documents,
        "tokens": s.tokens,
        "bytes": sum(f["bytes"] for f in s.files),
        "jsonl_bytes": sum(f["jsonl_bytes"] for f in s.files),
    }


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an earlier materialization there is moved aside first, then removed."""
    _check_out_dir(out)
    replace_dir(tmp, out)


def materialize(
    manifest_dir: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "jsonl.gz",
    max_shard_bytes: int = 256 * 2**20,
    seed: int | None = None,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Write each stream's documents, `repeats` copies each, shuffled, to `out_dir/<theme>/part-NNNNN.<fmt>`;
    returns the summary also written to `out_dir/materialize.json`."""
    if fmt not in FILE_FORMATS:
        raise SelectorError(f"unknown format {fmt!r}; materialize writes {', '.join(FILE_FORMATS)}.")
    if max_shard_bytes < 1:
        raise SelectorError(f"max_shard_bytes must be >= 1, got {max_shard_bytes}.")
    mdir, manifest = load_manifest(manifest_dir, ("inputs", "streams", "config", "seed"))
    mpath = mdir / "manifest.json"
    seed = manifest["seed"] if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SelectorError(f"the seed must be an integer, got {seed!r}.")
    cfg = read_config(manifest, mpath)
    labels = {str(i["source"]): str(i["label"]) for i in manifest["inputs"]}
    docs = _load_documents(mdir, manifest, labels)
    by_source = docs.partition_by("source", as_dict=True)
    order = [src for src in labels if (src,) in by_source]
    shards = check_inputs(manifest, order, mpath)
    out = Path(out_dir).resolve()
    _check_out_dir(out)

    bucket_bytes = max(max_shard_bytes, SPILL_MIN_BUCKET_BYTES)
    streams: dict[str, _Stream] = {}
    for i, s in enumerate(manifest["streams"]):
        st = _Stream(i, str(s["theme"]), int(s["achieved_tokens"]))
        mine = docs.filter(pl.col("theme") == st.theme)
        st.planned_documents = mine.height
        st.planned_rows = int(mine["repeats"].sum())
        st.planned_tokens = int((mine["n_tokens"] * mine["repeats"]).sum())
        est = int(((mine["n_chars"] + ROW_OVERHEAD_BYTES) * mine["repeats"]).sum())
        st.n_buckets = max(1, math.ceil(est / bucket_bytes))
        if st.planned_tokens != st.achieved_tokens:
            raise ManifestError(
                f"{mpath}: stream {st.theme} achieves {st.achieved_tokens:,} tokens but its documents in "
                f"documents.parquet add up to {st.planned_tokens:,}. Run `selector select` again."
            )
        streams[st.theme] = st
    progress(
        f"materializing {docs.height:,} documents ({sum(s.planned_rows for s in streams.values()):,} copies) "
        f"in {len(streams)} stream(s) from {len(order)} shard(s)"
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*"):  # an interrupted run cannot clean up
        for leftover in out.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    spill_dir = tmp / "_spill"
    spill_dir.mkdir(parents=True)
    try:
        spill = _Spill(spill_dir, SPILL_BUFFER_BYTES)
        for n, src in enumerate(order, start=1):
            d, c = _spill_shard(shards[src], cfg, by_source[(src,)], streams, seed, spill)
            progress(f"[{n}/{len(order)}] {src}: {d:,} documents, {c:,} copies")
        spill.flush()
        for st in streams.values():
            written = _write_stream(st, spill_dir, tmp, fmt, max_shard_bytes)
            if not (written == st.spilled_rows == st.planned_rows) or st.documents != st.planned_documents:
                raise SelectorError(
                    f"stream {st.theme}: planned {st.planned_rows:,} rows of {st.planned_documents:,} "
                    f"documents, spilled {st.spilled_rows:,} of {st.documents:,}, wrote {written:,}; "
                    "this is a bug, please report it."
                )
            if st.tokens != st.achieved_tokens:
                raise SelectorError(
                    f"stream {st.theme}: wrote {st.tokens:,} tokens, the manifest says "
                    f"{st.achieved_tokens:,}; this is a bug, please report it."
                )
            progress(f"{st.theme}: {written:,} rows ({st.documents:,} documents) in {len(st.files)} file(s)")
        spill_dir.rmdir()
        per_stream = [_stream_summary(st) for st in streams.values()]
        summary: dict[str, Any] = {
            "format": FORMAT,
            "selector_version": __version__,
            "manifest": {
                "path": str(mdir),
                "sha256": file_sha256(mpath),
                "config_hash": manifest.get("config_hash"),
            },
            "seed": seed,
            "file_format": fmt,
            "max_shard_bytes": max_shard_bytes,
            "id": ID_FORMAT,
            "columns": list(COLUMNS),
            "streams": per_stream,
            "totals": {
                k: sum(s[k] for s in per_stream)
                for k in ("rows", "unique_documents", "tokens", "bytes", "jsonl_bytes")
            }
            | {"files": sum(len(s["files"]) for s in per_stream)},
        }
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"wrote {out}")
    return summary
