"""`selector export`: each trainer format round-trips through `verify_export`, on a hand-built manifest."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from selector.core.errors import ExportError, SelectorError
from selector.export.trainers import FORMATS, export, megatron_sidecar, verify_export
from selector.score.cascade import output_schema

THEMES = ["honesty", "corrigibility", "harmlessness"]
TOTAL = 1_024_000  # 500 sequences of 2048 tokens
# (label, source, [(doc_id, row, n_chars, scores by theme, selected stream or None, repeats)])
PARTS: list[tuple[str, str, list[tuple[str, int, int, tuple[float, float, float], str | None, int]]]] = [
    (
        "a.jsonl",
        "/data/a.jsonl",
        [
            ("a0", 0, 4000, (0.9, 0.1, 0.2), "honesty", 3),
            ("a1", 1, 801, (0.1, 0.2, 0.3), None, 0),
            ("a2", 2, 1203, (0.2, 0.8, 0.1), "corrigibility", 2),
            ("a3", 3, 40, (0.0, 0.0, 0.0), None, 0),
            ("a4", 4, 2000, (0.95, 0.3, 0.0), "honesty", 1),
        ],
    ),
    (
        "sub/b.jsonl.gz",
        "/data/sub/b.jsonl.gz",
        [  # row 2 was skipped by the reader: it has no score
            ("b0", 0, 3001, (0.1, 0.2, 0.7), "harmlessness", 4),
            ("b1", 1, 100, (0.3, 0.3, 0.3), None, 0),
            ("b3", 3, 2400, (0.4, 0.9, 0.2), "corrigibility", 1),
        ],
    ),
]
# hand-computed: sum(ceil(n_chars / 4) * repeats) per stream
HONESTY = 1000 * 3 + 500 * 1
CORRIGIBILITY = 301 * 2 + 600 * 1
HARMLESSNESS = 751 * 4
BASE = TOTAL - HONESTY - CORRIGIBILITY - HARMLESSNESS
EXPECTED = {"honesty": 3500, "corrigibility": 1202, "harmlessness": 3004, "base": 1_016_294}


def doc_text(doc_id: str, n_chars: int) -> str:
    """A document's text: words naming the document, `n_chars` characters long."""
    words = " ".join(f"{doc_id} word{i}" for i in range(n_chars))
    return words[:n_chars]


def write_inputs(root: Path) -> dict[str, str]:
    """The two input shards of PARTS under root/data (b's row 2 is blank, so the reader skips it); returns
    {label: source path}."""
    sources = {}
    for label, _source, rows in PARTS:
        path = root / "data" / label
        path.parent.mkdir(parents=True, exist_ok=True)
        by_row = {row: (doc_id, n) for doc_id, row, n, *_rest in rows}
        lines = []
        for r in range(max(by_row) + 1):
            doc_id, n = by_row.get(r, (f"blank{r}", 0))
            lines.append(json.dumps({"id": doc_id, "text": doc_text(doc_id, n)}) + "\n")
        data = "".join(lines).encode()
        path.write_bytes(gzip.compress(data, mtime=0) if label.endswith(".gz") else data)
        sources[label] = str(path)
    return sources


