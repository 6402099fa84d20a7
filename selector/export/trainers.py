"""Express a manifest's budget for a trainer: `export(RUN/manifest, fmt, out)` writes the mix file(s), then
`verify_export` re-reads them and checks every stream's tokens against manifest.json.

What an export says. `selector materialize` writes each stream's documents, already repeated per document
as the manifest says, under `<data_root>/<theme>/` (shards `part-NNNNN.jsonl.gz`). Every export therefore
draws each stream exactly once: one pass over the materialized, repeated stream. The document-level
repetition is noted in comments only (`epochs`, `effective_epochs`, `cap`, `shortfall_tokens`). A stream's
tokens are its `achieved_tokens`; the base mix gets the rest of the run, `total_tokens - sum(achieved)`,
and appears as `base` under `base_path`. Token figures are selector's estimate, `ceil(n_chars / 4)`.

The user tokenizes `<data_root>/<theme>` with the trainer's own tool; an export points at the tokenized
data by convention (`_location`):

| format    | tokenized location (stream `t`; the base uses `t = base` under `<data_root>`) |
|-----------|--------------------------------------------------------------------------------|
| megatron  | prefix `<data_root>/t/t_text_document` (preprocess_data.py `--output-prefix <data_root>/t/t`) |
| olmo-core | glob `<data_root>/t/npy/*.npy` (`dolma tokens --destination <data_root>/t/npy`) |
| mosaic    | MDS directory `<data_root>/t/mds` (convert_dataset_json.py `--concat_tokens <seq_len>`) |
| nanotron  | Nanoset folder `<data_root>/t/nanoset` (datatrove tokenizer output folder) |
| dolma     | `dolma mix` writes the repeated stream to `<data_root>/t` itself (default data_root `<out>/mixed`) |

A given `base_path` is written exactly as given (a prefix for megatron, a glob for olmo-core, a directory
for the others); only the dolma export makes its paths absolute, since dolma resolves them where it runs.

Formats (each file starts with a `# selector-export: {...}` comment holding the total, the sequence
length and which path is which stream; the verifier reads that line and the trainer-facing body only):
- megatron: `weight prefix` lines, weights = the tokens each stream contributes (Megatron normalises
  them); tokens = w / sum(w) * total_tokens. The sidecar's command line carries `--split 100,0,0`.
- olmo-core: `SourceMixtureDatasetConfig` YAML (`requested_tokens`, `global_batch_size`,
  `source_list.sources[]` with `source_name, target_ratio, max_repetition_ratio: 1, paths`); tokens =
  target_ratio * requested_tokens.
- mosaic: LLM Foundry `train_loader.dataset` YAML with Streaming `streams: {name: {local|remote,
  proportion}}`, `epoch_size` in samples of `max_seq_len` tokens (packed samples: `total_tokens / seq_len`,
  rounded), plus LLM Foundry's `drop_last` and `num_workers`; tokens = proportion / sum(proportions) *
  epoch_size * max_seq_len.
- nanotron: `data_stages[0].data.dataset` with `dataset_folder: [folders]` and `dataset_weights: [shares]`
  (Nanoset normalises the weights); tokens = w / sum(w) * total_tokens.
- dolma: `out/documents/<shard>` (every scored document, read back from the inputs through selector's
  reader) and `out/documents/copy-<c>/<shard>` (the c-th extra copy of each document with more than c
  repeats, id `<doc_id>#copy<c>`); `out/attributes/selector/...` the same tree of gzipped JSONL, one line per
  documents line,
  spans `[0, n_chars, value]` for `selector__selector__<theme>` (score, every theme),
  `selector__selector__stream_<stream>` (the document's repeats in that stream, else 0) and
  `selector__selector__repeats`; plus `out/mix.yaml`, a `dolma mix` config. `dolma mix` does not repeat
  documents, so each stream is listed once per copy, `<stream>-<k>` reading the (k-1)-th extra copies and
  keeping the documents with at least k repeats; the base stream keeps every scored document (dolma wants
  a filter on each stream); tokens = sum over the copies of ceil(n_chars / 4) of the documents each copy
  keeps (the base: total_tokens from the header minus the streams).

`rounding_warnings` says where a trainer's whole-sample rounding can move a stream by more than 0.5%.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from selector.core.errors import ExportError
from selector.core.paths import atomic_write, foreign_files, foreign_files_message
from selector.export.documents import short_float
from selector.select.manifest import MANIFEST_FORMAT, load_manifest

MOSAIC_WORKERS = 8
MEGATRON_SPLIT = "--split 100,0,0"
FORMATS = ("megatron", "olmo-core", "mosaic", "nanotron", "dolma")
EXPORT_FORMAT = "selector-export/1"
HEADER = "# selector-export: "
TOLERANCE = 0.005
CHARS_PER_TOKEN = 4
BASE = "base"
ATTRIBUTE_SET = "selector"  # dolma attribute names are <attribute set>__<tagger>__<key>
ATTR_PREFIX = f"{ATTRIBUTE_SET}__selector__"
DOLMA_MIX = "mix.yaml"
DOLMA_MAX_BYTES = 1_000_000_000
_INPUT_SUFFIXES = (
    ".jsonl.zst",
    ".json.zst",
    ".jsonl",
    ".ndjson",
    ".json",
    ".parquet",
)
_COPY_FILTER = re.compile(
    r"^\$\.attributes\[\?\(@\."
    + re.escape(ATTR_PREFIX)
    + r"stream_(?P<stream>.+)\[0\]\[2\] >= (?P<k>\d+)\)\]$"
)


@dataclass(frozen=True)
class Entry:
    """One line of the mix: a stream (or the base mix), the tokens it contributes and where it lives."""

    name: str
    tokens: int
    path: str
    note: str


def manifest_tokens(manifest: dict[str, Any], where: Path) -> dict[str, int]:
    """Tokens each stream contributes to the run, in manifest order, then `base` (the rest of the run)."""
    out: dict[str, int] = {}
    for s in manifest["streams"]:
        name = str(s["theme"])
        if name == BASE or name in out:
            raise ExportError(
                f"{where}: stream {name!r} is {'reserved for the base mix' if name == BASE else 'listed twice'}. "
                "Rename the theme in the config and re-run `selector select`."
            )
        out[name] = int(s["achieved_tokens"])
    total = int(manifest["total_tokens"])
    base = total - sum(out.values())
    if base < 0:
        raise ExportError(
            f"{where}: the streams hold {sum(out.values()):,} tokens, more than total_tokens {total:,}. "
            "Raise select.total_tokens or lower the streams' targets, then re-run `selector select`."
        )
    out[BASE] = base
    return out


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}. Use one of: {', '.join(FORMATS)}.")
    return fmt


def _absolute(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_posix()


def _join(root: str, *parts: str) -> str:
    root = root.rstrip("/") or "/"
    return "/".join([root, *parts]) if root != "/" else "/" + "/".join(parts)


def _location(fmt: str, data_root: str, name: str) -> str:
    """Where the tokenized stream `name` lives by convention (see the module docstring)."""
    if fmt == "megatron":
        return _join(data_root, name, f"{name}_text_document")
    if fmt == "olmo-core":
        return _join(data_root, name, "npy", "*.npy")
    if fmt == "mosaic":
        return _join(data_root, name, "mds")
    if fmt == "nanotron":
        return _join(data_root, name, "nanoset")
    return _join(data_root, name)


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.4g}"


def _stream_note(s: dict[str, Any], tokens: int, total: int) -> str:
    share = tokens / total if total else 0.0
    return (
        f"{tokens:,} tokens ({share:.2%} of the run), read once; documents repeated {_num(s.get('epochs'))}x "
        f"(epochs), {_num(s.get('effective_epochs'))}x with the base mix (effective_epochs), cap "
        f"{s.get('cap', 'n/a')}, shortfall {int(s.get('shortfall_tokens') or 0):,} tokens"
    )


def plan(
    manifest: dict[str, Any], where: Path, fmt: str, data_root: str, base_path: str | None
) -> list[Entry]:
    """The mix's entries (streams with tokens, then the base mix if it has any), paths by convention."""
    tokens = manifest_tokens(manifest, where)
    total = int(manifest["total_tokens"])
    entries = []
    for s in manifest["streams"]:
        name = str(s["theme"])
        if tokens[name] > 0:
            entries.append(
                Entry(
                    name, tokens[name], _location(fmt, data_root, name), _stream_note(s, tokens[name], total)
                )
            )
    if tokens[BASE] > 0:
        path = base_path if base_path is not None else _location(fmt, data_root, BASE)
        share = tokens[BASE] / total
        entries.append(
            Entry(BASE, tokens[BASE], path, f"{tokens[BASE]:,} tokens ({share:.2%} of the run): the base mix")
        )
    if not entries:
        raise ExportError(
            f"{where}: total_tokens is 0, there is nothing to export. Re-run `selector select`."
        )
    return entries


