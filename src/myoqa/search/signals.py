"""The signals scored for each candidate: BM25 (raw and scaled to 0-1) and dense similarity."""

from __future__ import annotations

from typing import Any

import numpy as np

from myoqa.bm25 import SparseBM25
from myoqa.search.params import LexicalNorm


def normalised_bm25(raw: np.ndarray, terms: list[str], bm25: SparseBM25,
                    norm: LexicalNorm, ids: np.ndarray | None = None) -> np.ndarray:
    """BM25 scaled to [0, 1] for distinct query `terms`, of the passages `ids` (all when None:
    a large index scales only its candidates, not a corpus-sized array per question).

    IDEAL divides by the most a passage could score for these terms: a question word the
    corpus never uses counts as if it were the rarest word, so a question put in other words
    than the text's leans on the dense score. MAX divides by the best passage's score.
    """
    picked = raw if ids is None else raw[ids]
    if norm is LexicalNorm.MAX:
        best = raw.max(initial=0.0)
        return picked / best if best > 0 else np.zeros_like(picked)
    ceiling = sum(max(idf, 0.0) if (idf := bm25.idf(t)) is not None else bm25.max_idf
                  for t in terms) * (bm25.k1 + 1)
    return picked / ceiling if ceiling > 0 else np.zeros_like(picked)


def nearest_passages(passage_vectors: Any, query: np.ndarray, depth: int) -> np.ndarray:
    """Ids of the `depth` passages nearest to `query` in the vector index."""
    _, ids = passage_vectors.search(query[None, :], depth)
    found: np.ndarray = ids[0][ids[0] >= 0]
    return found


def dense_similarity(passage_vectors: Any, span_vectors: np.ndarray, passage_spans: np.ndarray,
                     query: np.ndarray, ids: np.ndarray, span_weight: float) -> np.ndarray:
    """Cosine of each candidate passage, raised towards its best inner span by `span_weight`:
    a passage whose one sentence answers well is not diluted by the rest of it."""
    vectors = passage_vectors.reconstruct_batch(ids.astype(np.int64))
    dense = vectors @ query
    ranges = passage_spans[ids]
    sizes = ranges[:, 1] - ranges[:, 0]
    if span_weight and sizes.sum():
        has = sizes > 0
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in ranges[has]])
        sims = np.asarray(span_vectors[rows]) @ query
        best = np.full(len(ids), -1.0)
        best[has] = np.maximum.reduceat(sims, np.cumsum(sizes[has]) - sizes[has])
        dense = np.where(has, np.maximum(dense, (1 - span_weight) * dense + span_weight * best),
                         dense)
    scores: np.ndarray = dense.astype(np.float64)
    return scores
