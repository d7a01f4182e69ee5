"""`myoqa chat`: ask questions, read ranked and highlighted passages, open them in their source.

The index is opened and the query encoders loaded in background workers, so the input works at
once. A question asked before the index is open waits on its card; one asked before the encoders
are ready (the dense one, and the late-interaction one, which starts loading as the index opens)
is answered with BM25 alone, labelled so, and refined in the requested mode when they are.
Before every search the sources are checked against the index; when they changed, the index is
rebuilt in the search's worker (the status line says so) and the question answered from it.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from myoqa import __version__
from myoqa.config import CLIPBOARD_OSC52, Settings
from myoqa.errors import ExitCode, MyoqaError, printable
from myoqa.followup import contextualize
from myoqa.output_files import kept_folders, write_output
from myoqa.render import safe
from myoqa.search import MAX_K, MODES
from myoqa.tui import places, transcript
from myoqa.tui.clipboard import copy_text
from myoqa.tui.history import HISTORY_FILE, History, load_history, remember
from myoqa.tui.index_link import SearcherFactory, searcher_factory
from myoqa.tui.screens import ExportScreen, HelpScreen, KeyGroups, SourceScreen
from myoqa.tui.transcript import ExportHeader, Turn, citation, clipboard_text
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
    from collections.abc import Mapping

    from textual.notifications import SeverityLevel

    from myoqa.search import Answer, Result, Searcher

MIN_K, DEFAULT_K = 1, 5
# The chat's +/- stops at 20 passages (a screenful of cards), within the search's one limit MAX_K.
CHAT_MOST_K = min(20, MAX_K)
NOTE_SECONDS = 3
LONG_NOTE_SECONDS = 8
LOADING = "BM25 only (model loading)"
UNAVAILABLE = "BM25 only (model unavailable)"
WELCOME = (
    "Ask a question about myoclonus. Answers are passages quoted from the sources, best first, "
    "with the question's words highlighted and the best-supporting span underlined; nothing is "
    "generated.\n\nTab moves to the passages, Enter opens one in its source, F1 lists every key."
)
# Actions that work on the transcript; they are disabled while another screen is shown.
TRANSCRIPT_ACTIONS = frozenset({"move", "open_source", "copy_passage", "reask", "focus_passages",
                                "focus_input", "clear", "save_transcript", "scroll_transcript"})

def reason(exc: OSError | MyoqaError) -> str:
    """Why a file could not be written, in one line naming it."""
    if isinstance(exc, MyoqaError):
        return str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return printable(f"{exc.strerror or exc}{where}")


def describe(exc: BaseException) -> str:
    """A one-line message for a failure in a worker."""
    if isinstance(exc, MyoqaError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {printable(str(exc))}"


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
        self.factory = factory or searcher_factory(self.settings)
        self.kept = kept_folders(self.settings.sources, self.settings.index_dir)
        self.export_dir = export_dir or places.export_dir(self.settings.export_dir, self.kept,
                                                          self.settings.data_dir)
        self.history_path = history_path or places.data_dir(self.settings.data_dir) / HISTORY_FILE
        self.history_problem = ""
        self.cursor_blink = cursor_blink
        self.searcher: Searcher | None = None
        self.dense_ready = False
        self.dense_problem = ""
        self.open_problem = ""
        self.index_settled = threading.Event()
        self._previous: str | None = None
        self._search_lock = threading.Lock()

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
            self.tell(note, severity="warning", timeout=LONG_NOTE_SECONDS)
        question.focus()
        self._show_settings()
        self.status.busy("Opening the index…")
        self.open_index()

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

    # Background work: opening the index, loading the encoder, searching.

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_index(self) -> None:
        """Open (or build) the index, then hand the searcher to the app."""
        try:
            searcher = self.factory(None, self._notify_from_thread, self._progress_from_thread)
        except Exception as exc:  # noqa: BLE001 - any failure is shown, never a crash
            self.call_from_thread(self._index_failed, describe(exc))
        else:
            self.call_from_thread(self._index_opened, searcher)
        finally:
            self.index_settled.set()

    @work(thread=True, exclusive=True, group="encoder", exit_on_error=False)
    def load_encoder(self, searcher: Searcher) -> None:
        """Load the query encoder for hybrid and dense search."""
        try:
            searcher.load_encoder()
        except Exception as exc:  # noqa: BLE001 - BM25 still works without it
            self.call_from_thread(self._encoder_failed, describe(exc))
        else:
            self.call_from_thread(self._encoder_loaded, searcher)

    @work(thread=True, group="search", exit_on_error=False)
    def run_search(self, card: AnswerCard, request: int, mode: str, fallback: str) -> None:
        """Search for one card's turn (from the sources' current index) and hand the answer
        back."""
        turn = card.turn
        try:
            with self._search_lock:
                searcher = self._current_searcher(card)
                if fallback and searcher.dense_ready:
                    mode, fallback = turn.mode, ""
                answer = searcher.search(turn.searched, mode, turn.k)
        except Exception as exc:  # noqa: BLE001 - shown on the card
            self.call_from_thread(self._search_failed, card, request, describe(exc))
        else:
            self.call_from_thread(self._answered, card, request, answer, fallback,
                                  searcher.index.texts)

    def _current_searcher(self, card: AnswerCard) -> Searcher:
        """(In a search worker, under the search lock.) The searcher, after checking the
        sources: when they changed, the index is rebuilt and its encoder loaded first."""
        old = self.searcher
        assert old is not None
        reasons: list[str] = []

        def notify(message: str) -> None:
            self.index_settled.clear()
            reasons.append(message.split(";")[0])
            self.call_from_thread(card.set_tag, "rebuilding the index…")
            self._notify_from_thread(message)

        try:
            fresh = self.factory(old, notify, self._progress_from_thread)
        except Exception as exc:  # re-raised: shown on the card too
            self.call_from_thread(self.status.idle, f"Cannot check or update the index: "
                                  f"{describe(exc)}", problem=True)
            raise
        finally:
            self.index_settled.set()
        if fresh is not old:
            try:
                fresh.load_encoder()
            except Exception as exc:  # noqa: BLE001 - BM25 still works without it
                self.call_from_thread(self._encoder_failed, describe(exc))
            self.searcher = fresh
            why = reasons[0] if reasons else "the index changed on disk"
            self.call_from_thread(self._index_refreshed, fresh, why)
        return fresh

    def _notify_from_thread(self, message: str) -> None:
        self.call_from_thread(self.status.busy, message[:1].upper() + message[1:])

    def _progress_from_thread(self, label: str, total: int) -> Callable[[int], None]:
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            self.call_from_thread(self.status.busy, f"Building the index: {label} {done}/{total}")

        return tick

    async def _index_opened(self, searcher: Searcher) -> None:
        self.searcher = searcher
        if searcher.dense_ready:
            self._encoder_loaded(searcher)
        else:
            self.status.busy("Loading the language model… questions are answered with BM25 "
                             "meanwhile")
            self.load_encoder(searcher)
        for card in self.cards:
            if card.turn.answer is None:
                await self._dispatch(card)

    async def _index_failed(self, message: str) -> None:
        self.open_problem = message
        self.status.idle(f"Cannot open the index: {message}", problem=True)
        self.tell(message, title="Cannot open the index", severity="error",
                  timeout=LONG_NOTE_SECONDS)
        for card in self.cards:
            if card.turn.answer is None:
                await card.show_error(message)

    def _ready_message(self) -> str:
        assert self.searcher is not None
        index = self.searcher.index
        two = (" (Milvus: two signals, late interaction is local only)"
               if self.settings.backend == "milvus" and self.settings.late else "")
        return f"{len(index.passages)} passages from {len(index.texts)} sources{two}"

    def _index_refreshed(self, searcher: Searcher, why: str) -> None:
        self.dense_ready = searcher.dense_ready
        if self.dense_ready:
            self.dense_problem = ""
        self.status.idle(f"{why[:1].upper()}{why[1:]}; index rebuilt: {self._ready_message()}",
                         problem=bool(self.dense_problem))

    def _encoder_loaded(self, searcher: Searcher) -> None:
        if searcher is not self.searcher:
            return
        self.dense_ready = True
        self.status.idle(f"Ready: {self._ready_message()}")
        for card in self.cards:
            if card.needs_refine:
                self.call_later(self._dispatch, card)

    def _encoder_failed(self, message: str) -> None:
        self.dense_problem = message
        self.status.idle(f"Dense search unavailable, answering with BM25: {message}",
                         problem=True)
        self.tell(message, title="Language model unavailable", severity="warning",
                  timeout=LONG_NOTE_SECONDS)
        for card in self.cards:
            if card.needs_refine:
                card.needs_refine = False
                card.turn.fallback = UNAVAILABLE
                card.set_tag(UNAVAILABLE, fallback=True)

    async def _dispatch(self, card: AnswerCard) -> None:
        """Search for `card` now, with BM25 alone if the encoder is not ready yet."""
        if self.searcher is None:
            if self.open_problem:
                await card.show_error(self.open_problem)
            else:
                await card.wait("waiting for the index to open…")
            return
        mode, fallback = card.turn.mode, ""
        if mode != "bm25" and not self.dense_ready:
            mode, fallback = "bm25", UNAVAILABLE if self.dense_problem else LOADING
        card.needs_refine = fallback == LOADING
        card.requested += 1
        if card.turn.answer is None:
            card.set_tag("searching…")
        self.run_search(card, card.requested, mode, fallback)

    async def _answered(self, card: AnswerCard, request: int, answer: Answer,
                        fallback: str, texts: Mapping[str, str]) -> None:
        if not card.is_attached or request < card.shown:
            return
        card.texts = texts
        if fallback == LOADING and self.dense_ready:
            self.call_later(self._dispatch, card)
        selected = self.selected
        rank = selected.result.rank if selected and card in selected.ancestors else None
        first = card.turn.answer is None
        card.shown = request
        card.turn.answer, card.turn.fallback = answer, fallback
        await card.show_answer()
        passages = card.passages
        if rank is not None and passages:
            passages[min(rank, len(passages)) - 1].focus()
        elif first and card is self.cards[-1]:
            view = self.query_one(Transcript)
            self.call_after_refresh(view.scroll_to_widget, card, animate=False, top=True)

    async def _search_failed(self, card: AnswerCard, request: int, message: str) -> None:
        if card.is_attached and request >= card.shown:
            card.shown = request
            await card.show_error(message)

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
                      severity="warning", timeout=LONG_NOTE_SECONDS)

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
        await self._dispatch(card)
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
            self.push_screen(HelpScreen(self.key_groups()))

    def key_groups(self) -> KeyGroups:
        """The keys, by where they work, for the help screen."""
        def rows(bindings: Iterable[Binding | tuple[str, ...]]) -> list[tuple[str, str]]:
            out = []
            for binding in bindings:
                assert isinstance(binding, Binding)
                keys = " ".join(self._key_name(key) for key in binding.key.split(","))
                out.append((keys, binding.tooltip or binding.description))
            return out

        return [("Anywhere", rows(ChatApp.BINDINGS)),
                ("In the question box", [("enter", "Ask the question")]
                 + rows(ChatInput.BINDINGS)),
                ("On a passage (Tab or click to select)", rows(PassageView.BINDINGS)),
                ("In the source viewer", rows(SourceScreen.BINDINGS)),
                ("In the save dialog (ctrl+s)", rows(ExportScreen.BINDINGS))]

    def _key_name(self, key: str) -> str:
        shown = self.get_key_display(Binding(key, ""))
        return shown.upper() if re.fullmatch(r"f\d+", shown) else shown

    def action_cycle_mode(self) -> None:
        """Switch to the next retrieval mode for the following questions."""
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        hint = " (dense search is unavailable)" if self.dense_problem and self.mode != "bm25" \
            else ""
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
            self.call_from_thread(self.tell, outcome.message, severity="warning",
                                  timeout=LONG_NOTE_SECONDS)

    async def action_reask(self) -> None:
        """Search the selected passage's question again with the current mode and k."""
        card = self._card_of(self.selected)
        if card is not None:
            card.turn.mode, card.turn.k = self.mode, self.k
            await self._dispatch(card)

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
            turns = [card.turn for card in self.cards]
            self._save("transcript", lambda: transcript.export(
                turns, self._export_header(), fmt, self.export_dir, self.kept))

    def _save(self, what: str, write: Callable[[], Path]) -> None:
        """Run `write`, then say where the file went or why it could not be written."""
        try:
            path = write()
        except (OSError, MyoqaError) as exc:
            self.tell(f"Cannot save the {what}: {reason(exc)}", severity="error",
                      timeout=LONG_NOTE_SECONDS)
        else:
            self.tell(f"{what.capitalize()} saved to {path}", title="Saved",
                      timeout=LONG_NOTE_SECONDS)

    def _export_header(self) -> ExportHeader:
        index = self.searcher.index if self.searcher else None
        return ExportHeader(datetime.now().astimezone(), __version__,
                            str(index.path.absolute()) if index else "",
                            index.manifest.built_at if index else "",
                            str(self.settings.sources.absolute()), self.mode, self.k)

    def action_save_screenshot(self) -> None:
        """Save an SVG screenshot of the screen into the export folder."""
        svg = self.export_screenshot()

        def write() -> Path:
            path = transcript.free_path(
                self.export_dir, f"myoqa-screenshot-{datetime.now():%Y%m%d-%H%M%S}", "svg",
                self.kept)
            write_output(path, svg, kept=self.kept)
            return path

        self._save("screenshot", write)

    def tell(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
             timeout: float = NOTE_SECONDS) -> None:
        """Show one notification, replacing the one before, so that notes never stack up
        over the answers."""
        self.clear_notifications()
        self.notify(safe(message), title=title, severity=severity, markup=False,
                    timeout=timeout)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette's commands, with the chat's own."""
        yield from super().get_system_commands(screen)
        for mode in MODES:
            yield SystemCommand(f"Mode: {mode}", f"Search the next questions in {mode} mode",
                                lambda mode=mode: setattr(self, "mode", mode))
        yield SystemCommand("More passages", "Show one passage more (F5)",
                            lambda: self.action_change_k(1))
        yield SystemCommand("Fewer passages", "Show one passage fewer (F4)",
                            lambda: self.action_change_k(-1))
        yield SystemCommand("Save transcript as Markdown", "Quoted passages with citations",
                            lambda: self.save_transcript("markdown"))
        yield SystemCommand("Save transcript as JSON", "Every answer as ask --json prints it",
                            lambda: self.save_transcript("json"))
        yield SystemCommand("Save SVG screenshot", "Save the screen as an SVG file (F2)",
                            self.action_save_screenshot)
        yield SystemCommand("Clear transcript", "Remove every answer (ctrl+l)", self.action_clear)
        yield SystemCommand("Help", "Show every key (F1)", self.action_help)


def run_chat(settings: Settings, export_dir: Path | None = None) -> int:
    """Run the chat in the terminal until the user quits; returns the exit code."""
    app = ChatApp(settings, export_dir=export_dir)
    app.run()
    if app.open_problem:
        print(f"myoqa: error: {app.open_problem}", file=sys.stderr)
    if not app.index_settled.is_set():
        print("myoqa: finishing the index build before exiting…", file=sys.stderr)
    if app.return_code:
        return app.return_code
    return ExitCode.FAILURE if app.open_problem else ExitCode.OK
