"""Source texts: which files count, how they are read, and their fingerprints."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from myoqa.errors import MyoqaError

SOURCE_SUFFIXES = (".txt", ".md")
MAX_SOURCE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One source text. `name` is its path relative to the sources directory, with '/'."""

    name: str
    text: str
    sha256: str


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
            found.append((path.relative_to(directory).as_posix(), path))
    if not found:
        raise MyoqaError(f"sources directory {directory} holds no .txt or .md files",
                         "add source texts or pass --sources DIR")
    return sorted(found)


def read_bytes(path: Path) -> bytes:
    """A source file's bytes, refusing files too large to index in memory."""
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise MyoqaError(f"source {path} is {size / 2**20:.0f} MiB, over the "
                             f"{MAX_SOURCE_BYTES // 2**20} MiB limit for one file",
                             "split it into smaller files")
        return path.read_bytes()
    except OSError as exc:
        raise MyoqaError(f"cannot read source {path}: {exc.strerror or exc}") from None


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text of a source, or a clear error for binary and non-UTF-8 files."""
    if b"\x00" in data:
        raise MyoqaError(f"source {path} looks binary (it contains NUL bytes)",
                         "remove it from the sources directory")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MyoqaError(f"source {path} is not UTF-8 (byte {exc.start})",
                         "convert it to UTF-8 or remove it") from None


def fingerprint(data: bytes) -> str:
    """The SHA-256 hex digest that the index manifest records for a source."""
    return hashlib.sha256(data).hexdigest()


def source_hashes(directory: Path) -> dict[str, str]:
    """Name → SHA-256 of every source, cheap enough to check before each query."""
    return {name: fingerprint(read_bytes(path)) for name, path in source_paths(directory)}


def load_sources(directory: Path) -> list[Source]:
    """Read every source under `directory` as UTF-8."""
    sources = []
    for name, path in source_paths(directory):
        data = read_bytes(path)
        sources.append(Source(name=name, text=decode(path, data), sha256=fingerprint(data)))
    return sources
