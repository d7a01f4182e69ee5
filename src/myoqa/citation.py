"""Where a passage is, in the terms a person follows: line, column and (for PDFs) page.

Computed from the stored text alone: lines end at "\\n" (so a CRLF file's lines are its own) and a
PDF's pages are separated by formats.PAGE_BREAK, so no extra storage is needed.

`cite_passage` is the one wording of a passage's citation; each medium passes its own rule for
making the source's name safe there (terminal text, Rich/Textual text, Markdown, plain text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


Escape = Callable[[str], str]
# Between the place and the character range: on a result's head line, and in running text.
HEAD_SEPARATOR = " · "
PROSE_SEPARATOR = ", "


class Located(Protocol):
    """A passage as a citation sees it (a search Result is one)."""

    @property
    def source(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...

    @property
    def page(self) -> int | None: ...


def as_is(text: str) -> str:
    """No escaping: for plain text that goes to no terminal (the clipboard)."""
    return text


def cite_passage(passage: Located, escape: Escape = as_is, sep: str = HEAD_SEPARATOR) -> str:
    """Where a passage is: `file:line:column` (with the page for a PDF) made safe for its medium
    by `escape`, then `sep` and its character range: "paper.pdf:12:5 p. 2 · chars 40–95"."""
    where = cite(passage.source, Place(passage.line, passage.column, passage.page))
    return f"{escape(where)}{sep}chars {passage.start}–{passage.end}"
