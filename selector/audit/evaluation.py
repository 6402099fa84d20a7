"""Measure scores against labels: `evaluate(scores, labels)` -> average precision and recall at a budget."""

from __future__ import annotations

import glob as globmod
import gzip
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from selector.core.errors import InputError
from selector.core.labels import read_label_csv
from selector.core.metrics import average_precision, recall_at_budget


def read_labels(path: str | Path, themes: list[str]) -> pl.DataFrame:
    """Labels -> one row per document: `doc_id`, then per theme a nullable boolean `label_<theme>`.

    Accepted: JSONL(.gz) with `doc_id` (or `id`) and `themes` (or `meta.themes`): a list of on-themes, where
    a missing or null list means unlabelled; or CSV `doc_id,theme,label` (on_theme/off_theme/unsure, 1/0)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"labels file {p} not found.")
    rows: dict[str, dict[str, bool | None]] = {}
    if p.suffix == ".csv":
        for (doc, theme), v in read_label_csv(p, themes).items():
            rows.setdefault(doc, {})[theme] = bool(v)
    else:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{p}:{n}: not JSON ({e.msg}).") from e
                doc = obj.get("doc_id", obj.get("id"))
                labs = obj.get("themes", (obj.get("meta") or {}).get("themes"))
                if doc is None:
                    raise InputError(f"{p}:{n}: no doc_id or id.")
                rows[str(doc)] = {t: None if labs is None else t in labs for t in themes}
    data: dict[str, list[Any]] = {"doc_id": list(rows)}
    for t in themes:
        data[f"label_{t}"] = [rows[d].get(t) for d in rows]
    return pl.DataFrame(data, schema={"doc_id": pl.String, **{f"label_{t}": pl.Boolean for t in themes}})


def label_files(values: list[str]) -> list[Path]:
    """Expand --labels values: files, directories (their .jsonl/.jsonl.gz/.csv files) and globs."""
    out: list[Path] = []
    for v in values:
        p = Path(v)
        if any(ch in v for ch in "*?["):
            found = sorted(Path(m) for m in globmod.glob(v, recursive=True))
        elif p.is_dir():
            found = sorted(f for f in p.iterdir() if f.name.endswith((".jsonl", ".jsonl.gz", ".csv")))
        else:
            found = [p]
        if not found:
            raise InputError(
                f"--labels {v}: no labels file found there (looked for .jsonl, .jsonl.gz, .csv)."
            )
        out.extend(found)
    return out


def evaluate(
    scores: pl.DataFrame, labels: pl.DataFrame, themes: list[str], prefix: str = "score", budget: float = 0.01
) -> dict[str, Any]:
    """Per theme: average precision of `<prefix>_<theme>` and recall within the top `budget` share of
    documents, over documents with a label for that theme."""
    joined = scores.join(labels, on="doc_id", how="inner")
    if joined.height == 0:
        raise InputError(
            "no scored document has a label: do the doc_id values of the labels match the scores?"
        )
    out: dict[str, Any] = {
        "documents_scored": scores.height,
        "documents_labelled": joined.height,
        "budget_fraction": budget,
        "themes": {},
    }
    for t in themes:
        col = f"{prefix}_{t}"
        if col not in joined.columns:
            raise InputError(f"column {col} is not in the scores; available: {', '.join(scores.columns)}.")
        sub = joined.filter(pl.col(f"label_{t}").is_not_null())
        truth = sub[f"label_{t}"].to_numpy().astype(bool)
        s = sub[col].fill_null(0.0).to_numpy()
        k = max(1, math.ceil(budget * sub.height))
        ap = average_precision(s, truth)
        out["themes"][t] = {
            "labelled": sub.height,
            "positives": int(truth.sum()),
            "average_precision": None if math.isnan(ap) else round(ap, 4),
            "budget_docs": k,
            "recall_at_budget": None if not truth.any() else round(recall_at_budget(s, truth, k), 4),
        }
    if "embedded" in scores.columns:
        out["embedded_fraction"] = round(int(scores["embedded"].sum()) / max(scores.height, 1), 6)
    return out


def top_false_positives(
    scores: pl.DataFrame, labels: pl.DataFrame, theme: str, n: int = 10, prefix: str = "score"
) -> pl.DataFrame:
    joined = scores.join(labels, on="doc_id", how="inner")
    return (
        joined.filter(pl.col(f"label_{theme}") == False)  # noqa: E712 - polars expression
        .sort(f"{prefix}_{theme}", descending=True)
        .head(n)
    )


def table_lines(report: dict[str, Any]) -> list[str]:
    """`evaluate`'s report as a table a person reads: one line per theme, then the totals."""

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    budget = report["budget_fraction"]
    lines = [f"{'theme':<16}{'labelled':>9}{'positives':>10}{'avg precision':>15}{f'recall@{budget:g}':>14}"]
    for t, v in report["themes"].items():
        lines.append(
            f"{t:<16}{v['labelled']:>9,}{v['positives']:>10,}{num(v['average_precision']):>15}"
            f"{num(v['recall_at_budget']):>14}"
        )
    tail = f"{report['documents_labelled']:,} of {report['documents_scored']:,} scored documents labelled"
    if "embedded_fraction" in report:
        tail += f"; {100 * report['embedded_fraction']:.2f}% embedded"
    return [*lines, tail]
