"""WARC/WET archives, remote URIs (fsspec), language identification and generated-text patterns."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from selector.core.config import ReadConfig
from selector.read.formats import ShardCounts, discover_shards, read_shard
from selector.score.organic import GENERATED_PATTERNS, generated_pattern_expr

from .conftest import SHARED, needs_shared

HTML = (
    "<html><head><title>Keeping promises</title></head><body><nav>Home | About | Shop</nav>"
    "<article><h1>Why I returned the wallet</h1><p>{body}</p></article>"
    "<footer>Copyright 2020</footer></body></html>"
)
STORY = (
    "I found a wallet with three hundred dollars on the bus and spent an afternoon finding its owner. "
    "Telling the truth about where I found it mattered more to me than the reward she offered."
)


def _record(headers: dict[str, str], block: bytes) -> bytes:
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(block)}\r\n\r\n"
    return gzip.compress(head.encode() + block + b"\r\n\r\n", mtime=0)


def _response(i: int, status: str, ctype: str, body: bytes, date: str = "2020-01-02T03:04:05Z") -> bytes:
    http = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n\r\n".encode() + body
    return _record(
        {
            "WARC-Type": "response",
            "WARC-Record-ID": f"<urn:uuid:00000000-0000-0000-0000-00000000000{i}>",
            "WARC-Date": date,
            "WARC-Target-URI": f"https://www.example.org/page{i}",
            "WARC-Payload-Digest": f"sha1:DIGEST{i}",
            "Content-Type": "application/http; msgtype=response",
        },
        http,
    )


def write_warc(path: Path) -> Path:
    parts = [
        _record(
            {
                "WARC-Type": "warcinfo",
                "WARC-Record-ID": "<urn:uuid:info>",
                "WARC-Date": "2020-01-02T00:00:00Z",
                "Content-Type": "application/warc-fields",
            },
            b"software: test\r\n",
        ),  # fmt: skip
        _response(1, "200 OK", "text/html; charset=utf-8", HTML.format(body=STORY).encode()),
        _response(2, "200 OK", "image/png", b"\x89PNG...."),
        _response(3, "404 Not Found", "text/html", b"<html><body>gone</body></html>"),
        _response(
            4, "200 OK", "text/html", HTML.format(body="Zweiter Text über Ehrlichkeit.").encode("utf-8")
        ),
    ]
    path.write_bytes(b"".join(parts))
    return path


def test_warc_responses_become_documents_with_provenance(tmp_path):
    sh = discover_shards([write_warc(tmp_path / "a.warc.gz")])[0]
    assert sh.format == "warc"
    counts = ShardCounts()
    df = pl.concat(list(read_shard(sh, ReadConfig(), counts)))
    assert df["row"].to_list() == [0, 3]  # ordinals among the response records
    first = df.row(0, named=True)
    assert first["doc_id"] == first["warc_record_id"] == "urn:uuid:00000000-0000-0000-0000-000000000001"
    assert first["url"] == "https://www.example.org/page1" and first["crawl_date"] == "2020-01-02T03:04:05Z"
    assert first["payload_digest"] == "sha1:DIGEST1" and first["offset"] > 0
    # main text only: the navigation and the footer are gone
    assert STORY in first["text"] and "Home | About" not in first["text"] and "Copyright" not in first["text"]
    assert first["lang"] == "en" and 0.5 < first["lang_score"] <= 1
    assert dict(counts.skipped) == {"not_html": 1, "http_not_ok": 1}
    assert counts.documents_in == df.height + counts.n_skipped == 4


def test_a_truncated_warc_is_counted_not_fatal(tmp_path):
    full = write_warc(tmp_path / "a.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(full[: len(full) - 40])
    counts = ShardCounts()
    frames = list(read_shard(discover_shards([cut])[0], ReadConfig(), counts))
    got = sum(f.height for f in frames)
    assert counts.skipped["truncated_or_corrupt_file"] == 1
    assert counts.documents_in == got + counts.n_skipped


def test_a_truncated_remote_warc_is_counted_too(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    full = write_warc(tmp_path / "a.warc.gz").read_bytes()
    mem = fsspec.filesystem("memory")
    mem.pipe("/trunc/ok.warc.gz", full)
    mem.pipe("/trunc/cut.warc.gz", full[:-40])
    for name, broken in (("ok", 0), ("cut", 1)):
        counts = ShardCounts()
        got = sum(
            f.height
            for f in read_shard(discover_shards([f"memory://trunc/{name}.warc.gz"])[0], ReadConfig(), counts)
        )
        assert counts.skipped["truncated_or_corrupt_file"] == broken
        assert counts.documents_in == got + counts.n_skipped


def test_an_unknown_charset_or_a_failing_page_does_not_fail_the_archive(tmp_path):
    body = HTML.format(body=STORY).encode()
    p = tmp_path / "cs.warc.gz"
    p.write_bytes(
        _response(1, "200 OK", "text/html; charset=x-user-defined", body)
        + _response(2, "200 OK", 'text/html; charset="ISO-8859-1, utf-8"', body)
    )
    counts = ShardCounts()
    df = pl.concat(list(read_shard(discover_shards([p])[0], ReadConfig(), counts)))
    assert df.height == 2 and all(STORY in t for t in df["text"])


def test_wet_conversion_records(tmp_path):
    text = STORY.encode()
    rec = _record(
        {
            "WARC-Type": "conversion",
            "WARC-Record-ID": "<urn:uuid:wet-1>",
            "WARC-Date": "2021-06-01T00:00:00Z",
            "WARC-Target-URI": "https://example.net/x",
            "WARC-Block-Digest": "sha1:BLOCK",
            "WARC-Identified-Content-Language": "eng",
            "Content-Type": "text/plain",
        },  # fmt: skip
        text,
    )
    p = tmp_path / "a.warc.wet.gz"
    p.write_bytes(rec)
    sh = discover_shards([p])[0]
    assert sh.format == "wet"
    df = pl.concat(list(read_shard(sh, ReadConfig())))
    r = df.row(0, named=True)
    assert (r["text"], r["url"], r["payload_digest"], r["lang_in"]) == (
        STORY,
        "https://example.net/x",
        "sha1:BLOCK",
        "eng",
    )
    assert r["lang"] == "en"  # WARC language headers are another detector's ISO 639-3 guess: detected instead


@needs_shared
def test_real_common_crawl_archives():
    raw = SHARED / "raw_formats"
    for name, fmt, n in (("whirlwind.warc.gz", "warc", 1), ("whirlwind.warc.wet.gz", "wet", 1),
                         ("sample-0000.warc.gz", "warc", 22)):  # fmt: skip
        sh = discover_shards([raw / name])[0]
        counts = ShardCounts()
        df = pl.concat(list(read_shard(sh, ReadConfig(), counts)))
        assert sh.format == fmt and counts.documents_in == n == df.height + counts.n_skipped, name
        assert df["warc_record_id"].null_count() == 0 and df["crawl_date"].null_count() == 0
        assert df["url"].str.starts_with("http").all()


def test_language_filter_and_trusted_column(tmp_path):
    rows = [
        {"id": "en", "text": STORY},
        {"id": "de", "text": "Ich habe die Geldbörse zurückgegeben, weil Ehrlichkeit mir wichtiger war als die Belohnung."},
        {"id": "tagged", "text": STORY, "language": "fr"},
    ]  # fmt: skip
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sh = discover_shards([p])[0]
    df = pl.concat(list(read_shard(sh, ReadConfig())))
    assert df["lang"].to_list() == ["en", "de", "fr"]  # the input's language column is trusted
    assert df["lang_score"].is_null().to_list() == [False, False, True]
    counts = ShardCounts()
    kept = pl.concat(list(read_shard(sh, ReadConfig(languages=["en"]), counts)))
    assert kept["doc_id"].to_list() == ["en"] and counts.skipped["language_filtered"] == 2
    assert counts.documents_in == kept.height + counts.n_skipped
    df2 = pl.concat(list(read_shard(sh, ReadConfig(trust_lang_column=False))))
    assert df2["lang"].to_list() == ["en", "de", "en"]
    # no detection and no column: a language filter cannot apply, and says so (documents in = kept + skipped)
    counts = ShardCounts()
    kept = pl.concat(list(read_shard(sh, ReadConfig(detect_language=False, languages=["fr"]), counts)))
    assert kept["doc_id"].to_list() == ["tagged"]
    assert dict(counts.skipped) == {"language_unknown": 2} and counts.documents_in == 3


def test_remote_uris_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    rows = [{"id": f"d{i}", "text": f"{STORY} ({i})", "date": "2019-03-04"} for i in range(3)]
    local = tmp_path / "a.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mem = fsspec.filesystem("memory")
    mem.pipe("/bucket/dump/a.jsonl.gz", gzip.compress(local.read_bytes()))
    buf = tmp_path / "b.parquet"
    pl.DataFrame(rows).write_parquet(buf)
    mem.pipe("/bucket/dump/sub/b.parquet", buf.read_bytes())
    mem.pipe("/bucket/dump/c.warc.gz", write_warc(tmp_path / "c.warc.gz").read_bytes())
    shards = discover_shards(["memory://bucket/dump"])
    assert [(s.label, s.format) for s in shards] == [("a.jsonl.gz", "jsonl"), ("c.warc.gz", "warc"),
                                                      ("sub/b.parquet", "parquet")]  # fmt: skip
    assert all(s.source.startswith("memory://") for s in shards)
    frames = {s.label: pl.concat(list(read_shard(s, ReadConfig()))) for s in shards}
    assert frames["a.jsonl.gz"]["doc_id"].to_list() == ["d0", "d1", "d2"]
    assert frames["sub/b.parquet"]["crawl_date"].to_list() == ["2019-03-04"] * 3
    assert frames["c.warc.gz"].height == 2
    assert shards[0].fingerprint()["size"] == len(gzip.compress(local.read_bytes()))
    # a glob, and a local file:// URI, read like plain paths
    assert [s.label for s in discover_shards(["memory://bucket/dump/*.jsonl.gz"])] == ["a.jsonl.gz"]
    file_shard = discover_shards([f"file://{local}"])[0]
    assert file_shard.source == str(local)
    assert pl.concat(list(read_shard(file_shard, ReadConfig())))["doc_id"].to_list() == ["d0", "d1", "d2"]


def test_an_unknown_scheme_names_what_to_install():
    from selector.core.errors import InputError

    with pytest.raises(InputError, match=r"cannot open s3://bucket/x.jsonl.*pip install s3fs"):
        discover_shards(["s3://bucket/x.jsonl"])


@pytest.mark.parametrize(
    "name,positive,near_miss",
    [
        (
            "as_an_ai_language_model",
            "As an AI language model, I cannot browse.",
            "He spoke as an AI researcher would.",
        ),
        (
            "as_a_large_language_model",
            "As a large language model, I have no opinions.",
            "a large model of the ship",
        ),
        (
            "i_am_an_ai_assistant",
            "I'm an AI assistant and cannot see images.",
            "I am an avid assistant coach.",
        ),
        (
            "knowledge_cutoff",
            "As of my last knowledge update in 2021, the law",
            "As of my last visit, the shop",
        ),
        ("cannot_fulfill_request", "I cannot fulfill this request.", "I cannot fulfill my promise to you."),
        ("regenerate_response", "Regenerate response", "We regenerate the soil every year."),
        ("chatgpt_debris", "ChatGPT said: Sure, here is", "I asked ChatGPT about it yesterday."),
        (
            "not_real_time_access",
            "I don't have real-time access to news.",
            "I don't have real friends at work.",
        ),
        (
            "delve_boilerplate",
            "It's important to note that we delve into a rich tapestry",
            "It is important to note that rain fell.",
        ),
    ],
)
def test_generated_text_patterns(name, positive, near_miss):
    assert name in GENERATED_PATTERNS
    got = pl.DataFrame({"text": [positive, near_miss]}).select(generated_pattern_expr()).to_series().to_list()
    assert got == [name, None]
