"""Turning results into terminal text or plain text, showing source and question text literally.

Terminal text is put into `rich.text.Text` objects (never parsed as markup). Control characters
are replaced one-for-one by visible symbols, so offsets still line up and no escape sequence
from a source or a question ever reaches the terminal; a CR that ends a line (CRLF sources) is
shown as the line end it is, and a page break (form feed) as the line break it stands for.
"""

from __future__ import annotations

import re
import sys

from rich.text import Text

from myoqa.citation import cite_passage
from myoqa.errors import printable
from myoqa.formats import PAGE_BREAK
from myoqa.search import Answer, Result

_BIDI = {cp: "\ufffd" for cp in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F,
                                  0x2028, 0x2029]}
_CONTROL = {cp: chr(0x2400 + cp) for cp in range(0x20) if chr(cp) not in "\n\t"}
_CONTROL.update({0x7F: "\u2421", **{cp: "\ufffd" for cp in range(0x80, 0xA0)}, **_BIDI,
                 ord(PAGE_BREAK): "\n"})
# Plain output keeps the characters a file of text holds: CRLF line ends.
_PLAIN = {cp: sym for cp, sym in _CONTROL.items() if chr(cp) != "\r"}
_LONE_CR = re.compile(r"\r(?!\n)")

TERM_STYLE = "bold yellow"
EVIDENCE_STYLE = "underline"
EVIDENCE_OPEN, EVIDENCE_CLOSE = "\u00ab", "\u00bb"


def safe(text: str) -> str:
    """`text` with control and bidi-override characters replaced by visible ones, same length.

    The CR of a CRLF line end becomes a space, so the line simply ends there; a page break
    becomes a line break.
    """
    return text.replace("\r\n", " \n").translate(_CONTROL)


def plain(text: str) -> str:
    """`text` as it is for plain output, only with the characters a terminal would act on made
    visible (CRLF line ends and tabs are kept, a page break is a line break); same length."""
    return _LONE_CR.sub("\u240d", text).translate(_PLAIN)


def passage_text(result: Result, term_style: str = TERM_STYLE,
                 evidence_style: str = EVIDENCE_STYLE) -> Text:
    """The passage with its question terms and evidence span styled."""
    text = Text(safe(result.text))
    for mark in result.highlights:
        text.stylize(evidence_style if mark.kind == "evidence" else term_style, mark.start, mark.end)
    return text


def location(result: Result) -> str:
    """Where a passage is, for terminal text: `file:line:column` (with the page for a PDF) and
    character range, the name's unprintable characters written as escapes."""
    return cite_passage(result, printable)


def terms(result: Result) -> list[str]:
    """The passage's words that match the question's, each once, in order of appearance."""
    words = [printable(result.text[h.start:h.end]) for h in result.highlights if h.kind == "term"]
    return list(dict.fromkeys(words))


def plain_passage(result: Result) -> str:
    """The passage's exact text with its evidence span between « and », for pipes and terminals
    without styles."""
    text = plain(result.text)
    marks = [h for h in result.highlights if h.kind == "evidence"]
    if not marks:
        return text
    start, end = marks[0].start, marks[0].end
    return text[:start] + EVIDENCE_OPEN + text[start:end] + EVIDENCE_CLOSE + text[end:]


def plain_answer(answer: Answer) -> str:
    """The whole answer as plain text: per passage a head line, its text unwrapped with the
    evidence in « », and a line naming the question's words it contains."""
    out = [ABSTENTION] if answer.abstained else []
    for r in answer.results:
        out.append(f"{r.rank}. {location(r)} · score {r.score:.3f}")
        out.append(plain_passage(r))
        found = terms(r)
        out.append(f"   terms: {', '.join(found)}" if found else "   terms: none")
        out.append("")
    if not answer.results:
        out.append(f"No passage matches {safe(answer.question)!r}.")
    return "\n".join(out) + "\n"


ABSTENTION = ("The sources do not seem to answer this question; the nearest passages below are "
              "weak matches.")


def print_answer(answer: Answer, question: str, styled: bool) -> None:
    """Print the answer to stdout: with styles (rich) on a terminal that shows them, else as
    `plain_answer`."""
    if not styled:
        sys.stdout.write(plain_answer(answer))
        sys.stdout.flush()
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if answer.abstained:
        console.print(Text(ABSTENTION, style="bold red"))
    for r in answer.results:
        head = Text(f"{r.rank}. ", style="bold")
        head.append(location(r), style="cyan")
        head.append(f"   score {r.score:.3f}", style="dim")
        console.print(head)
        console.print(passage_text(r))
        console.print()
    if not answer.results:
        console.print(Text(f"No passage matches {safe(question)!r}."))
