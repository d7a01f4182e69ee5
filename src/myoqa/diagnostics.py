"""Every `myoqa:` line the program writes to stderr (progress, notes, errors) and the exit code
each failure maps to, so all commands speak in one voice."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from myoqa.errors import ExitCode, MyoqaError, printable

Notify = Callable[[str], None]
ProgressBar = Callable[[str, int], Callable[[int], None]]


def say(message: str) -> None:
    """A line of progress on stderr (opening or building the index, opening a passage)."""
    print(f"myoqa: {printable(message)}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """Something the user should know about an answer that is still given."""
    print(f"myoqa: note: {printable(message)}", file=sys.stderr)


def error(message: str) -> None:
    """A failure already caught where it happened (the chat's, once its screen is gone)."""
    print(f"myoqa: error: {message}", file=sys.stderr)


def progress_bar(enabled: bool) -> ProgressBar | None:
    """A rich progress bar on stderr, only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    def factory(label: str, total: int) -> Callable[[int], None]:
        progress = Progress(console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task(label, total=total)

        def tick(n: int) -> None:
            progress.advance(task, n)
            if progress.finished:
                progress.stop()

        return tick

    return factory


def guarded(command: Callable[[], int], debug: bool) -> int:
    """Run `command`, turning every failure into one line and an exit code.

    User errors exit 1 (usage errors 2), Ctrl-C exits 130, a closed pipe 0; anything
    unexpected is one line too, with its traceback only when `debug`.
    """
    try:
        return command()
    except MyoqaError as exc:
        error(str(exc))
        return int(exc.code)
    except KeyboardInterrupt:
        print("myoqa: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except OSError as exc:
        if debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(printable(f"myoqa: error: {exc.strerror or exc}{where}"), file=sys.stderr)
        return ExitCode.FAILURE
    except Exception as exc:  # the last guard against a traceback
        if debug:
            raise
        print(printable(f"myoqa: error: unexpected {type(exc).__name__}: {exc} (this is a bug; "
                        "set MYOQA_DEBUG=1 to see where, and please report it)"), file=sys.stderr)
        return ExitCode.FAILURE
