"""`myoqa chat`: ask questions, read ranked and highlighted passages, open them in their source.

The app composes the screen and maps keys to actions; the background work (opening the index,
loading the encoders, answering, rebuilding) is `asking.Asking`, saving is `saving.Saver`, and the
palette's commands and the help screen's keys are in `commands`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from myoqa.config import CLIPBOARD_OSC52, Settings
from myoqa.diagnostics import error, say
from myoqa.errors import ExitCode, MyoqaError
from myoqa.followup import contextualize
from myoqa.output_files import kept_folders
from myoqa.render import safe
from myoqa.search import MAX_K, MODES
from myoqa.tui import places
from myoqa.tui.asking import Asking
from myoqa.tui.clipboard import copy_text
from myoqa.tui.commands import chat_commands, key_groups
from myoqa.tui.history import HISTORY_FILE, History, load_history, remember
from myoqa.tui.index_link import SearcherFactory, searcher_factory
from myoqa.tui.saving import Saver, export_header, reason
from myoqa.tui.screens import ExportScreen, HelpScreen, SourceScreen
from myoqa.tui.transcript import Turn, citation, clipboard_text
from myoqa.tui.widgets import (
    AnswerCard,
    ChatFooter,
    ChatInput,
    CopyRequested,
    PassageView,
    StatusBar,
    Transcript,
)

if TYPE_CHECKING:
    import threading

    from textual.notifications import SeverityLevel

    from myoqa.search import Result, Searcher

MIN_K, DEFAULT_K = 1, 5
# The chat's +/- stops at 20 passages (a screenful of cards), within the search's one limit MAX_K.
CHAT_MOST_K = min(20, MAX_K)
NOTE_SECONDS = 3
LONG_NOTE_SECONDS = 8
WELCOME = (
    "Ask a question about myoclonus. Answers are passages quoted from the sources, best first, "
    "with the question's words highlighted and the best-supporting span underlined; nothing is "
    "generated.\n\nTab moves to the passages, Enter opens one in its source, F1 lists every key."
)
# Actions that work on the transcript; they are disabled while another screen is shown.
TRANSCRIPT_ACTIONS = frozenset({"move", "open_source", "copy_passage", "reask", "focus_passages",
                                "focus_input", "clear", "save_transcript", "scroll_transcript"})


class ChatApp(App[None]):
    """The myoqa chat: a transcript of answer cards over an input box."""

    CSS_PATH = "app.tcss"
    TITLE = "myoqa"
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("f1,question_mark", "help", "Help", key_display="F1",
                tooltip="Show every key and how answers are made"),
        Binding("f3", "cycle_mode", "Mode", key_display="F3",
                tooltip="Cycle the retrieval mode: hybrid, bm25, dense"),
        Binding("f4", "change_k(-1)", "Fewer", key_display="F4", show=False,
                tooltip="Show one passage fewer per answer (at least 1)"),
        Binding("f5", "change_k(1)", "More", key_display="F5", show=False,
                tooltip="Show one passage more per answer (at most 20)"),
        Binding("ctrl+s", "save_transcript", "Save",
                tooltip="Save the transcript as Markdown or JSON (in the export folder)"),
        Binding("ctrl+l", "clear", "Clear",
                tooltip="Clear the transcript and forget the previous question"),
        Binding("f2", "save_screenshot", "Screenshot", key_display="F2", show=False,
                tooltip="Save an SVG screenshot of the screen (in the export folder)"),
        Binding("pageup", "scroll_transcript(-1)", "Page up", show=False,
                tooltip="Scroll the transcript up"),
        Binding("pagedown", "scroll_transcript(1)", "Page down", show=False,
                tooltip="Scroll the transcript down"),
        Binding("ctrl+p", "command_palette", "Commands", show=False,
                tooltip="Command palette: modes, themes (dark, light), save, screenshot"),
        Binding("ctrl+c,ctrl+q", "quit", "Quit", priority=True, key_display="^c",
                tooltip="Quit (ctrl+c or ctrl+q)"),
    ]

    mode: reactive[str] = reactive("hybrid", init=False)
    k: reactive[int] = reactive(DEFAULT_K, init=False)

    def __init__(self, settings: Settings | None = None, *,
                 factory: SearcherFactory | None = None, export_dir: Path | None = None,
                 history_path: Path | None = None, cursor_blink: bool = True) -> None:
        """Chat over `settings` (resolved defaults if None), or over the searcher `factory`
        returns. Transcripts and screenshots go to `export_dir`, the question history to
        `history_path` (by default as `places` says)."""
        super().__init__()
        self.settings = settings or Settings.resolve()
        self.kept = kept_folders(self.settings.sources, self.settings.index_dir)
        self.export_dir = export_dir or places.export_dir(self.settings.export_dir, self.kept,
                                                          self.settings.data_dir)
        self.history_path = history_path or places.data_dir(self.settings.data_dir) / HISTORY_FILE
        self.history_problem = ""
        self.cursor_blink = cursor_blink
        self.asking = Asking(self, self.settings, factory or searcher_factory(self.settings))
        self.saver = Saver(self.export_dir, self.kept, self.tell)
        self._previous: str | None = None

    def compose(self) -> ComposeResult:
        """Header, transcript, status line, input and footer."""
        yield Header()
        with Transcript(id="transcript"):
            yield Static(WELCOME, id="welcome", markup=False)
        yield StatusBar(id="status")
        yield ChatInput(id="question")
        yield ChatFooter()

    def on_mount(self) -> None:
        """Focus the input and start opening the index."""
        question = self.query_one(ChatInput)
        question.cursor_blink = self.cursor_blink
        entries, note = load_history(self.history_path)
        question.history = History(entries)
        if note:
            self.tell(note, severity="warning", long=True)
        question.focus()
        self._show_settings()
        self.status.busy("Opening the index…")
        self.asking.open_index()

    @property
    def status(self) -> StatusBar:
        """The status line."""
        return self.query_one(StatusBar)

    @property
    def cards(self) -> list[AnswerCard]:
        """The answer cards, oldest first."""
        return list(self.query_one(Transcript).query(AnswerCard))

    @property
    def selected(self) -> PassageView | None:
        """The focused passage, if a passage has focus."""
        return self.focused if isinstance(self.focused, PassageView) else None

    @property
    def searcher(self) -> Searcher | None:
        """The searcher answering now (None until the index is open)."""
        return self.asking.searcher

    @property
    def open_problem(self) -> str:
        """Why the index could not be opened ('' when it was)."""
        return self.asking.open_problem

    @property
    def index_settled(self) -> threading.Event:
        """Clear while the index is being built (quitting then waits for the build)."""
        return self.asking.index_settled

    async def show_answer(self, card: AnswerCard, first: bool) -> None:
        """Show the answer `card.turn` now holds, keeping the selected passage's rank selected;
        a first answer on the newest card is scrolled into view."""
        selected = self.selected
        rank = selected.result.rank if selected and card in selected.ancestors else None
        await card.show_answer()
        passages = card.passages
        if rank is not None and passages:
            passages[min(rank, len(passages)) - 1].focus()
        elif first and card is self.cards[-1]:
            view = self.query_one(Transcript)
            self.call_after_refresh(view.scroll_to_widget, card, animate=False, top=True)

    # Asking.

    @on(Input.Submitted, "#question")
    async def _submitted(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        event.input.value = ""
        self.query_one(ChatInput).history.add(question)
        self._remember(question)
        await self.ask(question)

    def _remember(self, question: str) -> None:
        """Keep the question in the history file; a failure is said once, then not retried."""
        if self.history_problem:
            return
        try:
            remember(self.history_path, question, self.kept)
        except (OSError, MyoqaError) as exc:
            self.history_problem = reason(exc)
            self.tell(f"Questions are not kept for the next session: {self.history_problem}",
                      severity="warning", long=True)

    async def ask(self, question: str) -> AnswerCard:
        """Add a card for `question` (searched with the previous one's subject if it is a
        follow-up) and search for it."""
        searched = contextualize(question, self._previous)
        self._previous = searched
        card = AnswerCard(Turn(question, searched, self.mode, self.k))
        transcript_view = self.query_one(Transcript)
        await transcript_view.query("#welcome").remove()
        await transcript_view.mount(card)
        transcript_view.scroll_end(animate=False)
        await self.asking.dispatch(card)
        return card

    # Actions.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:  # noqa: ARG002 (Textual's signature)
        """Transcript actions only work while the transcript's screen is shown."""
        if action in TRANSCRIPT_ACTIONS:
            return self.screen is self.screen_stack[0]
        return True

    def action_help(self) -> None:
        """Show every key."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(key_groups(self)))

    def action_cycle_mode(self) -> None:
        """Switch to the next retrieval mode for the following questions."""
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        hint = (" (dense search is unavailable)" if self.asking.dense_problem
                and self.mode != "bm25" else "")
        self.tell(f"Mode {self.mode} for the next questions; r re-asks the selected one{hint}")

    def action_change_k(self, step: int) -> None:
        """Show one passage more (step 1) or fewer (step -1) for the following questions."""
        self.k = min(CHAT_MOST_K, max(MIN_K, self.k + step))
        self.tell(f"Top {self.k} passages for the next questions")

    def watch_mode(self) -> None:
        """Show the new mode in the header."""
        self._show_settings()

    def watch_k(self) -> None:
        """Show the new number of passages in the header."""
        self._show_settings()

    def _show_settings(self) -> None:
        self.sub_title = f"mode {self.mode} · top {self.k}"

    def action_move(self, step: int) -> None:
        """Select the next (1) or previous (-1) passage; past the last one, go to the input."""
        passages = list(self.query_one(Transcript).query(PassageView))
        if not passages:
            return
        current = self.selected
        if current not in passages:
            passages[0 if step > 0 else -1].focus()
        elif passages.index(current) + step >= len(passages):
            self.action_focus_input()
        else:
            passages[max(0, passages.index(current) + step)].focus()

    def action_focus_passages(self) -> None:
        """Select the first passage of the newest answer."""
        for card in reversed(self.cards):
            if card.passages:
                card.passages[0].focus()
                return
        self.tell("No passages yet: ask a question first")

    def action_focus_input(self) -> None:
        """Go back to typing."""
        self.query_one(ChatInput).focus()

    def action_scroll_transcript(self, pages: int) -> None:
        """Scroll the transcript a page up (-1) or down (1)."""
        view = self.query_one(Transcript)
        if pages < 0:
            view.scroll_page_up(animate=False)
        else:
            view.scroll_page_down(animate=False)

    @staticmethod
    def _card_of(passage: PassageView | None) -> AnswerCard | None:
        """The card a passage belongs to."""
        if passage is None:
            return None
        return next((a for a in passage.ancestors if isinstance(a, AnswerCard)), None)

    def action_open_source(self) -> None:
        """Open the selected passage in its whole source text."""
        passage = self.selected
        card = self._card_of(passage)
        if passage is not None and card is not None:
            self.push_screen(SourceScreen(passage.result, card.texts[passage.result.source]))

    def action_copy_passage(self) -> None:
        """Copy the selected passage with its citation to the clipboard."""
        if self.selected is not None:
            self.copy_result(self.selected.result)

    def on_copy_requested(self, message: CopyRequested) -> None:
        """Copy a passage for another screen (the source viewer)."""
        self.copy_result(message.result)

    @work(thread=True, group="copy", exit_on_error=False)
    def copy_result(self, result: Result) -> None:
        """Copy a passage with its citation (clipboard tools may be slow: a worker), then say
        honestly whether it was copied."""
        outcome = copy_text(clipboard_text(result),
                            lambda text: self.call_from_thread(self.copy_to_clipboard, text),
                            self.settings.clipboard == CLIPBOARD_OSC52)
        if outcome.copied:
            self.call_from_thread(self.tell, f"{outcome.message}: passage {result.rank}, "
                                  f"{citation(result)}")
        else:
            self.call_from_thread(self.tell, outcome.message, severity="warning", long=True)

    async def action_reask(self) -> None:
        """Search the selected passage's question again with the current mode and k."""
        card = self._card_of(self.selected)
        if card is not None:
            card.turn.mode, card.turn.k = self.mode, self.k
            await self.asking.dispatch(card)

    async def action_clear(self) -> None:
        """Remove every card and forget the previous question."""
        view = self.query_one(Transcript)
        await view.remove_children()
        await view.mount(Static(WELCOME, id="welcome", markup=False))
        self._previous = None
        self.action_focus_input()

    def action_save_transcript(self) -> None:
        """Ask for a format, then save the transcript into the export folder."""
        if not self.cards:
            self.tell("Nothing to save yet")
            return
        self.push_screen(ExportScreen(self.export_dir, len(self.cards)), self.save_transcript)

    def save_transcript(self, fmt: str | None) -> None:
        """Save the transcript as "markdown" or "json" (None: nothing) with a header saying how
        its answers were made."""
        if fmt is not None:
            self.saver.transcript([card.turn for card in self.cards],
                                  export_header(self.searcher, self.settings.sources, self.mode,
                                                self.k), fmt)

    def action_save_screenshot(self) -> None:
        """Save an SVG screenshot of the screen into the export folder."""
        self.saver.screenshot(self.export_screenshot())

    def tell(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
             long: bool = False) -> None:
        """Show one notification (`long`: one that needs reading, kept up longer), replacing
        the one before, so that notes never stack up over the answers."""
        self.clear_notifications()
        self.notify(safe(message), title=title, severity=severity, markup=False,
                    timeout=LONG_NOTE_SECONDS if long else NOTE_SECONDS)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette's commands, with the chat's own."""
        yield from super().get_system_commands(screen)
        yield from chat_commands(self)


def run_chat(settings: Settings, export_dir: Path | None = None) -> int:
    """Run the chat in the terminal until the user quits; returns the exit code."""
    app = ChatApp(settings, export_dir=export_dir)
    app.run()
    if app.open_problem:
        error(app.open_problem)
    if not app.index_settled.is_set():
        say("finishing the index build before exiting…")
    if app.return_code:
        return app.return_code
    return ExitCode.FAILURE if app.open_problem else ExitCode.OK
