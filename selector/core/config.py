"""Typed, frozen, validated configuration: `load_config(path)` -> `Config`, errors name the key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selector.core.errors import ConfigError
from selector.core.paths import default_config_path

THEME_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ReadConfig:
    text_column: str = "text"
    id_column: str = "id"
    url_column: str = "url"
    batch_size: int = 5000
    max_doc_chars: int = 1_000_000
    min_doc_chars: int = 1
    date_column: str = "auto"  # the crawl date; "auto": crawl_date, date, created or timestamp, if present
    lang_column: str = "auto"  # a language the input already carries; "auto": language or lang, if present
    detect_language: bool = True  # identify each document's language with lid.176 (the `lang` column)
    trust_lang_column: bool = True  # where the input has a language column, take it instead of detecting
    languages: list[str] = field(default_factory=list)  # keep only these (e.g. ["en"]); empty: keep all


@dataclass(frozen=True)
class ThemeConfig:
    name: str
    seeds: Path
    upsample: bool = True
    threshold: float | str = "auto"  # "auto": the classifier's calibrated threshold; or a number in [0, 1]
    top_fraction: float = 0.0  # > 0: qualify the top fraction of scored documents instead of a threshold
    target_share: float = 0.0  # share of the run's tokens the stream should have...
    target_tokens: int = 0  # ...or its tokens directly (at most one of the two; neither: each document once)
    description: str = ""
    rubric: str = ""  # what `selector annotate` tells the LLM: the definition, on- and off-theme, hard cases


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str = BUNDLED_MODEL
    max_tokens: int = 256
    batch_size: int = 32
    bf16: str = "auto"  # auto | on | off
    device: str = "cpu"


@dataclass(frozen=True)
class CascadeConfig:
    gate: str | float = "auto"  # "auto": the classifier's calibrated gates; a number: one gate for all
    target_embed_fraction: float = 0.01
    embedding_weight: float = 0.95
    knn: int = 10


@dataclass(frozen=True)
class FastTextConfig:
    mode: str = "ova"  # ova | binary
    max_chars: int = 4000
    dim: int = 64
    epoch: int = 20
    lr: float = 0.3
    word_ngrams: int = 2
    min_count: int = 2
    bucket: int = 1_000_000
    threads: int = 1
    seed: int = 0
    quantize: bool = True
    max_quantize_ap_drop: float = (
        0.01  # the quantized model is kept when validation AP drops by less than this
    )


@dataclass(frozen=True)
class TrainConfig:
    sample_size: int = 20_000
    validation_fraction: float = 0.2
    seed: int = 0
    teacher_threshold: float = 0.5
    head_l2: float = 10.0
    background_weight: float = 10.0
    positive_share: float = 0.2
    pseudo_positive_fraction: float = 0.001
    min_pseudo_positives: int = 5
    teacher_rounds: int = 2
    student_positive_fraction: float = 0.005
    min_label_positives: int = (
        5  # a theme with this many labelled positives and negatives learns from its labels
    )
    seed_weight: float = 0.5  # ...with each seed weighing this much (a prior)
    label_background_weight: float = 0.5  # ...and the unlabelled sample as negatives of this total weight
    label_head_l2: float = 1.0  # ...and this L2 penalty (many labels need less of it than a few seeds)
    label_mix: float = 0.5  # the head's logit: this much of the labels' head, the rest the seed teacher's
    # label neighbours (selector/score/neighbours.py): the head's logit moves by neighbour_weight times the mean
    # similarity to the neighbour_k nearest labelled positives minus that to the k nearest negatives (0: off)
    neighbour_k: int = 3
    neighbour_weight: float = 5.0
    distill_size: int = 0  # further documents the fastText student learns the head's judgement on (0: off)
    distill_embed_fraction: float = 0.05  # ...of which the first student's top share is embedded and judged
    # fine-tune the embedding model on the labels and seeds first: epochs, 0 (off), or "auto" (3 epochs where
    # the sample holds finetune_min_labels human-labelled documents)
    finetune_epochs: int | str = "auto"
    finetune_min_labels: int = 500
    finetune_lr: float = 2e-5  # ...at this learning rate (AdamW)
    finetune_batch: int = 16  # ...in batches of this many examples


@dataclass(frozen=True)
class SelectConfig:
    total_tokens: int | str = (
        "auto"  # the training run's tokens; "auto": the scored corpus once plus the streams
    )
    base_in_mix: bool = True  # the scored corpus stays in the run once, so a document's weight is repeats + 1
    max_repeats: int = 4  # copies of one document in its stream at most
    hard_max_epochs: int = 16  # refuse (unless forced) when a document would be seen more often than this
    rule: str = "score"  # "score": repeats grow with the score; "uniform": the same for every document
    seed: int = 0
    exclude_above: dict[str, float] = field(default_factory=dict)  # theme -> score: excluded from all streams
    dedup: bool = True  # collapse exact duplicates (normalized text) among candidates to one representative
    near_dup_threshold: float = 0.8  # ...and near duplicates: MinHash Jaccard of 5-word shingles (1 = off)
    max_domain_share: float = 0.2  # no domain holds more of a stream's unique tokens (1 = off)...
    domain_cap_min_documents: int = 20  # ...but the cap never leaves a stream fewer documents than this
    require_provenance: bool = False  # only documents with a URL and a crawl date
    exclude_generated: bool = (
        False  # leave out documents matching a generated-text pattern (selector/score/organic.py)
    )


@dataclass(frozen=True)
class AnnotateConfig:
    """`selector annotate`: how documents are cut and sent to an OpenAI-compatible chat-completions server.
    Tokens are estimated as characters / chars_per_token (no tokenizer is loaded: the server's model is
    unknown to the client), so the budgets are approximate."""

    max_document_tokens: int = 2000  # a longer document is cut to its head and a tail window (counted)
    tail_tokens: int = 300  # of max_document_tokens, taken from the document's end (0: head only)
    chars_per_token: float = 4.0  # the estimate: about 4 characters per token for English web text
    max_answer_tokens: int = 400  # the answer's max_tokens
    temperature: float = 0.0
    timeout_s: float = 120.0  # per request
    retries: int = (
        4  # after a connection error, a timeout, HTTP 429 or 5xx, with exponential backoff + jitter
    )
    backoff_s: float = (
        1.0  # the first retry's delay (doubling up to max_backoff_s, or the server's Retry-After)
    )
    max_backoff_s: float = 60.0
    answer_retries: int = 1  # an invalid answer is asked again this many times, then counted as unparseable
    concurrency: int = 4  # requests in flight


@dataclass(frozen=True)
class Config:
    themes: tuple[ThemeConfig, ...]
    read: ReadConfig = field(default_factory=ReadConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    fasttext: FastTextConfig = field(default_factory=FastTextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    source: str = "<defaults>"

    @property
    def theme_names(self) -> list[str]:
        return [t.name for t in self.themes]

    def theme(self, name: str) -> ThemeConfig:
        for t in self.themes:
            if t.name == name:
                return t
        raise ConfigError(f"unknown theme {name!r}; configured themes: {', '.join(self.theme_names)}")

    def to_dict(self) -> dict[str, Any]:
        def conv(obj: Any) -> Any:
            if isinstance(obj, Path):
                return str(obj)
            if isinstance(obj, tuple | list):
                return [conv(x) for x in obj]
            if isinstance(obj, dict):
                return {k: conv(v) for k, v in obj.items()}
            return obj

        return conv(dataclasses.asdict(self))  # type: ignore[no-any-return]

    def _scoring_dict(self) -> dict[str, Any]:
        """`to_dict()` without what only `selector annotate` reads (the [annotate] section and the rubrics),
        which changes no score, classifier or manifest."""
        d = self.to_dict()
        for k in ("source", "annotate"):
            d.pop(k, None)
        d["themes"] = [{k: v for k, v in t.items() if k != "rubric"} for t in d["themes"]]
        return d

    def hash(self) -> str:
        """Hash of the resolved settings that change results (not where the file was loaded from)."""
        d = self._scoring_dict()
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def training_hash(self) -> str:
        """Hash of the settings that change a trained classifier: not the selection settings ([select], and
        each theme's threshold, top_fraction and targets), so changing those never retrains."""
        d = self._scoring_dict()
        d.pop("select", None)
        d["themes"] = [
            {
                k: v
                for k, v in t.items()
                if k not in ("threshold", "top_fraction", "target_share", "target_tokens")
            }
            for t in d["themes"]
        ]
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some keys of one section changed, validated like a loaded file."""
        sect = getattr(self, section)
        new = dataclasses.replace(sect, **changes)
        _validate_section(section, new)
        if section == "select":
            _validate_exclude(new, self.theme_names)
        return dataclasses.replace(self, **{section: new})

    def replace_theme(self, name: str, **changes: Any) -> Config:
        """A copy with some keys of one theme changed, validated like a loaded file."""
        self.theme(name)
        themes = tuple(
            _validated_theme(dataclasses.replace(t, **changes)) if t.name == name else t for t in self.themes
        )
        return dataclasses.replace(self, themes=themes)


_SECTIONS: dict[str, type] = {
    "read": ReadConfig,
    "embedding": EmbeddingConfig,
    "cascade": CascadeConfig,
    "fasttext": FastTextConfig,
    "train": TrainConfig,
    "select": SelectConfig,
    "annotate": AnnotateConfig,
}

THEME_KEYS = (
    "seeds",
    "upsample",
    "threshold",
    "top_fraction",
    "target_share",
    "target_tokens",
    "description",
    "rubric",
)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _auto_or_int(v: Any, minimum: int) -> bool:
    """`v` is "auto" or an integer (not a boolean) of at least `minimum`."""
    return v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= minimum)


def _validated_theme(t: ThemeConfig) -> ThemeConfig:
    k = f"themes.{t.name}"
    thr = t.threshold
    _check(
        thr == "auto" or (_is_number(thr) and 0 <= float(thr) <= 1),
        f"{k}.threshold",
        '"auto" or a number in [0, 1]',
        thr,
    )
    _check(
        _is_number(t.top_fraction) and 0 <= t.top_fraction < 1,
        f"{k}.top_fraction",
        "in [0, 1)",
        t.top_fraction,
    )
    _check(
        _is_number(t.target_share) and 0 <= t.target_share < 1,
        f"{k}.target_share",
        "in [0, 1)",
        t.target_share,
    )
    _check(
        isinstance(t.target_tokens, int) and not isinstance(t.target_tokens, bool) and t.target_tokens >= 0,
        f"{k}.target_tokens",
        "an integer >= 0",
        t.target_tokens,
    )
    if t.target_share and t.target_tokens:
        raise ConfigError(
            f"{k}: set target_share or target_tokens, not both (got {t.target_share} and {t.target_tokens})"
        )
    _check(isinstance(t.rubric, str), f"{k}.rubric", "a string (the annotator's rubric)", t.rubric)
    if not t.upsample and (t.target_share or t.target_tokens):
        raise ConfigError(f"{k}: upsample = false, so it takes no target_share or target_tokens")
    return dataclasses.replace(
        t,
        rubric=t.rubric.strip(),
        threshold=thr if thr == "auto" else float(thr),
        top_fraction=float(t.top_fraction),
        target_share=float(t.target_share),
    )


def _validate_exclude(sel: SelectConfig, themes: list[str]) -> None:
    for name, v in sel.exclude_above.items():
        if name not in themes:
            raise ConfigError(
                f"select.exclude_above.{name}: unknown theme; configured themes: {', '.join(themes)}"
            )
        _check(_is_number(v) and 0 <= v <= 1, f"select.exclude_above.{name}", "a number in [0, 1]", v)


def _check(cond: bool, key: str, requirement: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{key} must be {requirement}, got {value!r}")


def _validate_section(name: str, obj: Any) -> None:
    if name == "read":
        _check(obj.batch_size >= 1, "read.batch_size", ">= 1", obj.batch_size)
        _check(obj.max_doc_chars >= 1, "read.max_doc_chars", ">= 1", obj.max_doc_chars)
        _check(obj.min_doc_chars >= 0, "read.min_doc_chars", ">= 0", obj.min_doc_chars)
        for k in ("text_column", "id_column", "url_column", "date_column", "lang_column"):
            _check(bool(getattr(obj, k)), f"read.{k}", "a non-empty column name", getattr(obj, k))
        _check(
            isinstance(obj.languages, list | tuple) and all(isinstance(x, str) and x for x in obj.languages),
            "read.languages",
            'a list of language codes such as ["en", "de"] (empty: keep all)',
            obj.languages,
        )
    elif name == "embedding":
        _check(bool(obj.model), "embedding.model", "a sentence-transformers model name or path", obj.model)
        _check(16 <= obj.max_tokens <= 8192, "embedding.max_tokens", "between 16 and 8192", obj.max_tokens)
        _check(obj.batch_size >= 1, "embedding.batch_size", ">= 1", obj.batch_size)
        _check(obj.bf16 in ("auto", "on", "off"), "embedding.bf16", 'one of "auto", "on", "off"', obj.bf16)
    elif name == "cascade":
        g = obj.gate
        ok = g == "auto" or (isinstance(g, int | float) and not isinstance(g, bool) and 0.0 <= g <= 1.0)
        _check(ok, "cascade.gate", '"auto" or a number in [0, 1]', g)
        _check(
            0 < obj.target_embed_fraction <= 1,
            "cascade.target_embed_fraction",
            "in (0, 1]",
            obj.target_embed_fraction,
        )
        _check(0 <= obj.embedding_weight <= 1, "cascade.embedding_weight", "in [0, 1]", obj.embedding_weight)
        _check(obj.knn >= 1, "cascade.knn", ">= 1", obj.knn)
    elif name == "fasttext":
        _check(obj.mode in ("ova", "binary"), "fasttext.mode", 'one of "ova", "binary"', obj.mode)
        _check(obj.max_chars >= 100, "fasttext.max_chars", ">= 100", obj.max_chars)
        _check(obj.dim >= 2, "fasttext.dim", ">= 2", obj.dim)
        _check(obj.epoch >= 1, "fasttext.epoch", ">= 1", obj.epoch)
        _check(obj.lr > 0, "fasttext.lr", "> 0", obj.lr)
        _check(1 <= obj.word_ngrams <= 5, "fasttext.word_ngrams", "between 1 and 5", obj.word_ngrams)
        _check(obj.min_count >= 1, "fasttext.min_count", ">= 1", obj.min_count)
        _check(obj.bucket >= 1000, "fasttext.bucket", ">= 1000", obj.bucket)
        _check(obj.threads >= 1, "fasttext.threads", ">= 1", obj.threads)
        _check(
            0 <= obj.max_quantize_ap_drop <= 1,
            "fasttext.max_quantize_ap_drop",
            "in [0, 1]",
            obj.max_quantize_ap_drop,
        )
    elif name == "train":
        _check(obj.sample_size >= 10, "train.sample_size", ">= 10", obj.sample_size)
        _check(
            0 < obj.validation_fraction < 1, "train.validation_fraction", "in (0, 1)", obj.validation_fraction
        )
        _check(0 < obj.teacher_threshold < 1, "train.teacher_threshold", "in (0, 1)", obj.teacher_threshold)
        _check(obj.head_l2 > 0, "train.head_l2", "> 0", obj.head_l2)
        _check(obj.background_weight > 0, "train.background_weight", "> 0", obj.background_weight)
        _check(0 < obj.positive_share < 1, "train.positive_share", "in (0, 1)", obj.positive_share)
        _check(
            0 <= obj.pseudo_positive_fraction < 0.5,
            "train.pseudo_positive_fraction",
            "in [0, 0.5)",
            obj.pseudo_positive_fraction,
        )
        _check(obj.min_pseudo_positives >= 0, "train.min_pseudo_positives", ">= 0", obj.min_pseudo_positives)
        _check(obj.teacher_rounds >= 1, "train.teacher_rounds", ">= 1", obj.teacher_rounds)
        _check(obj.min_label_positives >= 1, "train.min_label_positives", ">= 1", obj.min_label_positives)
        _check(obj.seed_weight >= 0, "train.seed_weight", ">= 0", obj.seed_weight)
        _check(
            obj.label_background_weight >= 0,
            "train.label_background_weight",
            ">= 0",
            obj.label_background_weight,
        )
        _check(obj.label_head_l2 > 0, "train.label_head_l2", "> 0", obj.label_head_l2)
        _check(0 <= obj.label_mix <= 1, "train.label_mix", "in [0, 1]", obj.label_mix)
        _check(obj.neighbour_k >= 1, "train.neighbour_k", ">= 1", obj.neighbour_k)
        _check(obj.neighbour_weight >= 0, "train.neighbour_weight", ">= 0", obj.neighbour_weight)
        _check(obj.distill_size >= 0, "train.distill_size", ">= 0", obj.distill_size)
        _check(
            _auto_or_int(obj.finetune_epochs, 0),
            "train.finetune_epochs",
            '"auto" or an integer >= 0',
            obj.finetune_epochs,
        )
        _check(obj.finetune_min_labels >= 1, "train.finetune_min_labels", ">= 1", obj.finetune_min_labels)
        _check(0 < obj.finetune_lr < 1, "train.finetune_lr", "in (0, 1)", obj.finetune_lr)
        _check(obj.finetune_batch >= 1, "train.finetune_batch", ">= 1", obj.finetune_batch)
        _check(
            0 < obj.distill_embed_fraction <= 1,
            "train.distill_embed_fraction",
            "in (0, 1]",
            obj.distill_embed_fraction,
        )
        _check(
            0 <= obj.student_positive_fraction < 0.5,
            "train.student_positive_fraction",
            "in [0, 0.5)",
            obj.student_positive_fraction,
        )
    elif name == "select":
        tt = obj.total_tokens
        _check(
            _auto_or_int(tt, 1),
            "select.total_tokens",
            '"auto" or an integer >= 1',
            tt,
        )
        _check(obj.max_repeats >= 1, "select.max_repeats", ">= 1", obj.max_repeats)
        _check(obj.hard_max_epochs >= 1, "select.hard_max_epochs", ">= 1", obj.hard_max_epochs)
        _check(obj.rule in ("score", "uniform"), "select.rule", 'one of "score", "uniform"', obj.rule)
        _check(
            isinstance(obj.exclude_above, dict),
            "select.exclude_above",
            "a table of theme = score",
            obj.exclude_above,
        )
        _check(
            0 < obj.near_dup_threshold <= 1, "select.near_dup_threshold", "in (0, 1]", obj.near_dup_threshold
        )
        _check(0 < obj.max_domain_share <= 1, "select.max_domain_share", "in (0, 1]", obj.max_domain_share)
        _check(
            isinstance(obj.domain_cap_min_documents, int) and obj.domain_cap_min_documents >= 0,
            "select.domain_cap_min_documents",
            ">= 0 (an integer)",
            obj.domain_cap_min_documents,
        )
    elif name == "annotate":
        a = "annotate"
        _check(obj.max_document_tokens >= 16, f"{a}.max_document_tokens", ">= 16", obj.max_document_tokens)
        _check(
            0 <= obj.tail_tokens < obj.max_document_tokens,
            f"{a}.tail_tokens",
            f">= 0 and below annotate.max_document_tokens ({obj.max_document_tokens})",
            obj.tail_tokens,
        )
        _check(
            0.5 <= obj.chars_per_token <= 16,
            f"{a}.chars_per_token",
            "between 0.5 and 16",
            obj.chars_per_token,
        )
        _check(obj.max_answer_tokens >= 16, f"{a}.max_answer_tokens", ">= 16", obj.max_answer_tokens)
        _check(0 <= obj.temperature <= 2, f"{a}.temperature", "in [0, 2]", obj.temperature)
        _check(obj.timeout_s > 0, f"{a}.timeout_s", "> 0", obj.timeout_s)
        _check(obj.retries >= 0, f"{a}.retries", ">= 0", obj.retries)
        _check(obj.backoff_s >= 0, f"{a}.backoff_s", ">= 0", obj.backoff_s)
        _check(
            obj.max_backoff_s >= obj.backoff_s,
            f"{a}.max_backoff_s",
            ">= annotate.backoff_s",
            obj.max_backoff_s,
        )
        _check(obj.answer_retries >= 0, f"{a}.answer_retries", ">= 0", obj.answer_retries)
        _check(1 <= obj.concurrency <= 256, f"{a}.concurrency", "between 1 and 256", obj.concurrency)


def _build_section(name: str, raw: Any) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown key {name}.{key}; known keys: {', '.join(fields)}")
        default = getattr(defaults, key)
        if isinstance(default, str | dict | list):
            kwargs[key] = value  # unions ("auto" or a number) and tables are checked by _validate_section
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{name}.{key} must be true or false, got {value!r}")
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and (not isinstance(value, int) or isinstance(value, bool))
        ):
            raise ConfigError(f"{name}.{key} must be an integer, got {value!r}")
        if isinstance(default, float) and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise ConfigError(f"{name}.{key} must be a number, got {value!r}")
        if isinstance(default, float):
            value = float(value)
        kwargs[key] = value
    obj = cls(**kwargs)
    _validate_section(name, obj)
    return obj


def config_from_dict(raw: dict[str, Any], base_dir: Path, source: str = "<dict>") -> Config:
    """Build and validate a `Config` from a parsed TOML table; seed paths resolve against `base_dir`."""
    known = set(_SECTIONS) | {"themes"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown section [{key}] in {source}; known sections: {', '.join(sorted(known))}"
            )
    themes_raw = raw.get("themes")
    if not isinstance(themes_raw, dict) or not themes_raw:
        raise ConfigError(f"themes must define at least one [themes.<name>] table in {source}")
    themes = []
    for name, t in themes_raw.items():
        if not set(name) <= THEME_NAME_CHARS:
            raise ConfigError(f"themes.{name}: theme names use lowercase letters, digits and _ only")
        if not isinstance(t, dict):
            raise ConfigError(f"themes.{name} must be a table, got {t!r}")
        extra = set(t) - set(THEME_KEYS)
        if extra:
            raise ConfigError(
                f"unknown key themes.{name}.{sorted(extra)[0]}; known keys: {', '.join(THEME_KEYS)}"
            )
        if "seeds" not in t or not isinstance(t["seeds"], str):
            raise ConfigError(f"themes.{name}.seeds must be the path of a seed JSONL file")
        seeds = Path(t["seeds"])
        if not seeds.is_absolute():
            seeds = (base_dir / seeds).resolve()
        upsample = t.get("upsample", True)
        _check(isinstance(upsample, bool), f"themes.{name}.upsample", "true or false", upsample)
        themes.append(
            _validated_theme(
                ThemeConfig(
                    name=name,
                    seeds=seeds,
                    upsample=upsample,
                    threshold=t.get("threshold", "auto"),
                    top_fraction=t.get("top_fraction", 0.0),
                    target_share=t.get("target_share", 0.0),
                    target_tokens=t.get("target_tokens", 0),
                    description=str(t.get("description", "")),
                    rubric=t.get("rubric", ""),
                )
            )
        )
    sections = {name: _build_section(name, raw.get(name, {})) for name in _SECTIONS}
    _validate_exclude(sections["select"], [t.name for t in themes])
    shares = sum(t.target_share for t in themes)
    if shares >= 1:
        raise ConfigError(f"the themes' target_share values add up to {shares:g}; they must stay below 1")
    return Config(themes=tuple(themes), source=source, **sections)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_toml(p: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Parse a TOML file; `extends = "other.toml"` (relative to it) is read first and overridden key by key.
    Relative seed paths are made absolute against the file that names them."""
    if not p.exists():
        raise ConfigError(f"config file {p} not found. Pass --config PATH or copy configs/default.toml.")
    if p.resolve() in seen:
        raise ConfigError(f"{p}: extends loops back to itself ({' -> '.join(map(str, seen))}).")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from e
    for t in (raw.get("themes") or {}).values():
        if isinstance(t, dict) and isinstance(t.get("seeds"), str) and not Path(t["seeds"]).is_absolute():
            t["seeds"] = str((p.parent / t["seeds"]).resolve())
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{p}: extends must be the path of another config file, got {parent!r}")
    return _merge(_read_toml((p.parent / parent), (*seen, p.resolve())), raw)


def load_config(path: str | Path | None = None) -> Config:
    """Read a TOML config (the project's `configs/default.toml` when `path` is None) and validate it."""
    p = Path(path) if path is not None else default_config_path()
    return config_from_dict(_read_toml(p), p.parent, source=str(p))


def config_from_resolved(d: dict[str, Any]) -> Config:
    """Rebuild a `Config` from its `to_dict()` form (as recorded beside scores and in manifests)."""
    raw: dict[str, Any] = {k: dict(d[k]) for k in _SECTIONS if isinstance(d.get(k), dict)}
    raw["themes"] = {t["name"]: {k: v for k, v in t.items() if k != "name"} for t in d.get("themes", [])}
    return config_from_dict(raw, Path("/"), source=str(d.get("source", "<recorded>")))
