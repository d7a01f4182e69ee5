"""Where a passage is, in the terms a person follows: line, column and (for PDFs) page.

Computed from the stored text alone: lines end at "\\n" (so a CRLF file's lines are its own) and a
PDF's pages are separated by formats.PAGE_BREAK, so no extra storage is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from myoqa.formats import PAGE_BREAK


@dataclass(frozen=True)
class Place:
    """A 1-based line and column (in characters) and, for paged sources, the 1-based page."""

    line: int
    column: int
    page: int | None


def locate(text: str, start: int, paged: bool = False) -> Place:
    """The place of offset `start` in `text`; `paged` when the text has page breaks (a PDF)."""
    line_start = text.rfind("\n", 0, start) + 1
    return Place(line=text.count("\n", 0, start) + 1, column=start - line_start + 1,
                 page=text.count(PAGE_BREAK, 0, start) + 1 if paged else None)


def cite(source: str, place: Place) -> str:
    """`file:line:column`, with the page for a PDF: "paper.pdf:12:5 p. 2"."""
    where = f"{source}:{place.line}:{place.column}"
    return where if place.page is None else f"{where} p. {place.page}"
