"""The chat's other screens: help, the export choice and the source viewer (with search)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Input, Static

from myoqa.citation import PROSE_SEPARATOR, cite_passage
from myoqa.render import passage_text, safe
from myoqa.tui.widgets import ChatFooter, CopyRequested

if TYPE_CHECKING:
    from pathlib import Path

    from myoqa.search import Result

CONTEXT_CHARS = 30_000
CONTEXT_LINES = 3

ABOUT = (
    "Answers are passages quoted from the sources, best first; nothing is generated. In a "
    "passage, the question's words are highlighted and the span that best supports an answer is "
    "underlined. When the sources do not answer a question, the nearest passages are shown as weak "
    "matches.\n\n"
    "Follow-ups: a short question that starts with \"and\" / \"what about\" or leans on the "
    "previous one (\"it\", \"its\", \"they\", \"those\" …) is searched together with the previous "
    "question's subject; the card then shows what was searched. ctrl+l starts afresh.\n\n"
    "Before the language model has loaded, questions are answered with BM25 alone, labelled so, "
    "and refined automatically when it is ready."
)

KeyGroups = list[tuple[str, list[tuple[str, str]]]]


class HelpScreen(ModalScreen[None]):
    """Every key of the chat, by where it works, and how answers are made."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,q,f1,question_mark", "dismiss", "Close", key_display="esc",
                tooltip="Close the help")]

    def __init__(self, groups: KeyGroups) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        """A scrollable panel of key tables and the explanation."""
        with VerticalScroll(id="help-panel"):
            yield Static(Text("myoqa chat — keys", style="bold"), classes="help-title")
            for title, rows in self.groups:
                table = Table.grid(padding=(0, 2))
                table.add_column(style="bold", min_width=14)
                table.add_column()
                for key, description in rows:
                    table.add_row(Text(key), Text(description))
                yield Static(Text(title, style="underline"), classes="help-heading")
                yield Static(table)
            yield Static(Text(ABOUT), classes="help-about")
            yield Static(Text("Escape closes this screen.", style="italic"), classes="help-hint")
        yield ChatFooter()


