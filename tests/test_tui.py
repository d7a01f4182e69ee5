"""The chat, driven through Textual's pilot on a real index of the seeds."""

from __future__ import annotations

import html
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import LoadingIndicator

from conftest import run_cli
from myoqa.config import Settings
from myoqa.engine import open_searcher, query_encoder_factory
from myoqa.errors import MyoqaError
from myoqa.search import Searcher
from myoqa.tui.app import LOADING, ChatApp
from myoqa.tui.history import History
from myoqa.tui.screens import HelpScreen, SourceScreen
from myoqa.tui.transcript import Turn, to_markdown
from myoqa.tui.widgets import AnswerCard, ChatInput, PassageBody, StatusBar, Transcript

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FLUTTER = "what is diaphragmatic flutter?"
FLUTTER_SOURCE = "000_0ea712277db854cc.txt"
JME = "which drug is most effective in juvenile myoclonic epilepsy"
JME_SOURCE = "001_f6f440b41de63d6e.txt"
ZORBLAX = "what is zorblax syndrome?"
ZORBLAX_FACT = "Zorblax syndrome is a rare myoclonus of the left ear, seen only in lighthouse keepers."
MARKUP_SOURCE = (
    "Myoclonus notes for markup testing. The literal text [bold]not bold[/] "
    "[link=http://x]y[/link] must show as typed, and an escape \x1b[31m must never reach the "
    "terminal raw. Myoclonus is a brief involuntary twitching of a muscle or a group of muscles.\n"
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def make_app(searcher: Searcher, save_dir: Path | None = None) -> ChatApp:
    return ChatApp(factory=lambda _current, _notify, _progress: searcher, save_dir=save_dir,
                   cursor_blink=False)


async def settle(pilot: Pilot) -> None:
    """Let every worker finish and the screen catch up."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def until(pilot: Pilot, condition: Callable[[], bool], seconds: float = 20) -> None:
    """Pause until `condition` holds (for workers that are held back on purpose)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


async def ask(pilot: Pilot, question: str) -> AnswerCard:
    """Put `question` in the question box, press Enter and wait for its card to be answered
    (typing it key by key works too, see test_bm25_stand_in_until_the_model_is_ready, but is
    slow)."""
    app = pilot.app
    assert isinstance(app, ChatApp)
    app.query_one(ChatInput).value = question
    await pilot.press("enter")
    await settle(pilot)
    return app.cards[-1]


def screen_text(app: ChatApp) -> str:
    """The characters on the screen, from an SVG export."""
    svg = app.export_screenshot()
    return html.unescape("".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))).replace(
        "\xa0", " ")


@pytest.mark.parametrize(("question", "source"), [(FLUTTER, FLUTTER_SOURCE), (JME, JME_SOURCE)])
async def test_asking_adds_an_answer_card(searcher: Searcher, question: str, source: str) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        card = await ask(pilot, question)
        assert card.turn.question == question
        answer = card.turn.answer
        assert answer is not None and answer.mode == "hybrid" and not answer.abstained
        assert answer.results[0].source == source
        assert [p.result.rank for p in card.passages] == [1, 2, 3, 4, 5]
        assert app.query_one(ChatInput).value == ""
        assert question[:40] in screen_text(app)


