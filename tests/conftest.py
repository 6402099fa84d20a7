from __future__ import annotations

from pathlib import Path

import pytest

from selector.core.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "corpus"


def quick_config() -> Config:
    """The default config with the seeded hashing embedder and a small, quick fastText."""
    c = load_config(REPO / "configs" / "default.toml")
    c = c.replace("embedding", model="hash:64")
    c = c.replace("fasttext", epoch=5, dim=16, bucket=20000)
    return c.replace("train", sample_size=400)


@pytest.fixture
def cfg() -> Config:
    return quick_config()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/corpus (not on this machine)")
