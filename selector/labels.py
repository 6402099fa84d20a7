"""Labels: one CSV format (`doc_id,theme,label[,reviewer,time,reason]`) read the same way by `train`, `eval`
and `audit`, whether a person gave them (the audit page) or `selector annotate` did (reviewer `llm:<model>`).
Labels: on_theme / off_theme / unsure (also on/off, 1/0, yes/no, true/false); `unsure` gives no label.

Where several files are read, a label given by a person beats one given by an LLM for the same document and
theme (`read_label_files`); among labels of the same kind the last row read wins."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

POSITIVE_LABELS = {"1", "on", "on_theme", "on-theme", "yes", "true", "positive", "pos"}
NEGATIVE_LABELS = {"0", "off", "off_theme", "off-theme", "no", "false", "negative", "neg"}
IGNORED_LABELS = {"unsure", "?", "skip", ""}
LLM_REVIEWER_PREFIX = "llm:"
UNNAMED_REVIEWER = "(no reviewer)"  # the source of rows whose reviewer column is absent or empty


def is_llm_reviewer(reviewer: str) -> bool:
    """True for labels written by `selector annotate` (reviewer `llm:<model>`)."""
    return reviewer.startswith(LLM_REVIEWER_PREFIX)


@dataclass(frozen=True)
class LabelSet:
    """Labels after precedence: `labels` maps (doc_id, theme) to 1 or 0; `sources` counts the labels in it by
    reviewer (`llm:<model>`, a person's name, or UNNAMED_REVIEWER), so a card can record every source;
    `overridden` counts LLM labels (or LLM `unsure`s) set aside because a person labelled the same pair."""

    labels: dict[tuple[str, str], int]
    sources: dict[str, int]
    overridden: int
    files: list[str] = field(default_factory=list)


def _rows(p: Path, themes: Sequence[str]) -> list[tuple[str, str, int | None, str]]:
    """A labels CSV -> (doc_id, theme, 1 / 0 / None for unsure, reviewer) in file order."""
    if not p.exists():
        raise InputError(f"labels file {p} not found.")
    out: list[tuple[str, str, int | None, str]] = []
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
            if lab in IGNORED_LABELS:
                out.append((doc, theme, None, reviewer))
            elif lab in POSITIVE_LABELS:
                out.append((doc, theme, 1, reviewer))
            elif lab in NEGATIVE_LABELS:
                out.append((doc, theme, 0, reviewer))
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
    kept: dict[tuple[str, str], tuple[int | None, str]] = {}
    overridden = 0
    for path in paths:
        for doc, theme, value, reviewer in _rows(Path(path), themes):
            key = (doc, theme)
            prev = kept.get(key)
            llm = is_llm_reviewer(reviewer)
            if prev is None:
                kept[key] = (value, reviewer)
            elif llm and not is_llm_reviewer(prev[1]):
                overridden += 1  # a person already labelled this pair
            elif not llm and is_llm_reviewer(prev[1]):
                overridden += 1  # a person's row, even `unsure`, sets the LLM's aside
                kept[key] = (value, reviewer)
            elif value is not None or prev[0] is None:
                kept[key] = (value, reviewer)  # same kind: the last label wins; a later `unsure` is ignored
    labels = {k: v for k, (v, _) in kept.items() if v is not None}
    sources = Counter(r for v, r in kept.values() if v is not None)
    return LabelSet(
        labels=labels,
        sources=dict(sorted(sources.items())),
        overridden=overridden,
        files=[str(p) for p in paths],
    )


def read_label_csv(path: str | Path, themes: Sequence[str]) -> dict[tuple[str, str], int]:
    """CSV -> {(doc_id, theme): 1 or 0}. A person's label beats an LLM's for the same pair; otherwise, where a
    document was labelled twice for a theme, the last row wins."""
    return read_label_files([path], themes).labels
