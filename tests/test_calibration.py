"""`selector score` says when the classifier's calibration does not fit the scored documents."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from selector.cli import cli
from selector.core.config import load_config
from selector.core.paths import default_classifier_dir
from selector.score import run as score_mod
from selector.score.run import calibration_warning

from .conftest import write_jsonl

CARD = {
    "cascade": {"target_embed_fraction": 0.01},
    "validation_embed_fraction": 0.0415,
    "train": {"pseudo_positive_fraction": 0.001},
}
THRESHOLDS = {"honesty": 0.228, "cooperation": 0.214, "cooperative_ai": 0.267, "ai_risk": 0.252}


def totals(scored: int, embedded: float, above: int) -> dict:
    return {
        "scored": scored,
        "embedded_fraction": embedded,
        "above_threshold": dict.fromkeys(THRESHOLDS, above),
        "max_score": {"honesty": 0.2, "cooperation": 0.165, "cooperative_ai": 0.152, "ai_risk": 0.1},
    }


def warn(t: dict, cfg=None, card=CARD) -> str | None:
    cfg = cfg or load_config()
    return calibration_warning(t, card, cfg, THRESHOLDS, "classifiers/default", ["dump/"], "runs/pq1")


def test_no_document_at_any_threshold_is_reported_with_what_to_run():
    """Bug: the shipped classifier selected nothing on 55,000 real web documents (above_threshold 0/0/0, 4.8%
    embedded) and `score` said nothing."""
    cfg = load_config().replace("read", text_column="content", id_column="doc_id")
    assert warn(totals(55_000, 0.048, 0), cfg) == (
        "the classifier classifiers/default does not fit these 55,000 documents: no document reaches the "
        "calibrated threshold of honesty (highest score 0.200 < 0.228), cooperation (highest score 0.165 < "
        "0.214), cooperative_ai (highest score 0.152 < 0.267); 4.8% of the documents were embedded (its gates "
        "were calibrated to embed about 1.0%, 4.2% on its validation split). Train one on this dump: `selector "
        "train dump/ --out classifiers/mine --text-column content --id-column doc_id`, then score with "
        "`--classifier classifiers/mine`; or run the whole job: `selector run --input dump/ --out DIR "
        "--text-column content --id-column doc_id`; or select by rank: `selector select --scores runs/pq1 --out "
        "runs/pq1 --top-fraction honesty=0.001`."
    )


def test_the_check_reads_its_figures_from_the_card():
    # several times the calibrated embedded share (the larger of the target and the validation figure)
    w = warn(totals(55_000, 0.2, 3))
    assert w is not None and w.startswith(
        "the classifier classifiers/default does not fit these 55,000 documents: 20.0% of the documents were "
        "embedded (its gates were calibrated to embed about 1.0%, 4.2% on its validation split). Train one"
    )
    assert warn(totals(55_000, 0.12, 3)) is None  # under 3 x 4.15%
    assert warn(totals(55_000, 0.12, 3), card={**CARD, "validation_embed_fraction": 0.01}) is not None
    # documents at the thresholds and an ordinary embedded share: it fits
    assert warn(totals(55_000, 0.04, 3)) is None
    # too few documents to expect one on-theme at the card's pseudo-positive fraction (5 needed: 5,000 docs)
    assert warn(totals(4_000, 0.04, 0)) is None
    assert warn(totals(5_000, 0.04, 0)) is not None
    assert (
        warn(totals(4_000, 0.04, 0), card={**CARD, "train": {"pseudo_positive_fraction": 0.01}}) is not None
    )
    # a gate the user chose, thresholds the user chose: not the classifier's calibration
    assert warn(totals(55_000, 0.5, 3), cfg=load_config().replace("cascade", gate=0.1)) is None
    numbers = load_config()
    for t in ("honesty", "cooperation", "cooperative_ai"):
        numbers = numbers.replace_theme(t, threshold=0.3)
    assert warn(totals(55_000, 0.04, 0), cfg=numbers) is None


@pytest.mark.slow
def test_score_prints_the_warning_and_records_it(tmp_path, monkeypatch):
    """Bug (same, end to end with the shipped classifier): the warning is one line on stderr, also with
    --silent, and in the JSON summary and scores/_summary.json."""
    monkeypatch.setattr(score_mod, "MIN_EXPECTED_ON_THEME", 0.1)  # 200 documents stand for a dump
    topics = ["the bus timetable changes on Monday", "add two cups of flour and stir", "the match ended 2-1",
              "rain is expected over the weekend", "the museum opens at nine"]  # fmt: skip
    rows = [{"id": f"d{i}", "text": f"{topics[i % 5]}, item {i}. " * (3 + i % 7)} for i in range(200)]
    p = write_jsonl(tmp_path / "dump.jsonl", rows)
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["score", str(p), "--out", str(out), "--silent"], prog_name="selector")
    assert r.exit_code == 0, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"warning: the classifier {default_classifier_dir()} does not fit these 200 documents: no document "
        "reaches the calibrated threshold of honesty (highest score "
    )
    summary = json.loads(r.stdout)
    assert summary["calibration_warning"] == lines[0][len("warning: ") :]
    assert summary["above_threshold"]["honesty"] == 0 and summary["max_score"]["honesty"] > 0
    on_disk = json.loads((out / "scores" / "_summary.json").read_text())
    assert on_disk["calibration_warning"] == summary["calibration_warning"]
