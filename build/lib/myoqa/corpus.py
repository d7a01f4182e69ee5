"""Source texts: which files count, how they are read, and their fingerprints.

Files are read in blocks after their size is checked, so an oversized file or corpus is refused
before it is held in memory, and a FIFO or device named like a source is refused, never waited on.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from myoqa.chunking import WORD
from myoqa.errors import MyoqaError

SOURCE_SUFFIXES = (".txt", ".md")
MAX_SOURCE_BYTES = 16 * 1024 * 1024
MAX_CORPUS_BYTES = 4 * MAX_SOURCE_BYTES
BLOCK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One source text. `name` is its path relative to the sources directory, with '/'."""

    name: str
    text: str
    sha256: str

    @property
    def has_words(self) -> bool:
        """Whether chunking will find anything to index in it."""
        return WORD.search(self.text) is not None


def source_paths(directory: Path) -> list[tuple[str, Path]]:
    """Every .txt/.md file below `directory`, sorted by name; symlinked folders are not followed."""
    if not directory.exists():
        raise MyoqaError(f"sources directory {directory} does not exist",
                         "pass --sources DIR or set MYOQA_SOURCES")
    if not directory.is_dir():
        raise MyoqaError(f"sources path {directory} is not a directory", "pass --sources DIR")
    found = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() not in SOURCE_SUFFIXES:
                continue
            relative = path.relative_to(directory).as_posix()
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:
                raise MyoqaError(f"source file name {relative!r} is not valid UTF-8",
                                 "rename the file") from None
            found.append((relative, path))
    if not found:
        raise MyoqaError(f"sources directory {directory} holds no .txt or .md files",
                         "add source texts or pass --sources DIR")
    return sorted(found)


def _too_big(path: Path, size: int) -> MyoqaError:
    return MyoqaError(f"source {path} is {size / 2**20:.0f} MiB, over the "
                      f"{MAX_SOURCE_BYTES // 2**20} MiB limit for one file",
                      "split it into smaller files")


def _blocks(path: Path) -> Iterator[bytes]:
    """A source file's bytes, block by block, refusing non-regular and oversized files first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise MyoqaError(f"source {path} is not a regular file",
                                 "remove it from the sources directory")
            if info.st_size > MAX_SOURCE_BYTES:
                raise _too_big(path, info.st_size)
            total = 0
            while block := fh.read(BLOCK_BYTES):
                total += len(block)
                if total > MAX_SOURCE_BYTES:
                    raise _too_big(path, total)
                yield block
    except OSError as exc:
        raise MyoqaError(f"cannot read source {path}: {exc.strerror or exc}",
                         "fix or remove the file") from None


def _read(directory: Path, keep_bytes: bool) -> Iterator[tuple[str, Path, str, bytes]]:
    """(name, path, SHA-256, bytes if kept) of every source, refusing more than MAX_CORPUS_BYTES."""
    total = 0
    for name, path in source_paths(directory):
        digest, kept = hashlib.sha256(), []
        for block in _blocks(path):
            total += len(block)
            if total > MAX_CORPUS_BYTES:
                raise MyoqaError(f"the sources in {directory} hold more than "
                                 f"{MAX_CORPUS_BYTES // 2**20} MiB of text, the limit for one index",
                                 "index a smaller selection of files")
            digest.update(block)
            if keep_bytes:
                kept.append(block)
        yield name, path, digest.hexdigest(), b"".join(kept)


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text of a source (without a byte-order mark), or a clear error for other bytes."""
    if b"\x00" in data:
        raise MyoqaError(f"source {path} looks binary (it contains NUL bytes)",
                         "remove it, or convert it to UTF-8 if it is UTF-16 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MyoqaError(f"source {path} is not UTF-8 (byte {exc.start})",
                         "convert it to UTF-8 or remove it") from None


def fingerprint(data: bytes) -> str:
    """The SHA-256 hex digest that the index manifest records for a source."""
    return hashlib.sha256(data).hexdigest()


def source_hashes(directory: Path) -> dict[str, str]:
    """Name → SHA-256 of every source, streamed, cheap enough to check before each query."""
    return {name: sha256 for name, _path, sha256, _data in _read(directory, keep_bytes=False)}


def load_sources(directory: Path) -> list[Source]:
    """Read every source under `directory` as UTF-8."""
    return [Source(name=name, text=decode(path, data), sha256=sha256)
            for name, path, sha256, data in _read(directory, keep_bytes=True)]
