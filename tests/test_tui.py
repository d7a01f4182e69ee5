"""The chat, driven through Textual's pilot on a real index of the seeds."""

from __future__ import annotations

import html
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import LoadingIndicator, Static

from helpers import run_cli
from myoqa import __version__
from myoqa.config import Settings
from myoqa.engine import open_searcher, query_encoder_factory
from myoqa.errors import MyoqaError
from myoqa.search import Searcher
from myoqa.search.late import LateSignal
from myoqa.tui.app import ChatApp
from myoqa.tui.asking import LOADING
from myoqa.tui.clipboard import terminal_accepts_osc52
from myoqa.tui.history import HISTORY_FILE, HISTORY_LIMIT, History, load_history, remember
from myoqa.tui.screens import ExportScreen, HelpScreen, SourceScreen, SourceSegment
from myoqa.tui.transcript import ExportHeader, Turn, clipboard_text, to_markdown
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


@pytest.fixture(autouse=True)
def own_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's history and exports in its own folder, never the user's."""
    monkeypatch.setenv("MYOQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MYOQA_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.delenv("MYOQA_CLIPBOARD", raising=False)
    return tmp_path


def make_app(searcher: Searcher, export_dir: Path | None = None) -> ChatApp:
    return ChatApp(factory=lambda _current, _notify, _progress: searcher, export_dir=export_dir,
                   cursor_blink=False)


# `async with chat(...) as (app, pilot):` runs a chat, its index open (see the `chat` fixture).
Chat = Callable[..., AbstractAsyncContextManager[tuple[ChatApp, Pilot[None]]]]


@pytest.fixture()
def chat(request: pytest.FixtureRequest) -> Chat:
    """The set-up the chat tests share: run `app` (by default a chat over the session's seed
    searcher, or `over` another searcher, saving into `export_dir`) in a terminal of `size`,
    wait until its index is open and its workers are done, and give the app and its pilot."""
    @asynccontextmanager
    async def open_chat(app: ChatApp | None = None, *, over: Searcher | None = None,
                        export_dir: Path | None = None, size: tuple[int, int] = (80, 24),
                        notifications: bool = False
                        ) -> AsyncIterator[tuple[ChatApp, Pilot[None]]]:
        if app is None:
            app = make_app(over or request.getfixturevalue("searcher"), export_dir)
        async with app.run_test(size=size, notifications=notifications) as pilot:
            await settle(pilot)
            yield app, pilot

    return open_chat


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


def shown_notes(app: ChatApp) -> list[str]:
    """The text of each notification on the screen."""
    return [" ".join(str(toast.render()).split()) for toast in app.screen.query("Toast")]


@pytest.mark.parametrize(("question", "source"), [(FLUTTER, FLUTTER_SOURCE), (JME, JME_SOURCE)])
async def test_asking_adds_an_answer_card(chat: Chat, question: str, source: str) -> None:
    async with chat() as (app, pilot):
        card = await ask(pilot, question)
        assert card.turn.question == question
        answer = card.turn.answer
        assert answer is not None and answer.mode == "hybrid" and not answer.abstained
        assert answer.results[0].source == source
        assert [p.result.rank for p in card.passages] == [1, 2, 3, 4, 5]
        assert app.query_one(ChatInput).value == ""
        assert question[:40] in screen_text(app)


async def test_unanswerable_question_shows_weak_matches(chat: Chat) -> None:
    async with chat() as (app, pilot):
        card = await ask(pilot, "what is the capital of France?")
        assert card.turn.answer is not None and card.turn.answer.abstained
        assert card.passages and all(p.has_class("weak") for p in card.passages)
        assert "The sources do not seem to answer this question" in screen_text(app)


async def test_history_walks_up_and_down(chat: Chat) -> None:
    async with chat() as (app, pilot):
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


async def test_source_viewer_opens_at_the_passage(chat: Chat, searcher: Searcher) -> None:
    async with chat() as (app, pilot):
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
        passage = screen.query_one("#source-passage", SourceSegment)
        assert passage.result.text == text[result.start:result.end]
        scroll = screen.query_one("#source-scroll")
        assert scroll.scroll_y > 0
        assert scroll.region.y <= passage.region.y < scroll.region.bottom
        assert result.text[:30] in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, SourceScreen)
        assert app.focused is card.passages[0]


async def test_passages_are_selected_by_keys_and_clicks(chat: Chat) -> None:
    async with chat(size=(100, 40)) as (app, pilot):
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


async def test_mode_switching_changes_the_answers_mode(chat: Chat) -> None:
    async with chat() as (app, pilot):
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


async def test_k_changes_the_number_of_passages(chat: Chat) -> None:
    async with chat() as (app, pilot):
        await pilot.press("f4", "f4")
        card = await ask(pilot, FLUTTER)
        assert len(card.passages) == 3
        await pilot.press("tab", "plus", "plus", "plus")
        assert app.k == 6 and "top 6" in app.sub_title
        for _ in range(20):
            await pilot.press("f5")
        assert app.k == 20


async def test_help_screen_opens_and_closes(chat: Chat) -> None:
    async with chat() as (app, pilot):
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert "myoqa chat — keys" in screen_text(app)
        described = {description for _, rows in app.screen.groups for _, description in rows}
        assert {"Copy the passage with its citation to the clipboard",
                "Save the transcript as Markdown or JSON (in the export folder)",
                "Search the shown text (Enter searches, n / N next and previous match)",
                "Open the passage in its source, highlighted in context"} <= described
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await ask(pilot, FLUTTER)
        await pilot.press("tab", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen)


async def test_question_mark_types_into_the_question_box(chat: Chat) -> None:
    async with chat() as (app, pilot):
        await pilot.press(*"why?")
        assert app.query_one(ChatInput).value == "why?"
        assert not isinstance(app.screen, HelpScreen)


async def test_followup_card_shows_what_was_searched(chat: Chat) -> None:
    async with chat(size=(100, 30)) as (app, pilot):
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


async def test_bm25_stand_in_until_the_late_interaction_model_is_ready(
        searcher: Searcher) -> None:
    ready = threading.Event()
    full = searcher.late
    assert full is not None

    def held_back() -> object:
        ready.wait(30)
        return full.encoder

    cold = Searcher(searcher.index, query_encoder_factory(searcher.index),
                    late=LateSignal(full.tokens, held_back))
    app = make_app(cold)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.searcher is not None)
            await pilot.press(*FLUTTER, "enter")
            await until(pilot, lambda: bool(app.cards and app.cards[-1].turn.answer))
            card = app.cards[-1]
            assert card.turn.answer.mode == "bm25" and card.turn.fallback == LOADING
            ready.set()
            await settle(pilot)
            assert card.turn.answer.mode == "hybrid" and card.turn.fallback == ""
            assert card.turn.answer.to_json() == searcher.search(
                card.turn.searched, "hybrid", card.turn.k).to_json()
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


async def test_index_problem_is_shown_not_raised(chat: Chat) -> None:
    def broken(_current: object, _notify: Callable[[str], None], _progress: object) -> Searcher:
        raise MyoqaError("sources directory /nowhere does not exist", "pass --sources DIR")

    async with chat(ChatApp(factory=broken, cursor_blink=False)) as (app, pilot):
        assert "/nowhere does not exist" in app.query_one(StatusBar).message
        card = await ask(pilot, FLUTTER)
        assert card.turn.answer is None
        assert "/nowhere does not exist" in screen_text(app)


async def test_markup_and_escapes_in_sources_show_literally(chat: Chat, tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "markup.txt").write_text(MARKUP_SOURCE, encoding="utf-8")
    own = open_searcher(Settings.resolve(sources=sources, index_dir=tmp_path / "index"),
                        notify=lambda _message: None)
    async with chat(over=own, size=(120, 30)) as (app, pilot):
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


async def test_transcript_is_saved_as_markdown_with_a_header(chat: Chat, searcher: Searcher,
                                                             tmp_path: Path) -> None:
    exports = tmp_path / "chosen"
    async with chat(export_dir=exports) as (app, pilot):
        await pilot.press("ctrl+s")
        assert not isinstance(app.screen, ExportScreen) and not exports.exists()
        card = await ask(pilot, FLUTTER)
        await ask(pilot, "what about its treatment?")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ExportScreen)
        assert app.screen.folder == exports
        assert "Save the transcript (2 answers)" in screen_text(app)
        await pilot.press("m")
        await pilot.pause()
        assert not isinstance(app.screen, ExportScreen)
    saved = list(exports.iterdir())
    assert len(saved) == 1 and re.fullmatch(r"myoqa-transcript-\d{8}-\d{6}\.md", saved[0].name)
    text = saved[0].read_text(encoding="utf-8")
    header = text.split("\n\n")[1]
    assert re.fullmatch(r"- exported: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\n"
                        r"- myoqa: \d+\.\d+\.\d+\n- index: `.+` \(built .+\)\n"
                        r"- sources: `.+`\n- mode: hybrid, top 5 .*", header)
    assert f"`{searcher.index.path}` (built {searcher.index.manifest.built_at})" in header
    assert f"## 1. {FLUTTER}" in text
    assert "## 2. what about its treatment?" in text
    assert "Searched: what about its treatment? diaphragmatic flutter" in text
    answer = card.turn.answer
    assert answer is not None
    for r in answer.results:
        assert f"{r.rank}. `{r.source}:{r.line}:{r.column}`, chars {r.start}–{r.end} " in text
    evidence = next(h for h in answer.results[0].highlights if h.kind == "evidence")
    assert f"**{answer.results[0].text[evidence.start:evidence.end].strip()}**" in text


async def test_transcript_is_saved_as_json_in_the_export_folder(chat: Chat, searcher: Searcher,
                                                                own_places: Path) -> None:
    async with chat() as (_, pilot):
        await pilot.press("f3")
        card = await ask(pilot, FLUTTER)
        await pilot.press("ctrl+s", "escape")
        assert not (own_places / "exports").exists()
        await pilot.press("ctrl+s", "j")
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
    saved = sorted(p.name for p in (own_places / "exports").iterdir())
    assert [name.rsplit(".", 1)[1] for name in saved] == ["svg", "json"]
    data = json.loads((own_places / "exports" / saved[1]).read_text(encoding="utf-8"))
    assert data["myoqa_version"] == __version__ and data["mode"] == "bm25" and data["k"] == 5
    assert data["index"] == str(searcher.index.path)
    assert data["index_built_at"] == searcher.index.manifest.built_at
    assert card.turn.answer is not None
    assert data["turns"] == [{"question": FLUTTER, "searched": FLUTTER, "mode": "bm25", "k": 5,
                              "fallback": None, "answer": card.turn.answer.to_json()}]
    assert "<svg" in (own_places / "exports" / saved[0]).read_text(encoding="utf-8")
    assert not list(Path.cwd().glob("myoqa-*"))


async def test_saving_into_a_file_says_why_it_cannot(chat: Chat, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("kept\n", encoding="utf-8")
    async with chat(export_dir=blocked, size=(100, 24), notifications=True) as (app, pilot):
        await ask(pilot, FLUTTER)
        await pilot.press("ctrl+s", "m")
        await pilot.pause()
        assert shown_notes(app) == [f"Cannot save the transcript: File exists ({blocked})"]
    assert blocked.read_text(encoding="utf-8") == "kept\n"


def test_markdown_escapes_source_text(searcher: Searcher) -> None:
    answer = searcher.search(FLUTTER, "bm25", 1)
    result = answer.results[0]
    odd = type(result)(rank=1, source="x.txt", start=0, end=37, line=1, column=1, page=None,
                       score=1.0,
                       text="[bold]*a*_b_ <i>#x</i>\x1b\n- item\n1. one", highlights=[])
    odd_answer = type(answer)(question="q [x]", mode="bm25", k=1, abstained=False,
                              results=[odd], searched="q [x]", best_similarity=None)
    header = ExportHeader(datetime.now().astimezone(), "0.1.0", "i", "b", "s", "bm25", 1)
    markdown = to_markdown([Turn("q [x]", "q [x]", "bm25", 1, odd_answer)], header)
    assert r"> \[bold\]\*a\*\_b\_ \<i\>\#x\</i\>␛" in markdown
    assert "   > \\- item\n   > 1\\. one\n" in markdown
    assert r"## 1. q \[x\]" in markdown
    assert "\x1b" not in markdown


async def test_passages_reflow_when_resized(chat: Chat) -> None:
    async with chat() as (_, pilot):
        card = await ask(pilot, FLUTTER)
        body = card.passages[0].query_one(PassageBody)
        narrow = body.size
        assert narrow.width < 80
        await pilot.resize_terminal(140, 40)
        await pilot.pause()
        wide = body.size
        assert wide.width > narrow.width and wide.height < narrow.height


async def test_notes_replace_each_other(chat: Chat) -> None:
    async with chat(notifications=True) as (app, pilot):
        await pilot.press("f3", "f4", "f4", "f4")
        await pilot.pause()
        assert shown_notes(app) == ["Top 2 passages for the next questions"]


@pytest.mark.parametrize("width", [60, 80])
async def test_footer_keeps_help_and_quit_in_view(chat: Chat, width: int) -> None:
    async with chat(size=(width, 20)) as (app, pilot):
        await ask(pilot, FLUTTER)
        await pilot.press("tab")
        await pilot.pause()
        footer = screen_text(app).rsplit("\n", 1)[1]
        assert "F1 Help" in footer and "^c Quit" in footer and "^p" not in footer
        await pilot.resize_terminal(120, 20)
        await pilot.pause(0.2)
        footer = screen_text(app).rsplit("\n", 1)[1]
        assert "^p Commands" in footer and "F1 Help" in footer and "esc Type" in footer
        await pilot.resize_terminal(width, 20)
        await pilot.pause(0.2)
        footer = screen_text(app).rsplit("\n", 1)[1]
        assert "^p" not in footer and "^c Quit" in footer


@pytest.mark.parametrize("key", ["ctrl+c", "ctrl+q"])
async def test_ctrl_c_and_ctrl_q_quit(chat: Chat, key: str) -> None:
    async with chat() as (app, pilot):
        await pilot.press(*"draft", key)
        await pilot.pause()
        assert app.return_code == 0 and not app.is_running


def fake_wayland_clipboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wl-copy and wl-paste programs that keep the clipboard in a file, on a PATH of their own
    (so the real pyperclip route is taken, and no real clipboard is touched)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    kept = tmp_path / "clipboard.txt"
    cat = shutil.which("cat", path=os.defpath)
    for name, body in (("wl-copy", f'{cat} > "{kept}"'), ("wl-paste", f'{cat} "{kept}"')):
        (tools / name).write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-test")
    return kept


@pytest.mark.parametrize("route", ["none", "system", "osc52"])
async def test_copy_says_whether_it_copied(chat: Chat, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TMUX", "TERM_PROGRAM", "WT_SESSION",
                 "KITTY_WINDOW_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("TERM", "xterm-256color")
    kept = fake_wayland_clipboard(tmp_path, monkeypatch) if route == "system" else None
    if route == "osc52":
        monkeypatch.setenv("MYOQA_CLIPBOARD", "osc52")
    async with chat(size=(100, 30), notifications=True) as (app, pilot):
        card = await ask(pilot, FLUTTER)
        await pilot.click(card.passages[1])
        await pilot.press("c")
        await settle(pilot)
        result = card.passages[1].result
        [shown] = shown_notes(app)
        if route == "none":
            assert shown.startswith("Could not copy: no clipboard tool found (install xclip")
            assert app.clipboard == ""
        elif route == "system":
            assert shown.startswith("Copied to the clipboard: passage 2, ")
            assert kept is not None and kept.read_text(encoding="utf-8") == clipboard_text(result)
        else:
            assert shown.startswith("Copied through the terminal (OSC 52): passage 2, ")
            assert app.clipboard == clipboard_text(result)
        assert result.text[:40] in clipboard_text(result)


@pytest.mark.parametrize(("env", "accepted"), [
    ({"TERM": "xterm-256color"}, False),
    ({"TERM": "xterm-kitty"}, True),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, True),
    ({"TERM": "xterm-256color", "WT_SESSION": "1"}, True),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, False),
    ({"TERM": "screen-256color", "TERM_PROGRAM": "WezTerm", "STY": "1.pts"}, False),
    ({"TERM": "tmux-256color", "TERM_PROGRAM": "WezTerm", "TMUX": "/nonexistent/sock,1,0"},
     False),
])
def test_osc52_is_claimed_only_for_known_terminals(env: dict[str, str], accepted: bool) -> None:
    assert terminal_accepts_osc52(env) is accepted
    assert terminal_accepts_osc52(env, trust_osc52=True), "MYOQA_CLIPBOARD=osc52 trusts it"


@pytest.mark.parametrize("value", ["osc25", "on"])
def test_an_unknown_clipboard_setting_is_a_usage_error(
        value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from myoqa import cli
    from myoqa.tui import app as tui_app
    from myoqa.tui import terminal

    opened: list[Path | None] = []
    monkeypatch.setattr(terminal, "require_terminal", lambda: None)
    monkeypatch.setattr(tui_app, "run_chat", lambda _settings, folder: opened.append(folder) or 0)
    monkeypatch.setenv("MYOQA_CLIPBOARD", value)
    code = cli.main(["chat", "--sources", str(tmp_path), "--index-dir", str(tmp_path / "index")])
    assert code == 2 and opened == []
    assert capsys.readouterr().err == (
        f"myoqa: error: $MYOQA_CLIPBOARD is {value!r}, not auto or osc52 (set "
        "MYOQA_CLIPBOARD=osc52 if your terminal accepts OSC 52, or unset it)\n")
    monkeypatch.setenv("MYOQA_CLIPBOARD", " OSC52 ")
    assert Settings.resolve(sources=tmp_path).clipboard == "osc52"
    monkeypatch.setenv("MYOQA_CLIPBOARD", "")
    assert Settings.resolve(sources=tmp_path).clipboard == "auto"


async def test_source_viewer_search_and_scroll_keys(chat: Chat) -> None:
    async with chat() as (app, pilot):
        await ask(pilot, JME)
        await pilot.press("tab", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SourceScreen)
        scroll = screen.query_one("#source-scroll")
        assert scroll.max_scroll_y > 10
        scroll.scroll_to(y=5, animate=False)
        await pilot.press("j", "j", "j")
        assert scroll.scroll_y == 8
        await pilot.press("k")
        assert scroll.scroll_y == 7
        shown = screen.before + screen.result.text + screen.after
        expected = [m.start() for m in re.finditer("seizure", shown, re.IGNORECASE)]
        assert len(expected) >= 3
        await pilot.press("slash", *"Seizure", "enter")
        await pilot.pause()
        first = next(i for i, start in enumerate(expected) if start >= len(screen.before))
        assert [s for s, _ in screen.matches] == expected and screen.current == first
        assert f"match {first + 1}/{len(expected)} · n N" in screen_text(app)
        for step, key in ((1, "n"), (1, "n"), (-1, "N")):
            before = screen.current
            await pilot.press(key)
            await pilot.pause()
            assert screen.current == (before + step) % len(expected)
            segment = next(s for s in screen.segments if s.current is not None)
            start, end = segment.current
            assert segment.text[start:end].lower() == "seizure"
            row = scroll.region.y + segment.virtual_region.y + segment.line_of(start) \
                - scroll.scroll_y
            assert scroll.region.y <= row < scroll.region.bottom
            assert "seizure" in screen_text(app).lower()
        await pilot.press("slash", *"zzzqqq", "enter")
        await pilot.pause()
        assert screen.matches == [] and "no match for “zzzqqq”" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, SourceScreen)


async def test_history_is_kept_between_sessions(chat: Chat, own_places: Path) -> None:
    for question in ("first question", "second question"):
        async with chat() as (app, pilot):
            await ask(pilot, question)
    async with chat() as (app, pilot):
        await pilot.press("up")
        assert app.query_one(ChatInput).value == "second question"
        await pilot.press("up")
        assert app.query_one(ChatInput).value == "first question"
    stored = json.loads((own_places / "data" / HISTORY_FILE).read_text(encoding="utf-8"))
    assert stored == {"format": 1, "questions": ["first question", "second question"]}


async def test_unreadable_history_is_noted_and_replaced(chat: Chat, own_places: Path) -> None:
    path = own_places / "data" / HISTORY_FILE
    path.parent.mkdir()
    path.write_bytes(b"\x00{not json")
    async with chat(size=(100, 24), notifications=True) as (app, pilot):
        assert shown_notes(app) == [(f"the question history {path} could not be read "
                                    "(JSONDecodeError); starting a new one")]
        await pilot.press("up")
        assert app.query_one(ChatInput).value == ""
        await ask(pilot, FLUTTER)
    assert load_history(path) == ([FLUTTER], "")


def test_history_file_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "deep" / HISTORY_FILE
    for number in range(HISTORY_LIMIT + 5):
        remember(path, f"q{number}")
    remember(path, f"q{HISTORY_LIMIT + 4}")
    entries, note = load_history(path)
    assert note == "" and len(entries) == HISTORY_LIMIT
    assert entries[0] == "q5" and entries[-1] == f"q{HISTORY_LIMIT + 4}"
    path.write_text('{"format": 1, "questions": [1, 2]}', encoding="utf-8")
    assert load_history(path)[0] == [] and "not in myoqa's format" in load_history(path)[1]


def answered(question: str | None, *keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """What to do before a snapshot: wait for the index, then ask `question`, select its
    first passage and press `keys`."""
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        if question:
            await ask(pilot, question)
            await pilot.press("tab")
            await settle(pilot)
        if keys:
            await pilot.press(*keys)
            await settle(pilot)
            await pilot.pause(0.2)

    return run_before


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((60, 20), id="60x20")]
EXPORT_DIR = Path("/home/user/Documents/myoqa")


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_welcome(searcher: Searcher, snap_compare: Callable[..., bool],
                          size: tuple[int, int]) -> None:
    assert snap_compare(make_app(searcher), terminal_size=size, run_before=answered(None))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_answer(searcher: Searcher, snap_compare: Callable[..., bool],
                         size: tuple[int, int]) -> None:
    assert snap_compare(make_app(searcher), terminal_size=size, run_before=answered(FLUTTER))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_source_search(searcher: Searcher, snap_compare: Callable[..., bool],
                                size: tuple[int, int]) -> None:
    assert snap_compare(make_app(searcher), terminal_size=size,
                        run_before=answered(JME, "enter", "slash", *"seizure", "enter", "n"))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_help(searcher: Searcher, snap_compare: Callable[..., bool],
                       size: tuple[int, int]) -> None:
    assert snap_compare(make_app(searcher), terminal_size=size, run_before=answered(None, "f1"))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_export(searcher: Searcher, snap_compare: Callable[..., bool],
                         size: tuple[int, int]) -> None:
    assert snap_compare(make_app(searcher, export_dir=EXPORT_DIR), terminal_size=size,
                        run_before=answered(FLUTTER, "ctrl+s"))


async def test_changed_source_is_indexed_before_the_next_question(chat: Chat, source_copy: Path,
                                                                   tmp_path: Path) -> None:
    settings = Settings.resolve(sources=source_copy, index_dir=tmp_path / "index")
    async with chat(ChatApp(settings, cursor_blink=False)) as (app, pilot):
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
        assert message.startswith(f"Sources changed ({JME_SOURCE}); index rebuilt: ")
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
        await pilot.press("escape", "escape")
        assert isinstance(app.focused, ChatInput)
        (source_copy / JME_SOURCE).write_bytes(b"Zorblax \xff\xfe broken\n")
        failed = await ask(pilot, ZORBLAX)
        assert failed.turn.answer is None and failed.query(".error")
        assert JME_SOURCE in str(failed.query_one(".error", Static).render())
        assert app.query_one(StatusBar).message.startswith("Cannot check or update the index: ")


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


def _documents_as_sources(own_places: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's documents folder, which is also the sources folder, and no export folder set."""
    import platformdirs

    documents = shutil.copytree(Settings.resolve().sources, own_places / "Documents")
    monkeypatch.delenv("MYOQA_EXPORT_DIR")
    monkeypatch.setattr(platformdirs, "user_documents_path", lambda: documents)
    return documents


