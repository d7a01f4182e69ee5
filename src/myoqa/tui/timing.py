"""Start-up timing of the chat, for `myoqa bench`: launch → usable input → first answer.

The chat runs headless with an autopilot that types the question the moment the input has focus,
as a person who starts typing at once would; times are measured from `launched`, the wall-clock
time at which the benchmark started this process.
"""

from __future__ import annotations

import asyncio
import time

from textual.pilot import Pilot

from myoqa.config import Settings
from myoqa.tui.app import ChatApp
from myoqa.tui.widgets import ChatInput


def time_startup(launched: float, question: str, limit_s: float = 60.0) -> dict[str, float]:
    """Seconds from `launched` to an interactive input, the first answer shown (BM25 alone if
    the model was still loading) and the answer in the requested mode."""
    app = ChatApp(Settings.resolve(), cursor_blink=False)
    marks: dict[str, float] = {}

    async def autopilot(pilot: Pilot) -> None:  # noqa: ARG001 (Textual's auto_pilot signature)
        deadline = time.time() + limit_s
        while not isinstance(app.focused, ChatInput):
            await asyncio.sleep(0.005)
        marks["ready_s"] = time.time() - launched
        card = await app.ask(question)
        while card.turn.answer is None or card.turn.fallback:
            if card.turn.answer is not None and "answer_s" not in marks:
                marks["answer_s"] = time.time() - launched
            if time.time() > deadline:
                break
            await asyncio.sleep(0.005)
        marks.setdefault("answer_s", time.time() - launched)
        marks["final_answer_s"] = time.time() - launched
        app.exit()

    app.run(headless=True, auto_pilot=autopilot)
    return marks
