"""A synthetic corpus for the scale benchmark: texts, passages and vectors generated (not
embedded), so that search at a size is timed apart from embedding, with the exact nearest
passages of its queries to measure approximate search's recall against."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from myoqa.index.tables import UnitTable

DIM = 384
"""The synthetic vectors' dimension: the default model's."""
SYNTHETIC_BATCH = 20_000
"""Synthetic passages generated at once: the corpus streams in, as a real build's batches do."""
PASSAGES_PER_SOURCE = 1000


@dataclass(frozen=True)
class Synthetic:
    """A synthetic corpus: source texts, passages as an offset table, float16 vectors, and the
    queries with their exact nearest passages (from the float32 vectors, before rounding)."""

    texts: dict[str, str]
    passages: UnitTable
    vectors: np.ndarray
    queries: np.ndarray
    picks: np.ndarray
    truth: np.ndarray
def synthetic_corpus(n: int, queries: int = 0, seed: int = 0) -> Synthetic:
    """`n` passages of 60 Zipf-distributed words each, one source per 1,000 passages, and
    clustered unit vectors (so that approximate search meets structure as real embeddings do),
    made SYNTHETIC_BATCH at a time and kept in float16 as an index keeps them; `queries` query
    vectors near random passages, with the ten passages nearest each by the float32 vectors."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.07
    weights /= weights.sum()
    picks = np.random.default_rng(seed + 1).integers(0, n, queries)
    noise = np.random.default_rng(seed + 2)
    qvecs = np.zeros((queries, DIM), np.float32)
    texts: dict[str, str] = {}
    source, start, end = (np.empty(n, np.int64) for _ in range(3))
    vectors = np.empty((n, DIM), np.float16)
    for lo, batch in _vector_batches(n, seed + 3):
        hi = lo + len(batch)
        words = rng.choice(len(vocab), size=(hi - lo, 60), p=weights)
        for s in range(lo, hi, PASSAGES_PER_SOURCE):
            lines = [" ".join(vocab[row]) for row in words[s - lo:s - lo + PASSAGES_PER_SOURCE]]
            sizes = np.array([len(line) for line in lines])
            texts[f"synthetic/{s // PASSAGES_PER_SOURCE:05d}.txt"] = "\n".join(lines)
            at = slice(s, s + len(lines))
            source[at] = s // PASSAGES_PER_SOURCE
            start[at] = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]])
            end[at] = start[at] + sizes
        vectors[lo:hi] = batch
        mine = (picks >= lo) & (picks < hi)
        qvecs[mine] = query_vectors(batch, picks[mine] - lo, noise)
    best = np.zeros((queries, 0), np.float32), np.zeros((queries, 0), np.int64)
    if queries:  # the same float32 batches again, now that the queries are known
        for lo, batch in _vector_batches(n, seed + 3):
            best = _merge_best(best, batch, lo, qvecs)
    table = UnitTable(list(texts), source.astype(np.int32), start, end)
    return Synthetic(texts, table, vectors, qvecs, picks, best[1])


def _vector_batches(n: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """The synthetic float32 vectors, SYNTHETIC_BATCH at a time (the same for the same seed)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((max(16, n // 250), DIM), dtype=np.float32))
    for lo in range(0, n, SYNTHETIC_BATCH):
        yield lo, clustered_vectors(min(SYNTHETIC_BATCH, n - lo), rng, centres)


def _merge_best(best: tuple[np.ndarray, np.ndarray], batch: np.ndarray, first: int,
                queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ten best (scores, ids) so far, merged with those of `batch` (rows from `first`)."""
    sims = queries @ batch.T
    top = np.argsort(-sims, axis=1)[:, :10]
    scores = np.concatenate([best[0], np.take_along_axis(sims, top, 1)], axis=1)
    ids = np.concatenate([best[1], top + first], axis=1)
    keep = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)


def clustered_vectors(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around `centres` (topics: a corpus has one per 250 passages), a vector's
    cosine to its topic about 0.75 (real sentence embeddings of one subject spread about as
    much)."""
    out = rng.standard_normal((n, DIM), dtype=np.float32)
    out *= np.float32(0.9 / np.sqrt(DIM))
    out += centres[rng.integers(0, len(centres), n)]
    return _unit(out)


def query_vectors(vectors: np.ndarray, picks: np.ndarray, rng: np.random.Generator
                  ) -> np.ndarray:
    """Queries near chosen passages, at the cosine (about 0.6) a question has to its answer."""
    noise = rng.standard_normal((len(picks), DIM), dtype=np.float32) * np.float32(
        1.33 / np.sqrt(DIM))
    return _unit(vectors[picks].astype(np.float32) + noise)


def _unit(x: np.ndarray) -> np.ndarray:
    """`x` (float32) with each row scaled to length 1, in place."""
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x
