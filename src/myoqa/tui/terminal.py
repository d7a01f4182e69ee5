"""Whether the chat can run here: it reads keys from a terminal and draws on one."""

from __future__ import annotations

import sys
from typing import TextIO

from myoqa.errors import MyoqaError


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # a closed stream
        return False


def require_terminal() -> None:
    """Refuse to start the chat when its input or output is not a terminal (a file, a pipe,
    /dev/null or closed): the chat would wait forever for keys and write escape sequences into
    the file. Textual draws on stderr, so all three streams must be terminals."""
    streams = {"input": sys.stdin, "output": sys.stdout, "error output": sys.stderr}
    missing = [name for name, stream in streams.items() if not _is_terminal(stream)]
    if missing:
        named = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1
                             else missing)
        verb = "is not a terminal" if len(missing) == 1 else "are not terminals"
        raise MyoqaError(f"the chat needs a terminal: its {named} {verb}",
                         "run it in a terminal; in scripts and pipes use `myoqa ask QUESTION`")
