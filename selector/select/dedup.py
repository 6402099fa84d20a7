"""Near-duplicate detection among the candidates of every upsampled theme, before streams are assigned: exact text hashes, and MinHash signatures of
word 5-shingles banded into an LSH index, so copies of one text are counted once."""

from __future__ import annotations

import hashlib
import logging
import re
import zlib

import numpy as np
import polars as pl

from selector.core.config import Config
from selector.score.organic import normalized_text_expr
from selector.select.scores import ScoresInfo

log = logging.getLogger(__name__)


SHINGLE_WORDS = 5


MINHASH_PERMS = 128


_MERSENNE = np.uint64((1 << 61) - 1)


_MAX_HASH = np.uint64((1 << 32) - 1)


_PERMS = np.random.RandomState(1).randint(1, (1 << 61) - 1, size=(2, MINHASH_PERMS), dtype=np.uint64)


def _shingles(text: str) -> list[bytes]:
    words = re.sub(r"[\W_]+", " ", text.lower()).split()
    if len(words) < SHINGLE_WORDS:
        return [" ".join(words).encode()]
    return sorted(
        {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}
    )


def minhash_signature(text: str) -> np.ndarray:
    """MinHash of the text's 5-word shingles: 128 universal hash permutations (a * h + b mod 2^61 - 1, as
    datasketch computes them) of each shingle's CRC-32; deterministic across processes."""
    hv = np.array([zlib.crc32(sh) for sh in _shingles(text)], dtype=np.uint64)[:, None]
    a, b = _PERMS
    return np.asarray(((hv * a + b) % _MERSENNE & _MAX_HASH).min(axis=0), dtype=np.uint64)


def candidate_fingerprints(
    pool: pl.DataFrame, info: ScoresInfo, cfg: Config, minhash: bool
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Read the candidates' texts back from their shards, shard by shard (texts are not kept), and return per
    candidate (`_key`): the hash of its normalized text (exact duplicates) and, if asked, its MinHash."""
    from selector.read.back import read_back

    hashes: dict[str, str] = {}
    sigs: dict[str, np.ndarray] = {}
    needed = pool.select("source", "row", "doc_id", "n_chars", "_key")
    for hit in read_back(info.inputs, cfg.read, needed, info.dir / "_inputs.json"):
        norm = hit.select(normalized_text_expr("text")).to_series().to_list()
        for key, text, nt in zip(hit["_key"].to_list(), hit["text"].to_list(), norm, strict=True):
            hashes[key] = hashlib.sha1(nt.encode()).hexdigest()[:20]
            if minhash:
                sigs[key] = minhash_signature(text)
    return hashes, sigs


def near_duplicates(pool: pl.DataFrame, sigs: dict[str, np.ndarray], thr: float) -> dict[str, str]:
    """{key: representative's doc_id} for candidates (`pool`, in rank order, keyed by `_key` = shard and row)
    whose estimated Jaccard similarity with a better-ranked candidate is at least `thr`. The LSH index holds
    the representatives' signatures: memory grows by about 1.5 KB per candidate."""
    from datasketch.lsh import _optimal_param

    # LSH: b bands of r rows, chosen as datasketch chooses them for this threshold (0.8 -> 9 bands of 13)
    bands, rows = _optimal_param(thr, MINHASH_PERMS, 0.5, 0.5)
    buckets: list[dict[bytes, list[str]]] = [{} for _ in range(bands)]
    rep_sigs: dict[str, np.ndarray] = {}
    order: dict[str, int] = {}  # representatives, in rank order
    doc_of: dict[str, str] = {}
    out: dict[str, str] = {}
    for key, doc_id in pool.select("_key", "doc_id").iter_rows():
        sig = sigs.pop(key)
        keys = [sig[i * rows : (i + 1) * rows].tobytes() for i in range(bands)]
        seen = {h for i, k in enumerate(keys) for h in buckets[i].get(k, ())}
        hits = [h for h in seen if float((rep_sigs[h] == sig).mean()) >= thr]
        if hits:
            out[key] = doc_of[min(hits, key=lambda h: order[h])]  # the best-ranked representative
            continue
        order[key] = len(order)
        doc_of[key] = doc_id
        rep_sigs[key] = sig
        for i, k in enumerate(keys):
            buckets[i].setdefault(k, []).append(key)
    return out