async def test_unanswerable_question_shows_weak_matches(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        card = await ask(pilot, "what is the capital of France?")
        assert card.turn.answer is not None and card.turn.answer.abstained
        assert card.passages and all(p.has_class("weak") for p in card.passages)
        assert "The sources do not seem to answer this question" in screen_text(app)


async def test_history_walks_up_and_down(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await ask(pilot, "first question")
        await ask(pilot, "second question")
        box = app.query_one(ChatInput)
        await pilot.press(*"draft")
        await pilot.press("up")
        assert box.value == "second question"
        await pilot.press("up")
        assert box.value == "first question"
        await pilot.press("up")
        assert box.value == "first question"
        await pilot.press("down")
        assert box.value == "second question"
        await pilot.press("down")
        assert box.value == "draft"


def test_history_keeps_one_copy_of_a_repeat() -> None:
    history = History()
    history.add("a")
    history.add("a")
    history.add("b")
    assert history.entries == ["a", "b"]
    assert history.next() is None
    assert history.previous("") == "b"


async def test_source_viewer_opens_at_the_passage(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        card = await ask(pilot, FLUTTER)
        await pilot.press("tab")
        assert app.focused is card.passages[0]
        result = card.passages[0].result
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SourceScreen)
        assert screen.result == result
        text = searcher.index.texts[result.source]
        assert screen.before == text[:result.start] and screen.after == text[result.end:]
        passage = screen.query_one("#source-passage", PassageBody)
        assert passage.result.text == text[result.start:result.end]
        scroll = screen.query_one("#source-scroll")
        assert scroll.scroll_y > 0
        assert scroll.region.y <= passage.region.y < scroll.region.bottom
        assert result.text[:30] in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, SourceScreen)
        assert app.focused is card.passages[0]


async def test_passages_are_selected_by_keys_and_clicks(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        card = await ask(pilot, FLUTTER)
        await pilot.press("tab", "j")
        assert app.focused is card.passages[1]
        await pilot.press("down")
        assert app.focused is card.passages[2]
        await pilot.press("k", "up")
        assert app.focused is card.passages[0]
        await pilot.press("escape")
        assert isinstance(app.focused, ChatInput)
        await pilot.click(card.passages[1])
        assert app.focused is card.passages[1]
        await pilot.press("c")
        result = card.passages[1].result
        assert f"chars {result.start}–{result.end}" in app.clipboard
        assert result.text[:40] in app.clipboard


async def test_mode_switching_changes_the_answers_mode(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        first = await ask(pilot, FLUTTER)
        await pilot.press("tab", "m")
        assert app.mode == "bm25" and "bm25" in app.sub_title
        await pilot.press("r")
        await settle(pilot)
        assert first.turn.answer is not None and first.turn.answer.mode == "bm25"
        await pilot.press("escape", "f3")
        assert app.mode == "dense"
        card = await ask(pilot, JME)
        assert card.turn.answer is not None and card.turn.answer.mode == "dense"
        assert "dense · top 5" in screen_text(app)


async def test_k_changes_the_number_of_passages(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f4", "f4")
        card = await ask(pilot, FLUTTER)
        assert len(card.passages) == 3
        await pilot.press("tab", "plus", "plus", "plus")
        assert app.k == 6 and "top 6" in app.sub_title
        for _ in range(20):
            await pilot.press("f5")
        assert app.k == 20


async def test_help_screen_opens_and_closes(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert "myoqa chat — keys" in screen_text(app)
        described = {description for _, rows in app.screen.groups for _, description in rows}
        assert {"Copy the passage with its citation to the clipboard",
                "Save the transcript as Markdown with citations",
                "Open the passage in its source, highlighted in context"} <= described
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await ask(pilot, FLUTTER)
        await pilot.press("tab", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen)


async def test_question_mark_types_into_the_question_box(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press(*"why?")
        assert app.query_one(ChatInput).value == "why?"
        assert not isinstance(app.screen, HelpScreen)


async def test_followup_card_shows_what_was_searched(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        first = await ask(pilot, FLUTTER)
        assert not first.query(".searched")
        card = await ask(pilot, "what about its treatment?")
        assert card.turn.searched == "what about its treatment? diaphragmatic flutter"
        assert card.turn.answer is not None
        assert card.turn.answer.searched == card.turn.searched
        assert "searched: what about its treatment? diaphragmatic flutter" in screen_text(app)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert app.cards == []
        fresh = await ask(pilot, "what about its treatment?")
        assert fresh.turn.searched == "what about its treatment?"


async def test_bm25_stand_in_until_the_model_is_ready(searcher: Searcher) -> None:
    ready = threading.Event()
    load = query_encoder_factory(searcher.index)

    def held_back() -> object:
        ready.wait(30)
        return load()

    cold = Searcher(searcher.index, held_back)
    app = make_app(cold)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.searcher is not None)
            assert "BM25" in app.query_one(StatusBar).message
            await pilot.press(*FLUTTER, "enter")
            await until(pilot, lambda: bool(app.cards and app.cards[-1].turn.answer))
            card = app.cards[-1]
            assert card.turn.answer.mode == "bm25" and card.turn.fallback == LOADING
            await until(pilot, lambda: LOADING in screen_text(app))
            ready.set()
            await settle(pilot)
            assert card.turn.answer.mode == "hybrid" and card.turn.fallback == ""
            assert card.turn.answer.results[0].source == FLUTTER_SOURCE
            assert LOADING not in screen_text(app)
    finally:
        ready.set()


async def test_question_waits_for_the_index(searcher: Searcher) -> None:
    opened = threading.Event()

    def slow_factory(_current: object, _notify: Callable[[str], None], _progress: object
                     ) -> Searcher:
        opened.wait(30)
        return searcher

    app = ChatApp(factory=slow_factory, cursor_blink=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            app.query_one(ChatInput).value = JME
            await pilot.press("enter")
            card = app.cards[-1]
            assert card.turn.answer is None
            assert card.query(LoadingIndicator)
            assert "waiting for the index" in screen_text(app)
            opened.set()
            await settle(pilot)
            assert card.turn.answer is not None
            assert card.turn.answer.results[0].source == JME_SOURCE
            assert not card.query(LoadingIndicator)
    finally:
        opened.set()


async def test_index_problem_is_shown_not_raised() -> None:
    def broken(_current: object, _notify: Callable[[str], None], _progress: object) -> Searcher:
        raise MyoqaError("sources directory /nowhere does not exist", "pass --sources DIR")

    app = ChatApp(factory=broken, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "/nowhere does not exist" in app.query_one(StatusBar).message
        card = await ask(pilot, FLUTTER)
        assert card.turn.answer is None
        assert "/nowhere does not exist" in screen_text(app)


async def test_markup_and_escapes_in_sources_show_literally(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "markup.txt").write_text(MARKUP_SOURCE, encoding="utf-8")
    own = open_searcher(Settings.resolve(sources=sources, index_dir=tmp_path / "index"),
                        notify=lambda _message: None)
    app = make_app(own)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        card = await ask(pilot, "[b]not bold[/b] link escape")
        assert card.turn.answer is not None and card.turn.answer.results
        shown = screen_text(app)
        for literal in ("[bold]not", "bold[/]", "[link=http://x]y[/link]", "[b]not",
                        "bold[/b]", "\u241b[31m"):
            assert literal in shown
        assert "\x1b" not in shown
        body = card.passages[0].query_one(PassageBody)
        assert "\x1b" not in body.render().plain
        await pilot.press("tab", "enter")
        await pilot.pause()
        assert isinstance(app.screen, SourceScreen)
        assert "[link=http://x]y[/link]" in screen_text(app)
        assert "\x1b" not in screen_text(app)


async def test_transcript_is_saved_as_markdown(searcher: Searcher, tmp_path: Path) -> None:
    app = make_app(searcher, save_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+s")
        assert list(tmp_path.iterdir()) == []
        card = await ask(pilot, FLUTTER)
        await ask(pilot, "what about its treatment?")
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = list(tmp_path.glob("myoqa-transcript-*.md"))
    assert len(saved) == 1 and re.fullmatch(r"myoqa-transcript-\d{8}-\d{6}\.md", saved[0].name)
    text = saved[0].read_text(encoding="utf-8")
    assert f"## 1. {FLUTTER}" in text
    assert "## 2. what about its treatment?" in text
    assert "Searched: what about its treatment? diaphragmatic flutter" in text
    answer = card.turn.answer
    assert answer is not None
    for r in answer.results:
        assert f"{r.rank}. `{r.source}`, chars {r.start}–{r.end}, line {r.line}" in text
    evidence = next(h for h in answer.results[0].highlights if h.kind == "evidence")
    assert f"**{answer.results[0].text[evidence.start:evidence.end].strip()}**" in text


def test_markdown_escapes_source_text(searcher: Searcher) -> None:
    answer = searcher.search(FLUTTER, "bm25", 1)
    result = answer.results[0]
    odd = type(result)(rank=1, source="x.txt", start=0, end=37, line=1, score=1.0,
                       text="[bold]*a*_b_ <i>#x</i>\x1b\n- item\n1. one", highlights=[])
    odd_answer = type(answer)(question="q [x]", mode="bm25", k=1, abstained=False,
                              results=[odd], searched="q [x]", best_similarity=None)
    markdown = to_markdown([Turn("q [x]", "q [x]", "bm25", 1, odd_answer)])
    assert r"> \[bold\]\*a\*\_b\_ \<i\>\#x\</i\>␛" in markdown
    assert "   > \\- item\n   > 1\\. one\n" in markdown
    assert r"## 1. q \[x\]" in markdown
    assert "\x1b" not in markdown


async def test_passages_reflow_when_resized(searcher: Searcher) -> None:
    app = make_app(searcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        card = await ask(pilot, FLUTTER)
        body = card.passages[0].query_one(PassageBody)
        narrow = body.size
        assert narrow.width < 80
        await pilot.resize_terminal(140, 40)
        await pilot.pause()
        wide = body.size
        assert wide.width > narrow.width and wide.height < narrow.height


def answered(question: str | None) -> Callable[[Pilot], Awaitable[None]]:
    """What to do before a snapshot: wait for the index, then ask `question` and select its
    first passage."""
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        if question:
            await ask(pilot, question)
            await pilot.press("tab")
            await settle(pilot)

    return run_before


def test_snapshot_welcome(searcher: Searcher, snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(make_app(searcher), terminal_size=(80, 24), run_before=answered(None))


def test_snapshot_answer(searcher: Searcher, snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(make_app(searcher), terminal_size=(80, 24), run_before=answered(FLUTTER))


async def test_changed_source_is_indexed_before_the_next_question(source_copy: Path,
                                                                   tmp_path: Path) -> None:
    settings = Settings.resolve(sources=source_copy, index_dir=tmp_path / "index")
    app = ChatApp(settings, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        before = await ask(pilot, ZORBLAX)
        assert before.turn.answer is not None
        assert all("Zorblax" not in r.text for r in before.turn.answer.results)
        old_texts = before.texts
        with (source_copy / JME_SOURCE).open("a", encoding="utf-8") as source:
            source.write(f"\n{ZORBLAX_FACT}\n")
        after = await ask(pilot, ZORBLAX)
        answer = after.turn.answer
        assert answer is not None and answer.mode == "hybrid" and after.turn.fallback == ""
        assert ZORBLAX_FACT in answer.results[0].text
        message = app.query_one(StatusBar).message
        assert f"Index rebuilt (sources changed ({JME_SOURCE}))" in message
        assert ZORBLAX_FACT in app.searcher.index.texts[JME_SOURCE]
        assert ZORBLAX_FACT not in old_texts[JME_SOURCE]
        await pilot.press("tab")
        app.query_one(Transcript).scroll_home(animate=False)
        before.passages[0].focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SourceScreen)
        assert app.screen.after == old_texts[before.passages[0].result.source][
            before.passages[0].result.end:]


def test_chat_without_a_terminal_refuses_at_once(tmp_path: Path) -> None:
    place = ("--sources", str(tmp_path / "sources"), "--index-dir", str(tmp_path / "index"))
    proc = run_cli("chat", *place, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("myoqa: error: the chat needs a terminal: its input, output and error "
                           "output are not terminals (run it in a terminal; in scripts and pipes "
                           "use `myoqa ask QUESTION`)\n")
    primary, secondary = pty.openpty()
    try:
        logged = subprocess.run([sys.executable, "-m", "myoqa", "chat", *place], stdin=secondary,
                                stdout=secondary, stderr=subprocess.PIPE, text=True, timeout=60,
                                check=False)
    finally:
        os.close(primary)
        os.close(secondary)
    assert logged.returncode == 1
    assert logged.stderr.startswith("myoqa: error: the chat needs a terminal: its error output "
                                    "is not a terminal")
    assert not (tmp_path / "index").exists()
