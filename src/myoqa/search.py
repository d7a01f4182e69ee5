"""Hybrid retrieval: BM25 and dense scores fused into one ranking of passages, with abstention.

This is the one search API; the CLI, the chat UI and the evaluation are views over `Searcher.search`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from myoqa.bm25 import SparseBM25
from myoqa.chunking import Unit
from myoqa.citation import Place, cite, locate
from myoqa.errors import UsageError
from myoqa.formats import is_paged
from myoqa.highlight import Highlight, highlights
from myoqa.index import Index

MODES = ("hybrid", "bm25", "dense")
MAX_K = 100
MAX_QUESTION_CHARS = 2000
MODEL_WORDS = 150


@dataclass(frozen=True)
class SearchParams:
    """Fusion and abstention settings, chosen by measurement (eval/RESULTS.md)."""

    fusion: str = "convex"
    lexical_norm: str = "ideal"
    dense_weight: float = 0.7
    rrf_k: int = 60
    span_weight: float = 0.5
    evidence_lexical_weight: float = 0.3
    max_words: int = 120
    partial_min: float = 0.5
    source_penalty: float = 0.03
    abstain_below: float = 0.12
    abstain_lexical_below: float = 0.3
    candidates: int = 200


@dataclass(frozen=True)
class Result:
    """One ranked passage: where it is, its exact text, score and highlights.

    `line` and `column` (1-based, in characters) are where the passage starts; `page` is its
    page for a PDF, else None.
    """

    rank: int
    source: str
    start: int
    end: int
    line: int
    column: int
    page: int | None
    score: float
    text: str
    highlights: list[Highlight]

    @property
    def citation(self) -> str:
        """`file:line:column`, and the page for a PDF."""
        return cite(self.source, Place(self.line, self.column, self.page))

    def to_json(self) -> dict[str, Any]:
        """The passage entry of `ask --json`."""
        return {"rank": self.rank, "source": self.source, "start": self.start, "end": self.end,
                "line": self.line, "column": self.column, "page": self.page,
                "score": round(self.score, 6), "text": self.text,
                "highlights": [h.to_json() for h in self.highlights]}


@dataclass(frozen=True)
class Answer:
    """The ranked passages for one question, or an abstention with the nearest passages."""

    question: str
    mode: str
    k: int
    abstained: bool
    results: list[Result]
    searched: str
    best_similarity: float | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The object `ask --json` prints (schema in the README)."""
        return {"question": self.question, "mode": self.mode, "k": self.k,
                "abstained": self.abstained, "searched": self.searched,
                "best_similarity": None if self.best_similarity is None
                else round(self.best_similarity, 6),
                "notes": self.notes, "passages": [r.to_json() for r in self.results]}


@dataclass(frozen=True)
class Scores:
    """Scores of the candidate passages `ids` for one question, and the query vector."""

    ids: np.ndarray
    fused: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray | None
    query: np.ndarray | None


