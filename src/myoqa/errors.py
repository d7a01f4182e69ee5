"""One error type for everything a user can cause, and the exit codes the CLI maps it to."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, the same for every command."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130


def printable(text: str) -> str:
    """`text` on one line with every control, format or separator character written as an escape.

    File names and index contents go into messages; this keeps a newline, a terminal escape
    sequence or a bidi override in them from reaching the terminal.
    """
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def json_text(data: Any, indent: int | None = None) -> str:
    """JSON text in which every character a terminal would act on is a \\u escape (still JSON).

    json.dumps escapes only C0 controls; DEL, C1 controls and bidi overrides would pass raw.
    """
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)


class MyoqaError(Exception):
    """A problem the user can fix: shown as one line, never as a traceback."""

    def __init__(self, message: str, hint: str = "", code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return printable(f"{self.message} ({self.hint})" if self.hint else self.message)


class UsageError(MyoqaError):
    """A bad option or argument: exit code 2, like argparse's own errors."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, ExitCode.USAGE)
