"""The `selector` command line: parses options, builds a config, calls one stage. JSON on stdout,
progress on stderr."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from selector import __version__
from selector.core.config import load_config
from selector.core.errors import SelectorError
from selector.core.paths import default_classifier_dir, default_config_path, demo_config_path, demo_corpus_dir

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


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that the same cleanup runs
    (the scoring workers are stopped, temporary files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# the scores directory of the command in progress, for what an interruption says was kept
_SCORING: dict[str, Path] = {}


def _kept() -> str:
    sdir = _SCORING.get("dir")
    try:
        planned = list(json.loads((sdir / "_inputs.json").read_text())["parts"]) if sdir else []
    except (OSError, ValueError, KeyError, TypeError):
        planned = []
    if sdir is None or not planned:
        return (
            "nothing half-written is kept (outputs are written under temporary names and renamed into place); "
            "run the same command again."
        )
    done = sum((sdir / f"{p}.done").is_file() for p in planned)
    return (
        f"{done} of {len(planned)} part(s) are finished and kept in {sdir}; run the same command again to "
        f"finish the other {len(planned) - done} (finished parts are reused)."
    )


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM end a command with one line saying what was kept, and exit 130 or 143
    (128 + the signal), instead of click's bare "Aborted!" and exit 1."""
    on_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if on_main:

        def on_term(signum: int, frame: Any) -> None:
            raise Interrupted(signum)

        previous = {
            signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
            signal.SIGINT: signal.getsignal(signal.SIGINT),
        }
    _SCORING.clear()
    try:
        yield
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        if on_main:  # the last words and the exit are not to be interrupted by a second signal
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            previous = {}
        click.echo(f"Interrupted ({signal.Signals(signum).name}): {_kept()}", err=True)
        raise click.exceptions.Exit(128 + signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
            with _interruptible():
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


def label_files_option(dest: str, help: str) -> Callable[..., Any]:
    """A repeatable `--labels FILE` (labels CSVs, merged by selector.core.labels.read_label_files)."""
    return click.option(
        "--labels", dest, type=click.Path(dir_okay=False, exists=True), multiple=True, help=help
    )


train_options = [
    label_files_option(
        "labels_path",
        "Labels to learn from: CSV doc_id,theme,label[,reviewer] from the audit page or `selector "
        "annotate` (repeatable; a person's label beats an annotator's).",
    ),
    click.option(
        "--sample-size", type=int, default=None, help="Documents to embed and label (default 20000)."
    ),
]


def _with_sample_size(cfg: Any, sample_size: int | None) -> Any:
    return cfg if sample_size is None else cfg.replace("train", sample_size=sample_size)


_SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_tokens(value: str, what: str = "--total-tokens") -> int:
    """`2B`, `500M`, `1.5T`, `1e9`, `1_000_000` -> an integer number of tokens."""
    v = value.strip().lower().replace("_", "").replace(",", "")
    mult = 1
    if v and v[-1] in _SUFFIXES:
        v, mult = v[:-1], _SUFFIXES[v[-1]]
    try:
        n = float(v) * mult
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a token count; write e.g. 2B, 500M, 1e9 or 1000000", param_hint=what
        ) from None
    if not math.isfinite(n) or n < 1:
        raise click.BadParameter(f"{value!r} must be at least 1 token", param_hint=what)
    return int(round(n))


