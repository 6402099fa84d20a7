"""Each export loaded by the trainer's own library (run in .venv-trainers/<venv> by subprocess, built by
scripts/install_trainers.sh): the streams are materialized, written to the exported paths by the library's
own writer with a tokenizer built here (one token per 4 characters, so a stream's real tokens equal the
manifest's estimate), read by the trainer's dataset builder, and the tokens it draws per stream are checked
against the manifest, within the rounding `selector export` predicts (and warns about)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from selector.export.documents import materialize
from selector.export.trainers import export as run_export
from selector.export.trainers import rounding_error
from tests.test_export import make_run

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "tests" / "trainers"
VENVS = ROOT / ".venv-trainers"
TOTAL = 40_000  # 2,500 samples of 16 tokens: honesty 3,500 tokens, corrigibility 1,202, harmlessness 3,004
SEQ_LEN = 16
STREAMS = ["honesty", "corrigibility", "harmlessness"]
SHARES = {"honesty": 3500, "corrigibility": 1202, "harmlessness": 3004, "base": TOTAL - 7706}
BASE_DOCS = 40  # the base mix: 40 documents of 1,000 tokens, more than its 32,294


def venv_python(name: str) -> Path:
    py = VENVS / name / "bin" / "python"
    if not (VENVS / name / ".installed").is_file():
        src = Path(os.environ.get("NANOTRON_SRC", Path.home() / ".cache/selector/nanotron-2411b022.tar.gz"))
        if name == "nanotron" and not src.exists():
            pytest.skip(
                f"nanotron main is not on PyPI (its 0.4 there has no Nanoset) and the project ships none of its "
                f"code: no source at {src}. Set NANOTRON_SRC to a `git archive` of nanotron 2411b022 and run "
                "`bash scripts/install_trainers.sh nanotron`."
            )
        if os.environ.get("CI"):
            pytest.fail(
                f"{VENVS / name} is not built; scripts/test.sh runs scripts/install_trainers.sh first"
            )
        pytest.skip(f"{VENVS / name} is not built: run `bash scripts/install_trainers.sh {name}`")
    return py


def run_driver(venv: str, script: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    spec_path = tmp / f"{script}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(DRIVERS)}
    proc = subprocess.run(
        [str(venv_python(venv)), str(DRIVERS / script), str(spec_path)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def texts(files: list[Path]) -> list[str]:
    out = []
    for f in files:
        with gzip.open(f, "rt") as fh:
            out += [json.loads(line)["text"] for line in fh]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run, its materialized streams, a base mix (JSONL) and the vocabulary of the tokenizer."""
    tmp = tmp_path_factory.mktemp("trainers")
    run = make_run(tmp / "run", total_tokens=TOTAL)
    materialize(run / "manifest", tmp / "materialized", progress=lambda _m: None)
    files = {s: sorted((tmp / "materialized" / s).glob("part-*.jsonl.gz")) for s in STREAMS}
    base = tmp / "base" / "part-00000.jsonl.gz"
    base.parent.mkdir()
    with gzip.open(base, "wt") as fh:
        for i in range(BASE_DOCS):
            text = "".join(f"base{i:02d}-{j:04d} " for j in range(4000 // 11 + 1))[:4000]
            fh.write(json.dumps({"id": f"base{i}", "text": text}) + "\n")
    files["base"] = [base]
    vocab = sorted({t[k : k + 4] for fs in files.values() for t in texts(fs) for k in range(0, len(t), 4)})
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    tokens = {s: sum(-(-len(t) // 4) for t in texts(fs)) for s, fs in files.items()}
    assert {s: tokens[s] for s in STREAMS} == {s: SHARES[s] for s in STREAMS}  # the tokenizer's counts
    return {"tmp": tmp, "run": run, "files": files, "vocab": str(tmp / "vocab.json")}


def check_draws(fmt: str, drawn: dict[str, float], summary: dict[str, Any]) -> None:
    """Every stream's drawn tokens are its manifest share of the run, within the rounding the export
    predicts; the export warns for exactly the streams whose rounding can exceed 0.5%."""
    total = sum(drawn.values())
    for name, want in SHARES.items():
        bound = rounding_error(fmt, want, SEQ_LEN)
        got = drawn[name] / total * TOTAL
        assert abs(got - want) / want <= bound + 1e-9, (name, got, want, bound)
        assert summary["streams"][name]["rounding_error"] == pytest.approx(bound, abs=1e-6)
    warned = {w.split(":")[0] for w in summary["warnings"]}
    assert warned == {n for n, t in SHARES.items() if rounding_error(fmt, t, SEQ_LEN) > 0.005}


def test_megatron_blend_loads_in_megatron_core(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"] / "megatron"
    tmp.mkdir()
    blend = tmp / "blend.txt"
    summary = run_export(
        world["run"] / "manifest", "megatron", blend, data_root=str(tmp / "tok"), seq_len=SEQ_LEN
    )
    paths = json.loads(
        next(
            ln
            for ln in (tmp / "blend.txt.selector.txt").read_text().splitlines()
            if ln.startswith("# selector-export")
        )[len("# selector-export: ") :]
    )["paths"]
    spec = {
        "blend": str(blend),
        "sidecar": str(tmp / "blend.txt.selector.txt"),
        "vocab": world["vocab"],
        "train_samples": TOTAL // SEQ_LEN,
        "seq_len": SEQ_LEN,
        "cache": str(tmp / "cache"),
        "streams": {paths[s]: [str(f) for f in fs] for s, fs in world["files"].items()},
    }
    got = run_driver("main", "megatron_check.py", spec, tmp)
    assert got["split"] == "100,0,0" and got["valid"] is None  # nothing of the run goes to validation
    # megatron-core 0.16 gives each prefix ceil(weight * train_samples) samples: up to one more per prefix
    assert TOTAL // SEQ_LEN <= got["train_samples"] <= TOTAL // SEQ_LEN + len(SHARES)
    assert got["sample_tokens"] == SEQ_LEN
    by_name = {s: got["samples"][paths[s]] for s in SHARES}
    check_draws("megatron", {s: n * SEQ_LEN for s, n in by_name.items()}, summary)


def test_mosaic_streams_load_in_streaming(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"] / "mosaic"
    tmp.mkdir()
    out = tmp / "loader.yaml"
    summary = run_export(
        world["run"] / "manifest", "mosaic", out, data_root=str(tmp / "tok"), seq_len=SEQ_LEN
    )
    spec = {
        "export": str(out),
        "vocab": world["vocab"],
        "streams": {s: [str(f) for f in fs] for s, fs in world["files"].items()},
    }
    got = run_driver("main", "mosaic_check.py", spec, tmp)
    assert got["epoch"] == TOTAL // SEQ_LEN == sum(got["samples"].values())
    assert got["samples"] == got["choose"]
    check_draws("mosaic", {s: n * SEQ_LEN for s, n in got["samples"].items()}, summary)


def test_mosaic_train_loader_has_what_llm_foundry_requires(world: dict[str, Any], tmp_path: Path) -> None:
    """Regression: LLM Foundry 0.22's build_text_dataloader requires drop_last and num_workers, which the
    exported train_loader lacked (a TypeError). Its wheel cannot run on this machine's torch (it pins torch
    2.7, on PyPI only as a CUDA build), so the signature is read from the wheel's source."""
    import ast
    import zipfile

    wheels = (
        sorted((VENVS / "foundry" / "wheels").glob("llm_foundry-0.22.0-*.whl"))
        if venv_python("foundry")
        else []
    )
    assert wheels, f"no llm-foundry wheel under {VENVS / 'foundry' / 'wheels'}"
    src = zipfile.ZipFile(wheels[0]).read("llmfoundry/data/text_data.py").decode()
    fn = next(
        n
        for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.FunctionDef) and n.name == "build_text_dataloader"
    )
    args = [a.arg for a in fn.args.args]
    required = set(args[: len(args) - len(fn.args.defaults)])
    out = tmp_path / "loader.yaml"
    run_export(world["run"] / "manifest", "mosaic", out, seq_len=SEQ_LEN)
    loader = yaml.safe_load(out.read_text())["train_loader"]
    given = set(loader) - {"name"} | {"tokenizer", "device_batch_size"}  # LLM Foundry passes these two itself
    assert required == {"tokenizer", "device_batch_size", "dataset", "drop_last", "num_workers"}
    assert required <= given and set(loader) - {"name"} <= set(args)


def test_olmo_core_mix_loads_in_olmo_core(world: dict[str, Any]) -> None:
    tmp: Path = world["tmp"] / "olmo"
    tmp.mkdir()
    out = tmp / "mix.yaml"
    summary = run_export(
        world["run"] / "manifest", "olmo-core", out, data_root=str(tmp / "tok"), seq_len=SEQ_LEN
    )
    sources = yaml.safe_load(out.read_text())["source_list"]["sources"]
    dirs = {s["source_name"]: s["paths"][0].removesuffix("/*.npy") for s in sources}
    spec = {
        "vocab": world["vocab"],
        "tokenizer": str(tmp / "tokenizer.json"),
        "streams": {dirs[s]: [str(f) for f in fs] for s, fs in world["files"].items()},
    }
    run_driver("dolma", "dolma_tokens.py", spec, tmp)
    got = run_driver("main", "olmo_check.py", {"export": str(out), "seq_len": SEQ_LEN}, tmp)
    assert got["requested"] == TOTAL and sum(got["tokens"].values()) == TOTAL
    assert all(
        n == 1 for n in got["files"].values()
    )  # one .npy per stream: the rounding bound is one instance
    check_draws("olmo-core", got["tokens"], summary)


def test_nanotron_stage_loads_in_nanotron_main(world: dict[str, Any]) -> None:
    """Regression: the export wrote `dataset_folder: {path: weight}`, which nanotron main rejects
    (UnionMatchError on data.dataset); it takes `dataset_folder: [paths]` with `dataset_weights: [w]`."""
    tmp: Path = world["tmp"] / "nanotron"
    tmp.mkdir()
    out = tmp / "nanotron.yaml"
    summary = run_export(
        world["run"] / "manifest", "nanotron", out, data_root=str(tmp / "tok"), seq_len=SEQ_LEN
    )
    folders = yaml.safe_load(out.read_text())["data_stages"][0]["data"]["dataset"]["dataset_folder"]
    by_name = dict(zip(SHARES, folders, strict=True))
    spec = {
        "export": str(out),
        "vocab": world["vocab"],
        "tokenizer": str(tmp / "tokenizer.json"),
        "seq_len": SEQ_LEN,
        "train_samples": TOTAL // SEQ_LEN,
        "streams": {by_name[s]: [str(f) for f in fs] for s, fs in world["files"].items()},
    }
    got = run_driver("nanotron", "nanotron_check.py", spec, tmp)
    assert got["type"] == "NanosetDatasetsArgs" and got["sample_tokens"] == SEQ_LEN + 1
    assert sum(got["samples"].values()) == TOTAL // SEQ_LEN
    check_draws("nanotron", {s: got["samples"][f] * SEQ_LEN for s, f in by_name.items()}, summary)


@pytest.mark.parametrize("inputs", ["jsonl", "parquet"])
def test_dolma_mix_runs_in_dolma(world: dict[str, Any], tmp_path: Path, inputs: str) -> None:
    """Regression: `dolma mix` rejected the export (`Either filter or span_replacement must be specified`:
    the base stream had no filter), copies of a document shared an id, and nothing wrote documents/. Now
    dolma 1.2.1 runs the exported mix as written; each stream's output equals `selector materialize`'s
    texts (its multiset), every id is distinct, and the base gets every scored document."""
    run = make_run(tmp_path / "run", total_tokens=TOTAL)
    if inputs == "parquet":  # the same shards as Parquet: the export reads them through selector's reader
        import polars as pl

        mf = run / "manifest" / "manifest.json"
        m = json.loads(mf.read_text())
        for inp in m["inputs"]:
            src = Path(inp["source"])
            rows = [
                json.loads(line) for line in (gzip.open(src, "rt") if src.suffix == ".gz" else src.open())
            ]
            dst = src.with_name(src.name.split(".")[0] + ".parquet")
            pl.DataFrame(rows).write_parquet(dst)
            inp.update(
                source=str(dst), format="parquet", size=dst.stat().st_size, mtime_ns=dst.stat().st_mtime_ns
            )
        mf.write_text(json.dumps(m))
        for part in (run / "scores").glob("*.parquet"):
            df = pl.read_parquet(part)
            old = df["source"][0]
            new = next(
                i["source"] for i in m["inputs"] if Path(i["source"]).stem == Path(old).name.split(".")[0]
            )
            df.with_columns(source=pl.lit(new)).write_parquet(part)
        docs = pl.read_parquet(run / "manifest" / "documents.parquet")
        mapping = {
            i["source"].replace(".parquet", s): i["source"]
            for i in m["inputs"]
            for s in (".jsonl", ".jsonl.gz")
        }
        docs.with_columns(pl.col("source").replace(mapping)).write_parquet(
            run / "manifest" / "documents.parquet"
        )
    out = tmp_path / "dolma"
    summary = run_export(run / "manifest", "dolma", out)
    assert summary["warnings"] == [] and all(f["rounding_error"] == 0 for f in summary["streams"].values())
    got = run_driver("dolma", "dolma_mix.py", {"mix": str(out / "mix.yaml")}, tmp_path)["outputs"]
    mixed = out.resolve() / "mixed"
    for s in STREAMS:
        written = got[str(mixed / s)]
        assert sorted(t for _i, t in written) == sorted(texts(world["files"][s])), s
        assert len({i for i, _t in written}) == len(written), s  # distinct ids per copy
        assert sum(-(-len(t) // 4) for _i, t in written) == SHARES[s]
    base = got[str(mixed / "base")]
    assert sorted(i for i, _t in base) == ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b3"]
