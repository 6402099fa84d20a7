"""Read dumps: JSONL (plain, .gz, .zst) and Parquet shards -> batches of `doc_id, source, row, url, text`.

Memory is bounded by `read.batch_size`, not by the shard size. Every document a shard holds is either
yielded or counted in `ShardCounts.skipped` with its reason, so `documents_in = yielded + skipped`.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import json
import logging
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import polars as pl

from .config import ReadConfig
from .errors import InputError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (
    ".jsonl",
    ".jsonl.gz",
    ".jsonl.zst",
    ".json.gz",
    ".json.zst",
    ".ndjson",
    ".ndjson.gz",
    ".json",
)
PARQUET_SUFFIXES = (".parquet",)
OUTPUT_COLUMNS = ("doc_id", "source", "row", "url", "text")
MAX_WARNINGS = 20


@dataclass(frozen=True)
class Shard:
    """One input file. `source` is its path; `label` is the short stable name used in derived ids."""

    source: str
    label: str
    format: str  # "jsonl" | "parquet"

    def fingerprint(self) -> dict[str, Any]:
        st = os.stat(self.source)
        return {"source": self.source, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class ShardCounts:
    """What happened to the documents of one shard."""

    documents_in: int = 0
    yielded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    blank_lines: int = 0
    warnings: list[str] = field(default_factory=list)

    def skip(self, reason: str, n: int = 1, where: str | None = None) -> None:
        self.documents_in += n
        self.skipped[reason] += n
        if where is not None and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(f"{where}: skipped ({reason})")

    def warn(self, message: str) -> None:
        log.warning(message)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _format_of(path: str) -> str | None:
    low = path.lower()
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if low.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def discover_shards(inputs: Sequence[str | Path]) -> list[Shard]:
    """Expand files, directories (recursively) and globs into a sorted, de-duplicated list of shards."""
    if not inputs:
        raise InputError("no input given. Pass one or more files, directories or globs of JSONL or Parquet.")
    shards: dict[str, Shard] = {}
    for item in inputs:
        s = str(item)
        if any(ch in s for ch in "*?["):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise InputError(f"the pattern {s!r} matched no file. Check the path and quote the glob.")
            for m in matches:
                fmt = _format_of(m)
                if fmt and os.path.isfile(m):
                    shards.setdefault(m, Shard(m, os.path.basename(m), fmt))
        elif os.path.isdir(s):
            root = Path(s)
            found = 0
            for p in sorted(root.rglob("*")):
                fmt = _format_of(p.name)
                if fmt and p.is_file() and not p.name.startswith("."):
                    rel = p.relative_to(root).as_posix()
                    shards.setdefault(str(p), Shard(str(p), rel, fmt))
                    found += 1
            if not found:
                raise InputError(
                    f"directory {s} holds no JSONL or Parquet file (looked for {', '.join(JSONL_SUFFIXES)}, "
                    f".parquet)."
                )
        elif os.path.isfile(s):
            fmt = _format_of(s)
            if fmt is None:
                raise InputError(
                    f"{s}: unknown format. selector reads {', '.join(JSONL_SUFFIXES)} and .parquet files."
                )
            shards.setdefault(s, Shard(s, os.path.basename(s), fmt))
        else:
            raise InputError(f"input {s} does not exist.")
    if not shards:
        raise InputError(f"no JSONL or Parquet shard found in {', '.join(map(str, inputs))}.")
    # the same file named twice (./d/a.jsonl and d/a.jsonl) is one shard; sources are absolute, so the
    # scores, the manifest and `selector materialize` find the shard from any working directory
    unique: dict[str, Shard] = {}
    for sh in sorted(shards.values(), key=lambda sh: os.path.abspath(sh.source)):
        unique.setdefault(os.path.realpath(sh.source), Shard(os.path.abspath(sh.source), sh.label, sh.format))
    return _distinct_labels(list(unique.values()))


def _distinct_labels(shards: list[Shard]) -> list[Shard]:
    """Labels make derived ids (`<label>#<row>`): where two shards share one (a/x.jsonl and b/x.jsonl), both
    get their path relative to the common parent of all shards instead."""
    by_label: dict[str, int] = {}
    for sh in shards:
        by_label[sh.label] = by_label.get(sh.label, 0) + 1
    if all(c == 1 for c in by_label.values()):
        return shards
    root = os.path.commonpath([os.path.dirname(os.path.realpath(sh.source)) for sh in shards])
    return [
        Shard(sh.source, Path(os.path.relpath(os.path.realpath(sh.source), root)).as_posix(), sh.format)
        if by_label[sh.label] > 1
        else sh
        for sh in shards
    ]


def _open_binary(path: str) -> IO[bytes]:
    low = path.lower()
    if low.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if low.endswith(".zst"):
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 - closed through the wrapper
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))  # type: ignore[arg-type]
    return open(path, "rb")


def _zstd_errors() -> tuple[type[Exception], ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


# what a damaged compressed stream raises while it is read
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    OSError,
    *_zstd_errors(),
)


def _make_frame(
    shard: Shard, rows: list[int], ids: list[Any], urls: list[Any], texts: list[Any]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "doc_id": [
                str(i) if i is not None else f"{shard.label}#{r}" for i, r in zip(ids, rows, strict=True)
            ],
            "source": [shard.source] * len(rows),
            "row": rows,
            "url": [u if isinstance(u, str) else None for u in urls],
            "text": texts,
        },
        schema={
            "doc_id": pl.String,
            "source": pl.String,
            "row": pl.Int64,
            "url": pl.String,
            "text": pl.String,
        },
    )


def _filter_texts(shard: Shard, cfg: ReadConfig, counts: ShardCounts, df: pl.DataFrame) -> pl.DataFrame:
    """Count and drop documents with no text, or text outside [min_doc_chars, max_doc_chars]."""
    n = df.height
    missing = df["text"].is_null()
    nchars = df["text"].str.len_chars().fill_null(0)
    too_short = ~missing & (nchars < max(cfg.min_doc_chars, 1))
    too_long = nchars > cfg.max_doc_chars
    for mask, reason in ((missing, "missing_text"), (too_short, "empty_text"), (too_long, "doc_too_long")):
        k = int(mask.sum())
        if k:
            rows = df.filter(mask)["row"].head(3).to_list()
            counts.skip(reason, k)
            counts.warn(f"{shard.source}: {k} document(s) skipped ({reason}), e.g. row(s) {rows}")
    keep = ~(missing | too_short | too_long)
    out = df.filter(keep)
    counts.documents_in += out.height
    counts.yielded += out.height
    assert out.height + int((~keep).sum()) == n
    return out


def _parse_lines_slow(
    shard: Shard, cfg: ReadConfig, counts: ShardCounts, lines: list[bytes], rows: list[int]
) -> pl.DataFrame:
    """Line-by-line parse of a batch that polars rejected, skipping (and counting) each bad line."""
    ok_rows, ids, urls, texts = [], [], [], []
    for line, row in zip(lines, rows, strict=True):
        where = f"{shard.source}:{row + 1}"
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            counts.skip("invalid_utf8", where=f"{where} (byte {e.start})")
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            counts.skip("malformed_json", where=f"{where} ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            counts.skip("not_a_json_object", where=where)
            continue
        text = obj.get(cfg.text_column)
        if text is not None and not isinstance(text, str):
            counts.skip("text_not_a_string", where=where)
            continue
        ok_rows.append(row)
        ids.append(obj.get(cfg.id_column))
        urls.append(obj.get(cfg.url_column))
        texts.append(text)
    return _make_frame(shard, ok_rows, ids, urls, texts)


def _check_text_column(shard: Shard, cfg: ReadConfig, first_line: bytes) -> None:
    try:
        obj = json.loads(first_line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # the line itself is bad; it is counted when parsed
    if isinstance(obj, dict) and cfg.text_column not in obj:
        keys = ", ".join(list(obj)[:20])
        strings = {k: v for k, v in obj.items() if isinstance(v, str)}
        hint = f" Use --text-column {_guess_text_column(strings)}." if strings else " Use --text-column NAME."
        raise InputError(f'column "{cfg.text_column}" not found in {shard.source}. Available: {keys}.{hint}')


TEXT_COLUMN_NAMES = ("text", "content", "raw_content", "body", "document", "article", "page_content")


def _guess_text_column(strings: dict[str, str]) -> str:
    """The likeliest text column: a well-known name, else the longest string value."""
    for name in TEXT_COLUMN_NAMES:
        if name in strings:
            return name
    return max(strings, key=lambda k: len(strings[k]))


def check_shard(shard: Shard, cfg: ReadConfig) -> None:
    """Fail early, before any output is written, when a shard cannot be read or lacks the text column."""
    if not os.path.exists(shard.source):
        raise InputError(f"input {shard.source} does not exist.")
    if shard.format == "parquet":
        next(_parquet_batches(shard, dataclasses.replace(cfg, batch_size=1), ShardCounts()), None)
        return
    try:
        with _open_binary(shard.source) as fh:
            for line in fh:
                if line.strip():
                    _check_text_column(shard, cfg, line.strip())
                    return
    except STREAM_ERRORS:
        return  # a damaged stream is counted when the shard is read


def _jsonl_batches(shard: Shard, cfg: ReadConfig, counts: ShardCounts) -> Iterator[pl.DataFrame]:
    schema = {cfg.id_column: pl.String, cfg.text_column: pl.String, cfg.url_column: pl.String}
    max_line_bytes = cfg.max_doc_chars * 4 + 65536
    lines: list[bytes] = []
    rows: list[int] = []
    checked = False

    # polars would turn a number or a list under the text key into a string: such batches take the
    # line-by-line path, which skips those documents as text_not_a_string (a nested key of the same name
    # only costs the slower path, never a wrong result)
    non_string_text = re.compile(b'"' + re.escape(cfg.text_column.encode()) + rb'"\s*:\s*[^"\sn]')

    def flush() -> pl.DataFrame:
        blob = b"\n".join(lines)
        try:
            if non_string_text.search(blob):
                raise ValueError("non-string text value")
            df = pl.read_ndjson(io.BytesIO(blob), schema=schema)
            df = _make_frame(
                shard,
                rows,
                df[cfg.id_column].to_list(),
                df[cfg.url_column].to_list(),
                df[cfg.text_column].to_list(),
            )
        except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, ValueError):
            df = _parse_lines_slow(shard, cfg, counts, lines, rows)
        return _filter_texts(shard, cfg, counts, df)

    fh = _open_binary(shard.source)
    row = -1
    try:
        with fh:
            for row, line in enumerate(fh):  # noqa: B007 - row is read after the loop
                if len(line) > max_line_bytes:
                    counts.skip("doc_too_long", where=f"{shard.source}:{row + 1} ({len(line):,} bytes)")
                    continue
                stripped = line.strip()
                if not stripped:
                    counts.blank_lines += 1
                    continue
                if not checked:
                    _check_text_column(shard, cfg, stripped)
                    checked = True
                lines.append(stripped)
                rows.append(row)
                if len(lines) >= cfg.batch_size:
                    yield flush()
                    lines, rows = [], []
    except STREAM_ERRORS as e:
        if isinstance(e, FileNotFoundError | PermissionError):
            raise InputError(f"cannot open {shard.source}: {e}") from e
        counts.skip("truncated_or_corrupt_file", where=None)
        counts.warn(
            f"{shard.source}: the compressed stream ends or breaks after line {row + 1} ({type(e).__name__}: {e}); "
            "documents after that point are missing (counted once as 'truncated_or_corrupt_file'). "
            "Re-download or re-compress the shard."
        )
    if lines:
        yield flush()
    if counts.documents_in == 0 and counts.blank_lines == 0:
        counts.warn(f"{shard.source}: the shard is empty (no lines).")


def _parquet_batches(shard: Shard, cfg: ReadConfig, counts: ShardCounts) -> Iterator[pl.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(shard.source)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(
            f"{shard.source} is not a readable Parquet file ({e}). Re-download the shard."
        ) from e
    names = pf.schema_arrow.names
    if cfg.text_column not in names:
        guess = next((n for n in TEXT_COLUMN_NAMES if n in names), None)
        hint = f" Use --text-column {guess}." if guess else " Use --text-column NAME."
        raise InputError(
            f'column "{cfg.text_column}" not found in {shard.source}. Available: {", ".join(names)}.{hint}'
        )
    ttype = pf.schema_arrow.field(cfg.text_column).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype) or pa.types.is_string_view(ttype)):
        raise InputError(
            f'column "{cfg.text_column}" in {shard.source} has type {ttype}, not text. Use --text-column NAME.'
        )
    cols = [c for c in (cfg.id_column, cfg.url_column, cfg.text_column) if c in names]
    start = 0
    if pf.metadata.num_rows == 0:
        counts.warn(f"{shard.source}: the shard is empty (no rows).")
    try:
        for batch in pf.iter_batches(batch_size=cfg.batch_size, columns=cols):
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            n = df.height
            rows = list(range(start, start + n))
            start += n
            ids = df[cfg.id_column].cast(pl.String).to_list() if cfg.id_column in df.columns else [None] * n
            urls = (
                df[cfg.url_column].cast(pl.String).to_list() if cfg.url_column in df.columns else [None] * n
            )
            frame = _make_frame(shard, rows, ids, urls, df[cfg.text_column].to_list())
            yield _filter_texts(shard, cfg, counts, frame)
    except (pa.ArrowInvalid, OSError) as e:
        remaining = pf.metadata.num_rows - start
        counts.skip("corrupt_parquet", max(remaining, 1))
        counts.warn(
            f"{shard.source}: Parquet read failed after row {start} ({e}); {remaining} rows counted as "
            "skipped ('corrupt_parquet'). Re-download the shard."
        )


def read_shard(shard: Shard, cfg: ReadConfig, counts: ShardCounts | None = None) -> Iterator[pl.DataFrame]:
    """Yield batches (`doc_id, source, row, url, text`) of one shard; skips are counted in `counts`."""
    counts = counts if counts is not None else ShardCounts()
    if not os.path.exists(shard.source):
        raise InputError(f"input {shard.source} does not exist.")
    if shard.format == "parquet":
        yield from _parquet_batches(shard, cfg, counts)
    else:
        yield from _jsonl_batches(shard, cfg, counts)


def read_documents(inputs: Sequence[str | Path], cfg: ReadConfig) -> Iterator[pl.DataFrame]:
    """All batches of all shards, in shard order (skips are logged, not returned)."""
    for shard in discover_shards(inputs):
        yield from read_shard(shard, cfg)
