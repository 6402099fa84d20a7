"""Labels: one CSV format (`doc_id,theme,label[,reviewer,time,reason]`) read the same way by `train`,
`select`, `eval` and `audit`, whether a person gave them (the audit page) or `selector annotate` did
(reviewer `llm:<model>`). Labels: on_theme / off_theme / unsure (also on/off, 1/0, yes/no, true/false);
`unsure` gives no label.

Where several files are read, a label given by a person beats one given by an LLM for the same document and
theme (`read_label_files`), even a person's `unsure` (the pair then has no label); among labels of the
same kind the last row read wins."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selector.core.errors import InputError

POSITIVE_LABELS = {"1", "on", "on_theme", "on-theme", "yes", "true", "positive", "pos"}
NEGATIVE_LABELS = {"0", "off", "off_theme", "off-theme", "no", "false", "negative", "neg"}
IGNORED_LABELS = {"unsure", "?", "skip", ""}
LLM_REVIEWER_PREFIX = "llm:"
UNNAMED_REVIEWER = "(no reviewer)"  # the source of rows whose reviewer column is absent or empty


def is_llm_reviewer(reviewer: str) -> bool:
    """True for labels written by `selector annotate` (reviewer `llm:<model>`)."""
    return reviewer.startswith(LLM_REVIEWER_PREFIX)


@dataclass
class LabelSet:
    """Labels after precedence: `labels` maps (doc_id, theme) to 1 or 0, `reviewer` and `reason` say who gave
    the label kept and why; `sources` counts the labels by reviewer (`llm:<model>`, a person's name, or
    UNNAMED_REVIEWER); `overridden` counts LLM labels (or LLM `unsure`s) set aside because a person labelled
    the same pair; `files` are the files read, in order. `info` is what a card or manifest records."""

    labels: dict[tuple[str, str], int] = field(default_factory=dict)
    reviewer: dict[tuple[str, str], str] = field(default_factory=dict)
    reason: dict[tuple[str, str], str] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    overridden: int = 0
    files: list[str] = field(default_factory=list)
    file_hashes: list[str] = field(default_factory=list)

    @property
    def info(self) -> dict[str, Any]:
        on = Counter(self.reviewer[k] for k, v in self.labels.items() if v == 1)
        return {
            "files": [{"file": f, "sha256": h} for f, h in zip(self.files, self.file_hashes, strict=True)],
            "labels": len(self.labels),
            "sources": {r: {"labels": n, "on": on.get(r, 0)} for r, n in self.sources.items()},
            "llm_labels_overridden_by_people": self.overridden,
        }


Row = tuple[str, str, int | None, str, str]  # doc_id, theme, 1 / 0 / None for unsure, reviewer, reason


def _rows(p: Path, themes: Sequence[str]) -> list[Row]:
    """A labels CSV -> its rows in file order."""
    if not p.exists():
        raise InputError(f"labels file {p} not found.")
    out: list[Row] = []
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
            reviewer = (r.get("reviewer") or "").strip() or UNNAMED_REVIEWER
            reason = (r.get("reason") or "").strip()
            if lab in IGNORED_LABELS:
                out.append((doc, theme, None, reviewer, reason))
            elif lab in POSITIVE_LABELS:
                out.append((doc, theme, 1, reviewer, reason))
            elif lab in NEGATIVE_LABELS:
                out.append((doc, theme, 0, reviewer, reason))
            else:
                raise InputError(
                    f"{p}:{n}: label {r['label']!r} is not one of on_theme/off_theme/unsure (or 1/0)."
                )
    return out


def read_label_files(paths: Sequence[str | Path], themes: Sequence[str]) -> LabelSet:
    """Several labels CSVs -> one `LabelSet`. For each (doc_id, theme) a row from a person (a reviewer not
    starting with `llm:`) beats every `llm:` row, even where the person said `unsure` (then the pair has no
    label); otherwise the last label read wins (files in the order given, rows in file order) and a later
    `unsure` does not erase an earlier label."""
    kept: dict[tuple[str, str], tuple[int | None, str, str]] = {}
    overridden = 0
    hashes = []
    for path in paths:
        hashes.append(hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).exists() else "")
        for doc, theme, value, reviewer, reason in _rows(Path(path), themes):
            key = (doc, theme)
            prev = kept.get(key)
            llm = is_llm_reviewer(reviewer)
            if prev is None:
                kept[key] = (value, reviewer, reason)
            elif llm and not is_llm_reviewer(prev[1]):
                overridden += 1  # a person already labelled this pair
            elif not llm and is_llm_reviewer(prev[1]):
                overridden += 1  # a person's row, even `unsure`, sets the LLM's aside
                kept[key] = (value, reviewer, reason)
            elif value is not None or prev[0] is None:
                kept[key] = (
                    value,
                    reviewer,
                    reason,
                )  # same kind: the last label wins; a later `unsure` is ignored
    out = LabelSet(overridden=overridden, files=[str(p) for p in paths], file_hashes=hashes)
    for k, (v, who, why) in kept.items():
        if v is None:
            continue
        out.labels[k], out.reviewer[k], out.reason[k] = v, who, why
    out.sources = dict(sorted(Counter(out.reviewer.values()).items()))
    return out


def read_label_csv(path: str | Path, themes: Sequence[str]) -> dict[tuple[str, str], int]:
    """CSV -> {(doc_id, theme): 1 or 0}. A person's label beats an LLM's for the same pair; otherwise, where a
    document was labelled twice for a theme, the last row wins."""
    return read_label_files([path], themes).labels
