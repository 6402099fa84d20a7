"""Seeded, order-independent keys: the same seed and parts give the same 64-bit number in any process, so
sampling, splitting and ordering never depend on input order or Python's per-process hash seed."""

from __future__ import annotations

import hashlib


def seeded_key(seed: int, *parts: object) -> int:
    """A 64-bit integer from blake2b of the seed and the parts (joined by NUL)."""
    h = hashlib.blake2b("\x00".join(map(str, (seed, *parts))).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")