def _chat_over(searcher: Searcher, documents: Path, own_places: Path,
               export_dir: Path | None = None) -> ChatApp:
    settings = Settings.resolve(sources=documents, index_dir=own_places / "index")
    return ChatApp(settings, factory=lambda _current, _notify, _progress: searcher,
                   export_dir=export_dir, cursor_blink=False)


async def test_default_exports_leave_documents_that_are_the_sources(
        chat: Chat, searcher: Searcher, own_places: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    documents = _documents_as_sources(own_places, monkeypatch)
    before = sorted(p.name for p in documents.iterdir())
    async with chat(_chat_over(searcher, documents, own_places)) as (_, pilot):
        await ask(pilot, FLUTTER)
        await pilot.press("ctrl+s", "m")
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
    assert sorted(p.name for p in documents.iterdir()) == before
    saved = sorted(p.suffix for p in (own_places / "data" / "exports").iterdir())
    assert saved == [".md", ".svg"]


async def test_exports_and_history_inside_the_sources_are_refused_by_name(
        chat: Chat, searcher: Searcher, own_places: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    documents = _documents_as_sources(own_places, monkeypatch)
    before = sorted(p.name for p in documents.iterdir())
    monkeypatch.setenv("MYOQA_DATA_DIR", str(documents / "data"))
    app = _chat_over(searcher, documents, own_places, export_dir=documents / "exports")
    async with chat(app, size=(160, 24), notifications=True) as (app, pilot):
        await ask(pilot, FLUTTER)
        assert shown_notes(app) == [(
            f"Questions are not kept for the next session: refusing to write into "
            f"{documents / 'data'}: it is inside the sources folder {documents} (choose a "
            "folder outside it)")]
        await pilot.press("ctrl+s", "m")
        await pilot.pause()
        assert shown_notes(app) == [(
            f"Cannot save the transcript: refusing to write into {documents / 'exports'}: it is "
            f"inside the sources folder {documents} (choose a folder outside it)")]
    assert sorted(p.name for p in documents.iterdir()) == before


def test_chat_refuses_an_export_folder_inside_the_sources_before_it_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from myoqa import cli
    from myoqa.tui import app as tui_app
    from myoqa.tui import terminal

    opened: list[Path | None] = []
    monkeypatch.setattr(terminal, "require_terminal", lambda: None)
    monkeypatch.setattr(tui_app, "run_chat", lambda _settings, folder: opened.append(folder) or 0)
    sources = tmp_path / "sources"
    sources.mkdir()
    code = cli.main(["chat", "--sources", str(sources), "--index-dir", str(tmp_path / "index"),
                     "--export-dir", str(sources / "exports")])
    assert code == 1 and opened == []
    assert capsys.readouterr().err == (
        f"myoqa: error: refusing to write into {sources / 'exports'}: it is inside the sources "
        f"folder {sources} (choose a folder outside it)\n")