def make_run(root: Path, total_tokens: int = TOTAL) -> Path:
    """A run directory with its input shards (data/), scores/ (two finished parts) and manifest/ written by
    hand per docs/manifest.md."""
    sdir = root / "scores"
    sdir.mkdir(parents=True)
    real = write_inputs(root)
    schema = output_schema(THEMES)
    inputs, docs = [], []
    for i, (label, _source, rows) in enumerate(PARTS):
        source = real[label]
        cols: dict[str, list[Any]] = {c: [] for c in schema}
        for doc_id, row, n_chars, scores, stream, repeats in rows:
            base = {"doc_id": doc_id, "source": source, "row": row, "url": None, "n_chars": n_chars}
            for c in schema:
                if c in base:
                    cols[c].append(base[c])
                elif c == "n_tokens":
                    cols[c].append(math.ceil(n_chars / 4))
                elif c == "embedded":
                    cols[c].append(True)
                elif c.startswith(("ft_", "emb_", "score_", "seed_sim_")):
                    cols[c].append(scores[THEMES.index(c.split("_", 1)[1].removeprefix("sim_"))])
                else:
                    cols[c].append(None)
            if stream is not None:
                n_tokens = math.ceil(n_chars / 4)
                docs.append(
                    {
                        "doc_id": doc_id,
                        "source": source,
                        "row": row,
                        "url": None,
                        "theme": stream,
                        **{f"score_{t}": scores[j] for j, t in enumerate(THEMES)},
                        "n_chars": n_chars,
                        "n_tokens": n_tokens,
                        "repeats": repeats,
                        "weight": float(repeats + 1),
                        "reason": f"{stream}: {repeats} repeats",
                    }
                )
        part = f"part-{i:05d}"
        pl.DataFrame(cols, schema=schema).write_parquet(sdir / f"{part}.parquet")
        (sdir / f"{part}.done").write_text("{}\n")
        skipped = 1 if i == 1 else 0
        inputs.append(
            {
                "part": part,
                "source": source,
                "label": label,
                "format": "jsonl",
                "size": Path(source).stat().st_size,
                "mtime_ns": Path(source).stat().st_mtime_ns,
                "documents_in": len(rows) + skipped,
                "scored": len(rows),
                "skipped": skipped,
            }
        )
    order = {t: i for i, t in enumerate(THEMES)}
    documents = pl.DataFrame(docs).sort(pl.col("theme").replace_strict(order), "source", "row")
    streams = []
    for t in THEMES:
        d = documents.filter(pl.col("theme") == t)
        unique = int(d["n_tokens"].sum())
        achieved = int((d["n_tokens"] * d["repeats"]).sum())
        streams.append(
            {
                "theme": t,
                "unique_documents": d.height,
                "unique_tokens": unique,
                "target_tokens": 4000,
                "achieved_tokens": achieved,
                "epochs": achieved / unique,
                "effective_epochs": achieved / unique + 1,
                "cap": 4,
                "capped": t == "harmlessness",
                "shortfall_tokens": max(0, 4000 - achieved),
                "shortfall_share": max(0, 4000 - achieved) / 4000,
                "candidates": d.height + 1,
                "ai_risk_tokens": 0,
            }
        )
    mdir = root / "manifest"
    mdir.mkdir()
    documents.write_parquet(mdir / "documents.parquet")
    pl.DataFrame(streams).write_parquet(mdir / "streams.parquet")
    manifest = {
        "format": "selector-manifest/1",
        "created_at": "2026-11-30T03:00:00Z",
        "selector_version": "0.1.0",
        "seed": 7,
        "config": {"read": {"detect_language": False}},
        "config_hash": "abc123",
        "scores_dir": str(sdir.resolve()),
        "inputs": inputs,
        "total_tokens": total_tokens,
        "base": {"in_mix": True, "documents": 8, "tokens": 3000},
        "streams": streams,
        "selection": {"rule": "score", "max_repeats": 4, "hard_max_epochs": 16},
        "files": {
            "documents": "documents.parquet",
            "streams": "streams.parquet",
            "rejected": "rejected.parquet",
        },
    }
    (mdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def out_path(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / ("dolma-out" if fmt == "dolma" else f"mix-{fmt}.txt")


def body(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_fixture_matches_hand_computed_budget(run: Path) -> None:
    manifest = json.loads((run / "manifest" / "manifest.json").read_text())
    got = {s["theme"]: s["achieved_tokens"] for s in manifest["streams"]}
    assert got == {"honesty": HONESTY, "corrigibility": CORRIGIBILITY, "harmlessness": HARMLESSNESS}
    assert {**got, "base": BASE} == EXPECTED


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(run: Path, tmp_path: Path, fmt: str) -> None:
    out = out_path(tmp_path, fmt)
    summary = export(run / "manifest", fmt, out)
    assert summary["format"] == fmt and summary["out"] == str(out)
    assert list(summary["streams"]) == ["honesty", "corrigibility", "harmlessness", "base"]
    figures = verify_export(run / "manifest", fmt, out)
    assert figures == {
        n: {k: v for k, v in f.items() if k != "rounding_error"} for n, f in summary["streams"].items()
    }
    for name, want in EXPECTED.items():
        assert figures[name]["manifest_tokens"] == want
        assert figures[name]["export_tokens"] == pytest.approx(want, rel=1e-9)
        assert figures[name]["rel_error"] <= 1e-9


def test_megatron_file(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "blend.txt"
    export(run / "manifest", "megatron", out)
    # the blend file is only `weight prefix` pairs, read as Megatron reads --data-args-path (split on whitespace)
    words = out.read_text().split()
    pairs = [list(p) for p in zip(words[::2], words[1::2], strict=True)]
    text = megatron_sidecar(out).read_text()
    assert pairs == [
        ["3500", "tokenized/honesty/honesty_text_document"],
        ["1202", "tokenized/corrigibility/corrigibility_text_document"],
        ["3004", "tokenized/harmlessness/harmlessness_text_document"],
        ["1016294", "tokenized/base/base_text_document"],
    ]
    assert (
        "# or, instead of --data-args-path, --data-path " + " ".join(" ".join(p) for p in pairs) + "\n"
        in text
    )
    assert (
        f"--data-args-path {out.as_posix()} --split 100,0,0 --train-samples 500 --seq-length 2048\n" in text
    )
    assert "total_tokens=1024000 seq_len=2048" in text
    assert "--train-samples 500 " in text
    assert "# honesty: 3,500 tokens (0.34% of the run), read once; documents repeated 2.333x (epochs)" in text


def test_olmo_core_yaml(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.yaml"
    export(run / "manifest", "olmo-core", out, data_root="/data/mat/")
    doc = body(out)
    assert doc["requested_tokens"] == TOTAL
    assert doc["global_batch_size"] == 2048
    sources = doc["source_list"]["sources"]
    assert [s["source_name"] for s in sources] == ["honesty", "corrigibility", "harmlessness", "base"]
    assert sources[0] == {
        "source_name": "honesty",
        "target_ratio": 3500 / 1_024_000,
        "max_repetition_ratio": 1.0,
        "paths": ["/data/mat/honesty/npy/*.npy"],
    }
    assert sources[3]["paths"] == ["/data/mat/base/npy/*.npy"]
    assert sum(s["target_ratio"] for s in sources) == pytest.approx(1.0)


def test_mosaic_yaml(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "loader.yaml"
    export(run / "manifest", "mosaic", out, base_path="s3://bucket/base-mds")
    loader = body(out)["train_loader"]
    assert loader["drop_last"] is True and loader["num_workers"] == 8
    ds = loader["dataset"]
    assert ds["epoch_size"] == 500 and ds["max_seq_len"] == 2048
    assert ds["streams"]["harmlessness"] == {
        "local": "tokenized/harmlessness/mds",
        "proportion": 3004 / TOTAL,
    }
    assert ds["streams"]["base"] == {"remote": "s3://bucket/base-mds", "proportion": 1_016_294 / TOTAL}


def test_mosaic_too_few_sequences_raises(tmp_path: Path) -> None:
    """With 10,000 tokens and 2048-token samples, epoch_size 5 holds 10,240 tokens: 2.4% off."""
    run = make_run(tmp_path / "run", total_tokens=10_000)
    with pytest.raises(ExportError, match="use a smaller --seq-len"):
        export(run / "manifest", "mosaic", tmp_path / "m.yaml")
    summary = export(run / "manifest", "mosaic", tmp_path / "m.yaml", seq_len=64)
    assert body(tmp_path / "m.yaml")["train_loader"]["dataset"]["epoch_size"] == 156
    assert summary["streams"]["honesty"]["rel_error"] < 0.005


def test_nanotron_yaml(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "nanotron.yaml"
    export(run / "manifest", "nanotron", out)
    stage = body(out)["data_stages"][0]
    assert stage["data"]["dataset"] == {
        "dataset_folder": [
            "tokenized/honesty/nanoset",
            "tokenized/corrigibility/nanoset",
            "tokenized/harmlessness/nanoset",
            "tokenized/base/nanoset",
        ],
        "dataset_weights": [3500 / TOTAL, 1202 / TOTAL, 3004 / TOTAL, 1_016_294 / TOTAL],
    }
    assert stage["data"]["seed"] == 7


def test_dolma_documents_and_attributes(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "dolma"
    export(run / "manifest", "dolma", out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    copies = [f"copy-{c}/a.jsonl.gz" for c in (1, 2)] + [f"copy-{c}/sub/b.jsonl.gz" for c in (1, 2, 3)]
    want = ["a.jsonl.gz", *copies, "sub/b.jsonl.gz"]
    assert files == sorted(
        [f"attributes/selector/{f}" for f in want] + [f"documents/{f}" for f in want] + ["mix.yaml"]
    )
    for (label, _source, rows), name in zip(PARTS, ["a.jsonl.gz", "sub/b.jsonl.gz"], strict=True):
        with gzip.open(out / "attributes" / "selector" / name, "rt") as fh:
            lines = [json.loads(line) for line in fh]
        with gzip.open(out / "documents" / name, "rt") as fh:
            docs = [json.loads(line) for line in fh]
        assert [r["id"] for r in lines] == [d["id"] for d in docs] == [row[0] for row in rows], label
        for rec, doc, (doc_id, row, n_chars, scores, stream, repeats) in zip(lines, docs, rows, strict=True):
            assert doc["text"] == doc_text(doc_id, n_chars) and doc["source"] == "selector"
            assert doc["metadata"]["row"] == row
            attrs = rec["attributes"]
            for t, sc in zip(THEMES, scores, strict=True):
                assert attrs[f"selector__selector__{t}"] == [[0, n_chars, sc]]
                assert attrs[f"selector__selector__stream_{t}"] == [
                    [0, n_chars, repeats if t == stream else 0]
                ]
            assert attrs["selector__selector__repeats"] == [[0, n_chars, repeats]]
    # the extra copies: a0 (3 repeats) has copies 1 and 2, b0 (4 repeats) copies 1 to 3, a2 (2) copy 1
    with gzip.open(out / "documents" / "copy-1" / "a.jsonl.gz", "rt") as fh:
        assert [json.loads(line)["id"] for line in fh] == ["a0#copy1", "a2#copy1"]
    with gzip.open(out / "documents" / "copy-3" / "sub" / "b.jsonl.gz", "rt") as fh:
        assert [json.loads(line)["id"] for line in fh] == ["b0#copy3"]
    mix = body(out / "mix.yaml")["streams"]
    names = [s["name"] for s in mix]
    assert names == ["honesty-1", "honesty-2", "honesty-3", "corrigibility-1", "corrigibility-2"] + [
        f"harmlessness-{k}" for k in range(1, 5)
    ] + ["base"]
    assert mix[2]["filter"]["include"] == ["$.attributes[?(@.selector__selector__stream_honesty[0][2] >= 3)]"]
    root = out.resolve().as_posix()
    assert mix[0]["documents"] == [f"{root}/documents/a.jsonl.gz", f"{root}/documents/sub/b.jsonl.gz"]
    assert mix[2]["documents"] == [
        f"{root}/documents/copy-2/a.jsonl.gz",
        f"{root}/documents/copy-2/sub/b.jsonl.gz",
    ]
    assert mix[2]["output"]["path"] == f"{root}/mixed/honesty"
    assert mix[-1]["output"]["path"] == f"{root}/mixed/base"
    assert mix[-1]["filter"]["include"] == ["$.attributes[?(@.selector__selector__repeats[0][2] >= 0)]"]


def test_dolma_paths_are_absolute(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the mix's paths were relative to where `selector export` ran, not to where dolma runs."""
    monkeypatch.chdir(tmp_path)
    export(run / "manifest", "dolma", "rel-out", data_root="text")
    mix = body(tmp_path / "rel-out" / "mix.yaml")["streams"]
    assert mix[0]["output"]["path"] == f"{tmp_path.resolve().as_posix()}/text/honesty"
    assert all(d.startswith("/") for st in mix for d in st["documents"])


def test_dolma_refuses_an_out_inside_a_documents_folder(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="folder named documents already. Choose an --out outside"):
        export(run / "manifest", "dolma", tmp_path / "documents" / "mix")


def tamper(out: Path, fmt: str) -> None:
    if fmt == "dolma":
        path = out / "attributes" / "selector" / "copy-3" / "sub" / "b.jsonl.gz"
        with gzip.open(path, "rt") as fh:
            lines = fh.read().replace(
                'stream_harmlessness":[[0,3001,4]]', 'stream_harmlessness":[[0,3001,3]]'
            )
        assert "[[0,3001,3]]" in lines
        with gzip.open(path, "wt") as fh:
            fh.write(lines)
        return
    text = out.read_text()
    old, new = {
        "megatron": ("3500 ", "3600 "),
        "olmo-core": ("target_ratio: 0.00341796875", "target_ratio: 0.0035"),
        "mosaic": ("proportion: 0.00341796875", "proportion: 0.0035"),
        "nanotron": ("- 0.00341796875", "- 0.0035"),
    }[fmt]
    assert text.count(old) == 1, (fmt, old)
    out.write_text(text.replace(old, new))


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_export_fails_verification(run: Path, tmp_path: Path, fmt: str) -> None:
    out = out_path(tmp_path, fmt)
    export(run / "manifest", fmt, out)
    tamper(out, fmt)
    stream = "harmlessness" if fmt == "dolma" else "honesty"
    with pytest.raises(ExportError, match=f"{stream}: .* tokens in the export"):
        verify_export(run / "manifest", fmt, out)


def test_dolma_missing_copy_stream_fails_verification(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "dolma"
    export(run / "manifest", "dolma", out)
    doc = body(out / "mix.yaml")
    doc["streams"] = [s for s in doc["streams"] if s["name"] != "honesty-3"]
    header = [line for line in (out / "mix.yaml").read_text().splitlines() if line.startswith("#")]
    (out / "mix.yaml").write_text("\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(
        ExportError, match="honesty: 2,500 tokens in the export, 3,500 in the manifest"
    ):  # a0's third copy
        verify_export(run / "manifest", "dolma", out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_is_deterministic(run: Path, tmp_path: Path, fmt: str) -> None:
    out = out_path(tmp_path, fmt)

    def snapshot() -> dict[str, bytes]:
        if out.is_dir():
            return {
                p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            }
        return {out.name: out.read_bytes()}

    export(run / "manifest", fmt, out)
    first = snapshot()
    export(run, fmt, out)  # the run directory is accepted too
    assert snapshot() == first


def test_errors_name_the_file_and_the_fix(run: Path, tmp_path: Path) -> None:
    with pytest.raises(SelectorError, match=r"no manifest at .*nowhere.*selector select"):
        export(tmp_path / "nowhere", "megatron", tmp_path / "x.txt")
    with pytest.raises(
        SelectorError, match=r"unknown export format 'levanter'. Use one of: megatron, olmo-core"
    ):
        export(run / "manifest", "levanter", tmp_path / "x.txt")
    mf = run / "manifest" / "manifest.json"
    m = json.loads(mf.read_text())
    mf.write_text(json.dumps({**m, "format": "selector-manifest/2"}))
    with pytest.raises(
        SelectorError, match=r"manifest.json is in format 'selector-manifest/2'.*selector select"
    ):
        export(run / "manifest", "megatron", tmp_path / "x.txt")
    mf.write_text(json.dumps({**m, "total_tokens": 5000}))
    with pytest.raises(ExportError, match="more than total_tokens 5,000"):
        export(run / "manifest", "nanotron", tmp_path / "x.yaml")


def test_verify_rejects_a_file_it_did_not_write(run: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("0.5 /data/a_text_document\n0.5 /data/b_text_document\n")
    megatron_sidecar(foreign).write_text("# notes by hand\n")
    with pytest.raises(ExportError, match="was not written by this `selector export`"):
        verify_export(run / "manifest", "megatron", foreign)


def test_empty_stream_and_empty_base_are_left_out(run: Path, tmp_path: Path) -> None:
    mf = run / "manifest" / "manifest.json"
    m = json.loads(mf.read_text())
    for s in m["streams"]:
        if s["theme"] == "corrigibility":
            s["achieved_tokens"] = 0
    mf.write_text(json.dumps({**m, "total_tokens": HONESTY + HARMLESSNESS}))
    summary = export(run / "manifest", "megatron", tmp_path / "blend.txt")
    assert (tmp_path / "blend.txt").read_text().splitlines() == [
        "3500 tokenized/honesty/honesty_text_document",
        "3004 tokenized/harmlessness/harmlessness_text_document",
    ]
    text = megatron_sidecar(tmp_path / "blend.txt").read_text()
    assert "# corrigibility: no tokens selected, left out of the mix" in text
    assert summary["streams"]["corrigibility"] == {
        "manifest_tokens": 0,
        "export_tokens": 0.0,
        "rel_error": 0.0,
        "rounding_error": 0.0,
    }
    assert summary["streams"]["base"]["manifest_tokens"] == 0


def test_cli_warns_where_the_trainers_rounding_moves_a_stream(run: Path, tmp_path: Path) -> None:
    """Regression: a 48-sample run reported 0.009% error while Streaming drew whole samples 5-17% off; now
    each stream whose trainer rounding can exceed 0.5% is warned about, with the expected error."""
    from click.testing import CliRunner

    from selector.cli import cli

    args = ["export", str(run / "manifest"), "--format", "mosaic", "--out", str(tmp_path / "m.yaml")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (
        "Warning: honesty: 3,500 tokens are 1.7 samples of 2048; Streaming draws whole samples per stream "
        "(proportion * epoch_size, rounded), so expect it up to 58.5% off its share" in res.stderr
    )
    assert "Warning: base" not in res.stderr  # 496 samples: one sample is 0.2%
    summary = json.loads(res.stdout)
    assert summary["streams"]["honesty"]["rounding_error"] == pytest.approx(2048 / 3500, abs=1e-6)
    assert len(summary["warnings"]) == 3
    res = CliRunner().invoke(cli, [*args[:-2], "--out", str(tmp_path / "d"), "--seq-len", "2"])
    assert res.exit_code == 0 and "Warning" not in res.stderr  # 2-token samples: every stream within 0.5%