def _pairs(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    out = []
    for item in values:
        theme, sep, val = item.partition("=")
        if not sep or not theme or not val:
            raise click.BadParameter(
                f"{item!r} must look like THEME=VALUE, e.g. honesty=0.01", param_hint=what
            )
        out.append((theme.strip(), val.strip()))
    return out


def _number(val: str, what: str) -> float:
    try:
        return float(val)
    except ValueError:
        raise click.BadParameter(f"{val!r} is not a number", param_hint=what) from None


select_options = [
    click.option(
        "--total-tokens", default=None, help='Tokens of the training run (2B, 500M, 1e9) or "auto".'
    ),
    click.option(
        "--target-share",
        multiple=True,
        metavar="THEME=SHARE",
        help="Share of the run's tokens a theme's stream should have, e.g. honesty=0.01 (repeatable).",
    ),
    click.option(
        "--target-tokens",
        multiple=True,
        metavar="THEME=TOKENS",
        help="Tokens a theme's stream should have, e.g. cooperation=200M (repeatable).",
    ),
    click.option(
        "--threshold",
        "thresholds",
        multiple=True,
        metavar="THEME=SCORE",
        help='Score a document needs for a theme (default "auto": the classifier\'s calibrated one).',
    ),
    click.option(
        "--top-fraction",
        multiple=True,
        metavar="THEME=FRACTION",
        help="Qualify this top share of all scored documents for a theme instead of a threshold.",
    ),
    click.option(
        "--exclude-above",
        multiple=True,
        metavar="THEME=SCORE",
        help="Keep documents scoring at least this on THEME out of every stream, e.g. ai_risk=0.5.",
    ),
    click.option(
        "--max-repeats", type=click.IntRange(1), default=None, help="Copies of one document at most (4)."
    ),
    click.option(
        "--rule", type=click.Choice(["score", "uniform"]), default=None, help="How repeats are spread."
    ),
    click.option("--seed", type=int, default=None, help="Seed of the repeat sampler (0)."),
    click.option(
        "--no-base-mix",
        is_flag=True,
        help="The selected documents are not also in the base mix (their weight is their repeats alone).",
    ),
    click.option("--no-dedup", is_flag=True, help="Keep exact and near duplicates among the candidates."),
    click.option(
        "--near-dup-threshold",
        type=click.FloatRange(0, 1, min_open=True),
        default=None,
        help="MinHash Jaccard at which two candidates are near duplicates (0.8; 1 turns it off).",
    ),
    click.option(
        "--max-domain-share",
        type=click.FloatRange(0, 1, min_open=True),
        default=None,
        help="Most of a stream's unique tokens one site may hold (0.2; 1 turns it off).",
    ),
    click.option("--require-provenance", is_flag=True, help="Only documents with a URL and a crawl date."),
    click.option(
        "--exclude-generated", is_flag=True, help="Leave out documents matching generated-text patterns."
    ),
]


def _with_select_options(
    cfg: Any,
    total_tokens: str | None,
    target_share: tuple[str, ...],
    target_tokens: tuple[str, ...],
    thresholds: tuple[str, ...],
    top_fraction: tuple[str, ...],
    exclude_above: tuple[str, ...],
    max_repeats: int | None,
    rule: str | None,
    seed: int | None,
    no_base_mix: bool,
    no_dedup: bool = False,
    near_dup_threshold: float | None = None,
    max_domain_share: float | None = None,
    require_provenance: bool = False,
    exclude_generated: bool = False,
) -> Any:
    changes: dict[str, Any] = {}
    if no_dedup:
        changes["dedup"] = False
    if near_dup_threshold is not None:
        changes["near_dup_threshold"] = near_dup_threshold
    if max_domain_share is not None:
        changes["max_domain_share"] = max_domain_share
    if require_provenance:
        changes["require_provenance"] = True
    if exclude_generated:
        changes["exclude_generated"] = True
    if total_tokens is not None:
        changes["total_tokens"] = "auto" if total_tokens.strip() == "auto" else parse_tokens(total_tokens)
    if max_repeats is not None:
        changes["max_repeats"] = max_repeats
    if rule is not None:
        changes["rule"] = rule
    if seed is not None:
        changes["seed"] = seed
    if no_base_mix:
        changes["base_in_mix"] = False
    if exclude_above:
        ex = dict(cfg.select.exclude_above)
        ex.update({t: _number(v, "--exclude-above") for t, v in _pairs(exclude_above, "--exclude-above")})
        changes["exclude_above"] = ex
    if changes:
        cfg = cfg.replace("select", **changes)
    for t, v in _pairs(target_share, "--target-share"):
        cfg = cfg.replace_theme(t, target_share=_number(v, "--target-share"), target_tokens=0)
    for t, v in _pairs(target_tokens, "--target-tokens"):
        cfg = cfg.replace_theme(t, target_tokens=parse_tokens(v, "--target-tokens"), target_share=0.0)
    for t, v in _pairs(thresholds, "--threshold"):
        cfg = cfg.replace_theme(
            t, threshold="auto" if v == "auto" else _number(v, "--threshold"), top_fraction=0.0
        )
    for t, v in _pairs(top_fraction, "--top-fraction"):
        cfg = cfg.replace_theme(t, top_fraction=_number(v, "--top-fraction"))
    shares = sum(t.target_share for t in cfg.themes)
    if shares >= 1:
        raise click.BadParameter(
            f"the target shares add up to {shares:g}; they must stay below 1", param_hint="--target-share"
        )
    return cfg


def _scores_config(scores_dir: str, cfg: Any, progress: Callable[[str], None]) -> Any:
    """Without --config, select with the config the scores were made with (recorded beside them)."""
    from selector.core.config import config_from_resolved

    d = Path(scores_dir)
    meta = (d / "scores" / "_inputs.json") if (d / "scores").is_dir() else d / "_inputs.json"
    try:
        recorded = json.loads(meta.read_text())["config"]
        out = config_from_resolved(recorded)
    except (OSError, ValueError, KeyError, TypeError, SelectorError):
        return cfg
    progress(f"no --config: selecting with the config the scores were made with ({out.source})")
    return out


def _select(
    scores_dir: str,
    out_dir: str,
    cfg: Any,
    force: bool,
    progress: Callable[[str], None],
    labels: tuple[str, ...] = (),
) -> dict[str, Any]:
    from selector.core.labels import read_label_files
    from selector.select.build import select as run_select
    from selector.select.build import summary_lines

    label_set = read_label_files(list(labels), cfg.theme_names) if labels else None
    m = run_select(scores_dir, out_dir, cfg, force=force, progress=progress, labels=label_set)
    for line in summary_lines(m):
        progress(line)
    mdir = Path(out_dir) / "manifest"
    progress(f"manifest: {mdir} (documents.parquet, streams.parquet, rejected.parquet, manifest.json)")
    return {
        "manifest": str(mdir),
        "documents": str(mdir / "documents.parquet"),
        "streams": m["streams"],
        "total_tokens": m["total_tokens"],
        "warnings": m["selection"]["warnings"],
    }


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="selector")
def cli() -> None:
    """Find real documents on alignment-relevant themes (honesty, cooperation, cooperative AI; AI risk
    as a stance label) in web-scale dumps, score them with a fastText + embedding cascade, and turn the
    scores into data-mix manifests (which documents to repeat, how often) for real trainers.

    \b
    Examples:
      selector run --out runs/demo                         # the whole job on the embedded demo
      selector train dumps/ --out classifiers/mine         # teacher-student training from seeds
      selector score dumps/*.jsonl.gz --out runs/cc --workers 2
      selector select --scores runs/cc --out runs/cc --total-tokens 1T
      selector export runs/cc/manifest --format megatron --out runs/cc/data_path.txt
      selector materialize runs/cc/manifest --out runs/cc/materialized
      selector audit runs/cc/manifest --out runs/cc/audit
      selector eval --scores runs/cc --labels labels.jsonl
      selector annotate dumps/ --endpoint http://127.0.0.1:8000/v1 --model NAME --budget 500 --out llm.csv
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
    labels_path: tuple[str, ...],
    sample_size: int | None,
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Train a classifier on INPUTS (files, directories, globs) from the configured seeds and any --labels
    (a theme with enough labels learns from them, the seeds as a prior).

    \b
    Example:
      selector train dumps/cc-2024-*.jsonl.gz --out classifiers/cc2024 --labels audit/labels.csv
      selector train dumps/ --out classifiers/r1 --labels labels/llm-r1.csv --labels audit/labels.csv
    """
    from selector.train.run import train as run_train

    cfg = _with_sample_size(cfg, sample_size)
    card = run_train(list(inputs), cfg, out_dir, labels_path=list(labels_path), progress=progress)
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
    force: bool,
    gate: float | None,
    execution: dict[str, Any],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    from selector.score.run import score as run_score

    if gate is not None:
        cfg = cfg.replace("cascade", gate=gate)
    clf = classifier or str(default_classifier_dir())
    _SCORING["dir"] = Path(out_dir) / "scores"
    summary = run_score(inputs, out_dir, clf, cfg, force=force, progress=progress, **execution)
    out = {"scores": str(Path(out_dir) / "scores"), "classifier": clf, **summary.totals()}
    if summary.failed:
        _emit(out)
        shown = "; ".join(f"{f['part']} ({f['shard']}): {f['error']}" for f in summary.failed[:5])
        more = f"; and {len(summary.failed) - 5} more" if len(summary.failed) > 5 else ""
        raise click.ClickException(
            f"{len(summary.failed)} of {len(summary.parts) + len(summary.failed)} shard(s) failed after "
            f"{execution['retries'] + 1} attempt(s): {shown}{more}. The other parts are finished; rerun the same "
            "command to retry the failed shards."
        )
    return out


