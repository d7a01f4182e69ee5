"""What to mark inside a passage: the question's words, and the span that best supports the answer.

Highlights are character offsets relative to the passage text; views style them, never re-type them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.chunking import SENTENCE_END
from myoqa.index import UnitTable

HEADING_MAX_WORDS = 12
"""A line of at most this many words with no sentence end is a heading, not an answer."""
SNAP_WORDS = 6
"""How far (in words) an evidence span's edge may move to reach a clause or sentence boundary."""
BOUNDARY = re.compile(r"(?:[.!?…;:,]+[\"'”’)\]]*|\s[-–—])$")
"""Text ending here ends a clause or sentence (punctuation, or a dash between spaces)."""
DASH = re.compile(r"\s+[-–—]\s")
LOOK = 16
"""Characters looked at on each side of an edge to tell whether it is a boundary."""


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
               weights: dict[str, float], lexical_weight: float, answerable_only: bool = True
               ) -> list[Highlight]:
    """The passage's marks, in order: each word whose term is one of the question's, and the
    evidence span (see `best_span`), chosen among the `answerable` candidates."""
    matches = analyzer.matches(text, weights)
    marks = [Highlight(s, e, "term") for _, s, e in matches]
    if answerable_only:
        candidates = answerable(text, candidates)
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
                    sims.tolist(), strict=False))


def answerable(text: str, candidates: list[tuple[int, int, float]]
               ) -> list[tuple[int, int, float]]:
    """The candidates that can stand as an answer: bare headings left out (unless nothing else
    is left), and each edge that cuts a phrase moved to a clause or sentence boundary when one
    lies within SNAP_WORDS words (a window of a long sentence otherwise starts and ends
    mid-phrase). Text without punctuation, such as a keyword run, has no boundary to move to."""
    kept = [c for c in candidates if not is_heading(text, c[0], c[1])] or candidates
    return [(*snap(text, start, end), score) for start, end, score in kept]


def is_heading(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a whole line of a few words without a sentence end."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return (not text[line_start:start].strip()
            and not text[end:len(text) if line_end < 0 else line_end].strip()
            and len(text[start:end].split()) <= HEADING_MAX_WORDS
            and not SENTENCE_END.search(text, start, end))


def snap(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) widened, each edge by at most SNAP_WORDS words, to the nearest boundary."""
    return _snap_start(text, start), _snap_end(text, end)


def _clean_start(text: str, start: int) -> bool:
    """Whether a span may start at `start`: at the text's or a line's start, or after a
    clause or sentence end."""
    before = text[max(0, start - LOOK):start]
    stripped = before.rstrip()
    return ((not stripped and start <= LOOK) or "\n" in before[len(stripped):]
            or bool(BOUNDARY.search(stripped)))


def _clean_end(text: str, end: int) -> bool:
    """Whether a span may end at `end`: on a clause or sentence end, or at a line's end (the
    end of the passage is not one: a keyword window ends anywhere)."""
    rest = text[end:end + LOOK]
    gap = rest[:len(rest) - len(rest.lstrip())]
    return (bool(BOUNDARY.search(text[max(0, end - LOOK):end])) or "\n" in gap
            or bool(DASH.match(rest)))


def _snap_start(text: str, start: int) -> int:
    if _clean_start(text, start):
        return start
    pos = start
    for _ in range(SNAP_WORDS):
        pos = text.rfind(" ", 0, max(pos - 1, 0))
        if pos < 0:
            return start
        word = pos + 1
        if _clean_start(text, word):
            return word
    return start


def _snap_end(text: str, end: int) -> int:
    if _clean_end(text, end):
        return end
    pos = end
    for _ in range(SNAP_WORDS):
        nxt = text.find(" ", pos + 1)
        stop = len(text) if nxt < 0 else nxt
        word_end = len(text[:stop].rstrip())
        if _clean_end(text, word_end):
            return word_end
        if nxt < 0:
            return end
        pos = nxt
    return end
