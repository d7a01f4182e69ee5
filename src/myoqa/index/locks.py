"""Advisory file locks: one process at a time does a thing (a build, an export), and one that
has to wait says so."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held(lock_file: Path, notify: Callable[[str], None], waiting: str) -> Iterator[None]:
    """Hold the lock on `lock_file` (created if missing), telling `notify` `waiting` first when
    another process holds it."""
    with open(lock_file, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            notify(waiting)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
