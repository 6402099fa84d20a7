from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

from selector import __version__
from selector.cli import cli

from .conftest import REPO, write_jsonl

sys.path.insert(0, str(REPO / "scripts"))
from cli_reference import BEGIN, END, between, reference  # noqa: E402


def run(*args):
    return CliRunner().invoke(cli, list(args), prog_name="selector")


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and r.output == f"selector, version {__version__}\n"
    r = run("-h")
    assert r.exit_code == 0 and "Examples:" in r.output


def test_every_command_has_help_with_an_example():
    for name in cli.commands:
        r = run(name, "-h")
        assert r.exit_code == 0, name
        assert "Example" in r.output, name


def test_cli_reference_is_in_sync_with_help():
    text = (REPO / "docs" / "cli.md").read_text()
    assert between(text, BEGIN, END).strip() == reference().strip(), "run: python scripts/cli_reference.py"


def test_every_command_is_in_the_readme_and_the_cli_reference():
    readme = (REPO / "README.md").read_text()
    cli_md = (REPO / "docs" / "cli.md").read_text()
    for name in cli.commands:
        assert f"`selector {name}`" in readme, name
        assert f"## `selector {name}`" in cli_md, name


def test_cli_reference_check_fails_when_help_drifts(tmp_path):
    """The sync check must catch a reference that no longer matches --help (an option's help edited)."""
    text = (REPO / "docs" / "cli.md").read_text()
    assert "Show this message and exit." in text
    drifted = text.replace("Show this message and exit.", "Show this message, then exit.", 1)
    assert between(drifted, BEGIN, END).strip() != reference().strip()


def test_missing_text_column_exits_with_the_message(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "body": "some text long enough to be the body here"}])
    r = run("score", str(p), "--out", str(tmp_path / "o"), "--silent")
    assert r.exit_code == 1
    assert r.output == (
        f'Error: column "text" not found in {p}. Available: id, body. Use --text-column body.\n'
    )


def test_bad_config_value_exits_naming_the_key(tmp_path):
    cfg = (REPO / "configs" / "default.toml").read_text().replace("knn = 10", "knn = 0")
    p = tmp_path / "c.toml"
    p.write_text(cfg.replace('"seeds/', f'"{REPO}/configs/seeds/'))
    r = run("score", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(p))
    assert r.exit_code == 1
    assert r.output == "Error: cascade.knn must be >= 1, got 0\n"


def test_eval_command_reports_average_precision(tmp_path, cfg):
    from selector.score.run import score
    from selector.train.run import train

    docs = [{"id": f"h{i}", "text": "honesty truth admit mistakes lying trust " * 5} for i in range(5)]
    docs += [
        {"id": f"o{i}", "text": f"recipe pasta {i} boil water salt tomato basil " * 5} for i in range(30)
    ]
    p = write_jsonl(tmp_path / "d.jsonl", docs)
    train([p], cfg, tmp_path / "clf", progress=lambda m: None)
    score([p], tmp_path / "run", tmp_path / "clf", cfg, progress=lambda m: None)
    labels = write_jsonl(
        tmp_path / "labels.jsonl",
        [{"doc_id": d["id"], "themes": ["honesty"] if d["id"][0] == "h" else []} for d in docs],
    )
    r = run("eval", "--scores", str(tmp_path / "run"), "--labels", str(labels), "--silent")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["documents_labelled"] == 35
    assert rep["themes"]["honesty"]["positives"] == 5
    assert 0.0 <= rep["themes"]["honesty"]["average_precision"] <= 1.0
    assert rep["themes"]["ai_risk"]["average_precision"] is None
    # Bug: `eval` printed only JSON; a person reads the table on stderr (stdout stays JSON)
    r = run("eval", "--scores", str(tmp_path / "run"), "--labels", str(labels))
    assert r.exit_code == 0 and json.loads(r.stdout) == rep
    h = rep["themes"]["honesty"]
    lines = r.stderr.splitlines()
    assert lines[0] == "theme            labelled positives  avg precision   recall@0.01"
    assert (
        lines[1]
        == f"honesty                35         5{h['average_precision']:>15.3f}{h['recall_at_budget']:>14.3f}"
    )
    assert lines[4] == "ai_risk                35         0              -             -"
    assert lines[5].startswith("35 of 35 scored documents labelled; ")


def test_readme_quickstart_has_exactly_two_commands():
    text = (REPO / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    cmds = [ln for ln in block.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert cmds == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert Path(REPO / ".ci" / "run").read_text().strip().endswith("bash scripts/test.sh")


def test_bad_input_fails_before_any_output_is_written(tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "fine"}])
    bad = write_jsonl(tmp_path / "b.jsonl", [{"id": "b", "content": "no text column here"}])
    r = run("score", str(good), str(bad), "--out", str(tmp_path / "o"), "--silent")
    assert r.exit_code == 1 and 'column "text" not found' in r.output
    assert not (tmp_path / "o").exists()


def test_labels_accept_a_directory_and_a_glob(tmp_path):
    from selector.audit.evaluation import label_files

    write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "meta": {"themes": []}}])
    (tmp_path / "y.csv").write_text("doc_id,theme,label\na,honesty,on_theme\n")
    assert [p.name for p in label_files([str(tmp_path)])] == ["x.jsonl", "y.csv"]
    assert [p.name for p in label_files([str(tmp_path / "*.csv")])] == ["y.csv"]


def test_labels_from_several_files_are_merged_per_theme(tmp_path, cfg):
    """Regression: a document labelled for honesty in one file and cooperation in another lost one label."""
    from selector.score.run import score
    from selector.train.run import train

    docs = [
        {"id": f"d{i}", "text": f"neighbours share tools and trust each other {i} " * 4} for i in range(12)
    ]
    p = write_jsonl(tmp_path / "d.jsonl", docs)
    train([p], cfg, tmp_path / "clf", progress=lambda m: None)
    score([p], tmp_path / "run", tmp_path / "clf", cfg, progress=lambda m: None)
    (tmp_path / "a.csv").write_text("doc_id,theme,label\nd0,honesty,off_theme\n")
    (tmp_path / "b.csv").write_text("doc_id,theme,label\nd0,cooperation,on_theme\nd1,cooperation,off_theme\n")
    r = run("eval", "--scores", str(tmp_path / "run"), "--labels", str(tmp_path / "*.csv"), "--silent")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["themes"]["honesty"]["labelled"] == 1
    assert rep["themes"]["cooperation"]["labelled"] == 2
    assert rep["themes"]["cooperation"]["positives"] == 1
