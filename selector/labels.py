"""Labels: one CSV format (`doc_id,theme,label[,reviewer,time,reason]`) read the same way by `train`,
`select`, `audit` and `eval`. Labels: on_theme / off_theme / unsure (also on/off, 1/0, yes/no, true/false);
`unsure` is ignored. A reviewer `llm:<model>` marks an annotator's label; any other reviewer (or none) is a
person's, and a person's label wins over an annotator's for the same document and theme."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

POSITIVE_LABELS = {"1", "on", "on_theme", "on-theme", "yes", "true", "positive", "pos"}
NEGATIVE_LABELS = {"0", "off", "off_theme", "off-theme", "no", "false", "negative", "neg"}
IGNORED_LABELS = {"unsure", "?", "skip", ""}


LLM_PREFIX = "llm:"


def read_label_csv(path: str | Path, themes: Sequence[str]) -> dict[tuple[str, str], int]:
    """CSV -> {(doc_id, theme): 1 or 0}. Where a document was labelled twice for a theme, the last row wins."""
    return {k: v for k, (v, _who, _why) in _read_rows(path, themes).items()}


@dataclass
class LabelSet:
    """Labels merged from several files: `labels` {(doc_id, theme): 1 or 0}, `reviewer` and `reason` of
    the label kept, and what the card records (`info`: files with hashes, counts per source)."""

    labels: dict[tuple[str, str], int] = field(default_factory=dict)
    reviewer: dict[tuple[str, str], str] = field(default_factory=dict)
    reason: dict[tuple[str, str], str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def is_annotator(reviewer: str) -> bool:
    return reviewer.startswith(LLM_PREFIX)


def read_label_files(paths: Sequence[str | Path], themes: Sequence[str]) -> LabelSet:
    """Merge label CSVs: within a source kind the later file (and row) wins; a person's label always beats
    an annotator's (`reviewer = llm:<model>`) for the same (doc_id, theme)."""
    out = LabelSet()
    files = []
    overridden = 0
    for p in paths:
        rows = _read_rows(p, themes)
        files.append(
            {"file": str(p), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(), "labels": len(rows)}
        )
        for key, (v, who, why) in rows.items():
            old = out.reviewer.get(key)
            if old is not None and not is_annotator(old) and is_annotator(who):
                overridden += 1
                continue  # a person's label stays
            if old is not None and is_annotator(old) and not is_annotator(who) and out.labels[key] != v:
                overridden += 1
            out.labels[key], out.reviewer[key], out.reason[key] = v, who, why
    sources: dict[str, Counter[str]] = {}
    for key, v in out.labels.items():
        who = out.reviewer[key] or "human"
        sources.setdefault(who, Counter())["on" if v else "off"] += 1
    out.info = {
        "files": files,
        "labels": len(out.labels),
        "sources": {k: dict(c) for k, c in sorted(sources.items())},
        "annotator_labels_overridden_by_people": overridden,
    }
    return out


def _read_rows(path: str | Path, themes: Sequence[str]) -> dict[tuple[str, str], tuple[int, str, str]]:
    """CSV -> {(doc_id, theme): (1 or 0, reviewer, reason)}, the last row winning."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"labels file {p} not found.")
    out: dict[tuple[str, str], tuple[int, str, str]] = {}
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"doc_id", "theme", "label"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise InputError(
                f"{p}: expected a CSV header with doc_id,theme,label; found {reader.fieldnames}."
            )
        for n, r in enumerate(reader, start=2):
            if any(r.get(k) is None for k in need):
                raise InputError(f"{p}:{n}: the row has fewer than 3 columns (doc_id,theme,label).")
            doc, theme, lab = r["doc_id"].strip(), r["theme"].strip(), r["label"].strip().lower()
            if theme not in themes:
                raise InputError(f"{p}:{n}: theme {theme!r} is not configured ({', '.join(themes)}).")
            if lab in IGNORED_LABELS:
                continue
            who, why = (r.get("reviewer") or "").strip(), (r.get("reason") or "").strip()
            if lab in POSITIVE_LABELS:
                out[(doc, theme)] = (1, who, why)
            elif lab in NEGATIVE_LABELS:
                out[(doc, theme)] = (0, who, why)
            else:
                raise InputError(
                    f"{p}:{n}: label {r['label']!r} is not one of on_theme/off_theme/unsure (or 1/0)."
                )
    return out
