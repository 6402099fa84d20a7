"""Read dumps: JSONL (plain, .gz, .zst), Parquet, WARC and WET shards, local or remote (fsspec URIs) ->
batches of `doc_id, source, row, url, text` plus provenance (`warc_record_id, offset, crawl_date,
payload_digest, lang_in`; null where the input does not carry it).

Memory is bounded by `read.batch_size`, not by the shard size. Every document a shard holds is either
yielded or counted in `ShardCounts.skipped` with its reason, so `documents_in = yielded + skipped`.
"""

from __future__ import annotations

import codecs
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
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import polars as pl

from selector.core.config import ReadConfig
from selector.core.errors import InputError

log = logging.getLogger(__name__)

WARC_SUFFIXES = (".warc.gz", ".warc", ".warc.zst")
WET_SUFFIXES = (".warc.wet.gz", ".wet.gz", ".warc.wet", ".wet")
DATE_COLUMNS = (
    "crawl_date",
    "date",
    "created",
    "timestamp",
)  # read.date_column = "auto" takes the first present
LANG_COLUMNS = ("language", "lang")  # read.lang_column = "auto" likewise
PROVENANCE = {
    "warc_record_id": pl.String,
    "offset": pl.Int64,
    "crawl_date": pl.String,
    "payload_digest": pl.String,
    "lang_in": pl.String,
}
LANG_COLUMNS_OUT = {"lang": pl.String, "lang_score": pl.Float32}
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
_SUFFIX_LIST = ", ".join((*JSONL_SUFFIXES, *PARQUET_SUFFIXES, *WARC_SUFFIXES, *WET_SUFFIXES))
OUTPUT_COLUMNS = ("doc_id", "source", "row", "url", "text", *PROVENANCE, *LANG_COLUMNS_OUT)
MAX_WARNINGS = 20


@dataclass(frozen=True)
class Shard:
    """One input file. `source` is its path; `label` is the short stable name used in derived ids."""

    source: str
    label: str
    format: str  # "jsonl" | "parquet"

    def fingerprint(self) -> dict[str, Any]:
        size, mtime = stat_source(self.source)
        return {"source": self.source, "size": size, "mtime_ns": mtime}