def _header(fmt: str, manifest: dict[str, Any], entries: list[Entry], seq_len: int, title: str) -> list[str]:
    meta = {
        "export": EXPORT_FORMAT,
        "format": fmt,
        "manifest": MANIFEST_FORMAT,
        "config_hash": manifest.get("config_hash"),
        "total_tokens": int(manifest["total_tokens"]),
        "seq_len": seq_len,
        "paths": {e.name: e.path for e in entries},
    }
    lines = [
        f"# {title}, written by `selector export` from a {MANIFEST_FORMAT} manifest.",
        HEADER + json.dumps(meta, separators=(",", ":")),
        f"# run: total_tokens={int(manifest['total_tokens'])} seq_len={seq_len} "
        f"(about {_samples(int(manifest['total_tokens']), seq_len):,} sequences)",
        "# Each stream is drawn once: <data_root>/<theme> holds its documents already repeated per the manifest"
        + (
            " (written by `selector materialize`, or by this `dolma mix`)."
            if fmt == "dolma"
            else " (RUN/materialized/<theme>, tokenized)."
        ),
    ]
    lines += [f"# {e.name}: {e.note}" for e in entries]
    names = {e.name for e in entries}
    lines += [
        f"# {s['theme']}: no tokens selected, left out of the mix"
        for s in manifest["streams"]
        if str(s["theme"]) not in names
    ]
    return lines


