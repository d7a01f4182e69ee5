"""The NumPy BM25 gives rank-bm25's scores, on the seeds and on the MED collection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from helpers import MED, eval_questions
from myoqa.analysis import Analyzer
from myoqa.bm25 import EPSILON, Postings, SparseBM25, idf_from_df, raw_idf
from myoqa.search import Searcher


def _assert_same(corpus: list[list[str]], queries: list[list[str]]) -> None:
    reference = BM25Okapi(corpus)
    fast = SparseBM25(Postings.from_tokens(corpus))
    for query in queries:
        np.testing.assert_allclose(fast.scores(query), reference.get_scores(query), atol=1e-6)
    for term, idf in reference.idf.items():
        assert fast.idf(term) == pytest.approx(idf, abs=1e-9)


def test_same_scores_as_rank_bm25_on_the_seeds(searcher: Searcher) -> None:
    analyzer = Analyzer()
    corpus = [analyzer.terms(searcher.index.text(p)) for p in searcher.index.passages]
    questions = eval_questions()
    _assert_same(corpus, [analyzer.terms(q) for q in questions] + [["myoclonus"] * 3, []])


@pytest.mark.med
def test_same_scores_as_rank_bm25_on_med() -> None:
    analyzer = Analyzer()
    corpus = [analyzer.terms(json.loads(line)["text"]) for line in
              (MED / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = [analyzer.terms(json.loads(line)["text"]) for line in
               (MED / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    _assert_same(corpus, queries)


def test_postings_built_from_texts_score_like_rank_bm25(searcher: Searcher) -> None:
    analyzer = searcher.analyzer
    tokens = [analyzer.terms(searcher.index.text(p)) for p in searcher.index.passages]
    reference = BM25Okapi(tokens)
    stored = SparseBM25(searcher.index.postings)
    fresh = SparseBM25(Postings.from_tokens(tokens))
    assert sorted(searcher.index.postings.vocab) == sorted(reference.idf)
    for query in (["myoclon", "treatment"], ["diaphragmat", "flutter"], ["zzz"]):
        np.testing.assert_allclose(stored.scores(query), reference.get_scores(query), atol=1e-6)
        np.testing.assert_allclose(fresh.scores(query), stored.scores(query), atol=1e-12)


def test_postings_inverted_in_batches_are_those_inverted_at_once(searcher: Searcher) -> None:
    """The batched inversion (memory bounded by a batch) stores the very arrays, and gives the
    very scores, of inverting the seeds' passages in one batch, whatever the batch size."""
    texts = [searcher.index.text(p) for p in searcher.index.passages]
    whole = Postings.from_texts(texts, searcher.analyzer, batch=len(texts))
    for batch in (1, 7, len(texts) // 2):
        part = Postings.from_texts(texts, searcher.analyzer, batch=batch)
        assert part.vocab == whole.vocab
        for name, array in whole.arrays().items():
            assert np.array_equal(part.arrays()[name], array), (batch, name)
        for query in (["myoclon", "treatment", "myoclon"], ["zzz"]):
            assert np.array_equal(SparseBM25(part).scores(query), SparseBM25(whole).scores(query))


def test_weights_computed_in_chunks_are_exact(searcher: Searcher,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """BM25 weights computed a few postings at a time (bounded temporaries) equal, bit for
    bit, those computed in one go."""
    import myoqa.bm25

    whole = SparseBM25(searcher.index.postings).weights
    monkeypatch.setattr(myoqa.bm25, "WEIGHT_CHUNK", 13)
    assert np.array_equal(SparseBM25(searcher.index.postings).weights, whole)


def test_some_documents_scored_with_the_corpus_statistics_score_as_in_the_corpus() -> None:
    """How the Milvus backend scores a question's pool: the pooled documents' own postings,
    with the IDFs (`idf_from_df`, the floor of the whole vocabulary) and mean length of the
    whole corpus, give exactly the scores the whole corpus gives them."""
    corpus = [["myoclonus", "jerk", "jerk"], ["sleep", "start", "jerk"], ["valproate", "myoclonus"],
              ["jerk"], ["sleep", "myoclonus", "myoclonus", "drug"]]
    whole = SparseBM25(Postings.from_tokens(corpus))
    pooled = [4, 1, 2]
    part = Postings.from_tokens([corpus[i] for i in pooled])
    df = {t: sum(t in doc for doc in corpus) for t in part.vocab}
    floor = EPSILON * float(np.mean(raw_idf(len(corpus), np.diff(whole.postings.indptr))))
    assert any(raw_idf(len(corpus), np.array([d]))[0] < 0 for d in df.values())
    idf = idf_from_df(len(corpus), np.array([df[t] for t in part.vocab]), floor)
    avgdl = sum(map(len, corpus)) / len(corpus)
    some = SparseBM25(part, idf, avgdl)
    for query in (["jerk"], ["myoclonus", "sleep"], ["drug", "jerk", "valproate"]):
        assert np.array_equal(some.scores(query), whole.scores(query)[pooled])