def is_remote(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _fs(source: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - fsspec is a dependency
        raise InputError(f"{source}: reading URIs needs fsspec (pip install fsspec).") from e
    try:
        return fsspec.core.url_to_fs(source)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as e:
        proto = source.split("://", 1)[0]
        extra = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub", "az": "adlfs"}.get(
            proto
        )
        hint = f" Install {extra} (pip install {extra})." if extra else ""
        raise InputError(f"cannot open {source}: {e}.{hint}") from e


def stat_source(source: str) -> tuple[int, int | str]:
    """(size, modification stamp) of a local path or a URI: mtime in ns locally, the store's stamp remotely."""
    if not is_remote(source):
        st = os.stat(_local(source))
        return st.st_size, st.st_mtime_ns
    fs, path = _fs(source)
    info = fs.info(path)
    stamp = next((info[k] for k in ("mtime", "LastModified", "last_modified", "ETag", "etag", "created") if
                  info.get(k) is not None), "")  # fmt: skip
    return int(info.get("size") or 0), str(stamp)


def source_exists(source: str) -> bool:
    if not is_remote(source):
        return os.path.isfile(_local(source))
    fs, path = _fs(source)
    return bool(fs.isfile(path))


def _local(source: str) -> str:
    return source[len("file://") :] if source.startswith("file://") else source


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
    if low.endswith(WET_SUFFIXES):
        return "wet"
    if low.endswith(WARC_SUFFIXES):
        return "warc"
    if low.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def _discover_remote(s: str, shards: dict[str, Shard]) -> None:
    fs, path = _fs(s)

    def uri(p: str) -> str:
        # one spelling per file, however it was named (a directory walk, a glob or the file itself)
        return p if "://" in p else str(fs.unstrip_protocol(p))

    if any(ch in path for ch in "*?["):
        found = sorted(p for p in fs.glob(path) if _format_of(p) and fs.isfile(p))
        if not found:
            raise InputError(f"the pattern {s!r} matched no file. Check the URI and quote the glob.")
        for p in found:
            shards.setdefault(uri(p), Shard(uri(p), os.path.basename(p), _format_of(p) or "jsonl"))
    elif fs.isdir(path):
        root = path.rstrip("/")
        found = sorted(p for p in fs.find(root) if _format_of(p) and not os.path.basename(p).startswith("."))
        if not found:
            raise InputError(f"{s} holds no JSONL, Parquet, WARC or WET file.")
        for p in found:
            rel = p[len(root) :].lstrip("/")
            shards.setdefault(uri(p), Shard(uri(p), rel, _format_of(p) or "jsonl"))
    elif fs.isfile(path):
        fmt = _format_of(path)
        if fmt is None:
            raise InputError(f"{s}: unknown format. selector reads {_SUFFIX_LIST} files.")
        shards.setdefault(uri(path), Shard(uri(path), os.path.basename(path), fmt))
    else:
        raise InputError(f"input {s} does not exist.")


def discover_shards(inputs: Sequence[str | Path]) -> list[Shard]:
    """Expand files, directories (recursively) and globs into a sorted, de-duplicated list of shards."""
    if not inputs:
        raise InputError(
            "no input given. Pass one or more files, directories or globs of JSONL, Parquet, WARC or WET."
        )
    shards: dict[str, Shard] = {}
    for item in inputs:
        s = str(item)
        if is_remote(s):
            _discover_remote(s, shards)
            continue
        s = _local(s)
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
                    f"directory {s} holds no JSONL, Parquet, WARC or WET file (looked for {_SUFFIX_LIST})."
                )
        elif os.path.isfile(s):
            fmt = _format_of(s)
            if fmt is None:
                raise InputError(f"{s}: unknown format. selector reads {_SUFFIX_LIST} files.")
            shards.setdefault(s, Shard(s, os.path.basename(s), fmt))
        else:
            raise InputError(f"input {s} does not exist.")
    if not shards:
        raise InputError(
            f"no JSONL, Parquet, WARC or WET shard found in {', '.join(map(str, inputs))} (looked for {_SUFFIX_LIST})."
        )
    # the same file named twice (./d/a.jsonl and d/a.jsonl) is one shard; sources are absolute, so the
    # scores, the manifest and `selector materialize` find the shard from any working directory
    unique: dict[str, Shard] = {}
    for sh in sorted(
        shards.values(), key=lambda sh: sh.source if is_remote(sh.source) else os.path.abspath(sh.source)
    ):
        if is_remote(sh.source):
            unique.setdefault(sh.source, sh)
        else:
            unique.setdefault(
                os.path.realpath(sh.source), Shard(os.path.abspath(sh.source), sh.label, sh.format)
            )
    return _distinct_labels(list(unique.values()))


def _distinct_labels(shards: list[Shard]) -> list[Shard]:
    """Labels make derived ids (`<label>#<row>`): where two shards share one (a/x.jsonl and b/x.jsonl), both
    get their path relative to the common parent of all shards instead."""
    by_label: dict[str, int] = {}
    for sh in shards:
        by_label[sh.label] = by_label.get(sh.label, 0) + 1
    if all(c == 1 for c in by_label.values()):
        return shards

    def where(sh: Shard) -> str:
        # remote paths as absolute ones under their scheme, so local and remote shards share one root
        if is_remote(sh.source):
            scheme, rest = sh.source.split("://", 1)
            return f"/{scheme}:/{rest.lstrip('/')}"
        return os.path.realpath(sh.source)

    root = os.path.commonpath([os.path.dirname(where(sh)) for sh in shards])
    return [
        Shard(sh.source, Path(os.path.relpath(where(sh), root)).as_posix(), sh.format)
        if by_label[sh.label] > 1
        else sh
        for sh in shards
    ]


def _open_raw(path: str) -> IO[bytes]:
    if is_remote(path):
        fs, p = _fs(path)
        return fs.open(p, "rb")  # type: ignore[no-any-return]
    return open(_local(path), "rb")  # noqa: SIM115 - the caller closes it


