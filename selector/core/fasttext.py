"""fastText model files: loading one quietly, and the content hash that names a file in cards and manifests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def load_fasttext(path: Path) -> Any:
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner
    return fasttext.load_model(str(path))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
