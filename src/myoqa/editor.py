"""Opening a passage where it is: the user's editor or pager, at its line (and column).

A text or Markdown source opens as the file itself. A PDF, HTML or Word source opens as the
extracted text the index stores (written to a temporary file, removed afterwards), since that
is the text whose lines and columns the citation counts.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from myoqa.citation import Place
from myoqa.errors import MyoqaError

# How each program is told where to start: the argv that goes before (or instead of) the file.
# The path it is given is absolute (see `command`), so it starts with "/" and no program can read
# it as an option or, like vim's "+cmd", as a command.
Jump = Callable[[Path, Place, str], list[str]]


def _vim(path: Path, place: Place, line_text: str) -> list[str]:
    column = len(line_text[:place.column - 1].encode("utf-8")) + 1  # vim counts bytes
    return [f"+call cursor({place.line}, {column})", "--", str(path)]


JUMPS: dict[str, Jump] = {
    **dict.fromkeys(("vim", "nvim", "gvim", "mvim", "view", "vimdiff"), _vim),
    **dict.fromkeys(("vi", "ex", "nvi", "elvis", "gedit", "mcedit", "joe", "jed", "ne", "more",
                     "most", "mg", "pluma", "kate"),
                    lambda path, place, _line: [f"+{place.line}", str(path)]),
    "nano": lambda path, place, _line: [f"+{place.line},{place.column}", str(path)],
    **dict.fromkeys(("emacs", "emacsclient", "micro", "kak"),
                    lambda path, place, _line: [f"+{place.line}:{place.column}", str(path)]),
    **dict.fromkeys(("hx", "helix", "subl", "zed"),
                    lambda path, place, _line: [f"{path}:{place.line}:{place.column}"]),
    **dict.fromkeys(("code", "codium", "code-insiders"),
                    lambda path, place, _line: ["--goto", f"{path}:{place.line}:{place.column}"]),
    "less": lambda path, place, _line: [f"+{place.line}g", "--", str(path)],
}


def viewer(value: str, origin: str) -> tuple[list[str], str]:
    """The program to open with, as argv, and where it came from: the command line `value`
    from `origin` (config resolves $VISUAL, $EDITOR, $PAGER), else less when it is installed."""
    if value:
        try:
            argv = shlex.split(value)
        except ValueError:
            raise MyoqaError(f"{origin} ({value!r}) is not a valid command line",
                             f"fix {origin}") from None
        return argv, origin
    if shutil.which("less"):
        return ["less"], "less"
    raise MyoqaError("no editor or pager to open the passage with",
                     "set $EDITOR (for example EDITOR=nano) or $PAGER")


def command(program: list[str], path: Path, place: Place, line_text: str) -> list[str]:
    """The full argv opening `path` at `place` in `program`; a program not known to take a
    line opens the file at its start.

    The path is made absolute, so a file named "+!cmd" or "-option" is always a file: vim and
    less also get "--" before it (both document it as the end of their options); the others
    only the absolute path, since some (more, micro, hx) do not all take "--".
    """
    path = path.absolute()
    jump = JUMPS.get(Path(program[0]).name.lower())
    return [*program, *(jump(path, place, line_text) if jump else [str(path)])]


@contextlib.contextmanager
def _interrupts_go_to_the_program() -> Iterator[None]:
    """Ignore Ctrl-C while the program runs: it is the program's key (as git does for its
    editor), and myoqa must not exit and leave the program holding the terminal."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _default_interrupts() -> None:
    """In the program's process: Ctrl-C back to its default (an ignored signal stays ignored
    across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def _terminal_input() -> Iterator[int | None]:
    """The terminal as the program's input when ours is a pipe (a question read from stdin),
    so an editor still gets the keyboard; else our own input."""
    if sys.stdin is not None and sys.stdin.isatty():
        yield None
        return
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def open_at(file: Path | None, name: str, text: str, place: Place,
            notify: Callable[[str], None], program: tuple[list[str], str]) -> None:
    """Open `file` (or, when None, `text` as a temporary file named after `name`) at `place`
    with `program` (argv and where it came from, see `viewer`).

    The program inherits the terminal and is waited for; one that cannot be run or that fails
    is a MyoqaError naming it.
    """
    program, origin = program
    if shutil.which(program[0]) is None:
        raise MyoqaError(f"cannot run {origin} ({program[0]!r}): it is not installed",
                         "set $EDITOR or $PAGER to a program that is installed")
    lines = text.split("\n")
    line_text = lines[place.line - 1] if place.line <= len(lines) else ""
    with tempfile.TemporaryDirectory(prefix="myoqa-open-") as folder:
        if file is None:
            file = Path(folder) / (Path(name).name + ".txt")
            file.write_text(text, encoding="utf-8", newline="")
            file.chmod(0o400)
        argv = command(program, file, place, line_text)
        where = f"line {place.line}, column {place.column}"
        notify(f"opening {name} at {where} with {origin} ({program[0]})"
               + ("" if Path(program[0]).name.lower() in JUMPS else f"; go to {where}"))
        try:
            with _terminal_input() as stdin, _interrupts_go_to_the_program():
                status = subprocess.run(argv, stdin=stdin, check=False,
                                        preexec_fn=_default_interrupts).returncode
        except OSError as exc:
            raise MyoqaError(f"cannot run {origin} ({program[0]!r}): {exc.strerror or exc}",
                             "set $EDITOR or $PAGER to a program that is installed") from None
    if status:
        raise MyoqaError(f"{origin} ({program[0]!r}) exited with status {status}")
