"""Commands that write a directory refuse to replace or mix with files they did not write."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from selector.cli import cli
from selector.core.errors import ExportError, ManifestError
from selector.export.trainers import export
from selector.select.build import select

from .test_export import make_run
from .test_select import background, docs, make_scores, sel_cfg


def _scored(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    rows = [{**r, "text": f"document {r['doc_id']} " + "honest words " * 20} for r in docs(3, "honesty")]
    make_scores(root, rows + [{**r, "text": f"background {r['doc_id']} text"} for r in background(5)])
    return root


def test_select_refuses_to_delete_a_foreign_file_in_the_manifest_dir(tmp_path, cfg):
    """Bug: `select --out DIR` replaced DIR/manifest/ and a my_notes.txt in it was gone, exit 0."""
    root = _scored(tmp_path)
    c = sel_cfg(cfg)
    select(root, root, c, progress=lambda m: None)  # an earlier manifest is replaced freely
    select(root, root, c, progress=lambda m: None)
    notes = root / "manifest" / "my_notes.txt"
    notes.write_text("keep me")
    with pytest.raises(ManifestError) as e:
        select(root, root, c, progress=lambda m: None)
    assert str(e.value) == (
        f"{root / 'manifest'} holds my_notes.txt, which `selector select` did not write and writing the new "
        f"manifest would delete. Move it out of {root / 'manifest'}, or choose another --out."
    )
    assert notes.read_text() == "keep me" and (root / "manifest" / "manifest.json").is_file()
    r = CliRunner().invoke(cli, ["select", "--scores", str(root), "--out", str(root), "--silent"])
    assert r.exit_code == 1 and r.output.startswith(f"Error: {root / 'manifest'} holds my_notes.txt")
    assert notes.exists()


def test_run_refuses_before_training_and_scoring(tmp_path):
    """Bug (same): `selector run` would train and score for minutes, then delete the file at the select step."""
    out = tmp_path / "r"
    (out / "manifest" / "sub").mkdir(parents=True)
    (out / "manifest" / "sub" / "a.txt").write_text("x")
    (out / "manifest" / "b.txt").write_text("x")
    r = CliRunner().invoke(cli, ["run", "--out", str(out), "--silent"])
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {out / 'manifest'} holds b.txt and 1 more, which `selector select`")
    assert not (out / "classifier").exists() and not (out / "scores").exists()


def test_dolma_export_refuses_a_directory_holding_other_files(tmp_path):
    """Bug: `export --format dolma --out DIR` wrote into (and on a failed check deleted) a directory holding
    files it did not write."""
    run = make_run(tmp_path / "run")
    out = tmp_path / "dolma"
    export(run / "manifest", "dolma", out)
    assert (out / "documents").is_dir()  # the export writes the documents tree itself
    export(run / "manifest", "dolma", out)  # and a second export replaces its own files
    (out / "notes.md").write_text("mine")
    with pytest.raises(ExportError, match=r"dolma holds notes.md, which `selector export` did not write"):
        export(run / "manifest", "dolma", out)
    assert (out / "notes.md").exists()
