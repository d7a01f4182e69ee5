"""The scale step: build time, query latency, dense recall and peak memory of search over
synthetic corpora of growing size, each size in a fresh process so its peak memory is its own."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from myoqa.bench.harness import job, load, peak_mb, percentiles
from myoqa.bench.synthetic import DIM, synthetic_corpus

SCALE_QUERIES = 200
"""Queries timed at each size."""


class FixedEncoder:
    """Hands out prepared query vectors in turn, so scale timings leave the model out."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.i = vectors, 0

    def encode(self, texts: list[str]) -> np.ndarray:  # noqa: ARG002 (the encoder protocol)
        self.i += 1
        return self.vectors[(self.i - 1) % len(self.vectors)][None, :]


def scale_point(n: int, queries: int) -> dict[str, Any]:
    """Build time, query latency, recall and memory for one synthetic size (run in a child)."""
    from myoqa.index import BuildParams
    from myoqa.index.build import from_parts
    from myoqa.search import Searcher

    corpus = synthetic_corpus(n, queries)
    generated_mb = peak_mb()
    start = time.perf_counter()
    index = from_parts(corpus.texts, corpus.passages, [], corpus.vectors,
                       np.zeros((0, DIM), np.float32), BuildParams(model="synthetic"))
    build_s = time.perf_counter() - start
    qtexts = [" ".join(index.text(index.passages[int(i)]).split()[:8:2]) for i in corpus.picks]
    encoder = FixedEncoder(corpus.queries)
    searcher = Searcher(index, lambda: encoder)
    searcher.search(qtexts[0])
    encoder.i = 0
    samples = []
    for text in qtexts:
        t = time.perf_counter()
        searcher.search(text, "hybrid", 5)
        samples.append(time.perf_counter() - t)
    _, found = index.passage_vectors.search(corpus.queries, 10)
    recall = float(np.mean([len(set(a) & set(b)) / 10
                            for a, b in zip(corpus.truth, found, strict=True)]))
    return {"passages": n, "build_s": build_s, **percentiles(samples),
            "dense_index": index.manifest.dense_index, "dense_recall_at_10": recall,
            "peak_rss_mb": peak_mb(), "generated_peak_rss_mb": generated_mb,
            "load_average": load()}


def scale(sizes: list[int], queries: int = SCALE_QUERIES) -> list[dict[str, Any]]:
    """Each size in a fresh process, so peak memory is that size's own."""
    out = []
    for n in sizes:
        out.append(job("scale", str(n), str(queries), what=f"scale {n:,} passages"))
        print(f"  scale {n:>9,}: {out[-1]}", file=sys.stderr)
    return out
