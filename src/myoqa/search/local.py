"""The local index as a `Library`: BM25 over its postings, FAISS over its vectors, and its pool
is every passage."""

from __future__ import annotations

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.bm25 import SparseBM25
from myoqa.index import Index, UnitTable
from myoqa.search.signals import nearest_passages
from myoqa.search.source import Candidates
from myoqa.search.unmatched import by_initial


class IndexLibrary:
    """A loaded index, searched in this process."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.bm25 = SparseBM25(index.postings)
        self._by_initial: dict[str, list[str]] | None = None

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer the index's terms were made with."""
        return self.index.analyzer

    @property
    def texts(self) -> dict[str, str]:
        """The sources' texts as indexed."""
        return self.index.texts

    @property
    def max_idf(self) -> float:
        """The IDF of the index's rarest term."""
        return self.bm25.max_idf

    def idf(self, term: str) -> float | None:
        """The term's IDF, or None when no passage holds it."""
        return self.bm25.idf(term)

    def holds(self, term: str) -> bool:
        """Whether any passage holds `term`."""
        return self.bm25.idf(term) is not None

    def terms_starting(self, initial: str) -> list[str]:
        """The index's terms that start with `initial` (grouped on first use)."""
        if self._by_initial is None:
            self._by_initial = by_initial(self.bm25.postings.vocab)
        return self._by_initial.get(initial, [])

    def pool(self, terms: list[str], query: np.ndarray | None,  # noqa: ARG002 - Library's
             mode: str, depth: int) -> IndexPool:  # noqa: ARG002 - signature
        """Every passage of the index, BM25-scored for `terms`."""
        return IndexPool(self, terms)


class IndexPool:
    """Every passage of a local index, for one question."""

    def __init__(self, library: IndexLibrary, terms: list[str]) -> None:
        self._library = library
        self._terms = terms
        self.bm25 = library.bm25.scores(terms)

    def nearest(self, query: np.ndarray, depth: int) -> np.ndarray:
        """Ids of the `depth` passages nearest to `query` in the vector index."""
        return nearest_passages(self._library.index.passage_vectors, query, depth)

    def take(self, rows: np.ndarray, vectors: bool) -> Candidates:
        """Passages `rows` (passage ids here), read from the index in memory."""
        index = self._library.index
        table = index.passages
        ids = np.asarray(rows, dtype=np.int64)
        return Candidates(
            ids=ids,
            passages=UnitTable(table.names, table.source[ids], table.start[ids], table.end[ids]),
            passage_spans=index.passage_spans[ids], spans=index.spans,
            span_vectors=index.span_vectors,
            passage_vectors=index.passage_vectors.reconstruct_batch(ids) if vectors else None,
            holding=None if vectors else self._holding()[ids])

    def _holding(self) -> np.ndarray:
        """Per passage, whether it holds a word of the question (a term's IDF may be 0 in a
        tiny index, so a score of 0 does not tell)."""
        bm25 = self._library.bm25
        out = np.zeros(bm25.size, dtype=bool)
        postings = bm25.postings
        for term in self._terms:
            i = bm25.term_ids.get(term)
            if i is not None:
                out[postings.docs[postings.indptr[i]:postings.indptr[i + 1]]] = True
        return out