def _memory(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except click.BadParameter as e:
        e.param_hint = "--memory-per-worker"
        raise


def _execution_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turns the executor options into one `execution` argument: keyword arguments of `score()`."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        executor: str,
        workers: int | None,
        retries: int,
        ray_address: str | None,
        cpus_per_worker: float | None,
        memory_per_worker: str | None,
        gpus_per_worker: float | None,
        embed_workers: int | None,
        **kwargs: Any,
    ) -> Any:
        ray_only = {
            "--ray-address": ray_address,
            "--cpus-per-worker": cpus_per_worker,
            "--memory-per-worker": memory_per_worker,
            "--gpus-per-worker": gpus_per_worker,
            "--embed-workers": embed_workers,
        }
        given = [name for name, v in ray_only.items() if v is not None]
        ray = None
        if executor == "ray":
            from selector.score.executors import RayOptions, import_ray

            try:
                import_ray()  # before any work (`run` would otherwise train first, then fail)
            except SelectorError as e:
                raise click.ClickException(str(e)) from e
            ray = RayOptions(
                address=ray_address,
                cpus_per_worker=1.0 if cpus_per_worker is None else cpus_per_worker,
                memory_per_worker=_memory(memory_per_worker),
                gpus_per_worker=gpus_per_worker,
                embed_workers=embed_workers or 0,
            )
        elif given:
            raise click.UsageError(f"{', '.join(given)} only apply with --executor ray.")
        if workers is None:
            workers = 0 if executor == "ray" else 1
        execution = {"executor": executor, "workers": workers, "retries": retries, "ray": ray}
        return f(*args, execution=execution, **kwargs)

    return wrapper


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
    click.option("--force", is_flag=True, help="Redo parts that are already finished."),
    click.option(
        "--gate",
        type=click.FloatRange(0, 1),
        default=None,
        help="One fastText gate for all themes instead of the calibrated ones (0 embeds everything).",
    ),
    click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Score on this machine, or on a Ray cluster (the `ray` extra: pip install -e '.[ray]').",
    ),
    click.option(
        "--workers",
        type=click.IntRange(0),
        default=None,
        help="Shards scored at once: processes (local, default 1) or Ray actors (ray, default 0); "
        "0: as many as the CPUs allow.",
    ),
    click.option(
        "--retries",
        type=click.IntRange(0),
        default=2,
        show_default=True,
        help="Times a failed shard is tried again before it is reported and the run exits non-zero.",
    ),
    click.option(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray cluster to join (default: start a local Ray instance for the run and stop it after).",
    ),
    click.option(
        "--cpus-per-worker",
        type=click.FloatRange(0, min_open=True),
        default=None,
        help="CPUs each Ray worker reserves (1).",
    ),
    click.option(
        "--memory-per-worker", default=None, metavar="SIZE", help="Memory each Ray worker reserves, e.g. 4GB."
    ),
    click.option(
        "--gpus-per-worker",
        type=click.FloatRange(0),
        default=None,
        help="GPUs each Ray worker that embeds reserves (default: 1 if embedding.device is cuda, else 0).",
    ),
    click.option(
        "--embed-workers",
        type=click.IntRange(0),
        default=None,
        help="Ray actors that run the embedding model for all scoring workers, which keep running fastText "
        "meanwhile (0: each worker embeds its own documents).",
    ),
    _execution_options,
]


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@_apply(score_options)
@config_options
def score(
    inputs: tuple[str, ...],
    out_dir: str,
    classifier: str | None,
    force: bool,
    gate: float | None,
    execution: dict[str, Any],
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Score INPUTS (JSONL, JSONL.gz/.zst, Parquet, WARC, WET; files, directories, globs, URIs) into OUT/scores/. An
    interrupted or partly failed run is finished by running the same command again.

    \b
    Examples:
      selector score data/fineweb/*.parquet --out runs/fw --text-column text --workers 2
      selector score /shared/cc/*.jsonl.zst --out /shared/runs/cc --executor ray --ray-address auto
    """
    _emit(_score(list(inputs), out_dir, classifier, cfg, force, gate, execution, progress))


@cli.command(context_settings=CONTEXT)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    help="Input file, directory or glob (repeatable). Default: the embedded demo corpus.",
)
@_apply(score_options)
@_apply(train_options)
@_apply(select_options)
@click.option("--force-epochs", is_flag=True, help="Allow documents past select.hard_max_epochs sightings.")
@config_options
def run(
    inputs: tuple[str, ...],
    out_dir: str,
    classifier: str | None,
    force: bool,
    gate: float | None,
    execution: dict[str, Any],
    labels_path: tuple[str, ...],
    sample_size: int | None,
    force_epochs: bool,
    cfg: Any,
    progress: Callable[[str], None],
    **select_kw: Any,
) -> None:
    """The whole job: train a classifier on the input (unless --classifier is given), score it, select
    and write the manifest, and print a short summary. A classifier already in OUT/classifier from the same
    inputs, seeds, labels and settings is reused (--force retrains and rescores).

    \b
    Examples:
      selector run --out runs/demo
      selector run --input dumps/ --out runs/cc --workers 2
    """
    from selector.select.build import check_manifest_out
    from selector.train.run import is_current
    from selector.train.run import train as run_train

    check_manifest_out(out_dir)  # before training and scoring, not after them
    ins = list(inputs) or [str(demo_corpus_dir())]
    if not inputs and cfg.source == str(default_config_path()):
        cfg = dataclasses.replace(load_config(demo_config_path()), read=cfg.read)
        progress(f"no --input: running on the embedded demo corpus with {demo_config_path()}")
    cfg = _with_select_options(cfg, **select_kw)
    if classifier is None:
        classifier = str(Path(out_dir) / "classifier")
        cfg_train = _with_sample_size(cfg, sample_size)
        if not force and is_current(classifier, ins, cfg_train, list(labels_path)):
            progress(f"{classifier} was trained from the same inputs, seeds and settings; reusing it")
        else:
            run_train(ins, cfg_train, classifier, labels_path=list(labels_path), progress=progress)
    scored = _score(ins, out_dir, classifier, cfg, force, gate, execution, progress)
    selected = _select(out_dir, out_dir, cfg, force_epochs, progress, labels_path)
    _emit({**scored, **selected, "classifier": classifier})


@cli.command("select", context_settings=CONTEXT)
@click.option(
    "--scores",
    "scores_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A directory written by `selector score` (DIR or DIR/scores).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Writes OUT/manifest/."
)
@_apply(select_options)
@click.option(
    "--force", is_flag=True, help="Allow documents to be seen more than select.hard_max_epochs times."
)
@label_files_option(
    "labels",
    "Labels that veto (off) or confirm (on) candidates per theme, e.g. from `selector annotate --scores "
    "DIR --candidates` or the audit page (repeatable; a person's label beats an annotator's).",
)
@config_options
def select_cmd(
    scores_dir: str,
    out_dir: str,
    force: bool,
    labels: tuple[str, ...],
    cfg: Any,
    progress: Callable[[str], None],
    **select_kw: Any,
) -> None:
    """Choose which scored documents to repeat and how often, within a token budget: writes
    OUT/manifest/ (documents.parquet, streams.parquet, rejected.parquet, manifest.json).

    \b
    Examples:
      selector select --scores runs/cc --out runs/cc --total-tokens 1T --target-share honesty=0.01
      selector select --scores runs/cc --out runs/cc --target-tokens cooperation=2B --exclude-above ai_risk=0.5
      selector select --scores runs/cc --out runs/cc --labels labels/candidates.csv
    """
    if cfg.source == str(default_config_path()):
        cfg = _scores_config(scores_dir, cfg, progress)
    cfg = _with_select_options(cfg, **select_kw)
    _emit(_select(scores_dir, out_dir, cfg, force, progress, labels))


def parse_bytes(value: str) -> int:
    """`256MB`, `1GiB`, `500k`, `1000000` -> bytes (KB/MB/GB are powers of 1024, as for file sizes)."""
    v = value.strip().lower().replace("_", "")
    for unit, mult in (("kib", 2**10), ("mib", 2**20), ("gib", 2**30), ("kb", 2**10), ("mb", 2**20),
                       ("gb", 2**30), ("k", 2**10), ("m", 2**20), ("g", 2**30), ("b", 1)):  # fmt: skip
        if v.endswith(unit):
            v, m = v[: -len(unit)], mult
            break
    else:
        m = 1
    try:
        n = int(float(v) * m)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a size; write e.g. 256MB or 1GB", param_hint="--max-shard-size"
        ) from None
    if n < 1:
        raise click.BadParameter(f"{value!r} must be at least 1 byte", param_hint="--max-shard-size")
    return n


def _errors_as_click(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _interruptible():
                return f(*args, **kwargs)
        except SelectorError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


@cli.command(context_settings=CONTEXT)
@click.argument("manifest", type=click.Path(exists=True))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["megatron", "olmo-core", "mosaic", "nanotron", "dolma"]),
    help="The trainer to write for.",
)
@click.option("--out", required=True, type=click.Path(), help="The file to write (a directory for dolma).")
@click.option(
    "--data-root",
    default=None,
    help="Where the tokenized streams live, as the trainer will see the path (default: tokenized; for dolma, "
    "where `dolma mix` writes them: OUT/mixed).",
)
@click.option("--base-path", default=None, help="The tokenized base mix (default: DATA_ROOT/base/...).")
@click.option("--seq-len", type=click.IntRange(1), default=2048, show_default=True, help="Tokens per sample.")
@_errors_as_click
def export(
    manifest: str, fmt: str, out: str, data_root: str | None, base_path: str | None, seq_len: int
) -> None:
    """Express MANIFEST's token budget for a trainer (Megatron-LM, OLMo-core, MosaicML Streaming, nanotron,
    dolma), then re-derive every stream's tokens from the written file and fail if any is off by > 0.5%;
    warn where the trainer's whole-sample rounding can move a stream by more than that.

    \b
    Examples:
      selector export runs/demo/manifest --format megatron --out runs/demo/megatron_data_path.txt
      selector export runs/demo/manifest --format dolma --out runs/demo/dolma
    """
    from selector.export.trainers import export as run_export

    summary = run_export(manifest, fmt, out, data_root=data_root, base_path=base_path, seq_len=seq_len)
    for w in summary["warnings"]:
        click.echo(f"Warning: {w}", err=True)
    _emit(summary)


@cli.command(context_settings=CONTEXT)
@click.argument("manifest", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl.gz", "parquet"]),
    default="jsonl.gz",
    show_default=True,
    help="Output shard format.",
)
@click.option(
    "--max-shard-size", default="256MB", show_default=True, help="Bytes of JSONL per output shard at most."
)
@click.option("--seed", type=int, default=None, help="Shuffle seed (default: the manifest's).")
@click.option("--silent", is_flag=True, help="No progress on stderr.")
@_errors_as_click
def materialize(
    manifest: str, out_dir: str, fmt: str, max_shard_size: str, seed: int | None, silent: bool
) -> None:
    """Write the selected documents of MANIFEST with their text, each repeated as the manifest says, shuffled,
    in bounded shards per stream (OUT/<theme>/part-NNNNN.jsonl.gz), ready for a tokenizer. Streams through the
    input shards; checks they have not changed since scoring.

    \b
    Example:
      selector materialize runs/demo/manifest --out runs/demo/materialized
    """
    from selector.export.documents import materialize as run_materialize

    progress = _setup(silent)
    _emit(
        run_materialize(
            manifest,
            out_dir,
            fmt=fmt,
            max_shard_bytes=parse_bytes(max_shard_size),
            seed=seed,
            progress=progress,
        )
    )


@cli.command(context_settings=CONTEXT)
@click.argument("manifest", type=click.Path(exists=True))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The audit directory."
)
@click.option("--sample", "sample_size", type=click.IntRange(1), default=200, show_default=True,
              help="Documents to sample, split evenly over the streams.")  # fmt: skip
@click.option("--near-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.15, show_default=True,
              help="Share of each stream's sample drawn from near-threshold rejects.")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Sampling seed (default: the manifest's).")
@click.option(
    "--no-evidence", is_flag=True, help="Skip the seed exemplars and passage highlights (no embedding)."
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="labels.csv exported from the page: report precision for the audit in OUT instead of sampling.",
)
@click.option("--target-precision", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="Score buckets whose precision interval lies below this are flagged.")  # fmt: skip
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The labelling plan `selector annotate --scores` drew (LABELS.plan.parquet): without --labels, the "
    "page shows its documents for people to label; with --labels (the plan is found beside LABELS.csv or "
    "recorded by the page), estimate precision and recall of every stream over the whole corpus.",
)
@click.option("--silent", is_flag=True, help="No progress on stderr.")
@_errors_as_click
def audit(
    manifest: str,
    out_dir: str,
    sample_size: int,
    near_fraction: float,
    seed: int | None,
    no_evidence: bool,
    labels_path: str | None,
    target_precision: float,
    plan_path: str | None,
    silent: bool,
) -> None:
    """Write a review page (OUT/index.html) for a stratified, seeded sample of what MANIFEST selected, by
    theme, score bucket and source domain, with a slice of near-threshold rejects; label it with the keyboard
    and export labels.csv. With --labels, report precision per theme and bucket (95% Wilson intervals) and the
    estimated on-theme documents and tokens in the selection; the same file feeds `selector train --labels`.

    \b
    Examples:
      selector audit runs/demo/manifest --out runs/demo/audit
      selector audit runs/demo/manifest --out runs/demo/audit --labels ~/Downloads/labels.csv
      selector audit runs/cc/manifest --out runs/cc/audit --labels labels/r1.csv --plan labels/r1.plan.parquet
    """
    from selector.audit.page import render_page
    from selector.audit.report import audit as run_audit
    from selector.audit.report import plan_report, precision_report

    progress = _setup(silent)
    if labels_path is None:
        _emit(
            run_audit(
                manifest, out_dir, sample_size, near_fraction, seed, not no_evidence, progress, plan_path
            )
        )
        return
    beside = Path(labels_path).with_suffix(".plan.parquet")
    audit_json = Path(out_dir) / "audit.json"
    page_plan = json.loads(audit_json.read_text()).get("plan") if audit_json.exists() else None
    if plan_path is None and page_plan:
        plan_path = str(page_plan)
        progress(f"estimating from the labelling plan the page was drawn from: {plan_path}")
    elif plan_path is None and beside.exists():
        plan_path = str(beside)
        progress(f"estimating from the labelling plan beside the labels: {plan_path}")
    if plan_path is not None:
        rep = plan_report(manifest, plan_path, [labels_path])
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "estimates.json").write_text(json.dumps(rep, indent=2) + "\n")

        def fmt(x: dict[str, Any]) -> str:
            if x["estimate"] is None:
                return "n/a"
            return f"{x['estimate']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"

        for kind, rows in (("stream", rep["streams"]), ("threshold", rep["thresholds"])):
            for t, v in rows.items():
                if not v.get("labelled"):
                    progress(f"{kind} {t}: no labels")
                    continue
                pr, rc, pv = v["precision"], v["recall"], v["prevalence"]
                progress(
                    f"{kind} {t}: precision {fmt(pr)}, recall {fmt(rc)}, prevalence {fmt(pv)} "
                    f"({v['labelled']} labelled, {v['on_theme_labels']} on-theme)"
                )
        _emit(rep)
        return
    report = precision_report(out_dir, labels_path, target_precision)
    out = Path(out_dir)
    (out / "precision.json").write_text(json.dumps(report, indent=2) + "\n")
    page = json.loads((out / "page.json").read_text())
    page["precision"] = {
        t: {k: v[k] for k in ("labelled", "on", "precision", "low", "high")}
        for t, v in report["themes"].items()
    }
    render_page(out, page)
    for t, v in report["themes"].items():
        if v["precision"] is None:
            progress(f"{t}: no labels")
            continue
        progress(
            f"{t}: precision {v['precision']:.2f} [{v['low']:.2f}, {v['high']:.2f}] from {v['labelled']} labels; "
            + (
                f"about {v['estimated_on_theme_documents']:,.0f} of {v['selected_documents']:,} selected documents "
                "on-theme"
                if v["estimated_on_theme_documents"] is not None
                else "label every score bucket for an estimate of on-theme documents"
            )
            + (f"; below {target_precision}: {', '.join(v['below_target'])}" if v["below_target"] else "")
        )
    _emit(report)


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=False)
@click.option(
    "--scores",
    "scores_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Choose the documents from a `selector score` directory by the labelling strategy (docs/labelling.md) "
    "instead of taking INPUTS; writes the plan beside the labels (LABELS.plan.parquet).",
)
@click.option(
    "--candidates",
    is_flag=True,
    help="With --scores: label exactly the documents that reach a theme's threshold (the annotator as the "
    "cascade's last stage; feed the labels to `selector select --labels`).",
)
@label_files_option(
    "known_labels",
    "With --scores: labels from earlier rounds; their documents join the plan at no cost (repeatable).",
)
@click.option(
    "--endpoint",
    required=True,
    help="Base URL of an OpenAI-compatible server; requests go to URL/chat/completions (e.g. "
    "http://127.0.0.1:8000/v1).",
)
@click.option("--model", required=True, help="The model name the server knows.")
@click.option(
    "--budget",
    type=click.IntRange(1),
    required=True,
    help="Documents to annotate: the first N of INPUTS, or N new documents of the plan (--scores).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="LABELS.csv to write (doc_id,theme,label,reviewer,time,reason); its card goes to LABELS.json.",
)
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key, sent as a bearer token (not needed by local servers).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Requests in flight (default from config: 4).",
)
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="SQLite answer cache (default: LABELS.csv.cache.sqlite); a rerun asks only what it lacks.",
)
@click.option(
    "--retry-unparseable", is_flag=True, help="Ask again for documents whose cached answer was invalid."
)
@config_options
def annotate(
    inputs: tuple[str, ...],
    scores_dir: str | None,
    candidates: bool,
    known_labels: tuple[str, ...],
    endpoint: str,
    model: str,
    budget: int,
    out: str,
    api_key_env: str,
    concurrency: int | None,
    cache_path: str | None,
    retry_unparseable: bool,
    cfg: Any,
    progress: Callable[[str], None],
) -> None:
    """Label documents for every theme with an LLM behind any OpenAI-compatible chat-completions server
    (vLLM, SGLang, llama.cpp, Ollama, TGI, hosted APIs): one request per document, the themes' rubrics from
    the config, a JSON answer per theme (on / off / unsure and a reason). The documents are the first BUDGET
    of INPUTS, or BUDGET chosen from scores by the labelling strategy (--scores: around the thresholds, where
    fastText and the embedding head disagree, the top, and a random background, each label weighted for
    unbiased estimates). Writes LABELS.csv for `selector train --labels`, `select --labels` and the audit,
    and a LABELS.json card. Answers are cached: an interrupted run is resumed by running the same command.

    \b
    Examples:
      selector annotate --scores runs/cc --endpoint http://127.0.0.1:8000/v1 --model NAME --budget 1000 \\
        --out labels/r1.csv
      selector annotate --scores runs/cc --candidates --endpoint http://127.0.0.1:8000/v1 --model NAME \\
        --budget 5000 --out labels/candidates.csv
      selector annotate dumps/sample.jsonl --endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct \\
        --budget 500 --out labels/llm.csv
      OPENAI_API_KEY=... selector annotate dumps/ --endpoint https://api.openai.com/v1 --model gpt-4o-mini \\
        --budget 200 --out labels/gpt.csv --concurrency 8
    """
    from selector.label.annotate import AnnotateOptions, annotate_inputs
    from selector.label.sampling import annotate_scores

    if bool(inputs) == bool(scores_dir):
        raise click.UsageError(
            "give INPUTS (label the first --budget documents) or --scores DIR (the strategy)."
        )
    if not scores_dir and (candidates or known_labels):
        raise click.UsageError("--candidates and --labels choose documents from --scores DIR; give --scores.")

    opts = AnnotateOptions(
        endpoint=endpoint,
        model=model,
        out=Path(out),
        budget=budget,
        cache=Path(cache_path) if cache_path else None,
        api_key_env=api_key_env,
        concurrency=concurrency,
        retry_unparseable=retry_unparseable,
    )
    if scores_dir:
        if cfg.source == str(default_config_path()):
            cfg = _scores_config(scores_dir, cfg, progress)
        card = annotate_scores(
            scores_dir,
            cfg,
            opts,
            labels_paths=list(known_labels),
            candidates_only=candidates,
            progress=progress,
        )
    else:
        card = annotate_inputs(list(inputs), cfg, opts, progress=progress)
    _emit(
        {
            "labels_file": str(opts.out),
            "card": str(opts.card_path),
            "rubric_hash": card["rubric_hash"],
            "response_format": card["endpoint"]["response_format"],
            **{k: card[k] for k in ("documents", "labels")},
        }
    )


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

    from selector.audit.evaluation import evaluate, label_files, read_labels, table_lines
    from selector.score.run import read_scores

    scores = read_scores(scores_dir)
    themes = [c[len("score_") :] for c in scores.columns if c.startswith("score_")]
    frames = [read_labels(p, themes) for p in label_files(list(labels_paths))]
    # a document labelled in several files keeps every theme's label (the last file wins per theme)
    labels = (
        pl.concat(frames)
        .group_by("doc_id", maintain_order=True)
        .agg([pl.col(f"label_{t}").drop_nulls().last() for t in themes])
    )
    report = evaluate(scores, labels, themes, prefix=column, budget=budget)
    for line in table_lines(report):  # the table on stderr, the JSON on stdout
        progress(line)
    _emit(report)


def main() -> None:
    cli(prog_name="selector")


if __name__ == "__main__":
    main()
