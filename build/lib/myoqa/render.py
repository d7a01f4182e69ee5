"""Turning results into styled terminal text, showing source and question text literally.

Text is put into `rich.text.Text` objects (never parsed as markup), and control characters are
replaced one-for-one by visible symbols, so offsets still line up and no escape sequence from a
source or a question ever reaches the terminal.
"""

from __future__ import annotations

from rich.text import Text

from myoqa.errors import printable
from myoqa.search import Result

_BIDI = {cp: "\ufffd" for cp in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F,
                                  0x2028, 0x2029]}
_CONTROL = {cp: chr(0x2400 + cp) for cp in range(0x20) if chr(cp) not in "\n\t"}
_CONTROL.update({0x7F: "\u2421", **{cp: "\ufffd" for cp in range(0x80, 0xA0)}, **_BIDI})

TERM_STYLE = "bold yellow"
EVIDENCE_STYLE = "underline"


def safe(text: str) -> str:
    """`text` with control and bidi-override characters replaced by visible ones, same length."""
    return text.translate(_CONTROL)


def passage_text(result: Result, term_style: str = TERM_STYLE,
                 evidence_style: str = EVIDENCE_STYLE) -> Text:
    """The passage with its question terms and evidence span styled."""
    text = Text(safe(result.text))
    for mark in result.highlights:
        text.stylize(evidence_style if mark.kind == "evidence" else term_style, mark.start, mark.end)
    return text


def location(result: Result) -> str:
    """Where a passage is: source, character range and line."""
    return f"{printable(result.source)} · chars {result.start}–{result.end} · line {result.line}"


def evidence(result: Result) -> str:
    """The best-supporting span's text, or '' when none was marked."""
    marks = [h for h in result.highlights if h.kind == "evidence"]
    return safe(result.text[marks[0].start:marks[0].end]) if marks else ""


ABSTENTION = ("The sources do not seem to answer this question; the nearest passages below are "
              "weak matches.")
