"""The signals scored for each candidate: BM25 (raw and scaled to 0-1) and dense similarity."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from myoqa.bm25 import K1


class TermStats(Protocol):
    """A library's term statistics, as far as scaling BM25 needs them."""

    @property
    def max_idf(self) -> float:
        """The IDF of the rarest term."""
        ...

    def idf(self, term: str) -> float | None:
        """The term's IDF, or None when no passage holds it."""
        ...


def normalised_bm25(raw: np.ndarray, terms: list[str], stats: TermStats) -> np.ndarray:
    """The raw BM25 scores `raw` of distinct query `terms` scaled to [0, 1]: divided by the most
    a passage could score for these terms. A question word the library never uses counts as
    if it were the rarest word, so a question put in other words than the text's leans on the
    dense score."""
    ceiling = sum(max(idf, 0.0) if (idf := stats.idf(t)) is not None else stats.max_idf
                  for t in terms) * (K1 + 1)
    scaled: np.ndarray = raw / ceiling if ceiling > 0 else np.zeros_like(raw)
    return scaled


def nearest_passages(passage_vectors: Any, query: np.ndarray, depth: int) -> np.ndarray:
    """Ids of the `depth` passages nearest to `query` in the vector index."""
    _, ids = passage_vectors.search(query[None, :], depth)
    found: np.ndarray = ids[0][ids[0] >= 0]
    return found


def dense_similarity(vectors: np.ndarray, span_vectors: Any, passage_spans: np.ndarray,
                     query: np.ndarray, span_weight: float) -> np.ndarray:
    """Cosine of each candidate passage (`vectors`, one row each), raised towards its best
    inner span (rows `passage_spans` of `span_vectors`) by `span_weight`: a passage whose one
    sentence answers well is not diluted by the rest of it."""
    dense = vectors @ query
    ranges = passage_spans
    sizes = ranges[:, 1] - ranges[:, 0]
    if span_weight and sizes.sum():
        has = sizes > 0
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in ranges[has]])
        sims = np.asarray(span_vectors[rows]) @ query
        best = np.full(len(vectors), -1.0)
        best[has] = np.maximum.reduceat(sims, np.cumsum(sizes[has]) - sizes[has])
        dense = np.where(has, np.maximum(dense, (1 - span_weight) * dense + span_weight * best),
                         dense)
    scores: np.ndarray = dense.astype(np.float64)
    return scores