def _open_binary(path: str) -> IO[bytes]:
    low = path.lower()
    raw = _open_raw(path)
    if low.endswith(".gz"):
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        gz.myfileobj = raw  # type: ignore[assignment]  # closed with the GzipFile, as gzip.open does
        return gz  # type: ignore[return-value]
    if low.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))  # type: ignore[arg-type]
    return raw


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
    shard: Shard,
    rows: list[int],
    ids: list[Any],
    urls: list[Any],
    texts: list[Any],
    extra: dict[str, list[Any]] | None = None,
) -> pl.DataFrame:
    """The reader's output frame; `extra` holds provenance columns (see PROVENANCE), null where absent."""
    n = len(rows)
    extra = extra or {}
    cols: dict[str, Any] = {
        "doc_id": [str(i) if i is not None else f"{shard.label}#{r}" for i, r in zip(ids, rows, strict=True)],
        "source": [shard.source] * n,
        "row": rows,
        "url": [u if isinstance(u, str) else None for u in urls],
        "text": texts,
    }
    for name, dtype in PROVENANCE.items():
        vals = extra.get(name)
        if vals is None:
            cols[name] = [None] * n
        elif dtype == pl.String:
            cols[name] = [None if v is None else str(v) for v in vals]
        else:
            cols[name] = vals
    return pl.DataFrame(
        cols,
        schema={
            "doc_id": pl.String,
            "source": pl.String,
            "row": pl.Int64,
            "url": pl.String,
            "text": pl.String,
            **PROVENANCE,
        },  # fmt: skip
    )


