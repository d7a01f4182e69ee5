"""Result assembly: from scored candidate passages to the k results shown, as pure functions of
the passage table, the source texts and the fused scores."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from myoqa.chunking import Unit
from myoqa.index import UnitTable


@dataclass(frozen=True)
class Assembly:
    """How results are put together (see `pick`)."""

    max_words: int
    partial_min: float
    source_penalty: float


@dataclass
class Hit:
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


def pick(table: UnitTable, texts: Mapping[str, str], ids: np.ndarray, fused: np.ndarray, k: int,
         how: Assembly, may_lead: np.ndarray | None = None) -> list[Hit]:
    """The k best passages that do not overlap, each absorbing the candidates that overlap
    it alone, best first, while the union stays within `max_words`.

    Small units rank well on one point; the neighbour that scores next-best carries the
    words around that point (a keyword window ending on "merrf" gains the window that
    defines it), so a result reads as one stretch of text instead of duplicates. Each
    result already taken from a source lowers that source's next ones by `source_penalty`
    (not below 0), so a close answer from another source is not buried under one source's
    near-repeats. A passage too long to absorb still shows what lies outside the results
    before it, when that is at least `partial_min` of it (above 1: never), so no sentence is
    hidden only because its neighbour ranked. With `may_lead` (one flag per candidate), a
    passage flagged False starts no result of its own, though a result may still take it in
    (BM25: a passage holding no question word is no answer, but may complete its neighbour's
    sentence).
    """
    order = np.argsort(-fused, kind="stable")
    ids = ids[order]
    scores = fused[order].tolist()
    leads = None if may_lead is None else may_lead[order].tolist()
    sources, starts, ends = (table.source[ids].tolist(), table.start[ids].tolist(),
                             table.end[ids].tolist())
    ids = ids.tolist()
    picked: list[Hit] = []
    taken: dict[int, int] = {}
    followers: list[int] = []
    heap = [(-f, n, 0) for n, f in enumerate(scores)]
    while heap and len(picked) < k:
        key, n, seen = heapq.heappop(heap)
        source = sources[n]
        if taken.get(source, 0) != seen:
            seen = taken[source]
            heapq.heappush(heap, (-penalised(scores[n], how.source_penalty * seen), n, seen))
            continue
        hits = [h for h in picked if h.overlaps(source, starts[n], ends[n])]
        unit = table[ids[n]]
        text = texts[unit.source]
        if len(hits) == 1 and hits[0].absorb(ids[n], unit, text, how.max_words):
            continue
        if leads is not None and not leads[n]:
            followers.append(n)
            continue
        if not hits:
            start, end = unit.start, unit.end
        else:
            start, end = outside(unit, hits, text)
            if (len(text[start:end].split())
                    < how.partial_min * len(text[unit.start:unit.end].split())):
                continue
        picked.append(Hit(source, start, end, -key, [ids[n]]))
        taken[source] = seen + 1
    by_source: dict[int, list[Hit]] = {}
    for h in picked:
        by_source.setdefault(h.source_id, []).append(h)
    for n in sorted([n for _, n, _ in heap] + followers):
        hits = [h for h in by_source.get(sources[n], ())
                if h.overlaps(sources[n], starts[n], ends[n])]
        if len(hits) == 1:
            unit = table[ids[n]]
            hits[0].absorb(ids[n], unit, texts[unit.source], how.max_words)
    return picked


def penalised(score: float, penalty: float) -> float:
    """`score` lowered by the source penalty, but not below 0 (a negative score is kept)."""
    return score - min(penalty, max(score, 0.0))


def outside(unit: Unit, hits: list[Hit], text: str) -> tuple[int, int]:
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
