"""The search pipeline over one library (the local index, or Milvus): request → pool →
candidates → signals → fusion → assembly → highlights, with abstention. The model-free stages
live in their own modules; what a backend must answer is `source.Library`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from myoqa.citation import locate
from myoqa.errors import UsageError
from myoqa.formats import is_paged
from myoqa.index import Index
from myoqa.search import candidates, signals
from myoqa.search.abstention import Support, abstains
from myoqa.search.answer import Answer, Result
from myoqa.search.assembly import Assembly, Hit, pick
from myoqa.search.highlight import highlights, span_candidates
from myoqa.search.late import LateSignal, Preload, rerank, span_scores
from myoqa.search.local import IndexLibrary
from myoqa.search.params import SearchParams
from myoqa.search.request import check_request, query_terms, searched_text
from myoqa.search.source import Candidates, Library
from myoqa.search.unmatched import UNITS, missing_terms, note, unmatched_terms


@dataclass(frozen=True)
class Scores:
    """Scores of the candidate passages `found` for one question, and the query vector."""

    found: Candidates
    fused: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray | None
    query: np.ndarray | None
    late_query: np.ndarray | None = None
    late_best: float | None = None

    @property
    def ids(self) -> np.ndarray:
        """The candidates' passage ids in the library, in the order of the scores."""
        return self.found.ids


class Searcher:
    """Ranks a library's passages for a question; the query encoder is loaded on first dense
    use. `index` is what the views read (the local Index, or the Milvus library); a local
    Index is searched through `IndexLibrary`."""

    def __init__(self, index: Index | Library, encoder_factory: Callable[[], Any] | None,
                 params: SearchParams | None = None, late: LateSignal | None = None) -> None:
        self.index = index
        self.library: Library = IndexLibrary(index) if isinstance(index, Index) else index
        self.late = late
        self.params = params or SearchParams()
        self.analyzer = self.library.analyzer
        self._encoder_factory = encoder_factory
        self._encoder: Any = None

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
        library = self.library
        unmatched = unmatched_terms(cleaned, self.analyzer, library.holds, library.terms_starting)
        if unmatched:
            notes.append(note(unmatched))
        p = self.params
        support = Support(mode, best_sim, float(scored.lexical.max(initial=0.0)),
                          scored.late_best, any(w.lower() in UNITS for w in unmatched))
        abstained = abstains(support, p.abstain_below, p.abstain_lexical_below,
                             p.abstain_late_below, p.abstain_on_units)
        weights = {t: max(library.idf(t) or 0.0, 0.01) for t in terms}
        how = Assembly(p.max_words, p.partial_min, p.source_penalty)
        found = scored.found
        picked = pick(found.passages, library.texts, np.arange(len(found.ids)), scored.fused, k,
                      how, found.holding if mode == "bm25" else None)
        results = [self._result(rank, hit, weights, scored, cleaned)
                   for rank, hit in enumerate(picked, 1)]
        return Answer(question=question, mode=mode, k=k, abstained=abstained, results=results,
                      searched=cleaned, best_similarity=best_sim, notes=notes,
                      unmatched_terms=unmatched)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Scores of the candidate passages for `text`: of the library's pool for the question
        (every passage of a local index), all of a small pool, else the union of the best
        `candidates` by BM25 and by dense similarity."""
        terms = query_terms(self.analyzer, text) if terms is None else list(dict.fromkeys(terms))
        limit = self.params.candidates
        late = self.late if mode == "hybrid" and self.params.late is not None else None
        # the two query encoders run at once: onnxruntime leaves Python's lock while it runs
        late_query = Preload(lambda: late.query(text)) if late is not None else None
        query = None if mode == "bm25" else self.embed(text)
        pool = self.library.pool(terms, query, mode, limit)
        raw = pool.bm25
        if query is None:
            rows = candidates.top(raw, limit)
            found = pool.take(rows, vectors=False)
            picked = raw[rows]
            return Scores(found, picked, signals.normalised_bm25(picked, terms, self.library),
                          None, None)
        n = len(raw)
        best = [pool.nearest(query, candidates.dense_depth(n, limit))]
        if mode == "hybrid":
            best.append(candidates.top(raw, limit))
        rows = candidates.candidate_ids(n, limit, best)
        found = pool.take(rows, vectors=True)
        assert found.passage_vectors is not None
        lexical = signals.normalised_bm25(raw[rows], terms, self.library)
        dense = signals.dense_similarity(found.passage_vectors, found.span_vectors,
                                         found.passage_spans, query, self.params.span_weight)
        fused = dense if mode == "dense" else self.params.fusion.fuse(lexical, dense, raw[rows])
        if late is not None and late_query is not None and self.params.late is not None:
            how = self.params.late
            tokens = late_query.result()
            top = candidates.top(fused, how.depth)
            late_found = late.scores(tokens, found.ids[top])
            return Scores(found, rerank(fused, late_found, top, how), lexical, dense, query,
                          tokens, float(late_found.max(initial=-1.0)))
        return Scores(found, fused, lexical, dense, query)

    def _result(self, rank: int, hit: Hit, weights: dict[str, float], scored: Scores,
                question: str) -> Result:
        found = scored.found
        source = found.passages.names[hit.source_id]
        source_text = self.library.texts[source]
        text = source_text[hit.start:hit.end]
        spans = span_candidates(found.spans, found.passage_spans, found.span_vectors, hit.units,
                                hit.start, hit.end, scored.query)
        w = self.params.evidence_token_weight
        if w and self.late is not None and scored.late_query is not None and spans:
            spans = self._token_evidence(self.late, found, hit, spans, scored.late_query, w)
        marks = highlights(text, spans, self.analyzer, weights,
                           self.params.evidence_lexical_weight, self.params.answerable_evidence,
                           lexical_only=scored.query is None,
                           max_words=self.params.evidence_words)
        place = locate(source_text, hit.start, is_paged(source))
        return Result(rank=rank, source=source, start=hit.start, end=hit.end, line=place.line,
                      column=place.column, page=place.page, score=hit.score, text=text,
                      highlights=marks,
                      missing_terms=missing_terms(question, self.analyzer, text))

    def _token_evidence(self, late: LateSignal, found: Candidates, hit: Hit,
                        spans: list[tuple[int, int, float]], late_query: np.ndarray,
                        weight: float) -> list[tuple[int, int, float]]:
        """The evidence candidates' dense scores mixed with their token-level MaxSim (`hit`'s
        units are rows of `found`)."""
        texts = self.library.texts
        parts = [late.passage(int(found.ids[row]),
                              texts[unit.source][unit.start:unit.end], unit.start)
                 for row in hit.units for unit in [found.passages[row]]]
        vectors = np.concatenate([v for v, _ in parts])
        offsets = np.concatenate([o for _, o in parts]) - hit.start
        tokens = span_scores(late_query, vectors, offsets, [(s, e) for s, e, _ in spans])
        return [(s, e, (1 - weight) * d + weight * t)
                for (s, e, d), t in zip(spans, tokens, strict=False)]
