"""Loading a fastText model file quietly: the classifier's students and language identification's lid.176."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_fasttext(path: Path) -> Any:
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(str(path))
