"""The passage vectors' search structure: exact for small indexes, compact for large ones.

Up to FLAT_MAX passages the vectors sit in an exact FAISS flat index (the seeds: same answers as
ever). Above, an IVF index of 8-bit scalar-quantised codes (a quarter of float32) finds
candidates, and the passages' float16 vectors (half of float32, memory-mapped from the build
folder once stored) rescore them, so the nearest passages and the dense scores measure as the
float32 ones did (README, "Speed") in a fraction of the memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FLAT_MAX = 20_000
IVF_PROBED_SHARE = 4
IVF_SAMPLE_PER_LIST = 50
IVF_TRAIN_ITERATIONS = 10
IVF_MIN_PROBES = 32
RERANK_EXTRA = 50
"""The quantised index is asked for this many neighbours more than wanted; the float16
vectors pick the nearest among them."""
ADD_BATCH = 20_000
"""Vectors converted and added to the IVF index at once (bounds the float32 copies)."""
EXACT_DTYPE = np.float16


@dataclass
class DenseIndex:
    """`coarse` (a FAISS index) finds nearest passages; `exact`, when there is one, holds every
    passage's vector to rescore them and to hand out."""

    coarse: Any
    exact: np.ndarray | None = None

    @property
    def ntotal(self) -> int:
        """How many vectors it holds."""
        return int(self.coarse.ntotal)

    @property
    def d(self) -> int:
        """Their dimension."""
        return int(self.coarse.d)

    @property
    def description(self) -> str:
        """What the manifest records as its `dense_index`."""
        if self.exact is None:
            return "flat"
        return (f"ivf-sq8(lists={self.coarse.nlist}, nprobe={self.coarse.nprobe})"
                f"+float16 rescoring")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS-style (scores, ids) of the `k` nearest passages to each query."""
        if self.exact is None:
            flat: tuple[np.ndarray, np.ndarray] = self.coarse.search(queries, k)
            return flat
        _, found = self.coarse.search(queries, k + RERANK_EXTRA)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, cand) in enumerate(zip(queries, found, strict=False)):
            cand = cand[cand >= 0]
            sims = self.reconstruct_batch(cand) @ query
            best = np.argsort(-sims, kind="stable")[:k]
            scores[row, :len(best)], ids[row, :len(best)] = sims[best], cand[best]
        return scores, ids

    def reconstruct_batch(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of passages `ids`, float32."""
        if self.exact is None:
            rows: np.ndarray = self.coarse.reconstruct_batch(ids)
            return rows
        return np.asarray(self.exact[np.asarray(ids, dtype=np.int64)], dtype=np.float32)

    def reconstruct_n(self, start: int, n: int) -> np.ndarray:
        """The vectors of passages start … start + n - 1, float32."""
        if self.exact is None:
            run: np.ndarray = self.coarse.reconstruct_n(start, n)
            return run
        return np.asarray(self.exact[start:start + n], dtype=np.float32)


def dense_index(vectors: np.ndarray) -> DenseIndex:
    """Exact inner-product search up to FLAT_MAX vectors, the compact IVF index above."""
    import faiss

    n, dim = vectors.shape
    if n <= FLAT_MAX:
        flat = faiss.IndexFlatIP(dim)
        flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return DenseIndex(flat)
    lists = int(np.sqrt(n))
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists,
                                        faiss.ScalarQuantizer.QT_8bit,
                                        faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = IVF_TRAIN_ITERATIONS
    ivf.cp.spherical = True
    picks = np.sort(np.random.default_rng(0).choice(n, min(n, IVF_SAMPLE_PER_LIST * lists),
                                                    replace=False))
    ivf.train(np.ascontiguousarray(vectors[picks], dtype=np.float32))
    exact = vectors if vectors.dtype == EXACT_DTYPE else np.empty((n, dim), EXACT_DTYPE)
    for lo in range(0, n, ADD_BATCH):
        batch = np.ascontiguousarray(vectors[lo:lo + ADD_BATCH], dtype=np.float32)
        ivf.add(batch)
        if exact is not vectors:
            exact[lo:lo + len(batch)] = batch
    ivf.nprobe = max(IVF_MIN_PROBES, lists // IVF_PROBED_SHARE)
    return DenseIndex(ivf, exact)