class ExportScreen(ModalScreen[str | None]):
    """Asks in which format to save the transcript, and says where it goes."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("m", "choose('markdown')", "Markdown",
                tooltip="Save as Markdown: readable, every passage quoted with its citation"),
        Binding("j", "choose('json')", "JSON",
                tooltip="Save as JSON: every answer as `myoqa ask --json` prints it"),
        Binding("escape,q", "choose('')", "Cancel", key_display="esc", tooltip="Save nothing"),
    ]

    def __init__(self, folder: Path, answers: int) -> None:
        super().__init__()
        self.folder = folder
        self.answers = answers

    def compose(self) -> ComposeResult:
        """The question, the folder and the two formats."""
        with Vertical(id="export-panel"):
            noun = "answer" if self.answers == 1 else "answers"
            yield Static(Text(f"Save the transcript ({self.answers} {noun})", style="bold"))
            yield Static(Text(safe(f"into {self.folder}")), classes="export-folder")
            formats = Table.grid(padding=(0, 2))
            formats.add_row(Text("m", style="bold"), Text("Markdown: readable, with citations"))
            formats.add_row(Text("j", style="bold"), Text("JSON: every passage with its offsets"))
            formats.add_row(Text("esc", style="bold"), Text("cancel"))
            yield Static(formats, classes="export-formats")
            yield Static(Text("The folder is set by --export-dir or MYOQA_EXPORT_DIR.",
                              style="italic"), classes="export-hint")
        yield ChatFooter()

    def action_choose(self, fmt: str) -> None:
        """Close, handing back the chosen format (None to cancel)."""
        self.dismiss(fmt or None)


def _context(text: str, start: int, end: int) -> tuple[str, str]:
    """The source text before and after a passage, cut to CONTEXT_CHARS each way."""
    before, after = text[max(0, start - CONTEXT_CHARS):start], text[end:end + CONTEXT_CHARS]
    if start > CONTEXT_CHARS:
        before = "… " + before
    if len(text) - end > CONTEXT_CHARS:
        after += " …"
    return before, after


class SourceSegment(Widget):
    """One stretch of the shown source text (before, the passage, after), with the passage's
    highlights and the search matches that fall in it marked."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"passage--term", "passage--evidence",
                                             "segment--match", "segment--current"}

    def __init__(self, text: str, result: Result | None = None, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text = text
        self.result = result
        self.matches: list[tuple[int, int]] = []
        self.current: tuple[int, int] | None = None

    def render(self) -> Text:
        """The safe()'d text, styled by the theme's component classes."""
        if self.result is None:
            text = Text(safe(self.text))
        else:
            term = self.get_component_rich_style("passage--term", partial=True)
            evidence = self.get_component_rich_style("passage--evidence")
            text = passage_text(self.result, str(term), str(evidence))
        for start, end in self.matches:
            text.stylize(self.get_component_rich_style("segment--match"), start, end)
        if self.current is not None:
            text.stylize(self.get_component_rich_style("segment--current"), *self.current)
        return text

    def mark(self, matches: list[tuple[int, int]], current: tuple[int, int] | None) -> None:
        """Show `matches` (offsets into this segment), `current` the one searched to."""
        self.matches, self.current = matches, current
        self.refresh()

    def line_of(self, offset: int) -> int:
        """The screen line, counted from the top of the text, on which `offset` is shown at
        the present width (Textual's own wrapping, found through a marker style)."""
        width = max(1, self.content_size.width)
        marked = Content(safe(self.text)).stylize("myoqa-mark", offset, offset + 1)
        for number, line in enumerate(marked.wrap(width)):
            if any(span.style == "myoqa-mark" for span in line.spans):
                return number
        return 0


class SearchBox(Input):
    """The source viewer's search field: Enter searches, Escape closes it."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "screen.close_search", "Cancel", key_display="esc",
                tooltip="Close the search field"),
    ]


class SourceScreen(Screen[None]):
    """A source text scrolled to one passage, which is highlighted in its context; `/`
    searches the shown text, n and N go to the next and previous match."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,q", "app.pop_screen", "Close", key_display="esc",
                tooltip="Close the source viewer"),
        Binding("slash", "open_search", "Search", key_display="/",
                tooltip="Search the shown text (Enter searches, n / N next and previous match)"),
        Binding("n", "next_match(1)", "Next", tooltip="Go to the next match"),
        Binding("N", "next_match(-1)", "Prev", key_display="N", show=False,
                tooltip="Go to the previous match"),
        Binding("j,down", "scroll_lines(1)", "Down", show=False, tooltip="Scroll down a line"),
        Binding("k,up", "scroll_lines(-1)", "Up", show=False, tooltip="Scroll up a line"),
        Binding("c", "copy", "Copy", tooltip="Copy the passage with its citation"),
    ]

    def __init__(self, result: Result, source_text: str) -> None:
        super().__init__()
        self.result = result
        self.before, self.after = _context(source_text, result.start, result.end)
        self.query_text = ""
        self.matches: list[tuple[int, int]] = []
        self.current = -1

    def compose(self) -> ComposeResult:
        """Title line, then the text before, the passage and the text after."""
        yield Static("", id="source-title")
        with VerticalScroll(id="source-scroll"), Vertical(id="source-text"):
            if self.before:
                yield SourceSegment(self.before, classes="context")
            yield SourceSegment(self.result.text, self.result, id="source-passage")
            if self.after:
                yield SourceSegment(self.after, classes="context")
        yield SearchBox(placeholder="Search the text shown (Enter searches, Esc cancels)",
                        id="source-search")
        yield ChatFooter()

    def on_mount(self) -> None:
        """Focus the text (unless `/` was typed already) and scroll the passage into view once
        laid out."""
        self._show_title()
        if self.focused is None:
            self.set_focus(self.query_one("#source-scroll"))
        self.call_after_refresh(self.scroll_to_passage)

    @property
    def segments(self) -> list[SourceSegment]:
        """The shown text's segments, in order."""
        return list(self.query(SourceSegment))

    def _show_title(self, found: str = "") -> None:
        hint = found or "/ search · Esc close"
        self.query_one("#source-title", Static).update(
            Text(f"{cite_passage(self.result, safe, PROSE_SEPARATOR)} · {safe(hint)}"))

    def scroll_to_passage(self) -> None:
        """Scroll so the passage starts a few lines below the top."""
        passage = self.query_one("#source-passage")
        scroll = self.query_one("#source-scroll", VerticalScroll)
        scroll.scroll_to(y=max(0, passage.virtual_region.y - CONTEXT_LINES), animate=False)

    def action_scroll_lines(self, lines: int) -> None:
        """Scroll the text by `lines`."""
        scroll = self.query_one("#source-scroll", VerticalScroll)
        scroll.scroll_to(y=scroll.scroll_y + lines, animate=False)

    def action_open_search(self) -> None:
        """Show the search field."""
        box = self.query_one("#source-search", SearchBox)
        box.display = True
        box.value = self.query_text
        self.set_focus(box)

    def action_close_search(self) -> None:
        """Hide the search field and go back to the text."""
        self.query_one("#source-search").display = False
        self.set_focus(self.query_one("#source-scroll"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Search for the field's text (case-insensitive) and go to the first match at or
        after the passage."""
        event.stop()
        self.action_close_search()
        self.search(event.value)

    def search(self, wanted: str) -> None:
        """Find every occurrence of `wanted` in the shown text and go to the first at or after
        the passage's start."""
        self.query_text = wanted
        shown = "".join(segment.text for segment in self.segments)
        self.matches = [(m.start(), m.end()) for m in
                         re.finditer(re.escape(wanted), shown, re.IGNORECASE)] if wanted else []
        if not self.matches:
            self.current = -1
            self._mark()
            self._show_title(f"no match for “{wanted}”" if wanted else "")
            return
        start = len(self.before)
        self.current = next((i for i, (s, _) in enumerate(self.matches) if s >= start), 0)
        self._go_to_current()

    def action_next_match(self, step: int) -> None:
        """Go to the next (1) or previous (-1) match, wrapping around."""
        if not self.matches:
            if not self.query_text:
                self.action_open_search()
            return
        self.current = (self.current + step) % len(self.matches)
        self._go_to_current()

    def _mark(self) -> tuple[SourceSegment, int] | None:
        """Mark the matches in each segment; returns where the current match starts."""
        where = None
        offset = 0
        for segment in self.segments:
            end = offset + len(segment.text)
            inside = [(max(s, offset) - offset, min(e, end) - offset)
                      for s, e in self.matches if s < end and e > offset]
            current = None
            if 0 <= self.current < len(self.matches):
                s, e = self.matches[self.current]
                if s < end and e > offset:
                    current = (max(s, offset) - offset, min(e, end) - offset)
                    if where is None:
                        where = (segment, current[0])
            segment.mark(inside, current)
            offset = end
        return where

    def _go_to_current(self) -> None:
        where = self._mark()
        self._show_title(f"match {self.current + 1}/{len(self.matches)} · n N")
        if where is not None:
            self.call_after_refresh(self._scroll_to, *where)

    def _scroll_to(self, segment: SourceSegment, offset: int) -> None:
        scroll = self.query_one("#source-scroll", VerticalScroll)
        top = segment.virtual_region.y + segment.styles.padding.top
        scroll.scroll_to(y=max(0, top + segment.line_of(offset) - CONTEXT_LINES), animate=False)

    def action_copy(self) -> None:
        """Copy the passage with its citation."""
        self.post_message(CopyRequested(self.result))
