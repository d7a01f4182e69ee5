"""The search pipeline over one index: request → candidates → signals → fusion → assembly →
highlights, with abstention. The model-free stages live in their own modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from myoqa.bm25 import SparseBM25
from myoqa.citation import locate
from myoqa.errors import UsageError
from myoqa.formats import is_paged
from myoqa.index import Index
from myoqa.search import candidates, signals
from myoqa.search.answer import Answer, Result
from myoqa.search.assembly import Assembly, Hit, pick
from myoqa.search.fusion import fuse
from myoqa.search.highlight import highlights, span_candidates
from myoqa.search.params import Convex, LexicalNorm, SearchParams
from myoqa.search.request import check_request, query_terms, searched_text


@dataclass(frozen=True)
class Scores:
    """Scores of the candidate passages `ids` for one question, and the query vector."""

    ids: np.ndarray
    fused: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray | None
    query: np.ndarray | None


class Searcher:
    """Ranks an index's passages for a question; the query encoder is loaded on first dense use."""

    def __init__(self, index: Index, encoder_factory: Callable[[], Any] | None,
                 params: SearchParams | None = None) -> None:
        self.index = index
        self.params = params or SearchParams()
        self.analyzer = index.analyzer
        self._encoder_factory = encoder_factory
        self._encoder: Any = None
        self.bm25 = SparseBM25(index.postings)

    @property
    def dense_ready(self) -> bool:
        """Whether dense search can run without loading the encoder first."""
        return self._encoder is not None

    def load_encoder(self) -> None:
        """Load the query encoder now (the chat does this in a background worker)."""
        if self._encoder is None:
            if self._encoder_factory is None:
                raise UsageError("dense search is not available for this index",
                                 "use --mode bm25")
            self._encoder = self._encoder_factory()

    def embed(self, text: str) -> np.ndarray:
        """The normalised query vector."""
        self.load_encoder()
        return np.asarray(self._encoder.encode([text]), dtype=np.float32)[0]

    def search(self, question: str, mode: str = "hybrid", k: int = 5) -> Answer:
        """Top-k passages for `question`, each widened by the neighbours it overlaps."""
        cleaned, notes = searched_text(check_request(question, mode, k), mode)
        terms = query_terms(self.analyzer, cleaned)
        scored = self.score(cleaned, mode, terms)
        best_sim = float(scored.dense.max()) if scored.dense is not None else None
        abstained = (best_sim is not None and best_sim < self.params.abstain_below
                     and float(scored.lexical.max(initial=0.0)) < self.params.abstain_lexical_below)
        weights = {t: max(self.bm25.idf(t) or 0.0, 0.01) for t in terms}
        how = Assembly(self.params.max_words, self.params.partial_min, self.params.source_penalty)
        picked = pick(self.index.passages, self.index.texts, scored.ids, scored.fused, k, how)
        results = [self._result(rank, hit, weights, scored.query)
                   for rank, hit in enumerate(picked, 1)]
        return Answer(question=question, mode=mode, k=k, abstained=abstained, results=results,
                      searched=cleaned, best_similarity=best_sim, notes=notes)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Scores of the candidate passages for `text`: all of them in a small index, else the
        union of the best `candidates` by BM25 and by dense similarity."""
        terms = query_terms(self.analyzer, text) if terms is None else list(dict.fromkeys(terms))
        raw = self.bm25.scores(terms)
        fusion = self.params.fusion
        norm = fusion.lexical_norm if isinstance(fusion, Convex) else LexicalNorm.IDEAL
        lexical = signals.normalised_bm25(raw, terms, self.bm25, norm)
        n, limit = len(raw), self.params.candidates
        if mode == "bm25":
            ids = candidates.top(raw, limit)
            return Scores(ids, raw[ids], lexical[ids], None, None)
        query = self.embed(text)
        best = [signals.nearest_passages(self.index.passage_vectors, query,
                                         candidates.dense_depth(n, limit))]
        if mode == "hybrid":
            best.append(candidates.top(raw, limit))
        ids = candidates.candidate_ids(n, limit, best)
        dense = signals.dense_similarity(self.index.passage_vectors, self.index.span_vectors,
                                         self.index.passage_spans, query, ids,
                                         self.params.span_weight)
        fused = dense if mode == "dense" else fuse(fusion, lexical[ids], dense, raw[ids])
        return Scores(ids, fused, lexical[ids], dense, query)

    def _result(self, rank: int, hit: Hit, weights: dict[str, float],
                query: np.ndarray | None) -> Result:
        source = self.index.passages.names[hit.source_id]
        source_text = self.index.texts[source]
        text = source_text[hit.start:hit.end]
        spans = span_candidates(self.index.spans, self.index.passage_spans,
                                self.index.span_vectors, hit.units, hit.start, hit.end, query)
        marks = highlights(text, spans, self.analyzer, weights,
                           self.params.evidence_lexical_weight)
        place = locate(source_text, hit.start, is_paged(source))
        return Result(rank=rank, source=source, start=hit.start, end=hit.end, line=place.line,
                      column=place.column, page=place.page, score=hit.score, text=text,
                      highlights=marks)
