"""What to mark inside a passage: the question's words, and the span that best supports the answer.

Highlights are character offsets relative to the passage text; views style them, never re-type them.
"""

from __future__ import annotations

from dataclasses import dataclass

from myoqa.analysis import Analyzer


@dataclass(frozen=True)
class Highlight:
    """A marked range of a passage's text: a question term, or the best evidence span."""

    start: int
    end: int
    kind: str

    def to_json(self) -> dict[str, int | str]:
        """The `highlights` entry of `ask --json`."""
        return {"start": self.start, "end": self.end, "kind": self.kind}


def term_highlights(text: str, analyzer: Analyzer, query_terms: set[str]) -> list[Highlight]:
    """Every word of `text` whose index term is one of the question's terms."""
    return [Highlight(s, e, "term") for term, s, e in analyzer.terms_with_offsets(text)
            if term in query_terms]


def best_span(text: str, candidates: list[tuple[int, int, float]], analyzer: Analyzer,
              weights: dict[str, float], lexical_weight: float) -> Highlight | None:
    """The candidate (start, end, dense score) that best supports the question.

    A span's score is its dense similarity plus `lexical_weight` times the share of the question's
    term weight (IDF) that it contains, so a span that names the asked-about things wins ties.
    """
    total = sum(weights.values()) or 1.0
    best, best_score = None, float("-inf")
    for start, end, dense in candidates:
        found = {t for t, _, _ in analyzer.terms_with_offsets(text[start:end]) if t in weights}
        score = dense + lexical_weight * sum(weights[t] for t in found) / total
        if score > best_score + 1e-9:
            best, best_score = (start, end), score
    return Highlight(best[0], best[1], "evidence") if best else None
