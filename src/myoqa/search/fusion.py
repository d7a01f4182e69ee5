"""One ranking score from the signals, by the configured fusion strategy."""

from __future__ import annotations

import numpy as np

from myoqa.search.params import Convex, Fusion, ReciprocalRank


def fuse(fusion: Fusion, lexical: np.ndarray, dense: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Fused scores of the candidates: `lexical` is BM25 scaled to 0-1, `raw` unscaled BM25.

    Convex fusion stays in [0, 1]: a negative cosine counts as no similarity.
    """
    if isinstance(fusion, ReciprocalRank):
        ranked: np.ndarray = reciprocal_rank(raw, fusion.k) + reciprocal_rank(dense, fusion.k)
        return ranked
    if isinstance(fusion, Convex):
        w = fusion.dense_weight
        mixed: np.ndarray = w * np.maximum(dense, 0.0) + (1 - w) * lexical
        return mixed
    raise TypeError(f"unknown fusion {fusion!r}")


def reciprocal_rank(scores: np.ndarray, k: int) -> np.ndarray:
    """1 / (k + rank) of each score, ties ranked in order."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return 1.0 / (k + ranks)
