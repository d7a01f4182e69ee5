"""Cutting sources into passages (what is shown) and spans (the finer units that mark evidence).

Prose is cut along sentences; a text without sentences (a run of keywords) is cut into overlapping
word windows. No unit crosses a page break (a form feed: a PDF's pages are joined by one), so a
citation names the one page its text is on. Every unit is a (source, start, end) character range:
its text is always `source_text[start:end]`, never a copy.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from myoqa.formats import PAGE_BREAK

WORD = re.compile(r"\S+")
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


@dataclass(frozen=True)
class ChunkParams:
    """Sizes in words; recorded in the index manifest and tuned by `myoqa eval` (eval/RESULTS.md)."""

    prose_max_words: int = 80
    prose_overlap_sentences: int = 1
    window_words: int = 60
    window_stride: int = 30
    span_words: int = 20
    span_stride: int = 10
    keyword_words_per_sentence: int = 40
    whole_max_words: int = 120

    def params(self) -> dict[str, int]:
        """The settings, for the manifest."""
        return asdict(self)


@dataclass(frozen=True)
class Unit:
    """A character range of one source: a passage or a span."""

    source: str
    start: int
    end: int


def is_keyword_run(text: str, params: ChunkParams) -> bool:
    """True for text with (almost) no sentence punctuation, such as a stopword-stripped article."""
    words = len(WORD.findall(text))
    ends = len(SENTENCE_END.findall(text))
    return words > 0 and words / max(ends, 1) > params.keyword_words_per_sentence


def words(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Offsets of the whitespace-separated words of text[start:end]."""
    return [(m.start(), m.end()) for m in WORD.finditer(text, start, len(text) if end is None else end)]


def windows(ws: list[tuple[int, int]], size: int, stride: int) -> list[tuple[int, int]]:
    """Overlapping windows of `size` words every `stride` words; the last one ends at the last word."""
    if not ws:
        return []
    if len(ws) <= size:
        return [(ws[0][0], ws[-1][1])]
    starts = list(range(0, len(ws) - size + 1, stride))
    if starts[-1] + size < len(ws):
        starts.append(len(ws) - size)
    return [(ws[i][0], ws[i + size - 1][1]) for i in starts]


def pages(text: str) -> list[tuple[int, int]]:
    """(start, end) of each page of `text`: the runs between page breaks (the whole text when
    it has none)."""
    out, start = [], 0
    while (stop := text.find(PAGE_BREAK, start)) != -1:
        out.append((start, stop))
        start = stop + 1
    return [*out, (start, len(text))]


def sentences(text: str, first: int = 0, last: int | None = None) -> list[list[tuple[int, int]]]:
    """Sentences of text[first:last] as (start, end) ranges, grouped by paragraph; a heading
    joins the next paragraph."""
    last = len(text) if last is None else last
    paragraphs: list[list[tuple[int, int]]] = []
    pos = first
    for brk in [*PARAGRAPH_BREAK.finditer(text, first, last), None]:
        stop = brk.start() if brk else last
        block = []
        cursor = pos
        for end in [m.end() for m in SENTENCE_END.finditer(text, pos, stop)] + [stop]:
            ws = words(text, cursor, end)
            if ws:
                block.append((ws[0][0], ws[-1][1]))
            cursor = end
        if block:
            paragraphs.append(block)
        pos = brk.end() if brk else last
    merged: list[list[tuple[int, int]]] = []
    for block in paragraphs:
        if merged and _is_heading(text, merged[-1]):
            merged[-1] = merged[-1] + block
        else:
            merged.append(block)
    return merged


def _is_heading(text: str, block: list[tuple[int, int]]) -> bool:
    start, end = block[0][0], block[-1][1]
    return len(block) == 1 and len(words(text, start, end)) <= 12 and not SENTENCE_END.search(
        text, start, end)


def _pack(text: str, sents: list[tuple[int, int]], max_words: int, overlap: int
          ) -> list[tuple[int, int]]:
    """Greedy runs of whole sentences up to `max_words`, each run repeating `overlap` sentences."""
    counts = [len(words(text, s, e)) for s, e in sents]
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(sents):
        j, total = i, 0
        while j < len(sents) and (j == i or total + counts[j] <= max_words):
            total += counts[j]
            j += 1
        if counts[i] > max_words:
            out.extend(windows(words(text, *sents[i]), max_words, max(1, max_words // 2)))
        else:
            out.append((sents[i][0], sents[j - 1][1]))
        if j >= len(sents):
            break
        i = max(i + 1, j - overlap)
    return out


def chunk(name: str, text: str, params: ChunkParams) -> tuple[list[Unit], list[Unit]]:
    """(passages, spans) of one source, each in source order, each within one page; a short
    source is one passage per page."""
    ws = words(text)
    keywords = len(ws) > params.whole_max_words and is_keyword_run(text, params)
    passages: list[tuple[int, int]] = []
    spans: list[tuple[int, int]] = []
    for first, last in pages(text):
        page_words = words(text, first, last)
        if not page_words:
            continue
        if keywords:
            passages += windows(page_words, params.window_words, params.window_stride)
            spans += windows(page_words, params.span_words, params.span_stride)
            continue
        paragraphs = sentences(text, first, last)
        if len(ws) <= params.whole_max_words:
            passages.append((page_words[0][0], page_words[-1][1]))
        else:
            for para in paragraphs:
                passages += _pack(text, para, params.prose_max_words,
                                  params.prose_overlap_sentences)
        spans += [u for para in paragraphs for s, e in para
                  for u in windows(words(text, s, e), 2 * params.span_words, params.span_words)]
    return ([Unit(name, s, e) for s, e in passages], [Unit(name, s, e) for s, e in spans])