def _samples(total_tokens: int, seq_len: int) -> int:
    """Packed sequences of `seq_len` tokens in the run: total / seq_len, rounded to the nearest (at least 1)."""
    return max(1, (2 * total_tokens + seq_len) // (2 * seq_len))


def _yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 20)


def _text(lines: list[str], body: str = "") -> bytes:
    return ("\n".join(lines) + "\n" + body).encode()


# ---------------------------------------------------------------------------------------------- writers


def megatron_sidecar(out: Path) -> Path:
    """Megatron reads a --data-args-path file as whitespace-separated words, so the blend file holds only
    `weight prefix` pairs and its notes (and the header the check reads) go beside it."""
    return out.with_name(out.name + ".selector.txt")


def _write_megatron(manifest: dict[str, Any], entries: list[Entry], out: Path, seq_len: int) -> None:
    spaced = [e.path for e in entries if any(ch.isspace() for ch in e.path)]
    if spaced:
        raise ExportError(
            f"Megatron splits --data-path on whitespace, and {spaced[0]!r} holds some. "
            "Use a --data-root (or --base-path) without spaces."
        )
    pairs = [f"{e.tokens} {e.path}" for e in entries]
    lines = _header(
        manifest=manifest, fmt="megatron", entries=entries, seq_len=seq_len, title="Megatron-LM data blend"
    )
    samples = _samples(int(manifest["total_tokens"]), seq_len)
    lines += [
        f"# Megatron gives each prefix weight / sum(weights) of --train-samples {samples} (--seq-length {seq_len}).",
        f"# {MEGATRON_SPLIT}: Megatron-LM's default --split 969,30,1 would send 3.1% of every stream (and so of",
        "# every upsampled document's repeats) to validation and test; evaluate on data of your own instead.",
        f"# Megatron-LM: pretrain_gpt.py --data-args-path {out.as_posix()} {MEGATRON_SPLIT} --train-samples {samples} "
        f"--seq-length {seq_len}",
        "# or, instead of --data-args-path, --data-path " + " ".join(pairs),
    ]
    atomic_write(megatron_sidecar(out), _text(lines))
    atomic_write(out, "".join(p + "\n" for p in pairs).encode())


def _write_olmo_core(manifest: dict[str, Any], entries: list[Entry], out: Path, seq_len: int) -> None:
    total = int(manifest["total_tokens"])
    global_batch = (
        seq_len  # one instance per step: the run is exactly requested_tokens, rounded up to an instance
    )
    sources = []
    for e in entries:
        # max_repetition_ratio 1: each stream is already repeated, and the base mix must not be read twice
        sources.append(
            {
                "source_name": e.name,
                "target_ratio": e.tokens / total,
                "max_repetition_ratio": 1.0,
                "paths": [e.path],
            }
        )
    lines = _header(
        manifest=manifest,
        fmt="olmo-core",
        entries=entries,
        seq_len=seq_len,
        title="OLMo-core SourceMixtureDatasetConfig",
    )
    lines += [
        f"# Use with sequence_length {seq_len}. global_batch_size ({global_batch:,} tokens) only rounds the run up to "
        "whole batches: set it to your train config's.",
        "# OLMo-core refuses a source with fewer tokens than int(requested_tokens * target_ratio). The figures are "
        "selector's estimate (ceil(chars / 4)):",
        "# if your tokenizer yields fewer, lower requested_tokens by the ratio OLMo-core reports (the override "
        "requested_tokens=N), not max_repetition_ratio.",
    ]
    body = _yaml(
        {"requested_tokens": total, "global_batch_size": global_batch, "source_list": {"sources": sources}}
    )
    atomic_write(out, _text(lines, body))


def _write_mosaic(manifest: dict[str, Any], entries: list[Entry], out: Path, seq_len: int) -> None:
    total = int(manifest["total_tokens"])
    streams = {}
    for e in entries:
        key = "remote" if "://" in e.path else "local"
        streams[e.name] = {key: e.path, "proportion": e.tokens / total}
    lines = _header(
        manifest=manifest,
        fmt="mosaic",
        entries=entries,
        seq_len=seq_len,
        title="LLM Foundry train_loader (MosaicML Streaming)",
    )
    lines += [
        f"# epoch_size counts packed samples of max_seq_len tokens (MDS written with --concat_tokens {seq_len}): "
        f"round(total_tokens / {seq_len}).",
        "# Train for one epoch (max_duration: 1ep); num_workers is LLM Foundry's dataloader setting, set it to yours.",
    ]
    dataset = {
        "max_seq_len": seq_len,
        "shuffle": True,
        "epoch_size": _samples(total, seq_len),
        "streams": streams,
    }
    loader = {"name": "text", "dataset": dataset, "drop_last": True, "num_workers": MOSAIC_WORKERS}
    body = _yaml({"train_loader": loader})
    atomic_write(out, _text(lines, body))


