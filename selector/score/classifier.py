"""A trained classifier on disk (`classifiers/<name>/`) and the two scores it gives.

Layout: `card.json` (what it was trained on, settings, validation figures, gates), the fastText model
(`fasttext.ftz` in `ova` mode, `fasttext-<theme>.ftz` per theme in `binary` mode, `.bin` when
quantizing would have cost quality), `head.npz` (seed embeddings, the embedding head's weights and, when it
was trained with labels, the label neighbours: the labelled documents' embeddings and labels) and, when the
embedding model was fine-tuned, `encoder/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.config import EmbeddingConfig
from selector.core.errors import ClassifierError
from selector.core.fasttext import load_fasttext
from selector.core.paths import file_sha256
from selector.score.embed import SeedIndex
from selector.score.neighbours import LabelNeighbours, head_probs

CARD = "card.json"
HEAD = "head.npz"
NONE_LABEL = "__label__none"
os.environ.setdefault("FASTTEXT_NO_WARN", "1")


def fasttext_probs(model: Any, texts: list[str], themes: list[str], key: str) -> dict[str, np.ndarray]:
    """Per-theme probabilities in [0, 1] (fastText's can exceed 1 by ~1e-5; they are clipped). `key` is
    "ova" for the multi-label model (every theme), or the theme a binary model was trained for."""
    n = len(texts)
    if key == "ova":
        labels, probs = model.predict(texts, k=-1, threshold=0.0)
        out = {t: np.zeros(n, dtype=np.float32) for t in themes}
        index = {f"__label__{t}": out[t] for t in themes}
        for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
            for lab, p in zip(ls, ps, strict=True):
                arr = index.get(lab)
                if arr is not None:
                    arr[i] = p
    else:
        labels, probs = model.predict(texts, k=1)
        p = np.array([float(ps[0]) for ps in probs], dtype=np.float32)
        is_pos = np.array([ls[0] == "__label__pos" for ls in labels])
        out = {key: np.where(is_pos, p, 1.0 - p).astype(np.float32)}
    return {t: np.clip(v, 0.0, 1.0) for t, v in out.items()}


@dataclass
class Classifier:
    path: Path
    card: dict[str, Any]
    models: dict[str, Any]
    heads: dict[str, tuple[np.ndarray, float]]
    index: SeedIndex
    neighbours: LabelNeighbours | None = None

    @property
    def themes(self) -> list[str]:
        return list(self.card["themes"])

    @property
    def mode(self) -> str:
        return str(self.card["fasttext"]["mode"])

    @property
    def max_chars(self) -> int:
        return int(self.card["fasttext"]["max_chars"])

    @property
    def gates(self) -> dict[str, float]:
        return {t: float(g) for t, g in self.card["gates"].items()}

    @property
    def embedding_model(self) -> str:
        """The sentence-transformers model the head was fitted on: the classifier's own fine-tuned `encoder/`
        where it has one (`train.finetune_epochs`), else the model its card names."""
        emb = self.card["embedding"]
        return str(self.path / emb["encoder"]) if emb.get("encoder") else str(emb["model"])

    def embedding_config(self, run: EmbeddingConfig) -> EmbeddingConfig:
        """`run`'s batch size, bf16 and device with the classifier's own model and token budget: what scoring
        and the audit embed with, whatever model the run's config names."""
        return dataclasses.replace(
            run, model=self.embedding_model, max_tokens=int(self.card["embedding"]["max_tokens"])
        )

    @property
    def identity(self) -> str:
        """Changes whenever any file of the classifier changes."""
        return str(self.card.get("fingerprint", ""))

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        p = Path(path)
        card_path = p / CARD
        if not card_path.exists():
            raise ClassifierError(
                f"no classifier at {p} ({CARD} missing). Train one with `selector train INPUT --out {p}`, "
                "or omit --classifier to use the default one."
            )
        try:
            return cls._load(p, json.loads(card_path.read_text()))
        except (KeyError, ValueError, OSError) as e:
            raise ClassifierError(
                f"classifier {p} is incomplete or from an incompatible version ({type(e).__name__}: {e}). "
                "Retrain it with `selector train`."
            ) from e

    @classmethod
    def _load(cls, p: Path, card: dict[str, Any]) -> Classifier:
        themes = list(card["themes"])
        models: dict[str, Any] = {}
        for key, fname in card["files"]["fasttext"].items():
            f = p / fname
            if not f.exists():
                raise ClassifierError(f"classifier {p} is incomplete: {fname} is missing. Retrain it.")
            models[key] = load_fasttext(f)
        enc = card["embedding"].get("encoder")
        if enc and not (p / enc).is_dir():
            raise ClassifierError(
                f"classifier {p} is incomplete: its fine-tuned embedding model {enc}/ is missing. Copy the whole "
                "classifier directory, or retrain it."
            )
        hp = p / HEAD
        if not hp.exists():
            raise ClassifierError(f"classifier {p} is incomplete: {HEAD} is missing. Retrain it.")
        z = np.load(hp, allow_pickle=False)
        heads = {t: (z[f"coef_{t}"], float(z[f"bias_{t}"])) for t in themes}
        index = SeedIndex(
            themes=themes,
            pos={t: z[f"pos_{t}"] for t in themes},
            neg={t: z[f"neg_{t}"] for t in themes},
            pos_ids={t: list(card["seeds"][t]["positive_ids"]) for t in themes},
            k=int(card["cascade"]["knn"]),
        )
        nb = card.get("label_neighbours")
        neighbours = None
        if nb:
            neighbours = LabelNeighbours.from_arrays(
                z, themes, int(nb["k"]), float(nb["weight"]), int(nb["min_labels"])
            )
            if neighbours is None:
                raise ClassifierError(
                    f"classifier {p} is incomplete: its card has label neighbours but {HEAD} holds none. "
                    "Copy the whole classifier directory, or retrain it."
                )
        return cls(path=p, card=card, models=models, heads=heads, index=index, neighbours=neighbours)

    def ft_scores(self, texts: list[str]) -> dict[str, np.ndarray]:
        """fastText probability per theme for already-normalised texts (see text.fasttext_input)."""
        if not texts:
            return {t: np.zeros(0, dtype=np.float32) for t in self.themes}
        out: dict[str, np.ndarray] = {}
        for key, model in self.models.items():  # "ova", or one binary model per theme
            out.update(fasttext_probs(model, texts, self.themes, key))
        return out

    def emb_scores(self, emb: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        """Embedding-head probability per theme (with the label neighbours' evidence where the classifier has
        them), and the seed evidence (nearest seeds) behind it."""
        return head_probs(emb, self.heads, self.neighbours), self.index.evidence(emb)


def classifier_fingerprint(path: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.encode())
        h.update(file_sha256(path / f).encode())
    return h.hexdigest()[:16]
