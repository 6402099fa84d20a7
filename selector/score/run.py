"""Score shards with the cascade: `score(inputs, out_dir, classifier, cfg)` -> DIR/scores/part-NNNNN.parquet.

The plan around the cascade (`score/cascade.py` scores one shard into one part): find and check the
shards, give each a part and a signature, skip the parts whose `.done` marker matches the same shard,
config and classifier (so a killed run resumes), remove what a killed run left half-written, run the rest
through an executor (`score/executors.py`: local processes or Ray), then write `_inputs.json` and the
run's summary and warn when the thresholds cannot be trusted on these scores (`calibration_warning`).
`read_scores` reads a scores directory back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from selector.core.config import Config, ReadConfig
from selector.core.errors import ConfigError, SelectorError
from selector.core.paths import atomic_write
from selector.read.formats import check_shard, discover_shards
from selector.score.cascade import (
    ShardScorer,
    Task,
    calibrated_weight,
    marker_matches,
    part_name,
    scoring_hash,
    weight_mismatch,
)

if TYPE_CHECKING:
    from selector.score.executors import RayOptions

log = logging.getLogger(__name__)
SCORES = "scores"


@dataclass
class ScoreSummary:
    out_dir: Path
    parts: list[dict[str, Any]]
    skipped_parts: int
    seconds: float
    failed: list[dict[str, Any]] = field(default_factory=list)
    executor: str = "local"
    calibration_warning: str | None = None

    def totals(self) -> dict[str, Any]:
        keys = ("documents_in", "scored", "skipped", "embedded")
        tot: dict[str, Any] = {k: sum(int(p.get(k, 0)) for p in self.parts) for k in keys}
        reasons: dict[str, int] = {}
        for p in self.parts:
            for r, c in p.get("skipped_by_reason", {}).items():
                reasons[r] = reasons.get(r, 0) + c
        tot["skipped_by_reason"] = dict(sorted(reasons.items()))
        above: dict[str, int] = {}
        for p in self.parts:
            for t, c in p.get("above_threshold", {}).items():
                above[t] = above.get(t, 0) + c
        tot["above_threshold"] = above
        top: dict[str, float] = {}
        for p in self.parts:
            for t, v in p.get("max_score", {}).items():
                top[t] = max(top.get(t, 0.0), float(v))
        tot["max_score"] = top
        tot["embedded_fraction"] = round(tot["embedded"] / tot["scored"], 6) if tot["scored"] else 0.0
        tot["parts"] = len(self.parts)
        tot["parts_reused"] = self.skipped_parts
        tot["parts_failed"] = len(self.failed)
        tot["failed"] = self.failed
        tot["complete"] = not self.failed
        tot["executor"] = self.executor
        tot["seconds"] = round(self.seconds, 2)
        tot["calibration_warning"] = self.calibration_warning
        return tot


def score(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    classifier_dir: str | Path,
    cfg: Config,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[str], None] = log.info,
    executor: str = "local",
    retries: int = 2,
    ray: RayOptions | None = None,
    progress_every: float = 10.0,
) -> ScoreSummary:
    """Score every shard of `inputs` into `out_dir/scores/`; finished parts are reused unless `force`.

    `executor` "local" scores in this process (`workers` 1) or in `workers` processes; "ray" in `workers`
    Ray actors (see executors.run_ray and `ray`). A shard that fails is tried `retries` more times, then
    listed in the summary's `failed` while the other shards go on; rerunning scores only what is unfinished.
    """
    from selector.score import executors

    if executor not in executors.EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(executors.EXECUTORS)}, got {executor!r}")
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    if executor == "ray":
        executors.import_ray()  # fails here, before any work, when Ray is not installed
    elif ray is not None and ray != executors.RayOptions():
        raise ConfigError("Ray options (--ray-address, --embed-workers, ...) need --executor ray.")
    if cfg.embedding.bf16 == "auto":
        # decided once, here, and sent to every worker: nodes that differ must not mix bf16 and fp32 parts
        from selector.score.embed import cpu_has_bf16

        on = cfg.embedding.device.startswith("cuda") or cpu_has_bf16()
        cfg = cfg.replace("embedding", bf16="on" if on else "off")
    t0 = time.time()
    shards = discover_shards(inputs)
    scorer = ShardScorer(cfg, classifier_dir)  # loads early so a bad classifier fails before any work
    card_w = calibrated_weight(scorer.clf.card)
    mismatch = weight_mismatch(cfg, cfg.cascade.embedding_weight, card_w)
    if mismatch:
        progress(f"warning: {mismatch}")
    sdir = Path(out_dir) / SCORES
    base_sig = {"scoring": scoring_hash(cfg), "classifier": scorer.clf.identity}
    # absolute, so workers started elsewhere (Ray) write to the same place
    where = os.path.abspath(sdir)
    tasks = [Task(i, sh, where, {**base_sig, "shard": sh.fingerprint()}) for i, sh in enumerate(shards)]
    todo, done = [], []
    for task in tasks:
        name = part_name(task.index)
        if (
            not force
            and marker_matches(sdir / f"{name}.done", task.signature)
            and (sdir / f"{name}.parquet").exists()
            and (sdir / f"{name}.stats.json").exists()
        ):
            done.append(json.loads((sdir / f"{name}.stats.json").read_text()))
        else:
            todo.append(task)
    # shards still to do are checked before anything is written, so a bad one leaves no output behind
    for task in todo:
        check_shard(task.shard, cfg.read)
    sdir.mkdir(parents=True, exist_ok=True)
    # leftovers of an interrupted run (a killed worker cannot clean up after itself)
    _remove_leftovers(sdir)
    (sdir / "_summary.json").unlink(missing_ok=True)  # written again when this run ends
    for task in todo:
        (sdir / f"{part_name(task.index)}.done").unlink(missing_ok=True)
    # parts left over from an earlier run with more shards would be read as results: remove them
    for stale in sdir.glob("part-*"):
        try:
            idx = int(stale.name[5:10])
        except ValueError:
            continue
        if idx >= len(tasks):
            stale.unlink()
    atomic_write(
        sdir / "_inputs.json",
        json.dumps(
            {
                "parts": {part_name(t.index): t.shard.source for t in tasks},
                "shards": [
                    {
                        "part": part_name(t.index),
                        "source": t.shard.source,
                        "label": t.shard.label,
                        "format": t.shard.format,
                    }
                    for t in tasks
                ],
                "config": cfg.to_dict(),
                "config_hash": cfg.hash(),
                "classifier": str(classifier_dir),
                "classifier_fingerprint": scorer.clf.identity,
                "gates": scorer.gates,
                "thresholds": scorer.thresholds,
                "calibrated_thresholds": scorer.clf.card.get("thresholds"),
                "calibrated_embedding_weight": card_w,
            },
            indent=2,
        )
        + "\n",
    )
    if done:
        progress(f"{len(done)} of {len(tasks)} part(s) already finished; reusing them (--force redoes them)")
    tracker = executors.Tracker(todo, progress, retries, every=progress_every, batch_size=cfg.read.batch_size)
    executors.run(executor, todo, tracker, cfg, os.path.abspath(classifier_dir), scorer, workers, ray)
    # temporary files of attempts whose worker was killed (the retry wrote its part under another name)
    _remove_leftovers(sdir)
    parts = sorted(done + tracker.results, key=lambda s: s["part"])
    failed = sorted(tracker.failed, key=lambda f: f["part"])
    summary = ScoreSummary(Path(out_dir), parts, len(done), time.time() - t0, failed, executor)
    summary.calibration_warning = calibration_warning(
        summary.totals(), scorer.clf.card, cfg, scorer.thresholds, str(classifier_dir), inputs, out_dir
    )
    if summary.calibration_warning:
        log.warning("warning: %s", summary.calibration_warning)  # shown under --silent too
    atomic_write(sdir / "_summary.json", json.dumps(summary.totals(), indent=2) + "\n")
    return summary


# An embedded share this many times what the classifier's gates embedded when they were calibrated says the
# dump is unlike the text it was trained on.
EMBED_RATIO = 3.0
# The threshold check needs enough documents that a theme's expected share (the card's pseudo-positive
# fraction) comes to at least this many.
MIN_EXPECTED_ON_THEME = 5


def calibration_warning(
    totals: dict[str, Any],
    card: dict[str, Any],
    cfg: Config,
    thresholds: dict[str, float],
    classifier_dir: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
) -> str | None:
    """One line saying the classifier's calibration does not fit the scored documents, from their score
    distribution and the figures on the classifier's card, and what to run instead; None when it fits.

    It does not fit when the gates embed several times (EMBED_RATIO) the share they were calibrated to
    (the larger of the card's cascade.target_embed_fraction and validation_embed_fraction), or when no
    document reaches the calibrated threshold of an upsampled theme although enough were scored for the
    card's pseudo-positive fraction to expect MIN_EXPECTED_ON_THEME of them."""
    n = int(totals.get("scored") or 0)
    if not n:
        return None
    problems = []
    calibrated = card.get("cascade", {}).get("target_embed_fraction", cfg.cascade.target_embed_fraction)
    expected = max(float(calibrated), float(card.get("validation_embed_fraction") or 0.0))
    share = float(totals.get("embedded_fraction") or 0.0)
    embed_note = (
        f"{100 * share:.1f}% of the documents were embedded (its gates were calibrated to embed about "
        f"{100 * float(calibrated):.1f}%"
        + (
            f", {100 * float(card['validation_embed_fraction']):.1f}% on its validation split)"
            if card.get("validation_embed_fraction") is not None
            else ")"
        )
    )
    if cfg.cascade.gate == "auto" and share > EMBED_RATIO * expected:
        problems.append(embed_note)
    rate = float(card.get("train", {}).get("pseudo_positive_fraction") or cfg.train.pseudo_positive_fraction)
    auto = [t.name for t in cfg.themes if t.upsample and t.threshold == "auto" and t.top_fraction == 0]
    above, top = totals.get("above_threshold", {}), totals.get("max_score", {})
    none = [t for t in auto if t in above and not above[t] and t in thresholds]
    if none and n * rate >= MIN_EXPECTED_ON_THEME:
        problems.insert(
            0,
            "no document reaches the calibrated threshold of "
            + ", ".join(
                f"{t} (highest score {float(top[t]):.3f} < {thresholds[t]:.3f})" if t in top else t
                for t in none
            ),
        )
    if not problems:
        return None
    if embed_note not in problems:
        problems.append(embed_note)  # context for the threshold finding
    shown = [str(i) for i in inputs[:2]] + (["..."] if len(inputs) > 2 else [])
    ins = " ".join(shown) or "INPUT"
    r = cfg.read  # the reading options the user gave, so the commands run as printed
    flags = "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("text-column", r.text_column, ReadConfig.text_column),
            ("id-column", r.id_column, ReadConfig.id_column),
        )
        if value != default
    )
    theme = (none or auto or cfg.theme_names)[0]
    return (
        f"the classifier {classifier_dir} does not fit these {n:,} documents: {'; '.join(problems)}. Train one "
        f"on this dump: `selector train {ins} --out classifiers/mine{flags}`, then score with `--classifier "
        f"classifiers/mine`; or run the whole job: `selector run --input {ins} --out DIR{flags}`; or select by "
        f"rank: `selector select --scores {out_dir} --out {out_dir} --top-fraction {theme}=0.001`."
    )


def _remove_leftovers(sdir: Path) -> None:
    for leftover in sdir.glob(".*.tmp-*"):
        leftover.unlink(missing_ok=True)


def read_scores(scores_dir: str | Path) -> pl.DataFrame:
    """All finished parts of a scores directory (DIR or DIR/scores) as one frame."""
    d = Path(scores_dir)
    if (d / SCORES).is_dir():
        d = d / SCORES
    parts = sorted(p for p in d.glob("part-*.parquet") if p.with_suffix(".done").exists())
    if not parts:
        raise SelectorError(f"no finished score parts in {d}. Run `selector score INPUT --out DIR` first.")
    return pl.concat([pl.read_parquet(p) for p in parts], how="vertical")