def _meta_columns(cfg: ReadConfig, present: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The input columns that may carry the crawl date and the language: the configured one, or for "auto"
    the well-known names (those in `present`, when the shard's columns are known)."""
    dates = list(DATE_COLUMNS) if cfg.date_column == "auto" else [cfg.date_column]
    langs = list(LANG_COLUMNS) if cfg.lang_column == "auto" else [cfg.lang_column]
    if present is not None:
        dates = [c for c in dates if c in present]
        langs = [c for c in langs if c in present]
    taken = {cfg.id_column, cfg.text_column, cfg.url_column}
    return [c for c in dates if c not in taken], [c for c in langs if c not in taken]


def _first_present(rows: list[dict[str, Any]], cols: list[str]) -> list[Any]:
    out = []
    for r in rows:
        v = next((r[c] for c in cols if r.get(c) is not None), None)
        out.append(v if v is None or isinstance(v, str) else str(v))
    return out


def _filter_texts(shard: Shard, cfg: ReadConfig, counts: ShardCounts, df: pl.DataFrame) -> pl.DataFrame:
    """Count and drop documents with no text, or text outside [min_doc_chars, max_doc_chars]."""
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
    out = _with_language(shard, cfg, counts, df.filter(keep))
    counts.documents_in += out.height
    counts.yielded += out.height
    return out


def _with_language(shard: Shard, cfg: ReadConfig, counts: ShardCounts, df: pl.DataFrame) -> pl.DataFrame:
    """Add `lang` and `lang_score`: the input's language column where trusted (WARC/WET headers are not:
    they are another detector's ISO 639-3 guesses), else lid.176; drop (and count) languages not kept."""
    trusted = cfg.trust_lang_column and shard.format in ("jsonl", "parquet")
    lang = df["lang_in"] if trusted else pl.Series("lang", [None] * df.height, dtype=pl.String)
    score = pl.Series("lang_score", [None] * df.height, dtype=pl.Float32)
    todo = lang.is_null()
    if cfg.detect_language and bool(todo.any()):
        from selector.read.lang import identify

        idx = todo.arg_true()
        found, probs = identify(df["text"].gather(idx).to_list())
        lang = lang.scatter(idx, pl.Series(found, dtype=pl.String))
        score = score.scatter(idx, pl.Series(probs, dtype=pl.Float32))
    df = df.with_columns(lang.alias("lang"), score.alias("lang_score"))
    if cfg.languages:
        unknown = df["lang"].is_null()
        k_unknown = int(unknown.sum())
        if k_unknown:  # detection off and no language column: nothing to filter on
            counts.skip("language_unknown", k_unknown)
            counts.warn(
                f"{shard.source}: {k_unknown} document(s) skipped (language_unknown: read.languages is set but "
                "they have no language; turn read.detect_language on)"
            )
            df = df.filter(~unknown)
        kept = df["lang"].is_in(list(cfg.languages))
        k = int((~kept).sum())
        if k:
            counts.skip("language_filtered", k)
            counts.warn(
                f"{shard.source}: {k} document(s) skipped (language_filtered: not in read.languages "
                f"{list(cfg.languages)}), e.g. row(s) {df.filter(~kept)['row'].head(3).to_list()}"
            )
        df = df.filter(kept)
    return df


def _parse_lines_slow(
    shard: Shard, cfg: ReadConfig, counts: ShardCounts, lines: list[bytes], rows: list[int]
) -> pl.DataFrame:
    """Line-by-line parse of a batch that polars rejected, skipping (and counting) each bad line."""

    def objects() -> Iterator[tuple[int, str, Any]]:
        for line, row in zip(lines, rows, strict=True):
            where = f"{shard.source}:{row + 1}"
            try:
                s = line.decode("utf-8")
            except UnicodeDecodeError as e:
                counts.skip("invalid_utf8", where=f"{where} (byte {e.start})")
                continue
            try:
                yield row, where, json.loads(s)
            except json.JSONDecodeError as e:
                counts.skip("malformed_json", where=f"{where} ({e.msg} at column {e.colno})")

    return _frame_of_objects(shard, cfg, counts, objects())


def _frame_of_objects(
    shard: Shard, cfg: ReadConfig, counts: ShardCounts, objects: Iterable[tuple[int, str, Any]]
) -> pl.DataFrame:
    """Parsed JSON values (row, where, value) -> a batch frame; a value that is not an object, or whose text
    is not a string, is skipped and counted."""
    ok_rows, ids, urls, texts = [], [], [], []
    metas: list[dict[str, Any]] = []
    date_cols, lang_cols = _meta_columns(cfg)
    for row, where, obj in objects:
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
        metas.append({c: obj.get(c) for c in (*date_cols, *lang_cols)})
    extra = {"crawl_date": _first_present(metas, date_cols), "lang_in": _first_present(metas, lang_cols)}
    return _make_frame(shard, ok_rows, ids, urls, texts, extra)


DEFAULT_ID_COLUMN = ReadConfig.id_column


def _check_id_column(shard: Shard, cfg: ReadConfig, names: Sequence[str]) -> None:
    """An id column the user named (anything but the default `id`, whose absence means derived ids) must be
    there: silently deriving ids would throw the real ones away."""
    if cfg.id_column == DEFAULT_ID_COLUMN or cfg.id_column in names:
        return
    import difflib

    close = difflib.get_close_matches(cfg.id_column, list(names), n=1, cutoff=0.6)
    id_like = [n for n in names if n.lower() == "id" or n.lower().endswith(("id", "_id"))]
    guess = close[0] if close else (id_like[0] if id_like else None)
    hint = (
        f"Use --id-column {guess}."
        if guess
        else f"Leave --id-column out to give documents ids of the form {shard.label}#<row>."
    )
    raise InputError(
        f'id column "{cfg.id_column}" not found in {shard.source}. Available: {", ".join(list(names)[:20])}. {hint}'
    )


def _check_text_column(shard: Shard, cfg: ReadConfig, first_line: bytes) -> None:
    try:
        obj = json.loads(first_line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # the line itself is bad; it is counted when parsed
    if isinstance(obj, dict) and cfg.text_column in obj:
        _check_id_column(shard, cfg, list(obj))
    if isinstance(obj, dict) and cfg.text_column not in obj:
        keys = ", ".join(list(obj)[:20])
        guess = _guess_text_column({k: v for k, v in obj.items() if isinstance(v, str)})
        hint = f" Use --text-column {guess}." if guess else " Use --text-column NAME."
        raise InputError(f'column "{cfg.text_column}" not found in {shard.source}. Available: {keys}.{hint}')


TEXT_COLUMN_NAMES = ("text", "content", "raw_content", "body", "document", "article", "page_content")


def _guess_text_column(strings: dict[str, str]) -> str | None:
    """The likeliest text column: a well-known name, else the longest string value that reads like text (a
    few words); None when no value does (`"cc"` is a label, not a document)."""
    for name in TEXT_COLUMN_NAMES:
        if name in strings:
            return name
    texty = {k: v for k, v in strings.items() if len(v.split()) >= 3}
    return max(texty, key=lambda k: len(texty[k])) if texty else None


def _is_plain_json(shard: Shard) -> bool:
    return shard.format == "jsonl" and shard.source.lower().endswith(".json")


def _plain_json(shard: Shard, cfg: ReadConfig) -> tuple[str, Any]:
    """What a plain `.json` file holds: ("jsonl", None) for JSON Lines under that name (its first line is a
    whole JSON object, and it has more than one line or that object has the text field); ("array", list) for a
    JSON array of documents; ("object", dict) for one JSON document (a pretty-printed object with the text
    field); ("metadata", keys) for one JSON object without it (a dataset's info.json), which holds no document."""
    with _open_binary(shard.source) as fh:
        first = b""
        while not first.strip():
            first = fh.readline(cfg.max_doc_chars * 4 + 65536)
            if not first:
                return "jsonl", None  # empty: the JSONL reader warns
        more = any(line.strip() for line in iter(lambda: fh.readline(1 << 16), b""))
    if first.lstrip()[:1] not in (b"[", b"{"):
        return "jsonl", None  # not JSON at all: the JSONL reader counts its lines as malformed_json
    try:
        one = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        one = None
    if isinstance(one, dict) and (cfg.text_column in one or more):
        return "jsonl", None
    with _open_binary(shard.source) as fh:
        try:
            whole = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "jsonl", None  # e.g. JSON Lines whose first line is broken: counted line by line
    if isinstance(whole, list):
        return "array", whole
    if isinstance(whole, dict):
        # an object with a value that reads like text is a document under another field name (the JSONL
        # reader's error names it); one without is metadata
        texty = _guess_text_column({k: v for k, v in whole.items() if isinstance(v, str)})
        if cfg.text_column in whole or texty:
            return "object", whole
        return "metadata", list(whole)
    return "jsonl", None


def _metadata_skip(shard: Shard, cfg: ReadConfig, counts: ShardCounts, keys: list[str]) -> None:
    counts.skip("not_documents")
    counts.warn(
        f'{shard.source}: one JSON object without a "{cfg.text_column}" field (keys: {", ".join(keys[:20])}), '
        "metadata rather than documents: skipped (not_documents). If it is a document, name its text field "
        "with --text-column."
    )


def _json_array_batches(
    shard: Shard, cfg: ReadConfig, counts: ShardCounts, items: list[Any]
) -> Iterator[pl.DataFrame]:
    """The documents of a JSON array (or of one JSON object: a one-element list), `row` its index."""
    first = next((x for x in items if isinstance(x, dict)), None)
    if first is not None:
        _check_text_column(shard, cfg, json.dumps(first).encode())
    for start in range(0, len(items), cfg.batch_size):
        batch = (
            (row, f"{shard.source}[{row}]", items[row])
            for row in range(start, min(start + cfg.batch_size, len(items)))
        )
        yield _filter_texts(shard, cfg, counts, _frame_of_objects(shard, cfg, counts, batch))
    if not items:
        counts.warn(f"{shard.source}: the shard is empty (a JSON array with no element).")


def _json_batches(shard: Shard, cfg: ReadConfig, counts: ShardCounts) -> Iterator[pl.DataFrame]:
    kind, value = _plain_json(shard, cfg)
    if kind == "metadata":
        _metadata_skip(shard, cfg, counts, value)
    elif kind == "array":
        yield from _json_array_batches(shard, cfg, counts, value)
    elif kind == "object":
        yield from _json_array_batches(shard, cfg, counts, [value])
    else:
        yield from _jsonl_batches(shard, cfg, counts)


def check_shard(shard: Shard, cfg: ReadConfig) -> None:
    """Fail early, before any output is written, when a shard cannot be read or lacks the text column (or
    language identification is on and its model is missing)."""
    if not source_exists(shard.source):
        raise InputError(f"input {shard.source} does not exist.")
    if cfg.detect_language:
        from selector.read.lang import lid_model_path

        lid_model_path()
    if shard.format in ("warc", "wet"):
        _warc_dependencies()
        return
    if shard.format == "parquet":
        batches = _parquet_batches(shard, dataclasses.replace(cfg, batch_size=1), ShardCounts())
        next(batches, None)
        batches.close()
        return
    try:
        if _is_plain_json(shard):
            kind, value = _plain_json(shard, cfg)
            if kind == "metadata":
                return  # skipped, and counted, when the shard is read
            if kind in ("array", "object"):
                first = next(
                    (x for x in (value if kind == "array" else [value]) if isinstance(x, dict)), None
                )
                if first is not None:
                    _check_text_column(shard, cfg, json.dumps(first).encode())
                return
        with _open_binary(shard.source) as fh:
            for line in fh:
                if line.strip():
                    _check_text_column(shard, cfg, line.strip())
                    return
    except STREAM_ERRORS:
        return  # a damaged stream is counted when the shard is read


def _jsonl_batches(shard: Shard, cfg: ReadConfig, counts: ShardCounts) -> Iterator[pl.DataFrame]:
    date_cols, lang_cols = _meta_columns(cfg)
    schema = {cfg.id_column: pl.String, cfg.text_column: pl.String, cfg.url_column: pl.String}
    schema.update({c: pl.String for c in (*date_cols, *lang_cols)})
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
            extra = {
                "crawl_date": df.select(pl.coalesce(date_cols)).to_series().to_list() if date_cols else None,
                "lang_in": df.select(pl.coalesce(lang_cols)).to_series().to_list() if lang_cols else None,
            }
            df = _make_frame(
                shard,
                rows,
                df[cfg.id_column].to_list(),
                df[cfg.url_column].to_list(),
                df[cfg.text_column].to_list(),
                {k: v for k, v in extra.items() if v is not None},
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


def _parquet_batches(
    shard: Shard, cfg: ReadConfig, counts: ShardCounts
) -> Generator[pl.DataFrame, None, None]:
    if not is_remote(shard.source):
        yield from _parquet_batches_from(shard, _local(shard.source), cfg, counts)
        return
    with _open_raw(shard.source) as fh:  # a remote file is closed when its batches are done
        yield from _parquet_batches_from(shard, fh, cfg, counts)


def _parquet_batches_from(
    shard: Shard, where: Any, cfg: ReadConfig, counts: ShardCounts
) -> Iterator[pl.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(where)
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
    _check_id_column(shard, cfg, names)
    ttype = pf.schema_arrow.field(cfg.text_column).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype) or pa.types.is_string_view(ttype)):
        raise InputError(
            f'column "{cfg.text_column}" in {shard.source} has type {ttype}, not text. Use --text-column NAME.'
        )
    date_cols, lang_cols = _meta_columns(cfg, names)
    cols = [c for c in (cfg.id_column, cfg.url_column, cfg.text_column, *date_cols, *lang_cols) if c in names]
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
            extra = {
                "crawl_date": df.select(pl.coalesce([pl.col(c).cast(pl.String) for c in date_cols]))
                .to_series()
                .to_list()
                if date_cols
                else None,
                "lang_in": df.select(pl.coalesce([pl.col(c).cast(pl.String) for c in lang_cols]))
                .to_series()
                .to_list()
                if lang_cols
                else None,
            }
            frame = _make_frame(
                shard, rows, ids, urls, df[cfg.text_column].to_list(), {k: v for k, v in extra.items() if v}
            )
            yield _filter_texts(shard, cfg, counts, frame)
    except (pa.ArrowInvalid, OSError) as e:
        remaining = pf.metadata.num_rows - start
        counts.skip("corrupt_parquet", max(remaining, 1))
        counts.warn(
            f"{shard.source}: Parquet read failed after row {start} ({e}); {remaining} rows counted as "
            "skipped ('corrupt_parquet'). Re-download the shard."
        )


HTML_TYPES = ("text/html", "application/xhtml+xml")


def _warc_dependencies() -> None:
    try:
        import fastwarc  # noqa: F401
        import resiliparse  # noqa: F401
    except ImportError as e:
        raise InputError(
            f"reading WARC/WET needs fastwarc and resiliparse (pip install fastwarc resiliparse): {e}"
        ) from e


def _strip_uri(v: str | None) -> str | None:
    return v.strip().strip("<>") if v else None


def html_main_text(body: bytes, content_type: str | None) -> str:
    """The main text of an HTML page (boilerplate such as menus and footers removed), with resiliparse."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from resiliparse.parse.html import HTMLTree

    enc = None
    if content_type and "charset=" in content_type.lower():
        enc = (
            content_type.lower().split("charset=", 1)[1].split(";")[0].split(",")[0].strip().strip("\"'")
            or None
        )
    if enc is not None:
        try:
            codecs.lookup(enc)
        except LookupError:  # a charset Python does not know (x-user-defined, "none"...): detect instead
            enc = None
    html = bytes_to_str(body, enc or str(detect_encoding(body)))
    return str(extract_plain_text(HTMLTree.parse(html), main_content=True, alt_texts=False))


class _GzipVerifier:
    """A read-only stream that also inflates what passes through it, so that at the end it can tell whether
    the gzip data (any number of members) was complete."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.d = zlib.decompressobj(31)
        self.between = True  # at a member boundary
        self.ok = True
        self.pos = 0

    def _feed(self, data: bytes) -> None:
        while data and self.ok:
            self.between = False
            try:
                self.d.decompress(data)
            except zlib.error:
                self.ok = False
                return
            if self.d.eof:
                data = self.d.unused_data
                self.d = zlib.decompressobj(31)
                self.between = True
            else:
                data = b""

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        self._feed(data)
        return data

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def intact(self) -> bool:
        self._feed(self.raw.read())
        return self.ok and self.between

    def close(self) -> None:
        self.raw.close()


def _gzip_intact(path: str) -> bool:
    try:
        with gzip.open(_local(path), "rb") as fh:
            while fh.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error):
        return False
    return True


def _warc_batches(shard: Shard, cfg: ReadConfig, counts: ShardCounts) -> Iterator[pl.DataFrame]:
    """WARC: HTTP responses with HTML, main text extracted; WET: conversion records (plain text). A document's
    `row` is its ordinal among the file's documents, `offset` the byte offset of its record."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    wet = shard.format == "wet"
    kinds = WarcRecordType.conversion if wet else WarcRecordType.response
    # fastwarc detects gzip/zstd itself; remote files come through fsspec as Python streams (a gzipped one
    # through a checker that tells whether its last gzip member is complete)
    verifier: _GzipVerifier | None = None
    stream: Any = _local(shard.source)
    if is_remote(shard.source):
        stream = _open_raw(shard.source)
        if shard.source.lower().endswith(".gz"):
            stream = verifier = _GzipVerifier(stream)
    buf: dict[str, list[Any]] = {k: [] for k in ("row", "id", "url", "text", *PROVENANCE)}
    row = -1

    def flush() -> pl.DataFrame:
        extra = {k: buf[k] for k in PROVENANCE}
        df = _make_frame(shard, buf["row"], buf["id"], buf["url"], buf["text"], extra)
        for v in buf.values():
            v.clear()
        return _filter_texts(shard, cfg, counts, df)

    try:
        for rec in ArchiveIterator(
            stream, record_types=kinds, parse_http=not wet, auto_decode="all", fsspec_args=False
        ):
            row += 1
            h = rec.headers
            where = f"{shard.source} record {row} (offset {rec.stream_pos})"
            if wet:
                body = rec.reader.read()
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError as e:
                    counts.skip("invalid_utf8", where=f"{where} (byte {e.start})")
                    continue
                digest = h.get("WARC-Block-Digest")
            else:
                status = rec.http_headers.status_code if rec.http_headers else None
                ctype = rec.http_headers.get("Content-Type") if rec.http_headers else None
                if status != 200:
                    counts.skip("http_not_ok", where=f"{where} (HTTP {status})")
                    continue
                if not ctype or ctype.split(";")[0].strip().lower() not in HTML_TYPES:
                    counts.skip("not_html", where=f"{where} ({ctype})")
                    continue
                body = rec.reader.read()  # only now: PDFs, videos and error pages are never read into memory
                if len(body) > cfg.max_doc_chars * 8:
                    counts.skip("doc_too_long", where=f"{where} ({len(body):,} bytes of HTML)")
                    continue
                try:
                    text = html_main_text(body, ctype)
                except Exception as e:  # noqa: BLE001 - one bad page must not fail its archive
                    counts.skip("extraction_failed", where=f"{where} ({type(e).__name__}: {e})")
                    continue
                digest = h.get("WARC-Payload-Digest")
            buf["row"].append(row)
            buf["id"].append(_strip_uri(h.get("WARC-Record-ID")))
            buf["url"].append(_strip_uri(h.get("WARC-Target-URI")))
            buf["text"].append(text)
            buf["warc_record_id"].append(_strip_uri(h.get("WARC-Record-ID")))
            buf["offset"].append(int(rec.stream_pos))
            buf["crawl_date"].append(h.get("WARC-Date"))
            buf["payload_digest"].append(digest)
            buf["lang_in"].append(h.get("WARC-Identified-Content-Language"))
            if len(buf["row"]) >= cfg.batch_size:
                yield flush()
    except (*STREAM_ERRORS, ValueError) as e:  # type: ignore[misc]
        counts.skip("truncated_or_corrupt_file", where=None)
        counts.warn(
            f"{shard.source}: the archive ends or breaks after record {row} ({type(e).__name__}: {e}); records "
            "after that point are missing (counted once as 'truncated_or_corrupt_file'). Re-download it."
        )
    else:
        # fastwarc ends quietly at a truncated gzip member: check the stream (local files; it costs one more
        # decompression, a few percent of the extraction time)
        if verifier is not None:
            intact = verifier.intact()
        else:
            intact = not shard.source.lower().endswith(".gz") or _gzip_intact(shard.source)
        if not intact:
            counts.skip("truncated_or_corrupt_file", where=None)
            counts.warn(
                f"{shard.source}: the gzip stream is truncated after record {row}; records after that point are "
                "missing (counted once as 'truncated_or_corrupt_file'). Re-download the archive."
            )
    if buf["row"]:
        yield flush()
    if row < 0:
        counts.warn(f"{shard.source}: no {'conversion' if wet else 'response'} record in the archive.")


def read_shard(shard: Shard, cfg: ReadConfig, counts: ShardCounts | None = None) -> Iterator[pl.DataFrame]:
    """Yield batches (`doc_id, source, row, url, text` and provenance) of one shard; skips are counted in
    `counts`."""
    counts = counts if counts is not None else ShardCounts()
    if not source_exists(shard.source):
        raise InputError(f"input {shard.source} does not exist.")
    if shard.format == "parquet":
        yield from _parquet_batches(shard, cfg, counts)
    elif shard.format in ("warc", "wet"):
        _warc_dependencies()
        yield from _warc_batches(shard, cfg, counts)
    elif _is_plain_json(shard):
        yield from _json_batches(shard, cfg, counts)
    else:
        yield from _jsonl_batches(shard, cfg, counts)


def read_documents(inputs: Sequence[str | Path], cfg: ReadConfig) -> Iterator[pl.DataFrame]:
    """All batches of all shards, in shard order (skips are logged, not returned)."""
    for shard in discover_shards(inputs):
        yield from read_shard(shard, cfg)
