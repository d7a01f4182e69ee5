"""The passage vectors' search structure: exact flat below dense.FLAT_MAX, and above it the
compact IVF-SQ8 index rescored from float16 vectors, which must find what exact search finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from myoqa.bench import synthetic
from myoqa.index import BuildParams, health
from myoqa.index.build import from_parts
from myoqa.index.dense import EXACT_DTYPE, FLAT_MAX, dense_index
from myoqa.index.manifest import SourceEntry
from myoqa.index.ownership import claim
from myoqa.index.store import EXACT_VECTORS, current_build, save

LARGE = FLAT_MAX + 5_000


def test_small_indexes_stay_exact_float32() -> None:
    import faiss

    corpus = synthetic.synthetic_corpus(2_000, 20)
    vectors = corpus.vectors.astype(np.float32)
    index = dense_index(vectors)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    assert index.exact is None and index.description == "flat"
    for got, want in zip(index.search(corpus.queries, 10), flat.search(corpus.queries, 10), strict=False):
        assert np.array_equal(got, want)
    assert np.array_equal(index.reconstruct_batch(np.array([5, 1])), vectors[[5, 1]])


def test_compact_index_finds_the_exact_nearest_passages() -> None:
    """The ten nearest by the float32 vectors, found through 8-bit codes and float16 rescoring
    (recall@10 ≥ 0.98, the README's bar), with scores within float16 rounding."""
    corpus = synthetic.synthetic_corpus(LARGE, 100)
    index = dense_index(corpus.vectors)
    assert index.description.startswith("ivf-sq8") and index.exact is corpus.vectors
    scores, found = index.search(corpus.queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(corpus.truth, found, strict=False)])
    assert recall >= 0.98
    exact = np.einsum("qd,qkd->qk", corpus.queries, corpus.vectors[found].astype(np.float32))
    np.testing.assert_allclose(scores, exact, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_large_build_is_stored_compact_loaded_mapped_and_checked(tmp_path: Path) -> None:
    """Above FLAT_MAX a build stores its float16 vectors beside the quantised index; they are
    memory-mapped when loaded, answer as before saving, and damage to them is caught."""
    corpus = synthetic.synthetic_corpus(LARGE, 5)
    hashes = {name: f"{i:064x}" for i, name in enumerate(corpus.texts)}
    entries = [SourceEntry(name, hashes[name], len(text), int(np.sum(corpus.passages.source == i)))
               for i, (name, text) in enumerate(corpus.texts.items())]
    built = from_parts(corpus.texts, corpus.passages, [], corpus.vectors,
                       np.zeros((0, synthetic.DIM), np.float32), BuildParams(model="synthetic"),
                       entries)
    index_dir = tmp_path / "index"
    claim(index_dir)
    loaded = save(built, index_dir)
    exact = loaded.passage_vectors.exact
    assert isinstance(exact, np.memmap) and exact.dtype == EXACT_DTYPE
    assert np.array_equal(exact, corpus.vectors)
    for got, want in zip(loaded.passage_vectors.search(corpus.queries, 10),
                         built.passage_vectors.search(corpus.queries, 10), strict=False):
        assert np.array_equal(got, want)
    path = current_build(index_dir) / f"{EXACT_VECTORS}.npy"
    assert health.check(index_dir, BuildParams(model="synthetic"), hashes).state is (
        health.State.CURRENT)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    state = health.check(index_dir, BuildParams(model="synthetic"), hashes)
    assert state.state is health.State.DAMAGED and EXACT_VECTORS in (state.reason or "")
