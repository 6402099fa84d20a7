"""Human labels: one CSV format (`doc_id,theme,label[,reviewer,time]`) read the same way by `train` and
`eval`. Labels: on_theme / off_theme / unsure (also 1/0, yes/no, true/false); `unsure` is ignored."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError

POSITIVE_LABELS = {"1", "on", "on_theme", "on-theme", "yes", "true", "positive", "pos"}
NEGATIVE_LABELS = {"0", "off", "off_theme", "off-theme", "no", "false", "negative", "neg"}
IGNORED_LABELS = {"unsure", "?", "skip", ""}


def read_label_csv(path: str | Path, themes: Sequence[str]) -> dict[tuple[str, str], int]:
    """CSV -> {(doc_id, theme): 1 or 0}. Where a document was labelled twice for a theme, the last row wins."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"labels file {p} not found.")
    out: dict[tuple[str, str], int] = {}
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
            if lab in POSITIVE_LABELS:
                out[(doc, theme)] = 1
            elif lab in NEGATIVE_LABELS:
                out[(doc, theme)] = 0
            else:
                raise InputError(
                    f"{p}:{n}: label {r['label']!r} is not one of on_theme/off_theme/unsure (or 1/0)."
                )
    return out
