"""Seed exemplars: per theme, positives and near misses (the hard cases) from a JSONL file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from selector.core.config import Config
from selector.core.errors import ConfigError

LABELS = ("positive", "near_miss")


@dataclass(frozen=True)
class Seed:
    theme: str
    seed_id: str
    label: str  # "positive" | "near_miss"
    text: str


def load_seed_file(theme: str, path: Path) -> list[Seed]:
    """Read one theme's seed file: lines of {"id", "text", "label": "positive"|"near_miss"} (label defaults
    to positive, so a file of real on-theme documents works as it is)."""
    if not path.exists():
        raise ConfigError(f"themes.{theme}.seeds: {path} not found. Point it at a JSONL file of exemplars.")
    seeds: list[Seed] = []
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}:{n}: not a JSON object ({e}). Fix or remove the line.") from e
            text = obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(
                    f'{path}:{n}: seed has no "text" string. Each line needs {{"text": "..."}}.'
                )
            label = obj.get("label", "positive")
            if label not in LABELS:
                raise ConfigError(f'{path}:{n}: label must be "positive" or "near_miss", got {label!r}.')
            sid = str(obj.get("id", f"{theme}-{n}"))
            seeds.append(Seed(theme=theme, seed_id=sid, label=label, text=text))
    if not any(s.label == "positive" for s in seeds):
        raise ConfigError(f"{path}: no positive seed for theme {theme}; at least one is needed.")
    return seeds


def load_seeds(cfg: Config) -> list[Seed]:
    out: list[Seed] = []
    for t in cfg.themes:
        out.extend(load_seed_file(t.name, t.seeds))
    return out


def seed_hashes(cfg: Config) -> dict[str, str]:
    """sha256 of every theme's seed file, for cards and manifests."""
    return {t.name: hashlib.sha256(t.seeds.read_bytes()).hexdigest() for t in cfg.themes}