def _write_nanotron(manifest: dict[str, Any], entries: list[Entry], out: Path, seq_len: int) -> None:
    total = int(manifest["total_tokens"])
    lines = _header(
        manifest=manifest,
        fmt="nanotron",
        entries=entries,
        seq_len=seq_len,
        title="nanotron data_stages (Nanoset)",
    )
    lines += [
        f"# Nanoset normalises dataset_weights (each stream's share of the run's tokens); set "
        f"tokens.sequence_length {seq_len} and",
        f"# tokens.train_steps * micro_batch_size * batch_accumulation_per_replica * dp = {_samples(total, seq_len):,} "
        "sequences.",
    ]
    stage = {
        "name": "selector mix",
        "start_training_step": 1,
        "data": {
            "dataset": {
                "dataset_folder": [e.path for e in entries],
                "dataset_weights": [e.tokens / total for e in entries],
            },
            "seed": int(manifest.get("seed") or 0),
            "num_loading_workers": 1,
        },
    }
    atomic_write(out, _text(lines, _yaml({"data_stages": [stage]})))


def _scores_dir(mdir: Path, manifest: dict[str, Any]) -> Path:
    given = manifest.get("scores_dir")
    candidates = [Path(given)] if given else []
    candidates.append(mdir.parent / "scores")  # the run directory moved since `selector select`
    for c in candidates:
        if c.is_dir():
            return c
    raise ExportError(
        f"the scores of {mdir / 'manifest.json'} are not at {given} nor at {mdir.parent / 'scores'}. "
        "The dolma export reads every scored document: restore the scores directory beside the manifest."
    )


def _attribute_name(label: str) -> str:
    """The attribute file of an input shard: the shard's own name if it is gzipped JSONL, else `.jsonl.gz`."""
    if label.endswith(".gz"):
        return label
    for suf in _INPUT_SUFFIXES:
        if label.endswith(suf):
            return label[: -len(suf)] + ".jsonl.gz"
    return label + ".jsonl.gz"


def _dolma_files(mdir: Path, manifest: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(input, attribute file name) for every input shard of the manifest, in manifest order."""
    inputs = manifest.get("inputs") or []
    if not inputs:
        raise ExportError(f"{mdir / 'manifest.json'} lists no inputs. Re-run `selector select`.")
    seen: dict[str, str] = {}
    out = []
    for inp in inputs:
        name = _attribute_name(str(inp["label"]))
        if name in seen:
            raise ExportError(
                f"input shards {seen[name]} and {inp['label']} both map to attribute file {name}; dolma needs "
                "one documents file per attribute file. Rename one shard and re-run `selector score`."
            )
        seen[name] = str(inp["label"])
        out.append((inp, name))
    return out


def _score_part(sdir: Path, inp: dict[str, Any]) -> Path:
    part = sdir / f"{inp['part']}.parquet"
    if not part.is_file() or not (sdir / f"{inp['part']}.done").is_file():
        raise ExportError(
            f"score part {part} is missing or unfinished (no .done marker). "
            "Rerun the same `selector score` command to finish it."
        )
    return part


def _attr_keys(themes: list[str], streams: list[str]) -> tuple[list[str], list[str], str]:
    score_keys = [ATTR_PREFIX + t for t in themes]
    stream_keys = [f"{ATTR_PREFIX}stream_{s}" for s in streams]
    repeats_key = ATTR_PREFIX + "repeats"
    keys = [*score_keys, *stream_keys, repeats_key]
    clash = [t for t in themes if t == "repeats" or t.startswith("stream_")]
    if clash or len(set(keys)) != len(keys):
        raise ExportError(
            f"dolma attribute names would collide: themes may not be named 'repeats' or 'stream_*' "
            f"(found {', '.join(clash) or 'a duplicate'}). Rename the theme in the config."
        )
    return score_keys, stream_keys, repeats_key


def _dolma_doc_path(out: Path, copy: int, name: str) -> Path:
    """The documents file of one input shard: every scored document (copy 0), or the extra copy `copy`."""
    return out / "documents" / (name if copy == 0 else f"copy-{copy}/{name}")


def dolma_attribute_path(documents: str) -> str:
    """Where dolma looks for the attributes of a documents file: `documents/` replaced by `attributes/selector/`."""
    head, sep, tail = documents.rpartition("/documents/")
    if not sep:
        raise ExportError(f"dolma documents path {documents!r} has no `/documents/` part. Export again.")
    return f"{head}/attributes/{ATTRIBUTE_SET}/{tail}"


class _GzLines:
    """A gzipped JSONL file written to a temporary name, moved into place by `close`."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.raw = self.tmp.open("wb")
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0)

    def write(self, obj: dict[str, Any]) -> None:
        self.gz.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")

    def close(self) -> None:
        self.gz.close()
        self.raw.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.raw.close()
        self.tmp.unlink(missing_ok=True)


