"""The keyword-regex baseline that teams write today, kept to measure the cascade against (docs/quality.md).

Score = matches of the theme's pattern per 1,000 characters (first 20,000 characters), squashed to [0, 1).
"""

from __future__ import annotations

import re

import numpy as np

KEYWORDS: dict[str, str] = {
    "honesty": r"\b(honest(y|ly)?|dishonest\w*|truth(ful\w*)?|lie|lies|lying|liar\w*|deceiv\w*|decept\w*|"
    r"integrity|transparen\w*|admit\w*|candou?r|sincer\w*|whistle-?blow\w*|retract\w*)\b",
    "cooperation": r"\b(cooperat\w*|co-operat\w*|collaborat\w*|mutual aid|mutual\w*|reciproc\w*|trust\w*|"
    r"prisoner'?s dilemma|tit[- ]for[- ]tat|solidarity|common good|commons|altruis\w*)\b",
    "cooperative_ai": r"\b(ai|a\.i\.|artificial intelligence|assistant|chatbot|language model|robot\w*)\b"
    r"(?=.{0,200}\b(honest\w*|helpful\w*|harmless|oversight|aligned|alignment|"
    r"transparen\w*|corrigib\w*|safe(ly|ty)?|ethic\w*|values)\b)",
    "ai_risk": r"\b(superintelligen\w*|takeover|extinction|existential risk|x-risk|misalign\w*|"
    r"rogue ai|killer robots?|deceptive alignment|power-seeking|paperclip\w*|skynet|"
    r"treacherous|ai (risk|doom|apocalypse))\b",
}

_COMPILED = {t: re.compile(p, re.IGNORECASE | re.DOTALL) for t, p in KEYWORDS.items()}


def keyword_scores(texts: list[str], themes: list[str], max_chars: int = 20_000) -> dict[str, np.ndarray]:
    out = {}
    for t in themes:
        rx = _COMPILED[t]
        vals = np.empty(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            head = text[:max_chars]
            density = 1000.0 * len(rx.findall(head)) / max(len(head), 200)
            vals[i] = density / (1.0 + density)
        out[t] = vals
    return out
