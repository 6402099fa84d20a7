from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from selector.core.config import ReadConfig
from selector.core.errors import InputError
from selector.read.formats import ShardCounts, discover_shards, read_shard

from .conftest import write_jsonl

DOCS = [
    {"id": f"d{i}", "url": f"https://x.example/{i}", "text": f"document number {i} " * 3} for i in range(7)
]


def read_all(path, cfg=None):
    counts = ShardCounts()
    (shard,) = discover_shards([path])
    frames = list(read_shard(shard, cfg or ReadConfig(batch_size=3), counts))
    df = pl.concat(frames) if frames else pl.DataFrame()
    return df, counts


def test_jsonl_batches_are_bounded_and_complete(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", DOCS)
    counts = ShardCounts()
    (shard,) = discover_shards([p])
    sizes = [b.height for b in read_shard(shard, ReadConfig(batch_size=3), counts)]
    assert sizes == [3, 3, 1]
    assert counts.documents_in == 7 and counts.yielded == 7 and counts.n_skipped == 0


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".parquet"])
def test_compressed_and_parquet_read_like_plain(tmp_path, suffix):
    plain, _ = read_all(write_jsonl(tmp_path / "a.jsonl", DOCS))
    p = tmp_path / f"b{suffix}"
    blob = "".join(json.dumps(d) + "\n" for d in DOCS).encode()
    if suffix == ".jsonl.gz":
        p.write_bytes(gzip.compress(blob))
    elif suffix == ".jsonl.zst":
        import zstandard

        p.write_bytes(zstandard.ZstdCompressor().compress(blob))
    else:
        pl.DataFrame(DOCS).write_parquet(p)
    df, counts = read_all(p)
    assert df.drop("source").equals(plain.drop("source"))
    assert counts.documents_in == 7


def test_bad_lines_are_counted_with_reasons(tmp_path):
    lines = [
        json.dumps(DOCS[0]).encode(),
        b'{"id": "broken", "text": ',
        json.dumps(DOCS[1]).encode(),
        b'{"id": "bad-utf8", "text": "caf\xe9"}',
        b"[1, 2]",
        b'{"id": "e", "text": ""}',
        b'{"id": "n", "text": null}',
        b"",
        json.dumps(DOCS[2]).encode(),
    ]
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    df, counts = read_all(p, ReadConfig(batch_size=100))
    assert df["doc_id"].to_list() == ["d0", "d1", "d2"]
    assert df["row"].to_list() == [0, 2, 8]
    assert dict(counts.skipped) == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "not_a_json_object": 1,
        "empty_text": 1,
        "missing_text": 1,
    }
    assert counts.documents_in == 3 + 5 and counts.blank_lines == 1
    assert any(f"{p}:2" in w and "malformed_json" in w for w in counts.warnings)


