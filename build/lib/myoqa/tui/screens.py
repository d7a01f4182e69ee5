"""The chat's other screens: the help screen and the source viewer."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from myoqa.render import safe
from myoqa.tui.transcript import citation, clipboard_text
from myoqa.tui.widgets import PassageBody

if TYPE_CHECKING:
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

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,q,f1,question_mark", "dismiss", "Close", key_display="esc",
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
        yield Footer()


def _context(text: str, start: int, end: int) -> tuple[str, str]:
    """The source text before and after a passage, cut to CONTEXT_CHARS each way."""
    before, after = text[max(0, start - CONTEXT_CHARS):start], text[end:end + CONTEXT_CHARS]
    if start > CONTEXT_CHARS:
        before = "… " + before
    if len(text) - end > CONTEXT_CHARS:
        after += " …"
    return before, after


class SourceScreen(Screen[None]):
    """A source text scrolled to one passage, which is highlighted in its context."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,q", "app.pop_screen", "Close", key_display="esc",
                tooltip="Close the source viewer"),
        Binding("c", "copy", "Copy passage", tooltip="Copy the passage with its citation"),
    ]

    def __init__(self, result: Result, source_text: str) -> None:
        super().__init__()
        self.result = result
        self.before, self.after = _context(source_text, result.start, result.end)

    def compose(self) -> ComposeResult:
        """Title line, then the text before, the passage and the text after."""
        yield Static(Text(safe(f"{citation(self.result)} · Esc closes")), id="source-title")
        with VerticalScroll(id="source-scroll"), Vertical(id="source-text"):
            if self.before:
                yield Static(Text(safe(self.before)), classes="context")
            yield PassageBody(self.result, id="source-passage")
            if self.after:
                yield Static(Text(safe(self.after)), classes="context")
        yield Footer()

    def on_mount(self) -> None:
        """Focus the text and scroll the passage into view once laid out."""
        self.query_one("#source-scroll").focus()
        self.call_after_refresh(self.scroll_to_passage)

    def scroll_to_passage(self) -> None:
        """Scroll so the passage starts a few lines below the top."""
        passage = self.query_one("#source-passage")
        scroll = self.query_one("#source-scroll", VerticalScroll)
        scroll.scroll_to(y=max(0, passage.virtual_region.y - CONTEXT_LINES), animate=False)

    def action_copy(self) -> None:
        """Copy the passage with its citation."""
        self.app.copy_to_clipboard(clipboard_text(self.result))
        self.notify(safe(f"Copied {citation(self.result)}"), markup=False)