def check_request(question: str, mode: str, k: int) -> str:
    """The cleaned question, or a UsageError naming what is wrong with the request."""
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}", f"choose one of {', '.join(MODES)}")
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k must be between 1 and {MAX_K}, not {k}")
    cleaned = "".join(ch if ch.isprintable() else " " for ch in question).strip()
    if not cleaned:
        raise UsageError("the question is empty", "type a question about myoclonus")
    return cleaned


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
        cleaned = check_request(question, mode, k)
        notes = []
        if len(cleaned) > MAX_QUESTION_CHARS:
            cleaned = cleaned[:MAX_QUESTION_CHARS]
            notes.append(f"question truncated to its first {MAX_QUESTION_CHARS} characters")
        if mode != "bm25" and len(cleaned.split()) > MODEL_WORDS:
            notes.append(f"the embedding model reads only about the first {MODEL_WORDS} words; "
                         "BM25 uses all of them")
        terms = self.analyzer.terms(cleaned)
        scored = self.score(cleaned, mode, terms)
        best_sim = float(scored.dense.max()) if scored.dense is not None else None
        abstained = (best_sim is not None and best_sim < self.params.abstain_below
                     and float(scored.lexical.max(initial=0.0)) < self.params.abstain_lexical_below)
        weights = {t: max(self.bm25.idf(t) or 0.0, 0.01) for t in set(terms)}
        picked = self._pick(scored, k)
        results = [self._result(rank, hit, weights, scored.query)
                   for rank, hit in enumerate(picked, 1)]
        return Answer(question=question, mode=mode, k=k, abstained=abstained, results=results,
                      searched=cleaned, best_similarity=best_sim, notes=notes)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Scores of the candidate passages for `text`: all of them in a small index, else the
        union of the best `candidates` by BM25 and by dense similarity."""
        terms = self.analyzer.terms(text) if terms is None else terms
        raw = self.bm25.scores(terms)
        lexical = self._normalise(raw, terms)
        n = len(raw)
        limit = self.params.candidates
        if mode == "bm25":
            ids = _top(raw, limit) if n > limit else np.arange(n)
            return Scores(ids, raw[ids], lexical[ids], None, None)
        query = self.embed(text)
        dense_ids = self._dense_candidates(query, n if n <= 4 * limit else limit)
        ids = (np.arange(n) if n <= 4 * limit
               else np.union1d(dense_ids, _top(raw, limit) if mode == "hybrid" else dense_ids))
        dense = self._dense_scores(query, ids)
        fused = dense if mode == "dense" else self._fuse(lexical[ids], dense, raw[ids])
        return Scores(ids, fused, lexical[ids], dense, query)

    def _normalise(self, lexical: np.ndarray, terms: list[str]) -> np.ndarray:
        """BM25 scaled to [0, 1] by the most a passage could score for these terms ("ideal").

        A question word the corpus never uses counts as if it were the rarest word, so a
        question put in other words than the text's leans on the dense score. "max" (scaling by
        the best passage) is kept for the experiments that compare the two.
        """
        if self.params.lexical_norm == "max":
            top = lexical.max(initial=0.0)
            return lexical / top if top > 0 else np.zeros_like(lexical)
        ceiling = sum(max(idf, 0.0) if (idf := self.bm25.idf(t)) is not None
                      else self.bm25.max_idf for t in set(terms)) * (self.bm25.k1 + 1)
        return lexical / ceiling if ceiling > 0 else np.zeros_like(lexical)

    def _dense_candidates(self, query: np.ndarray, depth: int) -> np.ndarray:
        _, ids = self.index.passage_vectors.search(query[None, :], depth)
        return ids[0][ids[0] >= 0]

    def _dense_scores(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Similarity of each candidate passage, raised towards its best inner span."""
        vectors = self.index.passage_vectors.reconstruct_batch(ids.astype(np.int64))
        dense = vectors @ query
        w = self.params.span_weight
        ranges = self.index.passage_spans[ids]
        sizes = ranges[:, 1] - ranges[:, 0]
        if w and sizes.sum():
            rows = np.concatenate([np.arange(lo, hi) for lo, hi in ranges[sizes > 0]])
            sims = np.asarray(self.index.span_vectors[rows]) @ query
            best = np.full(len(ids), -1.0)
            best[sizes > 0] = np.maximum.reduceat(sims, np.cumsum(sizes[sizes > 0]) - sizes[
                sizes > 0])
            dense = np.where(sizes > 0, np.maximum(dense, (1 - w) * dense + w * best), dense)
        return dense.astype(np.float64)

    def _fuse(self, lexical: np.ndarray, dense: np.ndarray, raw: np.ndarray) -> np.ndarray:
        if self.params.fusion == "rrf":
            return _rrf(raw, self.params.rrf_k) + _rrf(dense, self.params.rrf_k)
        w = self.params.dense_weight
        return w * dense + (1 - w) * lexical

    def _pick(self, scored: Scores, k: int) -> list[_Hit]:
        """The k best passages that do not overlap, each absorbing the candidates that overlap
        it alone, best first, while the union stays within `max_words`.

        Small units rank well on one point; the neighbour that scores next-best carries the
        words around that point (a keyword window ending on "merrf" gains the window that
        defines it), so a result reads as one stretch of text instead of duplicates. Each
        result already taken from a source lowers that source's next ones by `source_penalty`,
        so a close answer from another source is not buried under one source's near-repeats.
        A passage too long to absorb still shows what lies outside the results before it, when
        that is at least `partial_min` of it (above 1: never), so no sentence is hidden only
        because its neighbour ranked.
        """
        table = self.index.passages
        order = np.argsort(-scored.fused, kind="stable")
        ids = scored.ids[order]
        fused = scored.fused[order].tolist()
        sources, starts, ends = (table.source[ids].tolist(), table.start[ids].tolist(),
                                 table.end[ids].tolist())
        ids = ids.tolist()
        picked: list[_Hit] = []
        taken: dict[int, int] = {}
        penalty = self.params.source_penalty
        heap = [(-f, n, 0) for n, f in enumerate(fused)]
        while heap and len(picked) < k:
            key, n, seen = heapq.heappop(heap)
            source = sources[n]
            if taken.get(source, 0) != seen:
                seen = taken[source]
                heapq.heappush(heap, (penalty * seen - fused[n], n, seen))
                continue
            hits = [h for h in picked if h.overlaps(source, starts[n], ends[n])]
            unit = table[ids[n]]
            text = self.index.texts[unit.source]
            if not hits:
                start, end = unit.start, unit.end
            elif len(hits) == 1 and hits[0].absorb(ids[n], unit, text, self.params.max_words):
                continue
            else:
                start, end = _outside(unit, hits, text)
                if (len(text[start:end].split())
                        < self.params.partial_min * len(text[unit.start:unit.end].split())):
                    continue
            picked.append(_Hit(source, start, end, -key, [ids[n]]))
            taken[source] = seen + 1
        by_source: dict[int, list[_Hit]] = {}
        for h in picked:
            by_source.setdefault(h.source_id, []).append(h)
        for n in sorted(n for _, n, _ in heap):
            hits = [h for h in by_source.get(sources[n], ())
                    if h.overlaps(sources[n], starts[n], ends[n])]
            if len(hits) == 1:
                unit = table[ids[n]]
                hits[0].absorb(ids[n], unit, self.index.texts[unit.source], self.params.max_words)
        return picked

    def _result(self, rank: int, hit: _Hit, weights: dict[str, float],
                query: np.ndarray | None) -> Result:
        source = self.index.passages.names[hit.source_id]
        source_text = self.index.texts[source]
        text = source_text[hit.start:hit.end]
        ranges = self.index.passage_spans[hit.units]
        lo, hi = int(ranges[:, 0].min()), int(ranges[:, 1].max())
        starts, ends = self.index.spans.start[lo:hi], self.index.spans.end[lo:hi]
        inside = np.flatnonzero((starts >= hit.start) & (ends <= hit.end))
        sims = (np.asarray(self.index.span_vectors[lo:hi])[inside] @ query
                if query is not None and len(inside) else np.zeros(len(inside)))
        candidates = list(zip((starts[inside] - hit.start).tolist(),
                              (ends[inside] - hit.start).tolist(), sims.tolist()))
        marks = highlights(text, candidates, self.analyzer, weights,
                           self.params.evidence_lexical_weight)
        place = locate(source_text, hit.start, is_paged(source))
        return Result(rank=rank, source=source, start=hit.start, end=hit.end, line=place.line,
                      column=place.column, page=place.page, score=hit.score, text=text,
                      highlights=marks)


