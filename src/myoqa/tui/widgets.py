"""The chat's widgets: answer cards made of passages, score bars, the status line, the input box.

Text from a source or a user is always put into a `rich.text.Text` after `render.safe`, so markup
in it shows literally and no control character reaches the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Footer, Input, LoadingIndicator, Static
from textual.widgets._footer import FooterKey

from myoqa.citation import cite_passage
from myoqa.render import passage_text, safe
from myoqa.tui.history import History
from myoqa.tui.transcript import Turn, weak_answer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from myoqa.search import Result

BAR_WIDTH = 10
# Below this width the footer leaves out the command palette key.
WIDE_FOOTER = 100
# The keys the footer keeps in view at any width, at its right end: help and quit.
PINNED_ACTIONS = frozenset({"help", "app.help", "quit", "app.quit"})
MOVE = Binding.Group("move")
TOP = Binding.Group("top")


def place(result: Result) -> str:
    """A passage's place on its card: file:line:column (and page) and character range, the
    name made safe for Textual's Text."""
    return cite_passage(result, safe)


def bar_fraction(score: float, mode: str, top: float) -> float:
    """How full a passage's score bar is: fused and dense scores are similarities in [0, 1];
    raw BM25 scores are shown relative to the best passage of the answer."""
    if mode == "bm25":
        return score / top if top > 0 else 0.0
    return min(max(score, 0.0), 1.0)


class CopyRequested(Message):
    """Copy a passage with its citation; the app handles it, as it owns the clipboard."""

    def __init__(self, result: Result) -> None:
        super().__init__()
        self.result = result


