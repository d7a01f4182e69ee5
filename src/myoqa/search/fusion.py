"""One ranking score from the signals: a fusion is a strategy object with a `fuse` method; the
product's is `Convex` (experiments bring their own, eval/experiments.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Fusion(Protocol):
    """How the candidates' signals become one score."""

    def fuse(self, lexical: np.ndarray, dense: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Fused scores of the candidates: `lexical` is BM25 scaled to 0-1, `raw` unscaled
        BM25, `dense` the cosine similarity."""
        ...


@dataclass(frozen=True)
class Convex:
    """dense_weight × dense + (1 − dense_weight) × normalised BM25."""

    dense_weight: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must lie in [0, 1], not {self.dense_weight}")

    def fuse(self, lexical: np.ndarray, dense: np.ndarray,
             raw: np.ndarray) -> np.ndarray:  # noqa: ARG002 - Fusion's signature
        """Stays in [0, 1]: a negative cosine counts as no similarity."""
        w = self.dense_weight
        mixed: np.ndarray = w * np.maximum(dense, 0.0) + (1 - w) * lexical
        return mixed
