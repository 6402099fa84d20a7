"""Locating and reading a manifest directory written by `selector select` (see docs/manifest.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selector.core.errors import ManifestError

MANIFEST_FORMAT = "selector-manifest/1"
MANIFEST_DIR = "manifest"


def manifest_dir(path: str | Path) -> Path:
    """The manifest directory, given it, the run directory holding `manifest/`, or its manifest.json."""
    p = Path(path)
    if p.is_file() and p.name == "manifest.json":
        p = p.parent
    elif not (p / "manifest.json").is_file() and (p / MANIFEST_DIR / "manifest.json").is_file():
        p = p / MANIFEST_DIR
    if not (p / "manifest.json").is_file():
        raise ManifestError(
            f"no manifest at {path} (looked for {p / 'manifest.json'}). Run "
            "`selector select --scores RUN --out RUN` and pass RUN/manifest."
        )
    return p.resolve()


def load_manifest(path: str | Path, required: tuple[str, ...] = ("streams",)) -> tuple[Path, dict[str, Any]]:
    """(manifest directory, manifest.json content), checked for the format version and the `required` keys."""
    mdir = manifest_dir(path)
    mf = mdir / "manifest.json"
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(
            f"{mf} cannot be read as JSON ({e}). Run `selector select` again to rewrite it."
        ) from e
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        found = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise ManifestError(
            f"{mf} is in format {found!r}; this selector reads {MANIFEST_FORMAT!r}. Run `selector select` with "
            "this version to rewrite it."
        )
    for key in required:
        if key not in m:
            raise ManifestError(f"{mf} lacks {key!r}. Run `selector select` again to rewrite it.")
    return mdir, m
