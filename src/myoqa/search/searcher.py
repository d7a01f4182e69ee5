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
from myoqa.search.abstention import Evidence, abstains
from myoqa.search.answer import Answer, Result
from myoqa.search.assembly import Assembly, Hit, pick
from myoqa.search.fusion import fuse
from myoqa.search.highlight import highlights, span_candidates
from myoqa.search.late import LateSignal, Preload, rerank, span_scores
from myoqa.search.params import Convex, LexicalNorm, SearchParams
from myoqa.search.request import check_request, query_terms, searched_text
from myoqa.search.unmatched import UNITS, by_initial, missing_terms, note, unmatched_terms


@dataclass(frozen=True)
class Scores:
    """Scores of the candidate passages `ids` for one question, and the query vector."""

    ids: np.ndarray
    fused: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray | None
    query: np.ndarray | None
    late_query: np.ndarray | None = None
    late_best: float | None = None


class Searcher:
    """Ranks an index's passages for a question; the query encoder is loaded on first dense use."""

    def __init__(self, index: Index, encoder_factory: Callable[[], Any] | None,
                 params: SearchParams | None = None, late: LateSignal | None = None) -> None:
        self.index = index
        self.late = late
        self.params = params or SearchParams()
        self.analyzer = index.analyzer
        self._encoder_factory = encoder_factory
        self._encoder: Any = None
        self.bm25 = SparseBM25(index.postings)
        self._by_initial: dict[str, list[str]] | None = None

    def _source_terms(self, initial: str) -> list[str]:
        """The index's terms that start with `initial` (grouped on first use)."""
        if self._by_initial is None:
            self._by_initial = by_initial(self.bm25.postings.vocab)
        return self._by_initial.get(initial, [])

    def in_sources(self, term: str) -> bool:
        """Whether any passage holds `term` (asked for the question's terms and for its
        hyphenated words written together)."""
        return self.bm25.idf(term) is not None

    @property
    def dense_ready(self) -> bool:
        """Whether hybrid and dense search can run without loading an encoder first (the
        query encoder, and the late-interaction one when it is used)."""
        return self._encoder is not None and (self.late is None or self.late.ready)

    def load_encoder(self) -> None:
        """Load the query encoders now: the dense one, then (loading on its own thread since
        the searcher opened, or now) the late-interaction one. The chat does this in a
        background worker."""
        self._dense()
        if self.late is not None:
            self.late.encoder  # noqa: B018 - loads it

    def _dense(self) -> Any:
        if self._encoder is None:
            if self._encoder_factory is None:
                raise UsageError("dense search is not available for this index",
                                 "use --mode bm25")
            self._encoder = self._encoder_factory()
        return self._encoder

    def embed(self, text: str) -> np.ndarray:
        """The normalised query vector."""
        vector: np.ndarray = np.asarray(self._dense().encode([text]), dtype=np.float32)[0]
        return vector

    def search(self, question: str, mode: str = "hybrid", k: int = 5) -> Answer:
        """Top-k passages for `question`, each widened by the neighbours it overlaps."""
        cleaned, notes = searched_text(check_request(question, mode, k), mode)
        terms = query_terms(self.analyzer, cleaned)
        scored = self.score(cleaned, mode, terms)
        best_sim = float(scored.dense.max()) if scored.dense is not None else None
        unmatched = unmatched_terms(cleaned, self.analyzer, self.in_sources, self._source_terms)
        if unmatched:
            notes.append(note(unmatched))
        p = self.params
        found = Evidence(mode, best_sim, float(scored.lexical.max(initial=0.0)),
                         scored.late_best, any(w.lower() in UNITS for w in unmatched))
        abstained = abstains(found, p.abstain_below, p.abstain_lexical_below,
                             p.abstain_late_below, p.abstain_on_units)
        weights = {t: max(self.bm25.idf(t) or 0.0, 0.01) for t in terms}
        how = Assembly(self.params.max_words, self.params.partial_min, self.params.source_penalty)
        picked = pick(self.index.passages, self.index.texts, scored.ids, scored.fused, k, how,
                      self._holding(terms)[scored.ids] if mode == "bm25" else None)
        results = [self._result(rank, hit, weights, scored, cleaned)
                   for rank, hit in enumerate(picked, 1)]
        return Answer(question=question, mode=mode, k=k, abstained=abstained, results=results,
                      searched=cleaned, best_similarity=best_sim, notes=notes,
                      unmatched_terms=unmatched)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Scores of the candidate passages for `text`: all of them in a small index, else the
        union of the best `candidates` by BM25 and by dense similarity."""
        terms = query_terms(self.analyzer, text) if terms is None else list(dict.fromkeys(terms))
        raw = self.bm25.scores(terms)
        fusion = self.params.fusion
        norm = fusion.lexical_norm if isinstance(fusion, Convex) else LexicalNorm.IDEAL
        n, limit = len(raw), self.params.candidates
        if mode == "bm25":
            ids = candidates.top(raw, limit)
            return Scores(ids, raw[ids], signals.normalised_bm25(raw, terms, self.bm25, norm, ids),
                          None, None)
        late = self.late if mode == "hybrid" and self.params.late is not None else None
        # the two query encoders run at once: onnxruntime leaves Python's lock while it runs
        late_query = Preload(lambda: late.query(text)) if late is not None else None
        query = self.embed(text)
        best = [signals.nearest_passages(self.index.passage_vectors, query,
                                         candidates.dense_depth(n, limit))]
        if mode == "hybrid":
            best.append(candidates.top(raw, limit))
        ids = candidates.candidate_ids(n, limit, best)
        lexical = signals.normalised_bm25(raw, terms, self.bm25, norm, ids)
        dense = signals.dense_similarity(self.index.passage_vectors, self.index.span_vectors,
                                         self.index.passage_spans, query, ids,
                                         self.params.span_weight)
        fused = dense if mode == "dense" else fuse(fusion, lexical, dense, raw[ids])
        if late is not None and late_query is not None and self.params.late is not None:
            how = self.params.late
            tokens = late_query.result()
            top = candidates.top(fused, how.depth)
            found = late.scores(tokens, ids[top])
            return Scores(ids, rerank(fused, found, top, how), lexical, dense, query,
                          tokens, float(found.max(initial=-1.0)))
        return Scores(ids, fused, lexical, dense, query)


    def _holding(self, terms: list[str]) -> np.ndarray:
        """Per passage, whether it holds a word of the question (a term's IDF may be 0 in a
        tiny index, so a score of 0 does not tell)."""
        out = np.zeros(self.bm25.size, dtype=bool)
        postings = self.bm25.postings
        for term in terms:
            i = self.bm25.term_ids.get(term)
            if i is not None:
                out[postings.docs[postings.indptr[i]:postings.indptr[i + 1]]] = True
        return out

    def _result(self, rank: int, hit: Hit, weights: dict[str, float], scored: Scores,
                question: str) -> Result:
        source = self.index.passages.names[hit.source_id]
        source_text = self.index.texts[source]
        text = source_text[hit.start:hit.end]
        spans = span_candidates(self.index.spans, self.index.passage_spans,
                                self.index.span_vectors, hit.units, hit.start, hit.end,
                                scored.query)
        w = self.params.evidence_token_weight
        if w and self.late is not None and scored.late_query is not None and spans:
            spans = self._token_evidence(self.late, hit, spans, scored.late_query, w)
        marks = highlights(text, spans, self.analyzer, weights,
                           self.params.evidence_lexical_weight, self.params.answerable_evidence,
                           lexical_only=scored.query is None,
                           max_words=self.params.evidence_words)
        place = locate(source_text, hit.start, is_paged(source))
        return Result(rank=rank, source=source, start=hit.start, end=hit.end, line=place.line,
                      column=place.column, page=place.page, score=hit.score, text=text,
                      highlights=marks,
                      missing_terms=missing_terms(question, self.analyzer, text))

    def _token_evidence(self, late: LateSignal, hit: Hit, spans: list[tuple[int, int, float]],
                        late_query: np.ndarray, weight: float) -> list[tuple[int, int, float]]:
        """The evidence candidates' dense scores mixed with their token-level MaxSim."""
        parts = [late.passage(u, self.index.text(unit), unit.start)
                 for u in hit.units for unit in [self.index.passages[u]]]
        vectors = np.concatenate([v for v, _ in parts])
        offsets = np.concatenate([o for _, o in parts]) - hit.start
        tokens = span_scores(late_query, vectors, offsets, [(s, e) for s, e, _ in spans])
        return [(s, e, (1 - weight) * d + weight * t) for (s, e, d), t in zip(spans, tokens, strict=False)]