@dataclass
class _Hit:
    """A result being assembled: the best passage's score, widened by absorbed neighbours."""

    source_id: int
    start: int
    end: int
    score: float
    units: list[int]

    def overlaps(self, source_id: int, start: int, end: int) -> bool:
        """Whether the range [start, end) of source `source_id` overlaps this result."""
        return source_id == self.source_id and start < self.end and self.start < end

    def absorb(self, i: int, unit: Unit, source_text: str, max_words: int) -> bool:
        """Widen to cover `unit` when the union stays within `max_words`; whether it is covered."""
        start, end = min(self.start, unit.start), max(self.end, unit.end)
        if len(source_text[start:end].split()) > max_words:
            return False
        self.start, self.end = start, end
        self.units.append(i)
        return True


def _outside(unit: Unit, hits: list[_Hit], text: str) -> tuple[int, int]:
    """The longest stretch of `unit` that no hit covers, without its outer whitespace."""
    pieces = [(unit.start, unit.end)]
    for h in hits:
        cut = []
        for a, b in pieces:
            if b <= h.start or h.end <= a:
                cut.append((a, b))
                continue
            if a < h.start:
                cut.append((a, h.start))
            if h.end < b:
                cut.append((h.end, b))
        pieces = cut
    if not pieces:
        return unit.start, unit.start
    start, end = max(pieces, key=lambda piece: piece[1] - piece[0])
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Ids of the `depth` highest scores (unordered)."""
    return np.argpartition(-scores, depth - 1)[:depth] if len(scores) > depth else np.arange(
        len(scores))


def _rrf(scores: np.ndarray, k: int) -> np.ndarray:
    ranks = np.empty(len(scores))
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return 1.0 / (k + ranks)
