"""materialize: a hand-built manifest over tiny JSONL and Parquet shards -> shuffled, repeated text shards."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from selector.core.config import ReadConfig
from selector.core.errors import ManifestError
from selector.export import documents as mat
from selector.export.documents import copy_key, materialize
from selector.read.formats import discover_shards, read_shard

THEMES = ["honesty", "cooperation"]
WORDS = [
    "candour",
    "trust",
    "café",
    "naïve",
    'a "quoted" word',
    "line\nbreak",
    "tab\there",
    "日本語",
    "para\u2028sep\x85nel",
    "ok",
]


def _text(i: int) -> str:
    return " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + (i * 7) % 11)) + f" #{i}"


def _write_shards(d: Path, d_ids: list[int]) -> list[dict]:
    """Four shards: JSONL with ids (and a blank line), gzipped JSONL without ids, Parquet with and without."""
    d.mkdir()
    docs: list[dict] = []
    a = [{"id": f"a{i}", "url": f"https://a.example/{i}", "text": _text(i)} for i in range(6)]
    lines = [json.dumps(r) for r in a]
    lines.insert(3, "")  # rows count lines, so a blank line shifts the rows after it
    (d / "a.jsonl").write_text("\n".join(lines) + "\n")
    b = [{"url": None, "text": _text(10 + i)} for i in range(5)]
    (d / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in b).encode(), mtime=0))
    pl.DataFrame([{"text": _text(20 + i)} for i in range(5)]).write_parquet(d / "c.parquet")
    pl.DataFrame([{"id": k, "text": _text(30 + i)} for i, k in enumerate(d_ids)]).write_parquet(
        d / "d.parquet"
    )
    for shard in discover_shards([d]):
        for batch in read_shard(shard, ReadConfig(batch_size=2)):
            docs.extend(batch.to_dicts())
    return docs


def _build_manifest(root: Path, d_ids: tuple[int, ...] = (100, 101, 102, 103)) -> tuple[Path, list[dict]]:
    """A manifest as docs/manifest.md specifies: every document but a few, repeats 1..4, two streams."""
    docs = _write_shards(root / "dumps", list(d_ids))
    rows = []
    for i, doc in enumerate(docs):
        if i % 5 == 4:
            continue  # not selected
        theme = THEMES[i % 2]
        n_chars = len(doc["text"])
        repeats = 1 + (i * 3) % 4
        rows.append(
            {
                "doc_id": doc["doc_id"],
                "source": doc["source"],
                "row": doc["row"],
                "url": doc["url"],
                "theme": theme,
                "score_honesty": 0.5 + (i % 7) / 20,
                "score_cooperation": 0.9 - (i % 5) / 20,
                "n_chars": n_chars,
                "n_tokens": math.ceil(n_chars / 4),
                "repeats": repeats,
                "weight": float(repeats + 1),
                "reason": f"{theme}: {repeats} repeats",
            }
        )
    table = pl.DataFrame(rows).with_columns(pl.col("score_honesty", "score_cooperation").cast(pl.Float32))
    table = table.sort(pl.col("theme").replace_strict({t: i for i, t in enumerate(THEMES)}), "source", "row")
    mdir = root / "run" / "manifest"
    mdir.mkdir(parents=True)
    table.write_parquet(mdir / "documents.parquet")
    streams = [
        {
            "theme": t,
            "unique_documents": table.filter(pl.col("theme") == t).height,
            "achieved_tokens": int(
                table.filter(pl.col("theme") == t)
                .select((pl.col("n_tokens") * pl.col("repeats")).sum())
                .item()
            ),
        }
        for t in THEMES
    ]
    inputs = []
    for i, shard in enumerate(discover_shards([root / "dumps"])):
        st = os.stat(shard.source)
        inputs.append(
            {
                "part": f"part-{i:05d}",
                "source": shard.source,
                "label": shard.label,
                "format": shard.format,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        )
    manifest = {
        "format": "selector-manifest/1",
        "created_at": "2026-11-30T03:00:00Z",
        "selector_version": "0.1.0",
        "seed": 0,
        "config": {"read": dataclasses.asdict(ReadConfig(batch_size=3))},
        "config_hash": "0123456789abcdef",
        "scores_dir": str(root / "run" / "scores"),
        "inputs": inputs,
        "streams": streams,
        "total_tokens": 10_000,
        "files": {
            "documents": "documents.parquet",
            "streams": "streams.parquet",
            "rejected": "rejected.parquet",
        },
    }
    (mdir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return mdir, docs


@pytest.fixture
def run(tmp_path) -> tuple[Path, list[dict]]:
    return _build_manifest(tmp_path)


def _quiet(msg: str) -> None:
    pass


def _read_jsonl(out: Path, theme: str) -> list[dict]:
    rows = []
    for p in sorted((out / theme).glob("part-*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh)
    return rows


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_rows_repeat_each_document_and_keep_its_text(run, tmp_path):
    mdir, inputs = run
    out = tmp_path / "mat"
    summary = materialize(mdir, out, progress=_quiet)
    documents = pl.read_parquet(mdir / "documents.parquet")
    text_at = {(d["source"], d["row"]): d["text"] for d in inputs}
    assert json.loads((out / "materialize.json").read_text()) == summary
    assert sorted(os.listdir(out)) == ["cooperation", "honesty", "materialize.json"]
    for stream in summary["streams"]:
        theme = stream["theme"]
        mine = documents.filter(pl.col("theme") == theme)
        rows = _read_jsonl(out, theme)
        assert len(rows) == stream["rows"] == mine["repeats"].sum()
        assert stream["unique_documents"] == mine.height
        assert stream["tokens"] == (mine["n_tokens"] * mine["repeats"]).sum()
        assert list(rows[0]) == list(mat.COLUMNS)
        assert len({r["id"] for r in rows}) == len(rows)
        copies = Counter(r["doc_id"] for r in rows)
        for doc in mine.iter_rows(named=True):
            assert copies[doc["doc_id"]] == doc["repeats"]
        for r in rows:
            assert r["id"] == f"{r['doc_id']}#copy{r['copy']}"
            assert 0 <= r["copy"] < r["repeats"]
            assert r["theme"] == theme
            assert r["text"] == text_at[(r["source"], r["row"])]
            doc = mine.filter(pl.col("doc_id") == r["doc_id"]).row(0, named=True)
            assert r["score"] == pytest.approx(doc[f"score_{theme}"], abs=1e-6)
            assert (r["url"], r["repeats"]) == (doc["url"], doc["repeats"])
    ids = {r["doc_id"] for t in THEMES for r in _read_jsonl(out, t)}
    assert {"a0", "b.jsonl.gz#1", "c.parquet#0", "100"} <= ids  # derived ids for shards without an id column


def test_shuffled_yet_deterministic(run, tmp_path):
    mdir, _ = run
    materialize(mdir, tmp_path / "one", progress=_quiet)
    materialize(mdir, tmp_path / "two", seed=0, progress=_quiet)
    materialize(mdir, tmp_path / "other", seed=1, progress=_quiet)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    for theme in THEMES:
        rows = _read_jsonl(tmp_path / "one", theme)
        in_input_order = sorted(rows, key=lambda r: (r["source"], r["row"], r["copy"]))
        assert [r["id"] for r in rows] != [r["id"] for r in in_input_order]
        other = _read_jsonl(tmp_path / "other", theme)
        assert [r["id"] for r in other] != [r["id"] for r in rows]
        assert sorted(r["id"] for r in other) == sorted(r["id"] for r in rows)
        # the order is the copies sorted by their seeded key, whatever the input order
        keys = [copy_key(0, r["doc_id"], r["copy"]) for r in rows]
        assert keys == sorted(keys)


def test_copy_key_is_pinned():
    """The shuffle order of every materialized stream hangs on this hash: a change must be deliberate."""
    assert copy_key(0, "a0", 0) == 0x94CC9AC2F9899F81
    assert copy_key(1, "a0", 0) != copy_key(0, "a0", 0) != copy_key(0, "a0", 1)


def test_small_shards_stay_under_the_bound_and_equal_one_shard(run, tmp_path, monkeypatch):
    mdir, _ = run
    one = materialize(mdir, tmp_path / "one", progress=_quiet)
    bound = 600
    many = materialize(mdir, tmp_path / "many", max_shard_bytes=bound, progress=_quiet)
    monkeypatch.setattr(mat, "SPILL_MIN_BUCKET_BYTES", 1)  # many spill buckets too
    buckets = materialize(mdir, tmp_path / "buckets", max_shard_bytes=bound, progress=_quiet)
    assert _files(tmp_path / "many") == _files(tmp_path / "buckets")
    assert buckets == many
    for s_one, s_many in zip(one["streams"], many["streams"], strict=True):
        assert len(s_one["files"]) == 1 and len(s_many["files"]) > 2
        assert s_one["rows"] == s_many["rows"] and s_one["tokens"] == s_many["tokens"]
        for f in s_many["files"]:
            blob = gzip.decompress((tmp_path / "many" / f["path"]).read_bytes())
            assert len(blob.decode().splitlines()) == f["rows"]  # no raw U+2028 or U+0085 in a line
            lines = blob.splitlines(keepends=True)
            assert f["jsonl_bytes"] == sum(map(len, lines)) and f["rows"] == len(lines)
            assert f["jsonl_bytes"] <= bound or len(lines) == 1
            assert sum(map(len, lines[:-1])) <= bound  # under the bound plus one document
        theme = s_one["theme"]
        assert _read_jsonl(tmp_path / "many", theme) == _read_jsonl(tmp_path / "one", theme)


def test_parquet_output_holds_the_same_rows(run, tmp_path):
    mdir, _ = run
    summary = materialize(mdir, tmp_path / "pq", fmt="parquet", progress=_quiet)
    again = materialize(mdir, tmp_path / "pq2", fmt="parquet", progress=_quiet)
    materialize(mdir, tmp_path / "js", progress=_quiet)
    assert summary["file_format"] == "parquet" and _files(tmp_path / "pq") == _files(tmp_path / "pq2")
    assert summary["streams"] == again["streams"]
    for theme in THEMES:
        df = pl.read_parquet(tmp_path / "pq" / theme / "part-00000.parquet")
        assert df.columns == list(mat.COLUMNS)
        assert df.schema["score"] == pl.Float32 and df.schema["copy"] == pl.Int64
        js = pl.DataFrame(_read_jsonl(tmp_path / "js", theme), schema=df.schema)
        assert df.equals(js)


def test_accepts_the_run_directory_and_replaces_an_earlier_output(run, tmp_path):
    mdir, _ = run
    out = tmp_path / "mat"
    materialize(mdir, out, progress=_quiet)
    materialize(mdir.parent, out, seed=3, progress=_quiet)
    assert json.loads((out / "materialize.json").read_text())["seed"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a file it did not write (a tokenizer's output, say) would be deleted by the replacement: refused
    (out / "honesty" / "tokens.bin").write_text("tokenized")
    with pytest.raises(
        ManifestError,
        match=r"holds 1 file\(s\) `selector materialize` did not write \(e.g. honesty/tokens.bin\)",
    ):
        materialize(mdir.parent, out, seed=4, progress=_quiet)
    assert (out / "honesty" / "tokens.bin").read_text() == "tokenized"


def test_refuses_to_overwrite_a_directory_it_did_not_write(run, tmp_path):
    mdir, _ = run
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ManifestError, match="is not the output of `selector materialize`"):
        materialize(mdir, out, progress=_quiet)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_modified_input_shard_is_a_clear_error(run, tmp_path):
    mdir, _ = run
    shard = tmp_path / "dumps" / "c.parquet"
    pl.DataFrame([{"text": "new text"}]).write_parquet(shard)
    out = tmp_path / "mat"
    with pytest.raises(ManifestError) as e:
        materialize(mdir, out, progress=_quiet)
    assert str(shard) in str(e.value) and "changed since it was scored" in str(e.value)
    assert "selector score" in str(e.value) and "selector select" in str(e.value)
    assert not out.exists()
    shard.unlink()
    with pytest.raises(ManifestError, match=f"input {shard} .*no longer exists"):
        materialize(mdir, out, progress=_quiet)


def test_a_wrong_doc_id_at_a_row_is_a_clear_error(run, tmp_path):
    mdir, _ = run
    path = mdir / "documents.parquet"
    docs = pl.read_parquet(path)
    target = docs.filter(pl.col("source").str.ends_with("a.jsonl")).row(1, named=True)
    wrong = pl.when((pl.col("source") == target["source"]) & (pl.col("row") == target["row"]))
    docs.with_columns(wrong.then(pl.lit("not-a")).otherwise(pl.col("doc_id")).alias("doc_id")).write_parquet(
        path
    )
    out = tmp_path / "mat"
    with pytest.raises(ManifestError) as e:
        materialize(mdir, out, progress=_quiet)
    msg = str(e.value)
    assert f"{target['source']} row {target['row']}" in msg
    assert "expects document 'not-a'" in msg and f"holds {target['doc_id']!r}" in msg
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_missing_row_is_a_clear_error(run, tmp_path):
    mdir, _ = run
    path = mdir / "documents.parquet"
    docs = pl.read_parquet(path)
    source = docs.filter(pl.col("source").str.ends_with("a.jsonl"))["source"][0]
    docs.with_columns(
        pl.when((pl.col("source") == source) & (pl.col("row") == 0))
        .then(3)
        .otherwise(pl.col("row"))
        .alias("row")
    ).write_parquet(path)  # row 3 of a.jsonl is the blank line
    with pytest.raises(ManifestError, match=f"{source} row 3: document 'a0' is not there"):
        materialize(mdir, tmp_path / "mat", progress=_quiet)


def test_a_doc_id_shared_by_two_documents_gets_its_shard_and_row(tmp_path):
    mdir, _ = _build_manifest(tmp_path, d_ids=(100, 101, 100, 103))  # rows 0 and 2 of d.parquet: id "100"
    out = tmp_path / "mat"
    materialize(mdir, out, progress=_quiet)
    rows = [r for t in THEMES for r in _read_jsonl(out, t)]
    assert len({r["id"] for r in rows}) == len(rows)
    shared = sorted({r["id"].rsplit("#copy", 1)[0] for r in rows if r["doc_id"] == "100"})
    assert shared == ["100@d.parquet#0", "100@d.parquet#2"]