class PassageBody(Widget):
    """A passage's text with the question's words and the best-supporting span styled."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"passage--term", "passage--evidence"}

    def __init__(self, result: Result, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result = result

    def render(self) -> Text:
        """The safe()'d passage, styled by the theme's component classes (the evidence style is
        the full one, so its translucent background is blended with the passage's)."""
        term = self.get_component_rich_style("passage--term", partial=True)
        evidence = self.get_component_rich_style("passage--evidence")
        return passage_text(self.result, str(term), str(evidence))


class ScoreBar(Widget):
    """A fixed-width bar and the number for one passage's score."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"scorebar--full", "scorebar--empty"}

    def __init__(self, score: float, fraction: float) -> None:
        super().__init__()
        self.score = score
        self.fraction = fraction

    def render(self) -> Text:
        """Filled and empty cells, then the score with three decimals."""
        filled = round(self.fraction * BAR_WIDTH)
        bar = Text()
        bar.append("━" * filled, self.get_component_rich_style("scorebar--full", partial=True))
        bar.append("─" * (BAR_WIDTH - filled),
                   self.get_component_rich_style("scorebar--empty", partial=True))
        bar.append(f" {self.score:6.3f}")
        return bar


class PassageView(Vertical, can_focus=True):
    """One ranked passage of an answer: rank, where it is, score bar and highlighted text.

    It takes focus (keys or a mouse click); the focused passage is the selected one. A weak match
    (the card says why above its passages) is dimmed.
    """

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("up,k", "app.move(-1)", "Prev", key_display="↑", group=MOVE,
                tooltip="Select the previous passage"),
        Binding("down,j", "app.move(1)", "Next", key_display="↓", group=MOVE,
                tooltip="Select the next passage (past the last: the question box)"),
        Binding("enter,o", "app.open_source", "Open", key_display="⏎",
                tooltip="Open the passage in its source, highlighted in context"),
        Binding("c", "app.copy_passage", "Copy",
                tooltip="Copy the passage with its citation to the clipboard"),
        Binding("m", "app.cycle_mode", "Mode", tooltip="Cycle the retrieval mode"),
        Binding("minus", "app.change_k(-1)", "Fewer", key_display="-", group=TOP,
                tooltip="Show one passage fewer per answer"),
        Binding("plus,equals_sign", "app.change_k(1)", "More", key_display="+", group=TOP,
                tooltip="Show one passage more per answer"),
        Binding("r", "app.reask", "Re-ask",
                tooltip="Ask this question again with the current mode and number"),
        Binding("escape,i,slash", "app.focus_input", "Type", key_display="esc",
                tooltip="Back to the question box"),
    ]

    def __init__(self, result: Result, mode: str, top: float, weak: bool) -> None:
        super().__init__(classes="weak" if weak else None)
        self.result = result
        self.mode = mode
        self.top = top
        self.weak = weak

    def compose(self) -> ComposeResult:
        """The meta line (rank, location, score bar) over the passage text."""
        meta = Text.assemble((f"{self.result.rank}. ", "bold"), place(self.result))
        with Horizontal(classes="meta-row"):
            yield Static(meta, classes="meta")
            yield ScoreBar(self.result.score, bar_fraction(self.result.score, self.mode, self.top))
        yield PassageBody(self.result)


class AnswerCard(Vertical):
    """A question and, once searched, its ranked passages (or why there are none).

    `texts` are the source texts of the index that answered, so a passage opens in the text
    its offsets point into even after the index was rebuilt.
    """

    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self.turn = turn
        self.requested = 0
        self.shown = 0
        self.needs_refine = False
        self.texts: Mapping[str, str] = {}

    def compose(self) -> ComposeResult:
        """The question line with its mode tag, what was searched, then the body."""
        with Horizontal(classes="question-row"):
            yield Static(Text.assemble(("❯ ", "bold"), safe(self.turn.question)),
                         classes="question")
            yield Static("", classes="tag")
        if self.turn.contextualized:
            yield Static(Text(f"searched: {safe(self.turn.searched)}"), classes="searched")
        yield Vertical(classes="body")

    @property
    def passages(self) -> list[PassageView]:
        """The card's passage widgets, best first."""
        return list(self.query(PassageView))

    def set_tag(self, label: str, fallback: bool = False) -> None:
        """Show `label` at the right of the question; a fallback label is shown as a warning."""
        tag = self.query_one(".tag", Static)
        tag.update(Text(label))
        tag.set_class(fallback, "fallback")

    async def wait(self, message: str) -> None:
        """Show a loading indicator with `message` until the card can be answered."""
        self.set_tag("waiting")
        await self._fill([Horizontal(LoadingIndicator(), Static(Text(message)),
                                     classes="waiting")])

    async def show_error(self, message: str) -> None:
        """Say why this question could not be answered."""
        self.set_tag("not answered", fallback=True)
        await self._fill([Static(Text(safe(message)), classes="error")])

    async def show_answer(self) -> None:
        """Render `turn.answer`: abstention sentence, notes, then the passages."""
        answer = self.turn.answer
        assert answer is not None
        if self.turn.fallback:
            self.set_tag(self.turn.fallback, fallback=True)
        else:
            self.set_tag(f"{answer.mode} · top {len(answer.results)}")
        top = max((r.score for r in answer.results), default=0.0)
        caveat = weak_answer(answer)
        parts: list[Widget] = []
        if caveat:
            parts.append(Static(Text(caveat), classes="abstained"))
        parts += [Static(Text(f"note: {safe(note)}"), classes="note") for note in answer.notes]
        if not answer.results:
            parts.append(Static(Text("No passage matches this question."), classes="note"))
        parts += [PassageView(r, answer.mode, top, bool(caveat)) for r in answer.results]
        await self._fill(parts)

    async def _fill(self, widgets: list[Widget]) -> None:
        body = self.query_one(".body", Vertical)
        await body.remove_children()
        await body.mount_all(widgets)


class Transcript(VerticalScroll, can_focus=False):
    """The growing list of answer cards; its passages take focus, not the list itself."""


class StatusBar(Horizontal):
    """One line above the input: what is loading (with a spinner) or what is ready."""

    message = ""

    def compose(self) -> ComposeResult:
        """A spinner and a message."""
        yield LoadingIndicator()
        yield Static("", classes="message")

    def busy(self, message: str) -> None:
        """Show `message` with the spinner running."""
        self.idle(message)
        self.query_one(LoadingIndicator).display = True

    def idle(self, message: str, problem: bool = False) -> None:
        """Show `message` without the spinner; a problem is shown as a warning."""
        self.message = message
        self.query_one(LoadingIndicator).display = False
        self.query_one(".message", Static).update(Text(safe(message)))
        self.set_class(problem, "problem")


class ChatInput(Input):
    """The question box: Enter asks, Up and Down walk the question history."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("up", "history(-1)", "History", key_display="↑↓",
                tooltip="Previous question in the history"),
        Binding("down", "history(1)", "History", show=False,
                tooltip="Next question in the history (then back to what you typed)"),
        Binding("tab", "app.focus_passages", "Passages",
                tooltip="Select the first passage of the newest answer"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="Ask a question about myoclonus  (Enter asks · F1 help)",
                         id=id)
        self.history = History()

    def action_history(self, step: int) -> None:
        """Replace the text with the previous (step -1) or next (step 1) question."""
        text = self.history.previous(self.value) if step < 0 else self.history.next()
        if text is not None:
            self.value = text
            self.cursor_position = len(text)


class ChatFooter(Footer):
    """The key footer, with help and quit pinned at its right end so that a narrow terminal
    cuts the other keys, never those; it adapts to the terminal's width as it changes."""

    def __init__(self) -> None:
        super().__init__(show_command_palette=False)

    def compose(self) -> ComposeResult:
        """Textual's footer keys, with the pinned ones (and the palette key) moved right."""
        pinned: list[FooterKey] = []
        for widget in super().compose():
            if isinstance(widget, FooterKey) and (widget.action in PINNED_ACTIONS
                                                  or widget.has_class("-command-palette")):
                widget.remove_class("-command-palette")
                pinned.append(widget)
            else:
                yield widget
        if pinned:
            yield Horizontal(*pinned, classes="pinned")

    def on_resize(self) -> None:
        """Show the palette key only when the terminal is wide enough for it."""
        wide = self.app.size.width >= WIDE_FOOTER
        if wide != self.show_command_palette:
            self.show_command_palette = wide
            self.call_after_refresh(self.recompose)
