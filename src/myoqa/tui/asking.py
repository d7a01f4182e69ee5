"""The chat's background work: opening the index, loading the query encoders, answering.

The index is opened and the query encoders loaded in worker threads, so the input works at once.
A question asked before the index is open waits on its card; one asked before the encoders are
ready (the dense one, and the late-interaction one, which starts loading as the index opens) is
answered with BM25 alone, labelled so, and refined in the requested mode when they are. Before
every search the sources are checked against the index; when they changed, the index is rebuilt
in the search's worker (the status line says so) and the question answered from it. An answer
older than the one a card shows (a re-ask overtook it) is dropped.

Workers hand their results back with `call_from_thread`; everything that touches widgets runs
on the app's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from myoqa.errors import MyoqaError, printable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from myoqa.config import Settings
    from myoqa.search import Answer, Searcher
    from myoqa.tui.app import ChatApp
    from myoqa.tui.index_link import SearcherFactory
    from myoqa.tui.widgets import AnswerCard

LOADING = "BM25 only (model loading)"
UNAVAILABLE = "BM25 only (model unavailable)"


def describe(exc: BaseException) -> str:
    """A one-line message for a failure in a worker."""
    if isinstance(exc, MyoqaError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {printable(str(exc))}"


class Asking:
    """The searcher the chat answers from and the workers that open, refresh and query it.

    `open_problem` is why the index could not be opened ('' when it was), `dense_problem` why
    the dense encoder could not be loaded; `index_settled` is clear while a build runs.
    """

    def __init__(self, app: ChatApp, settings: Settings, factory: SearcherFactory) -> None:
        self.app = app
        self.settings = settings
        self.factory = factory
        self.searcher: Searcher | None = None
        self.dense_ready = False
        self.dense_problem = ""
        self.open_problem = ""
        self.index_settled = threading.Event()
        self._search_lock = threading.Lock()

    # Workers (threads).

    def open_index(self) -> None:
        """Start opening (or building) the index; the searcher is handed to the app."""
        self.app.run_worker(self._open_index, name="open_index", group="open", thread=True,
                            exclusive=True, exit_on_error=False)

    def _open_index(self) -> None:
        try:
            searcher = self.factory(None, self._notify_from_thread, self._progress_from_thread)
        except Exception as exc:  # noqa: BLE001 - any failure is shown, never a crash
            self.app.call_from_thread(self._index_failed, describe(exc))
        else:
            self.app.call_from_thread(self._index_opened, searcher)
        finally:
            self.index_settled.set()

    def _load_encoder(self, searcher: Searcher) -> None:
        """Load the query encoder for hybrid and dense search."""
        try:
            searcher.load_encoder()
        except Exception as exc:  # noqa: BLE001 - BM25 still works without it
            self.app.call_from_thread(self._encoder_failed, describe(exc))
        else:
            self.app.call_from_thread(self._encoder_loaded, searcher)

    def _search(self, card: AnswerCard, request: int, mode: str, fallback: str) -> None:
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
            self.app.call_from_thread(self._search_failed, card, request, describe(exc))
        else:
            self.app.call_from_thread(self._answered, card, request, answer, fallback,
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
            self.app.call_from_thread(card.set_tag, "rebuilding the index…")
            self._notify_from_thread(message)

        try:
            fresh = self.factory(old, notify, self._progress_from_thread)
        except Exception as exc:  # re-raised: shown on the card too
            self.app.call_from_thread(self.app.status.idle, f"Cannot check or update the "
                                      f"index: {describe(exc)}", problem=True)
            raise
        finally:
            self.index_settled.set()
        if fresh is not old:
            try:
                fresh.load_encoder()
            except Exception as exc:  # noqa: BLE001 - BM25 still works without it
                self.app.call_from_thread(self._encoder_failed, describe(exc))
            self.searcher = fresh
            why = reasons[0] if reasons else "the index changed on disk"
            self.app.call_from_thread(self._index_refreshed, fresh, why)
        return fresh

    def _notify_from_thread(self, message: str) -> None:
        self.app.call_from_thread(self.app.status.busy, message[:1].upper() + message[1:])

    def _progress_from_thread(self, label: str, total: int) -> Callable[[int], None]:
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            self.app.call_from_thread(self.app.status.busy,
                                      f"Building the index: {label} {done}/{total}")

        return tick

    # Back on the app's thread.

    async def dispatch(self, card: AnswerCard) -> None:
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
        self.app.run_worker(partial(self._search, card, card.requested, mode, fallback),
                            name="run_search", group="search", thread=True,
                            exit_on_error=False)

    async def _index_opened(self, searcher: Searcher) -> None:
        self.searcher = searcher
        if searcher.dense_ready:
            self._encoder_loaded(searcher)
        else:
            self.app.status.busy("Loading the language model… questions are answered with "
                                 "BM25 meanwhile")
            self.app.run_worker(partial(self._load_encoder, searcher), name="load_encoder",
                                group="encoder", thread=True, exclusive=True,
                                exit_on_error=False)
        for card in self.app.cards:
            if card.turn.answer is None:
                await self.dispatch(card)

    async def _index_failed(self, message: str) -> None:
        self.open_problem = message
        self.app.status.idle(f"Cannot open the index: {message}", problem=True)
        self.app.tell(message, title="Cannot open the index", severity="error", long=True)
        for card in self.app.cards:
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
        self.app.status.idle(f"{why[:1].upper()}{why[1:]}; index rebuilt: "
                             f"{self._ready_message()}", problem=bool(self.dense_problem))

    def _encoder_loaded(self, searcher: Searcher) -> None:
        if searcher is not self.searcher:
            return
        self.dense_ready = True
        self.app.status.idle(f"Ready: {self._ready_message()}")
        for card in self.app.cards:
            if card.needs_refine:
                self.app.call_later(self.dispatch, card)

    def _encoder_failed(self, message: str) -> None:
        self.dense_problem = message
        self.app.status.idle(f"Dense search unavailable, answering with BM25: {message}",
                             problem=True)
        self.app.tell(message, title="Language model unavailable", severity="warning",
                      long=True)
        for card in self.app.cards:
            if card.needs_refine:
                card.needs_refine = False
                card.turn.fallback = UNAVAILABLE
                card.set_tag(UNAVAILABLE, fallback=True)

    async def _answered(self, card: AnswerCard, request: int, answer: Answer,
                        fallback: str, texts: Mapping[str, str]) -> None:
        if not card.is_attached or request < card.shown:
            return
        card.texts = texts
        if fallback == LOADING and self.dense_ready:
            self.app.call_later(self.dispatch, card)
        first = card.turn.answer is None
        card.shown = request
        card.turn.answer, card.turn.fallback = answer, fallback
        await self.app.show_answer(card, first)

    async def _search_failed(self, card: AnswerCard, request: int, message: str) -> None:
        if card.is_attached and request >= card.shown:
            card.shown = request
            await card.show_error(message)
