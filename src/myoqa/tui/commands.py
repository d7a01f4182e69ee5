"""What the chat offers besides its keys' actions: the command palette's entries and the help
screen's list of keys, both made from the app's and widgets' bindings and actions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.binding import Binding

from myoqa.search import MODES
from myoqa.tui.screens import ExportScreen, KeyGroups, SourceScreen
from myoqa.tui.widgets import ChatInput, PassageView

if TYPE_CHECKING:
    from myoqa.tui.app import ChatApp


def chat_commands(app: ChatApp) -> Iterable[SystemCommand]:
    """The chat's own palette commands: modes, k, saving, clearing, help."""
    for mode in MODES:
        yield SystemCommand(f"Mode: {mode}", f"Search the next questions in {mode} mode",
                            lambda mode=mode: setattr(app, "mode", mode))
    yield SystemCommand("More passages", "Show one passage more (F5)",
                        lambda: app.action_change_k(1))
    yield SystemCommand("Fewer passages", "Show one passage fewer (F4)",
                        lambda: app.action_change_k(-1))
    yield SystemCommand("Save transcript as Markdown", "Quoted passages with citations",
                        lambda: app.save_transcript("markdown"))
    yield SystemCommand("Save transcript as JSON", "Every answer as ask --json prints it",
                        lambda: app.save_transcript("json"))
    yield SystemCommand("Save SVG screenshot", "Save the screen as an SVG file (F2)",
                        app.action_save_screenshot)
    yield SystemCommand("Clear transcript", "Remove every answer (ctrl+l)", app.action_clear)
    yield SystemCommand("Help", "Show every key (F1)", app.action_help)


def key_groups(app: ChatApp) -> KeyGroups:
    """The keys, by where they work, for the help screen (as the app displays them)."""
    def name(key: str) -> str:
        shown = app.get_key_display(Binding(key, ""))
        return shown.upper() if re.fullmatch(r"f\d+", shown) else shown

    def rows(bindings: Iterable[Binding | tuple[str, ...]]) -> list[tuple[str, str]]:
        out = []
        for binding in bindings:
            assert isinstance(binding, Binding)
            keys = " ".join(name(key) for key in binding.key.split(","))
            out.append((keys, binding.tooltip or binding.description))
        return out

    return [("Anywhere", rows(type(app).BINDINGS)),
            ("In the question box", [("enter", "Ask the question")] + rows(ChatInput.BINDINGS)),
            ("On a passage (Tab or click to select)", rows(PassageView.BINDINGS)),
            ("In the source viewer", rows(SourceScreen.BINDINGS)),
            ("In the save dialog (ctrl+s)", rows(ExportScreen.BINDINGS))]
