"""The question history that Up and Down walk through in the chat's input box, kept between
sessions in a small JSON file in the user's data folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from myoqa.output_files import Kept, check_folder, write_output


class History:
    """Questions asked so far, oldest first, with a cursor and the draft being typed."""

    def __init__(self, entries: list[str] | None = None) -> None:
        self.entries: list[str] = list(entries or [])
        self._cursor = len(self.entries)
        self._draft = ""

    def add(self, question: str) -> None:
        """Remember a question (a repeat of the latest is kept once) and reset the cursor."""
        if question and (not self.entries or self.entries[-1] != question):
            self.entries.append(question)
        self._cursor = len(self.entries)
        self._draft = ""

    def previous(self, current: str) -> str | None:
        """The question before the cursor, or None at the oldest; `current` is kept as draft."""
        if self._cursor == 0:
            return None
        if self._cursor == len(self.entries):
            self._draft = current
        self._cursor -= 1
        return self.entries[self._cursor]

    def next(self) -> str | None:
        """The question after the cursor, the draft past the newest, or None if already there."""
        if self._cursor == len(self.entries):
            return None
        self._cursor += 1
        return self._draft if self._cursor == len(self.entries) else self.entries[self._cursor]


HISTORY_FILE = "history.json"
HISTORY_LIMIT = 500
HISTORY_FORMAT = 1


def load_history(path: Path) -> tuple[list[str], str]:
    """The questions kept in `path`, oldest first, and a note when the file could not be read
    (it is then ignored, and replaced by the next question asked); a missing file is empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], ""
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [], (f"the question history {path} could not be read ({type(exc).__name__}); "
                    "starting a new one")
    questions = data.get("questions") if isinstance(data, dict) else None
    if (not isinstance(questions, list) or data.get("format") != HISTORY_FORMAT
            or not all(isinstance(q, str) for q in questions)):
        return [], f"the question history {path} is not in myoqa's format; starting a new one"
    return questions[-HISTORY_LIMIT:], ""


def remember(path: Path, question: str, kept: Sequence[Kept] = ()) -> None:
    """Add `question` to the history file (re-read first, so that two chats both keep theirs),
    keeping the newest HISTORY_LIMIT questions; written atomically, never inside a `kept`
    folder (the sources, the index). Raises MyoqaError."""
    entries, _note = load_history(path)
    history = History(entries)
    history.add(question)
    check_folder(path.parent, kept)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": HISTORY_FORMAT, "questions": history.entries[-HISTORY_LIMIT:]}
    write_output(path, json.dumps(data, ensure_ascii=False, indent=0) + "\n", kept=kept)