def _write_dolma_shard(
    out: Path,
    name: str,
    inp: dict[str, Any],
    part: Path,
    selected: pl.DataFrame,
    streams: list[str],
    cfg: Any,
    where: Path,
) -> tuple[int, set[str]]:
    """Write the documents and attribute files of one input shard: `documents/<name>` (every scored
    document, id = doc_id) and `documents/copy-<c>/<name>` (the c-th extra copy of the documents with more
    than c repeats, id `<doc_id>#copy<c>`), each with its attribute file. Returns (selected documents seen,
    the files written relative to `out`)."""
    from selector.export.documents import ID_FORMAT
    from selector.read.back import read_back

    schema = pl.read_parquet_schema(part)
    themes = [c[len("score_") :] for c in schema if c.startswith("score_")]
    score_keys, stream_keys, repeats_key = _attr_keys(themes, streams)
    score_cols = [f"score_{t}" for t in themes]
    scored = (
        pl.read_parquet(part, columns=["doc_id", "source", "row", "n_chars", *score_cols])
        .join(selected, on=["source", "row"], how="left")
        .sort("row")
    )
    src = str(inp["source"])
    files: dict[tuple[str, int], _GzLines] = {}
    written: set[str] = set()

    def sink(kind: str, copy: int) -> _GzLines:
        if (kind, copy) not in files:
            doc = _dolma_doc_path(out, copy, name)
            path = doc if kind == "documents" else Path(dolma_attribute_path(doc.as_posix()))
            files[(kind, copy)] = _GzLines(path)
            written.add(path.relative_to(out).as_posix())
        return files[(kind, copy)]

    n_selected = 0
    try:
        sink("documents", 0)  # a shard with no scored document still gets its (empty) files
        sink("attributes", 0)
        needed = scored.select("source", "row", "doc_id", "n_chars")
        batches = read_back([inp], cfg, needed, where) if needed.height else iter(())
        for batch in batches:
            rows = batch.select("row", "text").join(scored, on="row", how="left").sort("row")
            for rec in rows.iter_rows(named=True):
                n = int(rec["n_chars"])
                theme = rec["theme"]
                r = int(rec["repeats"]) if theme is not None else 0
                n_selected += theme is not None
                attrs: dict[str, Any] = {
                    k: [[0, n, short_float(rec[c])]] for k, c in zip(score_keys, score_cols, strict=True)
                }
                for s, k in zip(streams, stream_keys, strict=True):
                    attrs[k] = [[0, n, r if s == theme else 0]]
                attrs[repeats_key] = [[0, n, r]]
                meta = {"source": src, "row": int(rec["row"]), "theme": theme, "repeats": r}
                for c in range(max(r, 1)):
                    uid = str(rec["doc_id"]) if c == 0 else ID_FORMAT.format(doc_id=rec["doc_id"], copy=c)
                    text = {"id": uid, "text": rec["text"], "source": "selector", "metadata": meta}
                    sink("documents", c).write(text)
                    sink("attributes", c).write({"id": uid, "attributes": attrs})
    except BaseException:
        for f in files.values():
            f.abort()
        raise
    for f in files.values():
        f.close()
    return n_selected, written


def _write_dolma(manifest: dict[str, Any], entries: list[Entry], out: Path, seq_len: int, mdir: Path) -> None:
    from selector.read.back import read_config

    streams = [str(s["theme"]) for s in manifest["streams"]]
    docs_path = mdir / str((manifest.get("files") or {}).get("documents", "documents.parquet"))
    if not docs_path.is_file():
        raise ExportError(f"{docs_path} is missing. Re-run `selector select` to rewrite the manifest.")
    if "/documents/" in out.as_posix() + "/":
        raise ExportError(
            f"dolma finds attribute files by replacing `/documents/` in a documents path, and {out} has a "
            "folder named documents already. Choose an --out outside any folder named `documents`."
        )
    # documents are matched by where they are (shard and row), so ids repeated across shards are fine
    selected = pl.read_parquet(docs_path, columns=["source", "row", "theme", "repeats"])
    if selected.select(pl.struct("source", "row").n_unique()).item() != selected.height:
        raise ExportError(f"{docs_path} lists a document twice; re-run `selector select` to rewrite it.")
    inputs = _dolma_files(mdir, manifest)
    sdir = _scores_dir(mdir, manifest)
    parts = [_score_part(sdir, inp) for inp, _name in inputs]  # all checked before anything is written
    cfg = read_config(manifest, mdir / "manifest.json")
    matched = 0
    written: set[str] = set()
    for (inp, name), part in zip(inputs, parts, strict=True):
        n, files = _write_dolma_shard(out, name, inp, part, selected, streams, cfg, mdir / "manifest.json")
        matched += n
        written |= files
    if matched != selected.height:
        raise ExportError(
            f"{docs_path} lists {selected.height:,} documents but the score parts hold {matched:,} of them "
            "(by shard and row). Re-run `selector score` and `selector select`."
        )
    for sub in ("documents", "attributes"):  # files of shards or copies an earlier export had
        for stale in (out / sub).rglob("*.jsonl.gz") if (out / sub).is_dir() else []:
            if stale.relative_to(out).as_posix() not in written:
                stale.unlink()
    tokens = {e.name: e for e in entries}
    repeats = selected.group_by("theme").agg(pl.col("repeats").max()).rows() if selected.height else []
    max_rep = {str(t): int(r) for t, r in repeats}

    def documents(copy: int) -> list[str]:
        paths = [_dolma_doc_path(out, copy, name) for _inp, name in inputs]
        return [p.as_posix() for p in paths if p.relative_to(out).as_posix() in written]

    def output(path: str) -> dict[str, Any]:
        return {"path": path, "max_size_in_bytes": DOLMA_MAX_BYTES}

    mix = []
    for s in streams:
        if s not in tokens:
            continue
        for k in range(1, max_rep.get(s, 0) + 1):
            mix.append(
                {
                    "name": f"{s}-{k}",
                    "documents": documents(k - 1),
                    "attributes": [ATTRIBUTE_SET],
                    "filter": {"include": [f"$.attributes[?(@.{ATTR_PREFIX}stream_{s}[0][2] >= {k})]"]},
                    "output": output(tokens[s].path),
                }
            )
    if BASE in tokens:
        mix.append(
            {
                "name": BASE,
                "documents": documents(0),
                "attributes": [ATTRIBUTE_SET],
                # dolma mix wants a filter on every stream: this one keeps every scored document
                "filter": {"include": [f"$.attributes[?(@.{ATTR_PREFIX}repeats[0][2] >= 0)]"]},
                "output": output(tokens[BASE].path),
            }
        )
    lines = _header(
        manifest=manifest, fmt="dolma", entries=entries, seq_len=seq_len, title="dolma mix config"
    )
    lines += [
        f"# Run: dolma -c {(out / DOLMA_MIX).as_posix()} mix",
        f"# {(out / 'documents').as_posix()} holds every scored document (id = doc_id) and, under copy-<c>/, the c-th "
        "extra copy of each document repeated more than c times (id <doc_id>#copy<c>);",
        f"# {(out / 'attributes' / ATTRIBUTE_SET).as_posix()} holds their attributes, line for line. Stream "
        "<theme>-<k> keeps the documents with at least k repeats,",
        "# so the copies together write each stream repeated as in the manifest (as `selector materialize` "
        "does), as JSON text to be tokenized.",
    ]
    atomic_write(out / DOLMA_MIX, _text(lines, _yaml({"streams": mix, "processes": 1})))


