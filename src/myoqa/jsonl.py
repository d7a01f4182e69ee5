"""Reading JSON Lines input files (question sets, BEIR collections) strictly, at the door.

Each line must be one JSON object; anything else (bad UTF-8, bad JSON, JSON nested too deeply
to parse, a list or a number, a field of the wrong type, a repeated id) stops the run with one
line naming the file, the line and the field, before any work is done. So does an input that is
not a regular file, or one over the size limits.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from myoqa.errors import MyoqaError

MAX_INPUT_BYTES = 256 * 2**20
MAX_LINE_BYTES = 16 * 2**20
# The characters a TREC run or qrels line cannot carry inside an id (it splits on whitespace).
_ID_HINT = "ids must be non-empty and hold no whitespace or control characters"


def line_error(path: Path, line: int, message: str, hint: str = "") -> MyoqaError:
    """The one-line error for a bad line: `FILE:LINE: message`."""
    return MyoqaError(f"{path}:{line}: {message}", hint)


def open_lines(path: Path, what: str, hint: str = "") -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line of a UTF-8 file, refusing bad bytes by line.

    Only a regular file is read (a FIFO would be waited on, /dev/zero never ends), at most
    MAX_INPUT_BYTES of it and MAX_LINE_BYTES a line, so no input can make a run hang or grow
    without bound.
    """
    fh = _open_regular(path, what, hint)
    with fh:
        total = 0
        try:
            for number in itertools.count(1):
                raw = fh.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                total += len(raw)
                if total > MAX_INPUT_BYTES:
                    raise MyoqaError(f"{what} {path} holds more than "
                                     f"{MAX_INPUT_BYTES // 2**20} MiB, the limit for one file",
                                     "use a smaller file")
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise line_error(path, number, f"is longer than {MAX_LINE_BYTES // 2**20} "
                                     "MiB, the limit for one line", "split it")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise line_error(path, number, "is not UTF-8 text",
                                     "save the file as UTF-8") from None
                if number == 1:
                    text = text.removeprefix("\ufeff")
                if text.strip():
                    yield number, text
        except OSError as exc:
            raise MyoqaError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _open_regular(path: Path, what: str, hint: str) -> BinaryIO:
    """`path` opened for reading when it is a regular file, else one clear error (opened
    without waiting, so a FIFO with no writer is refused rather than blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MyoqaError(f"{what} {path} is missing", hint) from None
    except IsADirectoryError:
        raise MyoqaError(f"{what} {path} is a folder, not a file", hint) from None
    except OSError as exc:
        raise MyoqaError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        os.set_blocking(fd, True)
        return open(fd, "rb")
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise MyoqaError(f"{what} {path} is a folder, not a file", hint)
    raise MyoqaError(f"{what} {path} is not a regular file (a pipe or a device)",
                     "give a file, or save the input to one first")


def read_objects(path: Path, what: str, hint: str = "", line_hint: str = ""
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file; `hint` goes with a
    missing file, `line_hint` (what a line must hold) with a bad line."""
    hint_for_line = line_hint or hint
    for number, text in open_lines(path, what, hint):
        try:
            row = json.loads(text)
        except RecursionError:
            raise line_error(path, number, "is JSON nested too deeply to read",
                             hint_for_line) from None
        except ValueError as exc:
            raise line_error(path, number, f"is not valid JSON ({exc})", hint_for_line) from None
        if not isinstance(row, dict):
            raise line_error(path, number, f"is a JSON {_kind(row)}, not an object",
                             hint_for_line)
        yield number, row


def _kind(value: object) -> str:
    return {list: "list", str: "string", bool: "true/false", type(None): "null", int: "number",
            float: "number", dict: "object"}.get(type(value), type(value).__name__)


def text_field(row: dict[str, Any], name: str, path: Path, line: int, *,
               required: bool = True, blank_ok: bool = False, label: str = "") -> str:
    """A string field; missing (when optional) gives ''. Refuses null, numbers and lists, and
    blank text unless `blank_ok`. `label` names the field in messages (default: `name`)."""
    label = label or name
    if name not in row and not required:
        return ""
    if name not in row:
        raise line_error(path, line, f"field '{label}' is missing")
    value = row[name]
    if not isinstance(value, str):
        raise line_error(path, line, f"field '{label}' must be text, not {_kind(value)}")
    if not blank_ok and not value.strip():
        raise line_error(path, line, f"field '{label}' is empty")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise line_error(path, line, f"field '{label}' holds an unpaired surrogate "
                                         "escape (\\ud800-\\udfff)") from None
    return value


def id_field(row: dict[str, Any], name: str, path: Path, line: int,
             seen: dict[str, int], *, for_trec: bool = False) -> str:
    """An id (text, or a whole number read as its digits), unique in the file: `seen` maps the
    ids read so far to their lines. 1 and "1" are the same id. `for_trec` ids must also fit
    in a whitespace-separated TREC line."""
    if name not in row:
        raise line_error(path, line, f"field '{name}' is missing")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise line_error(path, line, f"field '{name}' must be text or a whole number, "
                                     f"not {_kind(value)}")
    ident = str(value)
    if for_trec:
        check_id(ident, path, line)
    elif not ident.strip():
        raise line_error(path, line, f"field '{name}' is empty")
    if ident in seen:
        raise line_error(path, line, f"{name} {ident!r} repeats line {seen[ident]}",
                         "every id must be unique")
    seen[ident] = line
    return ident


def check_id(ident: str, path: Path, line: int) -> None:
    """Refuse an id that a whitespace-separated (TREC) line could not carry."""
    if not ident or any(ch.isspace() or not ch.isprintable() for ch in ident):
        raise line_error(path, line, f"id {ident!r} cannot be used", _ID_HINT)
