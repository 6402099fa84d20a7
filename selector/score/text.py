"""Text preparation shared by training and scoring, vectorised in polars."""

from __future__ import annotations

import polars as pl

# n_tokens is an estimate: about 4 characters per token for English under GPT-2/Llama-style BPE
# tokenizers (OpenAI's rule of thumb; measured 3.9-4.4 on English web text). Non-English text and
# code run higher; re-tokenize with your own tokenizer when exact counts matter.
CHARS_PER_TOKEN = 4.0


def fasttext_input(texts: pl.Series, max_chars: int) -> list[str]:
    """The first `max_chars` characters, lowercased, punctuation split off, on one line."""
    return (
        texts.str.slice(0, max_chars)
        .str.to_lowercase()
        .str.replace_all(r"([\p{P}\p{S}])", " $1 ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .fill_null("")
        .to_list()
    )


def n_tokens_expr(col: str = "text") -> pl.Expr:
    return (pl.col(col).str.len_chars() / CHARS_PER_TOKEN).ceil().cast(pl.Int64).alias("n_tokens")


def embedding_input(texts: list[str], max_tokens: int) -> list[str]:
    """Cut documents to about `max_tokens` word pieces before tokenizing (the model truncates exactly)."""
    limit = max_tokens * 8
    return [t[:limit] for t in texts]
