"""Organic-ness: is a document real text people wrote, traceable to where it was found?

`GENERATED_PATTERNS` are tell-tale phrases of machine-generated text (chat-assistant refusals and
disclaimers, knowledge-cutoff notes, interface debris copied along with an answer). A match flags a document;
it does not prove the text was generated (people quote these phrases too), so flagged documents are reported,
and excluded only on request (`select.exclude_generated`). Provenance: a document is fully traceable when it
has a URL and a crawl date; a crawl date before `PRE_LLM_CUTOFF` (2022-12, ChatGPT's release) means the text
predates the spread of LLM-generated web text.
"""

from __future__ import annotations

import polars as pl

PRE_LLM_CUTOFF = "2022-12-01"

# name -> case-insensitive regex; each is tested in tests/test_formats.py with a positive and a near miss
GENERATED_PATTERNS: dict[str, str] = {
    "as_an_ai_language_model": r"\bas an ai (?:language )?model\b",
    "as_a_large_language_model": r"\bas a large language model\b",
    "i_am_an_ai_assistant": r"\bi(?:'m| am) (?:just )?an ai(?:-powered)? (?:assistant|chatbot)\b",
    "knowledge_cutoff": r"\b(?:as of|since) my (?:last )?(?:knowledge|training)(?: data)? (?:cutoff|cut-off|update)\b",
    "cannot_fulfill_request": r"\bi (?:cannot|can't|can not) (?:fulfill|comply with|assist with) (?:this|that|your) request\b",
    "regenerate_response": r"\bregenerate (?:response|draft)\b",
    "chatgpt_debris": r"\b(?:chatgpt|gpt-4|gpt-3\.5) (?:said|says|wrote|answered)\s*:",
    "not_real_time_access": r"\bi (?:do not|don't) have (?:real-time|live) (?:access|information|data)\b",
    "delve_boilerplate": r"\bit(?:'s| is) (?:important|crucial|essential) to note that\b.{0,200}\b(?:delve|tapestry|testament to)\b",
}


def generated_pattern_expr(col: str = "text") -> pl.Expr:
    """The name of the first generated-text pattern the text matches, else null (searches the first 20,000
    characters). One combined scan finds the rare matching documents; only those are told which pattern."""
    head = pl.col(col).str.slice(0, 20_000).str.to_lowercase()
    any_rx = "|".join(f"(?:{rx})" for rx in GENERATED_PATTERNS.values())
    name: pl.Expr = pl.lit(None, dtype=pl.String)
    for key, rx in reversed(GENERATED_PATTERNS.items()):
        name = pl.when(head.str.contains(rx)).then(pl.lit(key)).otherwise(name)
    return pl.when(head.str.contains(any_rx)).then(name).otherwise(pl.lit(None, dtype=pl.String))


def normalized_text_expr(col: str = "text") -> pl.Expr:
    """Text as exact-duplicate detection sees it: lowercased, punctuation and whitespace runs collapsed."""
    return (
        pl.col(col)
        .str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{S}]+", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
