"""Late interaction (ColBERT MaxSim), the third signal: each question token is matched to its
most similar token of a passage, so a passage that answers in other words than the question's
still matches word by word, where one vector per passage blurs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from myoqa.index.tokens import TokenVectors
from myoqa.search.params import LateInteraction


def maxsim(query: np.ndarray, tokens: TokenVectors, ids: np.ndarray) -> np.ndarray:
    """For each passage in `ids`: the mean over query tokens of the best cosine with any of the
    passage's tokens (in [-1, 1])."""
    starts, ends = tokens.offsets[ids], tokens.offsets[ids + 1]
    sizes = ends - starts
    rows = np.concatenate([np.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist())])
    sims = tokens.vectors[rows].astype(np.float32) @ query.T
    best = np.maximum.reduceat(sims, np.cumsum(sizes) - sizes, axis=0)
    return best.mean(axis=1).astype(np.float64)


def rerank(fused: np.ndarray, late: np.ndarray | None, top: np.ndarray,
           how: LateInteraction) -> np.ndarray:
    """Fused scores with the late signal mixed in for the candidates at positions `top`:
    (1 − weight) × fused + weight × the late score min-max scaled over `top` (0 elsewhere), so
    the result stays in [0, 1] and only the candidates the first stage ranked high move."""
    out = (1 - how.weight) * fused
    if late is not None and len(top):
        low, high = late.min(), late.max()
        out[top] += how.weight * ((late - low) / (high - low) if high > low
                                  else np.ones_like(late))
    return out


def span_scores(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray,
                spans: list[tuple[int, int]]) -> list[float]:
    """MaxSim of `query` against the tokens lying inside each (start, end) span: how well the
    span alone answers, word by word (-1 for a span holding no token).

    Tokens (of possibly overlapping passages) are sorted by place, so the tokens of a span
    are one slice."""
    real = offsets[:, 1] > offsets[:, 0]
    offsets = offsets[real]
    order = np.lexsort((offsets[:, 1], offsets[:, 0]))
    starts = offsets[order, 0]
    ends = np.maximum.accumulate(offsets[order, 1]) if len(order) else offsets[order, 1]
    sims = vectors[real][order].astype(np.float32) @ query.T
    out = []
    for start, end in spans:
        lo = int(np.searchsorted(starts, start, side="left"))
        hi = int(np.searchsorted(ends, end, side="right"))
        out.append(float(sims[lo:hi].max(axis=0).mean()) if hi > lo else -1.0)
    return out


@dataclass
class LateSignal:
    """The passages' stored token vectors and, loaded on first use, the query encoder."""

    tokens: TokenVectors
    encoder_factory: Callable[[], Any]
    _encoder: Any = None

    @property
    def encoder(self) -> Any:
        """The late-interaction encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        return self._encoder

    def query(self, text: str) -> np.ndarray:
        """The question's token vectors."""
        return np.asarray(self.encoder.query(text), dtype=np.float32)

    def passage(self, i: int, text: str, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Passage `i`'s token vectors and their character offsets in its source (the passage
        `text` begins at `start`; its tokens are found again, which takes microseconds)."""
        vectors = self.tokens.vectors[self.tokens.offsets[i]:self.tokens.offsets[i + 1]]
        return vectors, self.encoder.offsets(text)[:len(vectors)] + start
