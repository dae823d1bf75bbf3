"""Stable seeds from tuples: the same number in every process, worker and Python run (unlike `hash()` of
a str), so that every random choice of the training stream is a pure function of its coordinates."""

from __future__ import annotations

import hashlib
import random


def stable_seed(*parts: int | str) -> int:
    """A 64-bit seed from `parts` (ints and strs), e.g. (seed, "shards", source, pass)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def stable_rng(*parts: int | str) -> random.Random:
    """A `random.Random` seeded by `stable_seed(*parts)`."""
    return random.Random(stable_seed(*parts))


def stable_uniform(*parts: int | str) -> float:
    """A float in [0, 1) that depends only on `parts` (counter-based: no RNG state to checkpoint)."""
    return stable_seed(*parts) / 2.0**64
