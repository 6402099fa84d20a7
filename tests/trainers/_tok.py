"""The tests' tokenizer: one token per 4 characters (the last token of a text may be shorter), so a text of
n characters is ceil(n / 4) tokens, selector's own estimate. Built with `tokenizers` from a vocabulary of the
4-character chunks of the tests' texts, so each trainer venv builds it with its own `tokenizers`."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers

EOS = "<eos>"
SPECIAL = ["[UNK]", EOS]


def chunks(text: str) -> list[str]:
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def build(vocab: list[str]) -> Tokenizer:
    ids = {t: i for i, t in enumerate([*SPECIAL, *vocab])}
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("(?m).{1,4}"), behavior="isolated")
    return tok


def load(vocab_file: str | Path) -> Tokenizer:
    return build(json.loads(Path(vocab_file).read_text()))
