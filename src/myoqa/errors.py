"""One error type for everything a user can cause, and the exit codes the CLI maps it to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, the same for every command."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130


class MyoqaError(Exception):
    """A problem the user can fix: shown as one line, never as a traceback."""

    def __init__(self, message: str, hint: str = "", code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MyoqaError):
    """A bad option or argument: exit code 2, like argparse's own errors."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, ExitCode.USAGE)
