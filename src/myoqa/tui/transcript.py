"""One question and its answer in the chat, and the transcript exported as Markdown or JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myoqa.citation import PROSE_SEPARATOR, cite_passage
from myoqa.output_files import Kept, check_folder, write_output
from myoqa.render import ABSTENTION, safe

if TYPE_CHECKING:
    from myoqa.search import Answer, Result

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")
NO_WORDS = ("None of the question's words occur in the sources; the passages below are not "
            "matches.")
_LIST_NUMBER = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)
_LINE_MARKER = re.compile(r"^(\s*)([-+=])", re.MULTILINE)
EXPORT_FORMATS = {"markdown": "md", "json": "json"}
JSON_EXPORT_FORMAT = 1


@dataclass(frozen=True)
class ExportHeader:
    """What an export records about how its answers were made."""

    exported_at: datetime
    version: str
    index: str
    built_at: str
    sources: str
    mode: str
    k: int


@dataclass
class Turn:
    """A question as typed, what was searched for it, and its answer once it has one.

    `fallback` labels an answer that stands in for the requested mode, e.g. "BM25 only (model
    loading)"; it is empty once the answer is in the requested mode.
    """

    question: str
    searched: str
    mode: str
    k: int
    answer: Answer | None = None
    fallback: str = ""

    @property
    def contextualized(self) -> bool:
        """Whether the searched text differs from the typed question (a follow-up)."""
        return self.searched.strip() != self.question.strip()


def weak_answer(answer: Answer) -> str:
    """Why an answer's passages are only weak matches ('' when they are not): the sources do
    not answer the question, or (BM25) none of its words occur in them."""
    if answer.abstained:
        return ABSTENTION
    if answer.mode == "bm25" and answer.results and max(r.score for r in answer.results) <= 0:
        return NO_WORDS
    return ""


def citation(result: Result) -> str:
    """A passage's citation in plain text (the clipboard, notes): file:line:column (and page
    for a PDF) and character range."""
    return cite_passage(result, sep=PROSE_SEPARATOR)


def clipboard_text(result: Result) -> str:
    """A passage quoted with its citation, as copied to the clipboard."""
    return f"“{safe(result.text)}”\n— {citation(result)}"


def code_span(text: str) -> str:
    """`text` as a Markdown code span, shown literally (control characters made visible)."""
    return f"`{safe(text)}`"


def escape(text: str) -> str:
    """`text` with Markdown's special characters backslash-escaped, and list or heading markers
    at line starts too, so it shows literally."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", safe(text))
    text = _LIST_NUMBER.sub(r"\1\\\2", text)
    return _LINE_MARKER.sub(r"\1\\\2", text)


def _passage_markdown(result: Result) -> str:
    """The passage with its evidence span in bold, as Markdown-escaped text."""
    marks = [h for h in result.highlights if h.kind == "evidence"]
    text = result.text
    if not marks:
        return escape(text)
    start, end = marks[0].start, marks[0].end
    inner = text[start:end]
    start += len(inner) - len(inner.lstrip())
    end -= len(inner) - len(inner.rstrip())
    if start >= end:
        return escape(text)
    return f"{escape(text[:start])}**{escape(text[start:end])}**{escape(text[end:])}"


def _quote(text: str, indent: str) -> list[str]:
    return [f"{indent}> {line}".rstrip() for line in text.split("\n")]


def turn_markdown(number: int, turn: Turn) -> list[str]:
    """The Markdown lines of one question and its passages."""
    lines = [f"## {number}. {escape(turn.question)}", ""]
    if turn.contextualized:
        lines += [f"Searched: {escape(turn.searched)}", ""]
    answer = turn.answer
    if answer is None:
        return lines + ["(no answer yet)", ""]
    label = turn.fallback or answer.mode
    lines += [f"Mode: {label}, top {len(answer.results)} passages.", ""]
    if weak_answer(answer):
        lines += _quote(weak_answer(answer), "") + [""]
    for result in answer.results:
        head = (f"{result.rank}. {cite_passage(result, code_span, PROSE_SEPARATOR)} "
                f"(score {result.score:.3f})")
        lines += [head, ""]
        lines += _quote(_passage_markdown(result), "   ") + [""]
    return lines


def to_markdown(turns: list[Turn], header: ExportHeader) -> str:
    """The whole transcript: a header, then every question with its quoted, cited passages."""
    intro = ("Passages are quoted from the sources; the best-supporting span of each is in bold. "
             "Character ranges are offsets into the source files.")
    lines = ["# myoqa transcript", "",
             f"- exported: {header.exported_at.isoformat(timespec='seconds')}",
             f"- myoqa: {safe(header.version)}",
             f"- index: `{safe(header.index)}` (built {safe(header.built_at)})",
             f"- sources: `{safe(header.sources)}`",
             f"- mode: {header.mode}, top {header.k} (each answer below names its own)",
             "", intro, ""]
    for number, turn in enumerate(turns, 1):
        lines += turn_markdown(number, turn)
    return "\n".join(lines).rstrip("\n") + "\n"


def to_json(turns: list[Turn], header: ExportHeader) -> str:
    """The whole transcript as one JSON object; each answer as `myoqa ask --json` prints it."""
    data: dict[str, Any] = {
        "format": JSON_EXPORT_FORMAT, "exported_at": header.exported_at.isoformat(),
        "myoqa_version": header.version, "index": header.index,
        "index_built_at": header.built_at, "sources": header.sources,
        "mode": header.mode, "k": header.k,
        "turns": [{"question": t.question, "searched": t.searched, "mode": t.mode, "k": t.k,
                   "fallback": t.fallback or None,
                   "answer": t.answer.to_json() if t.answer else None} for t in turns],
    }
    return json.dumps(data, ensure_ascii=True, indent=1) + "\n"


def export(turns: list[Turn], header: ExportHeader, fmt: str, directory: Path,
           kept: Sequence[Kept] = ()) -> Path:
    """Write the transcript in `fmt` ("markdown" or "json") to
    `myoqa-transcript-YYYYmmdd-HHMMSS.<ext>` in `directory` (created if missing), never over an
    existing file nor inside a `kept` folder; returns the path written. Raises MyoqaError or
    OSError."""
    text = to_markdown(turns, header) if fmt == "markdown" else to_json(turns, header)
    path = free_path(directory, f"myoqa-transcript-{header.exported_at:%Y%m%d-%H%M%S}",
                     EXPORT_FORMATS[fmt], kept)
    write_output(path, text, kept=kept)
    return path


def free_path(directory: Path, stem: str, suffix: str, kept: Sequence[Kept] = ()) -> Path:
    """`directory/stem.suffix`, or with -2, -3 … when that exists; the folder is created,
    unless it is inside a `kept` folder (refused by name, before it is made)."""
    check_folder(directory, kept)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.{suffix}"
    number = 2
    while path.exists() or path.is_symlink():
        path = directory / f"{stem}-{number}.{suffix}"
        number += 1
    return path
