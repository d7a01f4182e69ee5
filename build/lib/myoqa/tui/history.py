"""The question history that Up and Down walk through in the chat's input box."""

from __future__ import annotations


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