# --------------------------------------------------------------------------------------------- readers


def _read_header(path: Path) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        raise ExportError(f"no export at {path}. Run `selector export MANIFEST --format F --out {path}`.")
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith(HEADER):
            try:
                meta = json.loads(line[len(HEADER) :])
            except json.JSONDecodeError as e:
                raise ExportError(f"{path}: the {HEADER.strip()} line is not valid JSON ({e}).") from e
            if isinstance(meta, dict) and meta.get("export") == EXPORT_FORMAT:
                return meta, text
    raise ExportError(
        f"{path} has no `{HEADER.strip()}` line with export {EXPORT_FORMAT!r}: it was not written by this "
        "`selector export`. Export again."
    )


def _by_path(meta: dict[str, Any], path: str, where: Path) -> str:
    names = [n for n, p in meta["paths"].items() if p == path]
    if len(names) != 1:
        raise ExportError(f"{where}: path {path!r} is not one of the streams the header lists. Export again.")
    return names[0]


def _load_yaml(text: str, where: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ExportError(f"{where} is not valid YAML ({e}). Export again.") from e


def _proportional(weights: dict[str, float], total: float, where: Path) -> dict[str, float]:
    s = sum(weights.values())
    if s <= 0 or any(w < 0 for w in weights.values()):
        raise ExportError(f"{where}: weights must be >= 0 with a positive sum, got {weights}. Export again.")
    return {n: w / s * total for n, w in weights.items()}


def _read_megatron(path: Path) -> dict[str, float]:
    meta, _ = _read_header(megatron_sidecar(path))
    if not path.is_file():
        raise ExportError(
            f"no export at {path}. Run `selector export MANIFEST --format megatron --out {path}`."
        )
    words = path.read_text().split()  # as Megatron reads --data-args-path
    if len(words) % 2:
        raise ExportError(
            f"{path}: expected `weight prefix` pairs, got an odd number of words. Export again."
        )
    weights: dict[str, float] = {}
    for w, prefix in zip(words[::2], words[1::2], strict=True):
        try:
            value = float(w)
        except ValueError:
            raise ExportError(
                f"{path}: {w!r} is not a weight (expected `weight prefix` pairs). Export again."
            ) from None
        name = _by_path(meta, prefix, path)
        weights[name] = weights.get(name, 0.0) + value
    return _proportional(weights, float(meta["total_tokens"]), path)


def _read_olmo_core(path: Path) -> dict[str, float]:
    _meta, text = _read_header(path)
    doc = _load_yaml(text, path)
    try:
        requested = float(doc["requested_tokens"])
        out: dict[str, float] = {}
        for src in doc["source_list"]["sources"]:
            name = str(src["source_name"])
            out[name] = out.get(name, 0.0) + float(src["target_ratio"]) * requested
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{path}: not a SourceMixtureDatasetConfig ({e!r} missing or malformed).") from e
    return out


def _read_mosaic(path: Path) -> dict[str, float]:
    _meta, text = _read_header(path)
    doc = _load_yaml(text, path)
    try:
        ds = doc["train_loader"]["dataset"]
        tokens = float(ds["epoch_size"]) * float(ds["max_seq_len"])
        props = {str(n): float(s["proportion"]) for n, s in ds["streams"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ExportError(f"{path}: not an LLM Foundry train_loader with streams ({e!r}).") from e
    return _proportional(props, tokens, path)


def _read_nanotron(path: Path) -> dict[str, float]:
    meta, text = _read_header(path)
    doc = _load_yaml(text, path)
    try:
        ds = doc["data_stages"][0]["data"]["dataset"]
        folders, ws = ds["dataset_folder"], ds["dataset_weights"]
        if not isinstance(folders, list) or not isinstance(ws, list) or len(folders) != len(ws):
            raise TypeError("dataset_folder and dataset_weights must be lists of one length")
        weights: dict[str, float] = {}
        for p, w in zip(folders, ws, strict=True):
            name = _by_path(meta, str(p), path)
            weights[name] = weights.get(name, 0.0) + float(w)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ExportError(
            f"{path}: not a nanotron data_stages dataset with dataset_folder and dataset_weights lists ({e!r})."
        ) from e
    return _proportional(weights, float(meta["total_tokens"]), path)


def _iter_attribute_lines(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def _read_dolma(out: Path, mdir: Path, manifest: dict[str, Any]) -> dict[str, float]:
    """Tokens each stream of mix.yaml writes, read as `dolma mix` reads them: every documents file's
    attribute file (found as dolma finds it), each line kept where the stream's filter holds; also checks
    that no output gets one id twice."""
    meta, text = _read_header(out / DOLMA_MIX)
    doc = _load_yaml(text, out / DOLMA_MIX)
    where = out / DOLMA_MIX
    derived: dict[str, float] = {}
    ids: dict[str, set[str]] = {}
    base_filter = f"$.attributes[?(@.{ATTR_PREFIX}repeats[0][2] >= 0)]"
    has_base = False
    for st in doc.get("streams") or []:
        include = (st.get("filter") or {}).get("include") or []
        if st.get("name") == BASE:
            if include != [base_filter]:
                raise ExportError(f"{where}: stream base has filter {include}; expected [{base_filter!r}].")
            has_base = True
            continue
        m = _COPY_FILTER.match(include[0]) if len(include) == 1 else None
        if m is None:
            raise ExportError(f"{where}: stream {st.get('name')!r} has an unexpected filter {include}.")
        key, k = ATTR_PREFIX + "stream_" + m["stream"], int(m["k"])
        seen = ids.setdefault(str((st.get("output") or {}).get("path")), set())
        got = 0
        for docs in st.get("documents") or []:
            path = Path(dolma_attribute_path(str(docs)))
            if not path.is_file():
                raise ExportError(f"attribute file {path} (of {docs}) is missing. Export again.")
            for rec in _iter_attribute_lines(path):
                spans = rec["attributes"].get(key)
                if not spans:
                    continue
                start, end, r = spans[0]
                if start != 0 or len(spans) != 1:
                    raise ExportError(
                        f"{path}: {rec['id']} has span {spans} for {key}; expected [[0, n_chars, v]]."
                    )
                if r >= k:
                    if rec["id"] in seen:
                        raise ExportError(
                            f"{where}: id {rec['id']!r} would be written twice to {st['output']['path']}. Export again."
                        )
                    seen.add(rec["id"])
                    got += -(-int(end) // CHARS_PER_TOKEN)
        derived[m["stream"]] = derived.get(m["stream"], 0.0) + got
    if has_base:
        derived[BASE] = float(meta["total_tokens"]) - sum(derived.values())
    return derived


_WRITERS: dict[str, Callable[[dict[str, Any], list[Entry], Path, int], None]] = {
    "megatron": _write_megatron,
    "olmo-core": _write_olmo_core,
    "mosaic": _write_mosaic,
    "nanotron": _write_nanotron,
}
_READERS: dict[str, Callable[[Path], dict[str, float]]] = {
    "megatron": _read_megatron,
    "olmo-core": _read_olmo_core,
    "mosaic": _read_mosaic,
    "nanotron": _read_nanotron,
}


# ------------------------------------------------------------------------------------------ public API


def verify_export(
    manifest_dir: str | Path, fmt: str, out: str | Path, tolerance: float = TOLERANCE
) -> dict[str, dict[str, float]]:
    """Re-read the written export and compare each stream's tokens with manifest.json; raises ExportError
    when one is off by more than `tolerance` (relative). Returns {stream: {manifest_tokens, export_tokens,
    rel_error}}, streams in manifest order, then `base`."""
    _check_format(fmt)
    mdir, manifest = load_manifest(manifest_dir, ("total_tokens", "streams"))
    expected = manifest_tokens(manifest, mdir / "manifest.json")
    out_p = Path(out)
    derived = _read_dolma(out_p, mdir, manifest) if fmt == "dolma" else _READERS[fmt](out_p)
    unknown = sorted(set(derived) - set(expected))
    if unknown:
        raise ExportError(
            f"{out}: streams {', '.join(unknown)} are not in {mdir / 'manifest.json'}. Export again."
        )
    figures: dict[str, dict[str, float]] = {}
    bad = []
    for name, want in expected.items():
        got = derived.get(name, 0.0)
        err = abs(got - want) / want if want else (0.0 if got == 0 else math.inf)
        figures[name] = {"manifest_tokens": want, "export_tokens": round(got, 2), "rel_error": round(err, 8)}
        if err > tolerance:
            bad.append(f"{name}: {got:,.0f} tokens in the export, {want:,} in the manifest ({err:.2%} off)")
    if bad:
        if fmt == "mosaic":
            hint = (
                " epoch_size counts whole samples of max_seq_len tokens, too coarse for this small a run: "
                "use a smaller --seq-len."
            )
        else:
            hint = " Do not train on it; export again from the current manifest."
        raise ExportError(
            f"export {out} ({fmt}) disagrees with {mdir / 'manifest.json'} beyond {tolerance:.1%}: "
            + "; ".join(bad)
            + "."
            + hint
        )
    return figures


# what each trainer rounds a stream's draw to, for the small-run warning
_UNITS = {
    "megatron": "Megatron's blend draws whole samples per prefix (within one sample of each share)",
    "olmo-core": "OLMo-core rounds each .npy file down to whole instances, then tops the run up by whole instances",
    "mosaic": "Streaming draws whole samples per stream (proportion * epoch_size, rounded)",
    "nanotron": "Nanoset draws whole samples per folder, and a shuffled subset of them when the folders hold more",
}


def rounding_error(fmt: str, tokens: int, seq_len: int) -> float:
    """The relative error a trainer's whole-sample rounding can put on a stream of `tokens` tokens: one sample
    of `seq_len` (Megatron, Streaming, OLMo-core per file); for Nanoset also the spread of drawing
    `tokens / seq_len` samples as a shuffled subset, about their square root; 0 for dolma (whole documents)."""
    if fmt == "dolma" or tokens <= 0:
        return 0.0
    samples = tokens / seq_len
    off = max(1.0, math.sqrt(samples)) if fmt == "nanotron" else 1.0
    return off / samples


def rounding_warnings(
    fmt: str, entries: list[Entry], seq_len: int, tolerance: float = TOLERANCE
) -> list[str]:
    """One warning per stream that the trainer's rounding can move by more than `tolerance`."""
    out = []
    for e in entries:
        err = rounding_error(fmt, e.tokens, seq_len)
        if err > tolerance:
            need = seq_len / tolerance if fmt != "nanotron" else seq_len / tolerance**2
            out.append(
                f"{e.name}: {e.tokens:,} tokens are {e.tokens / seq_len:,.1f} samples of {seq_len}; "
                f"{_UNITS[fmt]}, so expect it up to {err:.1%} off its share (the export itself matches the "
                f"manifest). A stream needs about {math.ceil(need):,} tokens to stay within {tolerance:.1%}: use "
                "a smaller --seq-len or a longer run."
            )
    return out


def export(
    manifest_dir: str | Path,
    fmt: str,
    out: str | Path,
    *,
    data_root: str | None = None,
    base_path: str | None = None,
    seq_len: int = 2048,
) -> dict[str, Any]:
    """Write the manifest's mix for trainer `fmt` to `out` (a file; a directory for dolma), verify it by
    reading it back, and return {format, out, streams: {name: {manifest_tokens, export_tokens, rel_error,
    rounding_error}}, warnings}. `data_root` defaults to `tokenized`, for dolma to `<out>/mixed`; the
    dolma export writes every path absolute (dolma resolves them against where it runs)."""
    _check_format(fmt)
    if seq_len < 1:
        raise ExportError(f"seq_len must be >= 1, got {seq_len}.")
    if data_root == "":
        raise ExportError("data_root must not be empty; pass where the tokenized streams will live.")
    out_p = Path(out)
    if fmt == "dolma":
        out_p = out_p.resolve()
        data_root = _absolute(data_root) if data_root is not None else (out_p / "mixed").as_posix()
        base_path = _absolute(base_path) if base_path is not None else None
    mdir, manifest = load_manifest(manifest_dir, ("total_tokens", "streams"))
    entries = plan(manifest, mdir / "manifest.json", fmt, data_root or "tokenized", base_path)
    if fmt == "dolma":
        if out_p.exists() and not out_p.is_dir():
            raise ExportError(f"{out} is a file; the dolma export is a directory. Choose another --out.")
        # its own files: mix.yaml, documents/ (with copy-<c>/), attributes/ and the mix's outputs under mixed/
        foreign = foreign_files(
            out_p,
            lambda rel: (
                rel == DOLMA_MIX
                or rel.startswith(("documents/", "mixed/"))
                or (rel.startswith("attributes/") and rel.endswith(".jsonl.gz"))
            ),
        )
        if foreign:
            raise ExportError(
                foreign_files_message(out_p, foreign, "selector export", "a failed export check would delete")
            )
        _write_dolma(manifest, entries, out_p, seq_len, mdir)
    else:
        if out_p.is_dir():
            raise ExportError(
                f"{out} is a directory; the {fmt} export is one file. Choose a file path for --out."
            )
        _WRITERS[fmt](manifest, entries, out_p, seq_len)
    try:
        figures = verify_export(mdir, fmt, out_p)
    except ExportError:
        # an export that disagrees with its manifest must not be trained on: remove it
        if fmt == "dolma":
            shutil.rmtree(out_p, ignore_errors=True)
        else:
            out_p.unlink(missing_ok=True)
            megatron_sidecar(out_p).unlink(missing_ok=True)
        raise
    for e in entries:
        figures[e.name]["rounding_error"] = round(rounding_error(fmt, e.tokens, seq_len), 6)
    for name in figures:
        figures[name].setdefault("rounding_error", 0.0)
    return {
        "format": fmt,
        "out": str(out),
        "streams": figures,
        "warnings": rounding_warnings(fmt, entries, seq_len),
    }
