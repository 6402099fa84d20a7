"""Regenerate the configuration reference in docs/configuration.md from the config dataclasses.

python scripts/config_reference.py          # rewrite docs/configuration.md in place

Keys, types and defaults come from the dataclasses themselves; what each key means is written here, in
MEANINGS. tests/test_docs.py fails when the page is out of date, when a key has no meaning here, or when
a meaning names a key the dataclasses no longer have.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from cli_reference import rewrite_between

from selector.core import config as config_module

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# Section -> (dataclass name, one line on what the section is for, the page that explains it).
SECTIONS: dict[str, tuple[str, str, str]] = {
    "themes.<name>": ("ThemeConfig", "one table per theme", "themes.md"),
    "read": ("ReadConfig", "how dumps are read", "reading.md"),
    "embedding": (
        "EmbeddingConfig",
        "the sentence-transformers model of the cascade's second stage",
        "scoring.md",
    ),
    "cascade": ("CascadeConfig", "the gate and how the two scores combine", "scoring.md"),
    "fasttext": ("FastTextConfig", "the fastText student", "training.md"),
    "train": ("TrainConfig", "teacher-student training and learning from labels", "training.md"),
    "select": ("SelectConfig", "from scores to a manifest", "selecting.md"),
    "annotate": ("AnnotateConfig", "the LLM annotator's client", "annotating.md"),
}

MEANINGS: dict[str, str] = {
    # [themes.<name>]
    "themes.seeds": 'path of the seed JSONL file (lines of `{"text": ...}`, optional `"label": "near_miss"`), '
    "relative to the config file",
    "themes.upsample": "`false`: scored and reported, never given a stream (a stance label such as `ai_risk`)",
    "themes.threshold": '`"auto"`: the classifier\'s calibrated threshold (`card.json`); or a score in [0, 1]',
    "themes.top_fraction": "> 0: qualify this top share of the scored documents instead of a threshold; in [0, 1)",
    "themes.target_share": "share of the training run's tokens the theme's stream should have, in [0, 1); "
    "the themes' shares add up to less than 1",
    "themes.target_tokens": "the stream's tokens directly (at most one of `target_share` and `target_tokens`; "
    "neither: each qualifying document once)",
    "themes.description": "one line on the theme, for people reading the config (recorded with it)",
    "themes.rubric": "the definition `selector annotate` sends the LLM (on, off, the hard cases); its hash is in "
    "every label file",
    # [read]
    "read.text_column": "the column holding the text (`--text-column`)",
    "read.id_column": "the column holding the document id (`--id-column`); shards without `id` get "
    "`<shard>#<row>` ids",
    "read.url_column": "the column holding the URL, kept when present",
    "read.batch_size": "documents per batch; memory is bounded by this, not by the dump (`--batch-size`)",
    "read.max_doc_chars": "longer documents are skipped as `doc_too_long` (the line is never parsed)",
    "read.min_doc_chars": "shorter (e.g. empty) documents are skipped as `empty_text`",
    "read.date_column": 'the crawl date column; `"auto"`: `crawl_date`, `date`, `created` or `timestamp`, if present',
    "read.lang_column": 'a language the input already carries; `"auto"`: `language` or `lang`, if present',
    "read.detect_language": "identify each document's language with lid.176 (the `lang` column)",
    "read.trust_lang_column": "where the input has a language column, take it instead of detecting",
    "read.languages": 'keep only these languages (e.g. `["en"]`; the others are skipped as `language_filtered`); '
    "empty: keep all",
    # [embedding]
    "embedding.model": "a sentence-transformers model name or local path; the default is the bundled "
    "all-MiniLM-L6-v2",
    "embedding.max_tokens": "documents are embedded from their first `max_tokens` tokens (16 to 8192)",
    "embedding.batch_size": "documents per embedding batch",
    "embedding.bf16": '`"auto"`: bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX); `"on"` / `"off"`',
    "embedding.device": '`"cpu"` or `"cuda"`; part of the scores\' signature (parts scored on one are not '
    "reused by the other)",
    # [cascade]
    "cascade.gate": '`"auto"`: per-theme gates calibrated at training; or one fastText probability in [0, 1] '
    "for all themes",
    "cascade.target_embed_fraction": "training calibrates the gates so that about this share of a typical dump "
    "is embedded, in (0, 1]",
    "cascade.embedding_weight": "`score = w * emb + (1 - w) * ft`; `emb = 0` for documents not embedded; in [0, 1]",
    "cascade.knn": "nearest seed exemplars averaged into the similarity evidence (>= 1)",
    # [fasttext]
    "fasttext.mode": '`"ova"`: one multi-label one-vs-all model; `"binary"`: one model per theme',
    "fasttext.max_chars": "fastText reads the first `max_chars` characters of each document (>= 100)",
    "fasttext.dim": "word vector size",
    "fasttext.epoch": "training epochs",
    "fasttext.lr": "learning rate",
    "fasttext.word_ngrams": "word n-gram length (1 to 5)",
    "fasttext.min_count": "minimum word count",
    "fasttext.bucket": "hash buckets for n-grams",
    "fasttext.threads": "training threads; fastText is only deterministic on 1",
    "fasttext.seed": "fastText's seed",
    "fasttext.quantize": "quantize the model when that costs less than `max_quantize_ap_drop`",
    "fasttext.max_quantize_ap_drop": "the quantized model is kept when the mean validation average precision "
    "drops by less than this (the shipped default classifier allows 0.05)",
    # [train]
    "train.sample_size": "documents of your corpus embedded and labelled by the teacher (>= 10)",
    "train.validation_fraction": "share of the sample held out to validate the student and calibrate gates and "
    "thresholds",
    "train.seed": "seed of the sample, the validation split and the order of the fastText training file",
    "train.teacher_threshold": "teacher probability at or above which a document is a positive, in (0, 1)",
    "train.head_l2": "L2 penalty of the embedding head (logistic regression)",
    "train.background_weight": "total weight of the corpus background negatives relative to the positives",
    "train.positive_share": "positives are repeated in the fastText training file up to this share",
    "train.pseudo_positive_fraction": "the teacher's top share of the sample taken as extra (real) positives; "
    "set it near the on-theme share you expect (`configs/demo.toml`)",
    "train.min_pseudo_positives": "...but at least this many (small corpora)",
    "train.teacher_rounds": "pseudo positives are re-ranked by the head this many times",
    "train.student_positive_fraction": "fastText also learns the teacher's top share of the sample as positives "
    "(trained for recall: it only has to let candidates through the gate)",
    "train.min_label_positives": "a theme with this many labelled positives and as many negatives learns from "
    "its labels",
    "train.seed_weight": "...with each seed weighing this much (a prior)",
    "train.label_background_weight": "...and the unlabelled sample as negatives of this total weight, relative "
    "to the positives",
    "train.label_head_l2": "...and this L2 penalty",
    "train.label_mix": "the head's logit: this much of the labels' head, the rest the seed teacher's",
    "train.neighbour_k": "label neighbours: how many nearest labelled positives (and negatives) are averaged",
    "train.neighbour_weight": "label neighbours: logit added per unit of similarity difference (0: off)",
    "train.distill_size": "further documents the fastText student learns the head's judgement on (0: off)",
    "train.distill_embed_fraction": "...of which the first student's top share is embedded and judged",
    "train.finetune_epochs": "fine-tune the embedding model on the labels and seeds for this many epochs before "
    'the teacher (0: off; `"auto"`: 3 where the sample holds `finetune_min_labels` human-labelled documents); '
    "the classifier carries it in `encoder/` and scores with it",
    "train.finetune_min_labels": 'with `finetune_epochs = "auto"`: the human-labelled documents in the sample '
    "that fine-tuning needs",
    "train.finetune_lr": "the encoder's AdamW learning rate when fine-tuning",
    "train.finetune_batch": "examples per fine-tuning step",
    # [select]
    "select.total_tokens": 'the training run\'s tokens; `"auto"`: the scored corpus once (the base mix) plus '
    "the streams, `total = base / (1 - sum of target shares)`",
    "select.base_in_mix": "the selected documents also stay in the base mix (weight = repeats + base passes); "
    "`--no-base-mix` turns it off",
    "select.max_repeats": "copies of one document in its stream at most",
    "select.hard_max_epochs": "`select` refuses (unless `--force`) when a document would be seen more often "
    "than this, counting the base mix",
    "select.rule": '`"score"`: expected repeats proportional to the score; `"uniform"`: the same for every '
    "document",
    "select.seed": "the sampler that turns expected repeats into whole copies",
    "select.exclude_above": "theme -> score, e.g. `{ ai_risk = 0.25 }`: documents scoring at least this are kept "
    "out of every stream",
    "select.dedup": "collapse exact duplicates (text after lowercasing and collapsing punctuation and "
    "whitespace) among the candidates to the best-scoring one",
    "select.near_dup_threshold": "near duplicates too: estimated Jaccard similarity of 5-word shingle sets "
    "(MinHash, LSH) at least this; 1 turns it off",
    "select.max_domain_share": "no site holds more than this share of a stream's unique tokens; 1 turns it off",
    "select.domain_cap_min_documents": "the domain cap never leaves a stream fewer documents than this",
    "select.require_provenance": "only documents with a URL and a crawl date",
    "select.exclude_generated": "leave out documents matching a generated-text pattern (always counted in the "
    "manifest)",
    # [annotate]
    "annotate.max_document_tokens": "a longer document is cut to its first `max - tail` and its last "
    "`tail_tokens` (counted as truncated)",
    "annotate.tail_tokens": "the tail window of a long document (0: head only)",
    "annotate.chars_per_token": "the token estimate: characters per token (no tokenizer is loaded)",
    "annotate.max_answer_tokens": "the answer's `max_tokens`",
    "annotate.temperature": "sampling temperature (0: the same question gets the same answer)",
    "annotate.timeout_s": "seconds per request",
    "annotate.retries": "retries after a connection error, a timeout, HTTP 429 or 5xx (exponential backoff "
    "with jitter)",
    "annotate.backoff_s": "the first retry's delay, doubling up to `max_backoff_s` (or the server's "
    "`Retry-After`)",
    "annotate.max_backoff_s": "the longest delay between retries",
    "annotate.answer_retries": "an answer that is not the JSON asked for is asked again this many times, then "
    "counted unparseable",
    "annotate.concurrency": "requests in flight (`--concurrency`; 1 to 256)",
}


def fields(section: str) -> list[dataclasses.Field[Any]]:
    cls = getattr(config_module, SECTIONS[section][0])
    return [f for f in dataclasses.fields(cls) if not (section.startswith("themes") and f.name == "name")]


def key(section: str, name: str) -> str:
    return f"themes.{name}" if section.startswith("themes") else f"{section}.{name}"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return toml_value(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return toml_value(f.default_factory())
    return "(required)"


def type_name(f: dataclasses.Field[Any]) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"Path": "path"}.get(t, t)


def cell(value: str) -> str:
    """A table cell in code font ("|" escaped); a required key has no default."""
    return "required" if value == "(required)" else "`" + value.replace("|", "\\|") + "`"


def reference() -> str:
    parts = []
    for section, (_cls, what, page) in SECTIONS.items():
        rows = [
            f"| `{f.name}` | {cell(type_name(f))} | {cell(default(f))} | {MEANINGS[key(section, f.name)]} |"
            for f in fields(section)
        ]
        parts.append(
            f"## `[{section}]`\n\n{what.capitalize()} ([{page}]({page})).\n\n"
            "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
        )
    return "\n".join(parts)


def documented_keys() -> set[str]:
    return {key(s, f.name) for s in SECTIONS for f in fields(s)}


def main() -> None:
    if sys.argv[1:]:
        sys.exit(
            "usage: python scripts/config_reference.py   (rewrites the reference in docs/configuration.md)"
        )
    missing = sorted(documented_keys() - set(MEANINGS))
    if missing:
        sys.exit(f"no meaning in scripts/config_reference.py MEANINGS for: {', '.join(missing)}")
    rewrite_between(PAGE, BEGIN, END, reference())


if __name__ == "__main__":
    main()