def test_truncated_gzip_keeps_what_was_read_and_counts_the_loss(tmp_path):
    blob = gzip.compress("".join(json.dumps(d) + "\n" for d in DOCS * 200).encode())
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(blob[: len(blob) // 2])
    df, counts = read_all(p, ReadConfig(batch_size=50))
    assert 0 < df.height < 1400
    assert counts.skipped["truncated_or_corrupt_file"] == 1
    assert counts.documents_in == df.height + 1
    assert any("Re-download" in w for w in counts.warnings)


def test_missing_text_column_is_a_clear_error(tmp_path):
    p = write_jsonl(
        tmp_path / "c.jsonl", [{"id": 1, "content": "a long enough body of text for a guess here"}]
    )
    with pytest.raises(InputError) as e:
        read_all(p)
    assert (
        str(e.value) == f'column "text" not found in {p}. Available: id, content. Use --text-column content.'
    )


def test_missing_text_column_in_parquet(tmp_path):
    p = tmp_path / "c.parquet"
    pl.DataFrame({"url": ["u"], "content": ["x"]}).write_parquet(p)
    with pytest.raises(
        InputError,
        match='column "text" not found in .*c.parquet. Available: url, content. Use --text-column content.',
    ):
        read_all(p)


def test_empty_file_is_zero_documents_with_a_warning(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    df, counts = read_all(p)
    assert df.height == 0 and counts.documents_in == 0
    assert counts.warnings == [f"{p}: the shard is empty (no lines)."]


def test_huge_document_is_skipped_not_loaded(tmp_path):
    big = {"id": "big", "text": "x" * 5_000_000}
    p = write_jsonl(tmp_path / "big.jsonl", [DOCS[0], big, DOCS[1]])
    df, counts = read_all(p, ReadConfig(max_doc_chars=1_000_000))
    assert df["doc_id"].to_list() == ["d0", "d1"]
    assert counts.skipped["doc_too_long"] == 1


def test_ids_are_derived_from_shard_and_row_when_absent(tmp_path):
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "x.jsonl", [{"text": "one"}, {"text": "two"}])
    (shard,) = discover_shards([tmp_path])
    assert shard.label == "sub/x.jsonl"
    df = pl.concat(list(read_shard(shard, ReadConfig())))
    assert df["doc_id"].to_list() == ["sub/x.jsonl#0", "sub/x.jsonl#1"]
    assert df["url"].to_list() == [None, None]


def test_discover_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_shards([tmp_path / "nope"])
    with pytest.raises(InputError, match="matched no file"):
        discover_shards([str(tmp_path / "*.jsonl")])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown format"):
        discover_shards([tmp_path / "notes.txt"])


def test_shards_with_the_same_file_name_get_distinct_ids(tmp_path):
    """Regression: a/x.jsonl and b/x.jsonl both derived ids `x.jsonl#0` and collided."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        write_jsonl(tmp_path / d / "x.jsonl", [{"text": "one"}])
    shards = discover_shards([str(tmp_path / "*" / "x.jsonl"), str(tmp_path / "a" / ".." / "a" / "x.jsonl")])
    assert [s.label for s in shards] == ["a/x.jsonl", "b/x.jsonl"]
    ids = [pl.concat(list(read_shard(s, ReadConfig())))["doc_id"][0] for s in shards]
    assert ids == ["a/x.jsonl#0", "b/x.jsonl#0"]


def test_corrupt_zstd_is_counted_not_fatal(tmp_path):
    import zstandard

    blob = zstandard.ZstdCompressor().compress("".join(json.dumps(d) + "\n" for d in DOCS).encode())
    p = tmp_path / "bad.jsonl.zst"
    p.write_bytes(blob[:20] + b"\x00" * 40 + blob[60:])
    df, counts = read_all(p)
    assert counts.skipped["truncated_or_corrupt_file"] == 1
    assert counts.documents_in == df.height + counts.n_skipped


def test_non_string_text_is_skipped_whatever_else_is_in_the_batch(tmp_path):
    """Regression: in a batch with no malformed line, polars turned {"text": 123} into the text "123"."""
    rows = [DOCS[0], {"id": "num", "text": 123}, {"id": "list", "text": ["a"]}, DOCS[1]]
    p = write_jsonl(tmp_path / "t.jsonl", rows)
    for batch_size in (1, 100):
        df, counts = read_all(p, ReadConfig(batch_size=batch_size))
        assert df["doc_id"].to_list() == ["d0", "d1"]
        assert counts.skipped["text_not_a_string"] == 2


def test_a_named_id_column_that_is_absent_is_an_error(tmp_path):
    """Bug: `--id-column docid` over Parquet whose column is `doc_id` exited 0 with derived ids
    (`000_00000.parquet#0`): the real ids were thrown away silently."""
    p = tmp_path / "000_00000.parquet"
    pl.DataFrame({"doc_id": ["a"], "url": ["u"], "content": ["some text"]}).write_parquet(p)
    with pytest.raises(InputError) as e:
        read_all(p, ReadConfig(text_column="content", id_column="docid"))
    assert str(e.value) == (
        f'id column "docid" not found in {p}. Available: doc_id, url, content. Use --id-column doc_id.'
    )
    j = write_jsonl(tmp_path / "x.jsonl", [{"key": "k1", "text": "one"}])
    with pytest.raises(InputError, match=r'id column "uid" not found in .*x.jsonl. Available: key, text. Leave '
                       r"--id-column out to give documents ids of the form x.jsonl#<row>."):  # fmt: skip
        read_all(j, ReadConfig(id_column="uid"))
    # the default `id` may be absent (derived ids), and a named column that is there is used
    df, _ = read_all(p, ReadConfig(text_column="content"))
    assert df["doc_id"].to_list() == ["000_00000.parquet#0"]
    df, _ = read_all(p, ReadConfig(text_column="content", id_column="doc_id"))
    assert df["doc_id"].to_list() == ["a"]


def test_score_cli_names_the_missing_id_column_before_writing_anything(tmp_path):
    """Bug (same, through `selector score`): exit 0 and derived ids; now exit 1 and no output directory."""
    from click.testing import CliRunner

    from selector.cli import cli

    p = tmp_path / "d.parquet"
    pl.DataFrame({"doc_id": ["a"], "content": ["some text"]}).write_parquet(p)
    out = tmp_path / "o"
    r = CliRunner().invoke(
        cli,
        ["score", str(p), "--out", str(out), "--text-column", "content", "--id-column", "docid", "--silent"],
    )
    assert r.exit_code == 1
    assert (
        r.output
        == f'Error: id column "docid" not found in {p}. Available: doc_id, content. Use --id-column doc_id.\n'
    )
    assert not (out / "scores").exists()


def test_a_metadata_json_in_a_directory_is_skipped_and_counted(tmp_path):
    """Bug: a directory holding `sub/info.json` (`{"dataset": "cc", "version": 3}`) aborted the run with
    `column "text" not found in .../info.json. Available: dataset, version. Use --text-column dataset.`"""
    from selector.read.formats import check_shard

    write_jsonl(tmp_path / "docs.jsonl", DOCS[:2])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "info.json").write_text('{"dataset": "cc", "version": 3}\n')
    (tmp_path / "sub" / "pretty.json").write_text(json.dumps({"dataset": "cc", "files": 2}, indent=2))
    shards = discover_shards([tmp_path])
    assert [sh.label for sh in shards] == ["docs.jsonl", "sub/info.json", "sub/pretty.json"]
    for sh in shards:
        check_shard(sh, ReadConfig())
    counts = ShardCounts()
    assert list(read_shard(shards[1], ReadConfig(), counts)) == []
    assert (counts.documents_in, dict(counts.skipped)) == (1, {"not_documents": 1})
    assert counts.warnings == [
        f'{shards[1].source}: one JSON object without a "text" field (keys: dataset, version), metadata rather '
        "than documents: skipped (not_documents). If it is a document, name its text field with --text-column."
    ]
    _, counts = read_all(shards[2].source)
    assert dict(counts.skipped) == {"not_documents": 1}
    df, _ = read_all(shards[0].source)
    assert df["doc_id"].to_list() == ["d0", "d1"]


def test_a_json_array_is_read_as_documents(tmp_path):
    """Bug: a pretty-printed JSON array of documents became one document plus three `malformed_json` skips."""
    p = tmp_path / "docs.json"
    p.write_text(json.dumps([DOCS[0], DOCS[1], 7, {"id": "n", "text": 5}, DOCS[2]], indent=2))
    df, counts = read_all(p)
    assert df["doc_id"].to_list() == ["d0", "d1", "d2"] and df["row"].to_list() == [0, 1, 4]
    assert df["text"].to_list() == [d["text"] for d in DOCS[:3]] and df["url"][0] == DOCS[0]["url"]
    assert dict(counts.skipped) == {"not_a_json_object": 1, "text_not_a_string": 1}
    assert counts.documents_in == 5
    # JSON Lines under a .json name, and one pretty-printed document, read as such
    df, _ = read_all(write_jsonl(tmp_path / "lines.json", DOCS[:3]))
    assert df["doc_id"].to_list() == ["d0", "d1", "d2"]
    (tmp_path / "one.json").write_text(json.dumps(DOCS[3], indent=2))
    df, _ = read_all(tmp_path / "one.json")
    assert df["doc_id"].to_list() == ["d3"]
    # an array of objects without the text field is data with a misnamed field: an error, as for JSONL
    (tmp_path / "c.json").write_text(
        json.dumps([{"id": 1, "content": "a body of text to guess from"}], indent=1)
    )
    with pytest.raises(
        InputError, match=r'column "text" not found in .*c.json. .*Use --text-column content.'
    ):
        read_all(tmp_path / "c.json")


def test_the_text_column_hint_never_names_a_label(tmp_path):
    """Bug: the hint suggested the longest string value, `--text-column dataset` for `"dataset": "cc"`."""
    p = write_jsonl(tmp_path / "m.jsonl", [{"dataset": "cc", "version": 3}, {"dataset": "cc", "version": 4}])
    with pytest.raises(InputError) as e:
        read_all(p)
    assert (
        str(e.value)
        == f'column "text" not found in {p}. Available: dataset, version. Use --text-column NAME.'
    )


def test_the_empty_directory_error_lists_every_format(tmp_path):
    """Bug: the error for a directory without shards listed JSONL and Parquet suffixes but not WARC/WET."""
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError) as e:
        discover_shards([tmp_path])
    msg = str(e.value)
    assert msg.startswith(
        f"directory {tmp_path} holds no JSONL, Parquet, WARC or WET file (looked for .jsonl, "
    )
    for suffix in (".parquet", ".warc.gz", ".warc.wet.gz", ".wet.gz", ".json"):
        assert suffix in msg
