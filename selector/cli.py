"""The `selector` command line: parses options, builds a config, calls one stage. JSON on stdout,
progress on stderr."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import load_config
from .errors import SelectorError
from .paths import default_classifier_dir, default_config_path, demo_config_path, demo_corpus_dir

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _setup(silent: bool) -> Callable[[str], None]:
    logging.basicConfig(
        level=logging.WARNING if silent else logging.INFO, stream=sys.stderr, format="%(message)s", force=True
    )
    for noisy in (
        "sentence_transformers",
        "transformers",
        "httpx",
        "urllib3",
        "huggingface_hub",
        "filelock",
        "faiss",
        "faiss.loader",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if silent:
        return lambda msg: None
    return lambda msg: click.echo(msg, err=True)


def config_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that reads documents."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML config (default: configs/default.toml).",
    )
    @click.option("--text-column", default=None, help="Column holding the document text (default: text).")
    @click.option("--id-column", default=None, help="Column holding the document id (default: id).")
    @click.option("--batch-size", type=int, default=None, help="Documents per batch (default from config).")
    @click.option("--silent", is_flag=True, help="No progress on stderr.")
    @functools.wraps(f)
    def wrapper(
        *args: Any,
        config_path: str | None,
        text_column: str | None,
        id_column: str | None,
        batch_size: int | None,
        silent: bool,
        **kwargs: Any,
    ) -> Any:
        try:
            cfg = load_config(config_path)
            read_changes = {
                k: v
                for k, v in (
                    ("text_column", text_column),
                    ("id_column", id_column),
                    ("batch_size", batch_size),
                )
                if v is not None
            }
            if read_changes:
                cfg = cfg.replace("read", **read_changes)
            progress = _setup(silent)
            return f(*args, cfg=cfg, progress=progress, **kwargs)
        except SelectorError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _apply(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for o in reversed(options):
            f = o(f)
        return f

    return deco


train_options = [
    click.option(
        "--labels",
        "labels_path",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="Extra human labels for training: CSV doc_id,theme,label.",
    ),
    click.option(
        "--sample-size", type=int, default=None, help="Documents to embed and label (default 20000)."
    ),
]


def _with_sample_size(cfg: Any, sample_size: int | None) -> Any:
    return cfg if sample_size is None else cfg.replace("train", sample_size=sample_size)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="selector")
def cli() -> None:
    """Find real documents on alignment-relevant themes (honesty, cooperation, cooperative AI; AI risk
    as a stance label) in web-scale dumps, and score them with a fastText + embedding cascade.

    \b
    Examples:
      selector run --out runs/demo                         # the whole job on the embedded demo
      selector train dumps/ --out classifiers/mine         # teacher-student training from seeds
      selector score dumps/*.jsonl.gz --out runs/cc --workers 2
      selector eval --scores runs/cc --labels labels.jsonl
    """


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where the classifier goes, e.g. classifiers/mine.",
)
@_apply(train_options)
@config_options
def train(
    inputs: tuple[str, ...],
    out_dir: str,
    labels_path: str | None,
    sample_size: int | None,
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Train a classifier on INPUTS (files, directories, globs) from the configured seeds.

    \b
    Example:
      selector train dumps/cc-2024-*.jsonl.gz --out classifiers/cc2024 --labels audit/labels.csv
    """
    from .train import train as run_train

    cfg = _with_sample_size(cfg, sample_size)
    card = run_train(list(inputs), cfg, out_dir, labels_path=labels_path, progress=progress)
    _emit(
        {
            "classifier": out_dir,
            "validation": card["validation"],
            "gates": card["gates"],
            "validation_embed_fraction": card["validation_embed_fraction"],
        }
    )


def _score(
    inputs: list[str],
    out_dir: str,
    classifier: str | None,
    cfg: Any,
    workers: int,
    force: bool,
    gate: float | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    from .score import score as run_score

    if gate is not None:
        cfg = cfg.replace("cascade", gate=gate)
    clf = classifier or str(default_classifier_dir())
    summary = run_score(inputs, out_dir, clf, cfg, workers=workers, force=force, progress=progress)
    return {"scores": str(Path(out_dir) / "scores"), "classifier": clf, **summary.totals()}


score_options = [
    click.option(
        "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory."
    ),
    click.option(
        "--classifier",
        type=click.Path(file_okay=False),
        default=None,
        help="Trained classifier directory (default: the shipped classifiers/default).",
    ),
    click.option("--workers", type=int, default=1, show_default=True, help="Processes, one shard each."),
    click.option("--force", is_flag=True, help="Redo parts that are already finished."),
    click.option(
        "--gate",
        type=click.FloatRange(0, 1),
        default=None,
        help="One fastText gate for all themes instead of the calibrated ones (0 embeds everything).",
    ),
]


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@_apply(score_options)
@config_options
def score(
    inputs: tuple[str, ...],
    out_dir: str,
    classifier: str | None,
    workers: int,
    force: bool,
    gate: float | None,
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Score INPUTS (JSONL, JSONL.gz/.zst, Parquet; files, directories, globs) into OUT/scores/.

    \b
    Example:
      selector score data/fineweb/*.parquet --out runs/fw --text-column text --workers 2
    """
    _emit(_score(list(inputs), out_dir, classifier, cfg, workers, force, gate, progress))


@cli.command(context_settings=CONTEXT)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    help="Input file, directory or glob (repeatable). Default: the embedded demo corpus.",
)
@_apply(score_options)
@_apply(train_options)
@config_options
def run(
    inputs: tuple[str, ...],
    out_dir: str,
    classifier: str | None,
    workers: int,
    force: bool,
    gate: float | None,
    labels_path: str | None,
    sample_size: int | None,
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Train a classifier on the input (unless --classifier is given), then score it. A classifier
    already in OUT/classifier from the same inputs, seeds, labels and settings is reused (--force retrains).

    \b
    Examples:
      selector run --out runs/demo
      selector run --input dumps/ --out runs/cc --workers 2
    """
    from .train import is_current
    from .train import train as run_train

    ins = list(inputs) or [str(demo_corpus_dir())]
    if not inputs and cfg.source == str(default_config_path()):
        cfg = dataclasses.replace(load_config(demo_config_path()), read=cfg.read)
        progress(f"no --input: running on the embedded demo corpus with {demo_config_path()}")
    if classifier is None:
        classifier = str(Path(out_dir) / "classifier")
        cfg_train = _with_sample_size(cfg, sample_size)
        if not force and is_current(classifier, ins, cfg_train, labels_path):
            progress(f"{classifier} was trained from the same inputs, seeds and settings; reusing it")
        else:
            run_train(ins, cfg_train, classifier, labels_path=labels_path, progress=progress)
    _emit(_score(ins, out_dir, classifier, cfg, workers, force, gate, progress))


@cli.command("eval", context_settings=CONTEXT)
@click.option(
    "--scores",
    "scores_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A directory written by `selector score` (DIR or DIR/scores).",
)
@click.option(
    "--labels",
    "labels_paths",
    required=True,
    multiple=True,
    help="JSONL with doc_id/id and themes/meta.themes, or CSV doc_id,theme,label; a file, a directory or a "
    "glob (repeatable).",
)
@click.option(
    "--column",
    type=click.Choice(["score", "ft", "emb"]),
    default="score",
    show_default=True,
    help="Which scores to rank by.",
)
@click.option(
    "--budget",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.01,
    show_default=True,
    help="Recall is measured within this top share of the labelled documents.",
)
@config_options
def eval_cmd(
    scores_dir: str,
    labels_paths: tuple[str, ...],
    column: str,
    budget: float,
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Average precision and recall at a budget per theme, for scores against labels.

    \b
    Example:
      selector eval --scores runs/dev --labels devset/labels.jsonl
      selector eval --scores runs/demo --labels selector/demo/
    """
    import polars as pl

    from .evaluate import evaluate, label_files, read_labels
    from .score import read_scores

    scores = read_scores(scores_dir)
    themes = [c[len("score_") :] for c in scores.columns if c.startswith("score_")]
    frames = [read_labels(p, themes) for p in label_files(list(labels_paths))]
    # a document labelled in several files keeps every theme's label (the last file wins per theme)
    labels = (
        pl.concat(frames)
        .group_by("doc_id", maintain_order=True)
        .agg([pl.col(f"label_{t}").drop_nulls().last() for t in themes])
    )
    _emit(evaluate(scores, labels, themes, prefix=column, budget=budget))


def main() -> None:
    cli(prog_name="selector")


if __name__ == "__main__":
    main()
