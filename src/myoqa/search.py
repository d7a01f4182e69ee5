"""Hybrid retrieval: BM25 and dense scores fused into one ranking of passages, with abstention.

This is the one search API; the CLI, the chat UI and the evaluation are views over `Searcher.search`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from myoqa.chunking import Unit
from myoqa.errors import UsageError
from myoqa.highlight import Highlight, best_span, term_highlights
from myoqa.index import Index

MODES = ("hybrid", "bm25", "dense")
MAX_K = 100
MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True)
class SearchParams:
    """Fusion and abstention settings, chosen by measurement (eval/RESULTS.md)."""

    fusion: str = "convex"
    lexical_norm: str = "ideal"
    dense_weight: float = 0.7
    rrf_k: int = 60
    span_weight: float = 0.5
    evidence_lexical_weight: float = 0.3
    abstain_below: float = 0.12
    abstain_lexical_below: float = 0.3
    candidates: int = 200


@dataclass(frozen=True)
class Result:
    """One ranked passage: where it is, its exact text, score and highlights."""

    rank: int
    source: str
    start: int
    end: int
    line: int
    score: float
    text: str
    highlights: list[Highlight]

    def to_json(self) -> dict[str, Any]:
        """The passage entry of `ask --json`."""
        return {"rank": self.rank, "source": self.source, "start": self.start, "end": self.end,
                "line": self.line, "score": round(self.score, 6), "text": self.text,
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
    """Per-passage scores for one question: the ranking score and the parts it came from."""

    fused: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray | None
    spans: np.ndarray | None


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
        from rank_bm25 import BM25Okapi

        self.index = index
        self.params = params or SearchParams()
        self.analyzer = index.analyzer
        self._encoder_factory = encoder_factory
        self._encoder: Any = None
        self.bm25 = BM25Okapi(index.passage_terms)
        self._span_starts = _by_source(index.spans)
        self._line_starts = {name: _line_starts(text) for name, text in index.texts.items()}
        self._longest_span = max((u.end - u.start for u in index.spans), default=0)
        self._passage_spans = [self._spans_inside(p) for p in index.passages]

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
        """Top-k passages for `question`, overlapping hits from one source merged away."""
        cleaned = check_request(question, mode, k)
        notes = []
        if len(cleaned) > MAX_QUESTION_CHARS:
            cleaned = cleaned[:MAX_QUESTION_CHARS]
            notes.append(f"question truncated to its first {MAX_QUESTION_CHARS} characters")
        terms = self.analyzer.terms(cleaned)
        scored = self.score(cleaned, mode, terms)
        scores, span_scores = scored.fused, scored.spans
        order = np.argsort(-scores, kind="stable")
        best_sim = float(scored.dense.max()) if scored.dense is not None else None
        abstained = (best_sim is not None and best_sim < self.params.abstain_below
                     and float(scored.lexical.max(initial=0.0)) < self.params.abstain_lexical_below)
        weights = {t: max(float(self.bm25.idf.get(t, 0.0)), 0.01) for t in set(terms)}
        picked: list[int] = []
        for i in order:
            if len(picked) == k:
                break
            if any(_overlaps(self.index.passages[i], self.index.passages[j]) for j in picked):
                continue
            picked.append(int(i))
        results = [self._result(rank, i, float(scores[i]), weights, span_scores)
                   for rank, i in enumerate(picked, 1)]
        return Answer(question=question, mode=mode, k=k, abstained=abstained, results=results,
                      searched=cleaned, best_similarity=best_sim, notes=notes)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Every passage's scores for `text` in `mode`."""
        terms = self.analyzer.terms(text) if terms is None else terms
        n = len(self.index.passages)
        raw = (np.asarray(self.bm25.get_scores(terms), dtype=np.float64) if terms
               else np.zeros(n))
        lexical = self._normalise(raw, terms)
        if mode == "bm25":
            return Scores(raw, lexical, None, None)
        dense, span_scores = self._dense_scores(self.embed(text))
        return Scores(self._fuse(mode, lexical, dense), lexical, dense, span_scores)

    def _normalise(self, lexical: np.ndarray, terms: list[str]) -> np.ndarray:
        """BM25 scaled to [0, 1]: by the best passage, or by the most a passage could score.

        With "ideal", a question word the corpus never uses counts as if it were the rarest
        word, so a question in other words than the text's leans on the dense score.
        """
        if self.params.lexical_norm == "ideal":
            idf = self.bm25.idf
            rarest = max(idf.values(), default=0.0)
            ceiling = sum(max(idf[t], 0.0) if t in idf else rarest for t in set(terms)) * (
                self.bm25.k1 + 1)
        else:
            ceiling = lexical.max()
        return lexical / ceiling if ceiling > 0 else np.zeros_like(lexical)

    def _dense_scores(self, qvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-passage similarity (the passage or its best inner span) and per-span similarity."""
        n = len(self.index.passages)
        sims, ids = self.index.passage_vectors.search(qvec[None, :], n)
        dense = np.full(n, -1.0)
        dense[ids[0][ids[0] >= 0]] = sims[0][ids[0] >= 0]
        span_scores = self.index.span_vectors @ qvec
        w = self.params.span_weight
        if w and len(span_scores):
            best_inner = np.array([span_scores[s].max() if len(s) else -1.0
                                   for s in self._passage_spans])
            dense = np.maximum(dense, (1 - w) * dense + w * best_inner)
        return dense, span_scores

    def _fuse(self, mode: str, lexical: np.ndarray, dense: np.ndarray) -> np.ndarray:
        if mode == "dense":
            return dense
        if self.params.fusion == "rrf":
            return _rrf(lexical, self.params.rrf_k) + _rrf(dense, self.params.rrf_k)
        w = self.params.dense_weight
        return w * dense + (1 - w) * lexical

    def _spans_inside(self, passage: Unit) -> np.ndarray:
        starts, ids = self._span_starts.get(passage.source, ([], []))
        lo = bisect.bisect_left(starts, passage.start)
        hi = bisect.bisect_left(starts, passage.end)
        return np.array([ids[j] for j in range(lo, hi)
                         if self.index.spans[ids[j]].end <= passage.end], dtype=np.int64)

    def _result(self, rank: int, i: int, score: float, weights: dict[str, float],
                span_scores: np.ndarray | None) -> Result:
        p = self.index.passages[i]
        text = self.index.text(p)
        found = term_highlights(text, self.analyzer, set(weights))
        evidence = best_span(text, self._candidates(p, span_scores), self.analyzer, weights,
                             self.params.evidence_lexical_weight)
        marks = ([evidence] if evidence else []) + found
        line = bisect.bisect_right(self._line_starts[p.source], p.start)
        return Result(rank=rank, source=p.source, start=p.start, end=p.end, line=line,
                      score=score, text=text, highlights=sorted(marks, key=lambda h: h.start))

    def _candidates(self, p: Unit, span_scores: np.ndarray | None) -> list[tuple[int, int, float]]:
        """Spans overlapping passage `p`, clipped to it, as offsets relative to the passage."""
        starts, ids = self._span_starts.get(p.source, ([], []))
        lo = bisect.bisect_left(starts, p.start - self._longest_span)
        hi = bisect.bisect_left(starts, p.end)
        out = []
        for j in ids[lo:hi]:
            s = self.index.spans[j]
            if s.end <= p.start:
                continue
            lo, hi_ = max(s.start, p.start), min(s.end, p.end)
            if hi_ - lo >= (s.end - s.start) // 2:
                out.append((lo - p.start, hi_ - p.start,
                            float(span_scores[j]) if span_scores is not None else 0.0))
        return out


def _rrf(scores: np.ndarray, k: int) -> np.ndarray:
    ranks = np.empty(len(scores))
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return 1.0 / (k + ranks)


def _overlaps(a: Unit, b: Unit) -> bool:
    return a.source == b.source and a.start < b.end and b.start < a.end


def _by_source(units: list[Unit]) -> dict[str, tuple[list[int], list[int]]]:
    """Per source, the units' start offsets (sorted) and their ids, for range look-ups."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    for i in sorted(range(len(units)), key=lambda i: (units[i].source, units[i].start)):
        starts, ids = out.setdefault(units[i].source, ([], []))
        starts.append(units[i].start)
        ids.append(i)
    return out


def _line_starts(text: str) -> list[int]:
    return [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
