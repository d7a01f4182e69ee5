"""Which passages are scored at all: every one in a small index, else the union of each signal's
best, so a passage one signal ranks high is never lost to the other's cut-off."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import numpy as np

EXHAUSTIVE_FACTOR = 4
"""An index of up to this many times the candidate count is scored whole (it costs little)."""


def top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Ids of the `depth` highest scores (unordered); all ids when there are no more."""
    return np.argpartition(-scores, depth - 1)[:depth] if len(scores) > depth else np.arange(
        len(scores))


def exhaustive(n: int, limit: int) -> bool:
    """Whether an index of `n` passages is scored whole rather than through candidates."""
    return n <= EXHAUSTIVE_FACTOR * limit


def dense_depth(n: int, limit: int) -> int:
    """How many nearest passages to ask the vector index for."""
    return n if exhaustive(n, limit) else limit


def candidate_ids(n: int, limit: int, best: Sequence[np.ndarray]) -> np.ndarray:
    """Every passage id of a small index, else the sorted union of each signal's best ids."""
    if exhaustive(n, limit):
        return np.arange(n)
    return reduce(np.union1d, best, np.array([], dtype=np.int64))
