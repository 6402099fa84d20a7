"""A scores directory as selection reads it: its parts, inputs and scoring metadata, and each theme's
threshold (the config's, the classifier's calibrated one, or a top fraction)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from selector.core.config import Config
from selector.core.errors import ManifestError
from selector.score.run import SCORES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoresInfo:
    """A finished scores directory: its parts, what made them, and the selection thresholds."""

    dir: Path
    parts: list[Path]
    inputs: list[dict[str, Any]]
    meta: dict[str, Any]
    themes: list[str]


def load_scores_info(scores_dir: str | Path) -> ScoresInfo:
    d = Path(scores_dir)
    if (d / SCORES).is_dir():
        d = d / SCORES
    meta_path = d / "_inputs.json"
    if not meta_path.exists():
        raise ManifestError(
            f"{d} is not a scores directory (no _inputs.json). Run `selector score INPUT --out DIR`."
        )
    meta = json.loads(meta_path.read_text())
    shards = meta.get("shards") or [
        {"part": p, "source": s, "label": Path(s).name, "format": None} for p, s in meta["parts"].items()
    ]
    unfinished = [sh["part"] for sh in shards if not (d / f"{sh['part']}.done").exists()]
    if unfinished:
        raise ManifestError(
            f"scores in {d} are incomplete: {len(unfinished)} of {len(shards)} part(s) unfinished "
            f"({', '.join(unfinished[:5])}). Rerun the same `selector score` command to finish them."
        )
    inputs = []
    for sh in shards:
        stats = json.loads((d / f"{sh['part']}.stats.json").read_text())
        fp = stats.get("signature", {}).get("shard", {})
        inputs.append(
            {
                **sh,
                "size": fp.get("size"),
                "mtime_ns": fp.get("mtime_ns"),
                "documents_in": stats["documents_in"],
                "scored": stats["scored"],
                "skipped": stats["skipped"],
                "skipped_by_reason": stats.get("skipped_by_reason", {}),
            }
        )
    parts = [d / f"{sh['part']}.parquet" for sh in shards]
    themes = [c[len("score_") :] for c in pl.read_parquet_schema(parts[0]) if c.startswith("score_")]
    return ScoresInfo(d, parts, inputs, meta, themes)


def stream_thresholds(cfg: Config, info: ScoresInfo, lf: pl.LazyFrame, n_docs: int) -> dict[str, float]:
    calibrated = info.meta.get("calibrated_thresholds") or {}
    out: dict[str, float] = {}
    for t in cfg.themes:
        if t.top_fraction > 0:
            k = max(1, math.ceil(t.top_fraction * n_docs))
            top = lf.select(pl.col(f"score_{t.name}").top_k(k).min()).collect().item()
            out[t.name] = float(top) if top is not None else 1.0
        elif t.threshold == "auto":
            if t.name not in calibrated:
                raise ManifestError(
                    f'themes.{t.name}.threshold is "auto" but the classifier behind {info.dir} has no calibrated '
                    "threshold for it (trained by an older selector). Give --threshold "
                    f"{t.name}=SCORE or --top-fraction {t.name}=FRACTION, or retrain."
                )
            out[t.name] = float(calibrated[t.name])
        else:
            out[t.name] = float(t.threshold)
    return out
