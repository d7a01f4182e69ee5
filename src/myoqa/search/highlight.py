"""What to mark inside a passage: the question's words, and the span that best supports the answer.

Highlights are character offsets relative to the passage text; views style them, never re-type them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.index import UnitTable


@dataclass(frozen=True)
class Highlight:
    """A marked range of a passage's text: a question term, or the best evidence span."""

    start: int
    end: int
    kind: str

    def to_json(self) -> dict[str, int | str]:
        """The `highlights` entry of `ask --json`."""
        return {"start": self.start, "end": self.end, "kind": self.kind}


def highlights(text: str, candidates: list[tuple[int, int, float]], analyzer: Analyzer,
               weights: dict[str, float], lexical_weight: float) -> list[Highlight]:
    """The passage's marks, in order: each word whose term is one of the question's, and the
    evidence span (see `best_span`)."""
    matches = analyzer.matches(text, weights)
    marks = [Highlight(s, e, "term") for _, s, e in matches]
    evidence = best_span(matches, candidates, weights, lexical_weight)
    return sorted(marks + ([evidence] if evidence else []), key=lambda h: h.start)


def best_span(matches: list[tuple[str, int, int]], candidates: list[tuple[int, int, float]],
              weights: dict[str, float], lexical_weight: float) -> Highlight | None:
    """The candidate (start, end, dense score) that best supports the question.

    A span's score is its dense similarity plus `lexical_weight` times the share of the question's
    term weight (IDF) it contains, so among equally similar spans the one that names the
    asked-about things wins. `matches` are the passage's words that are question terms.
    """
    total = sum(weights.values()) or 1.0
    best, best_score = None, float("-inf")
    for start, end, dense in candidates:
        found = {t for t, s, e in matches if s >= start and e <= end}
        score = dense + lexical_weight * sum(weights[t] for t in found) / total
        if score > best_score + 1e-9:
            best, best_score = (start, end), score
    return Highlight(best[0], best[1], "evidence") if best else None


def span_candidates(spans: UnitTable, passage_spans: np.ndarray, span_vectors: np.ndarray,
                    units: list[int], start: int, end: int, query: np.ndarray | None
                    ) -> list[tuple[int, int, float]]:
    """The spans inside the result [start, end) made of passages `units`, as (start, end)
    relative to the result and their cosine to `query` (0 without one)."""
    ranges = passage_spans[units]
    lo, hi = int(ranges[:, 0].min()), int(ranges[:, 1].max())
    starts, ends = spans.start[lo:hi], spans.end[lo:hi]
    inside = np.flatnonzero((starts >= start) & (ends <= end))
    sims = (np.asarray(span_vectors[lo:hi])[inside] @ query
            if query is not None and len(inside) else np.zeros(len(inside)))
    return list(zip((starts[inside] - start).tolist(), (ends[inside] - start).tolist(),
                    sims.tolist()))
