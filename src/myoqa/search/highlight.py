"""What to mark inside a passage: the question's words, and the span that best supports the answer.

Highlights are character offsets relative to the passage text; views style them, never re-type them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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
CAPTION = re.compile(r"(?:table|figure|fig\.?|chart|image|photo|plate)\s*[0-9IVXivx]+\b\S*",
                     re.IGNORECASE)
"""How a caption line starts: it names a table or figure, it does not answer."""
ROW = re.compile(r"[|\t]|\s\S*\d")
"""A short line holding a cell separator, or a number after its first word, is a table row
("Piracetam 2.4 g a day"), not a heading."""
LOOK = 16
"""Characters looked at on each side of an edge to tell whether it is a boundary."""
SNAPS_KEPT = 4096
"""Spans whose snapped edges are remembered."""


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
               weights: dict[str, float], lexical_weight: float, answerable_only: bool = True,
               lexical_only: bool = False, max_words: int = 0) -> list[Highlight]:
    """The passage's marks, in order: each word whose term is one of the question's, and the
    evidence span (see `best_span`, joined up to `max_words`), chosen among the `answerable`
    candidates. When the spans have no similarity to go by (`lexical_only`, BM25 alone), only
    a span holding a question word can be evidence: a passage without one has no evidence
    mark."""
    matches = analyzer.matches(text, weights)
    marks = [Highlight(s, e, "term") for _, s, e in matches]
    if answerable_only:
        candidates = answerable(text, candidates)
    if lexical_only:
        candidates = [c for c in candidates
                      if any(s >= c[0] and e <= c[1] for _, s, e in matches)]
    evidence = best_span(matches, candidates, weights, lexical_weight, text, max_words)
    return sorted(marks + ([evidence] if evidence else []), key=lambda h: h.start)


def best_span(matches: list[tuple[str, int, int]], candidates: list[tuple[int, int, float]],
              weights: dict[str, float], lexical_weight: float, text: str = "",
              max_words: int = 0) -> Highlight | None:
    """The candidate (start, end, dense score) that best supports the question, joined with the
    next best candidates that overlap it while the whole stays within `max_words` words of
    `text` (0: not joined).

    A span's score is its dense similarity plus `lexical_weight` times the share of the
    question's term weight (IDF) it contains, so among equally similar spans the one that names
    the asked-about things wins. `matches` are the passage's words that are question terms.
    Joining matters where spans overlap, in text without sentences (a keyword run's 20-word
    windows): the words that define a term often lie just before or after the window that
    names it ("brief lapses contraction negative myoclonus"), and a prose sentence span is 40
    words long too.
    """
    total = sum(weights.values()) or 1.0
    scored = []
    for start, end, dense in candidates:
        found = {t for t, s, e in matches if s >= start and e <= end}
        scored.append((start, end, dense + lexical_weight * sum(weights[t] for t in found) / total))
    if not scored:
        return None
    ranked = sorted(scored, key=lambda c: -c[2])
    start, end, _ = ranked[0]
    for s, e, _ in ranked[1:] if max_words else ():
        if s < end and start < e and len(text[min(s, start):max(e, end)].split()) <= max_words:
            start, end = min(s, start), max(e, end)
    return Highlight(start, end, "evidence")


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
    """The candidates that can stand as an answer: bare headings and captions left out (unless
    nothing else is left), and each edge that cuts a phrase moved to a clause or sentence boundary when one
    lies within SNAP_WORDS words (a window of a long sentence otherwise starts and ends
    mid-phrase). Text without punctuation, such as a keyword run, has no boundary to move to."""
    kept = [c for c in candidates
            if not is_heading(text, c[0], c[1]) and not is_caption(text, c[0], c[1])] or candidates
    return [(*snap(text, start, end), score) for start, end, score in kept]


def is_heading(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a whole line of a few words without a sentence end (and
    not a table row)."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return (not text[line_start:start].strip()
            and not text[end:len(text) if line_end < 0 else line_end].strip()
            and len(text[start:end].split()) <= HEADING_MAX_WORDS
            and not SENTENCE_END.search(text, start, end)
            and not ROW.search(text, start, end))


def is_caption(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] lies within one line that starts as a caption ("Table 2: …",
    "Figure 1."): it names what a table shows; the answer is in its rows."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", line_start)
    line_end = len(text) if line_end < 0 else line_end
    return end <= line_end and CAPTION.match(text[line_start:line_end].lstrip()) is not None


@lru_cache(maxsize=SNAPS_KEPT)
def snap(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) widened, each edge by at most SNAP_WORDS words, to the nearest boundary
    (remembered: a warm question snaps the same spans of the same passages again)."""
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
