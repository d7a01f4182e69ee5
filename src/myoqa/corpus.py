"""Source texts: which files count, how they are read, and their fingerprints.

Files are read in blocks after their size is checked, so an oversized file or corpus is refused
before it is held in memory, and a FIFO or device named like a source is refused, never waited on.
A source's text is its file decoded as UTF-8 (text, Markdown) or extracted (PDF, HTML, DOCX; see
formats.py); its fingerprint is always of the file's bytes. Files myoqa does not read, and
documents that yield no text, are reported as `Skipped`, never dropped silently.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from myoqa import formats
from myoqa.chunking import WORD
from myoqa.errors import MyoqaError

MAX_SOURCE_BYTES = 16 * 1024 * 1024
MAX_CORPUS_BYTES = 4 * MAX_SOURCE_BYTES
# A PDF or Word file is mostly pictures and layout: its file may be larger than its text. The
# corpus limit counts what is held for indexing: text files' bytes and documents' extracted text.
MAX_DOCUMENT_BYTES = 4 * MAX_SOURCE_BYTES
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


@dataclass(frozen=True)
class Skipped:
    """A file below the sources folder that is not indexed, and why (for notes and `info`).

    `sha256` is set for a file that was read but yielded no text (a scanned or damaged PDF):
    it is also among the sources, with empty text, so a change to it triggers a rebuild.
    """

    name: str
    reason: str
    sha256: str | None = None


@dataclass(frozen=True)
class Corpus:
    """Every source of a supported format, and every file that is not indexed."""

    sources: list[Source]
    skipped: list[Skipped]


SUPPORTED = ".txt, .md, .html, .pdf or .docx"


def source_paths(directory: Path) -> list[tuple[str, Path]]:
    """Every file of a supported format below `directory`, sorted by name."""
    return scan(directory)[0]


def unsupported(name: str) -> Skipped:
    """The note for a file whose format myoqa does not read."""
    dot = name.rfind(".")
    suffix = name[dot:] if dot > name.rfind("/") + 1 else "no suffix"
    return Skipped(name, f"not a supported format ({suffix})")


def scan(directory: Path) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """(name, path) of every source below `directory`, and the other files, both by name.

    Hidden files and folders are ignored; symlinked folders are not followed.
    """
    if not directory.exists():
        raise MyoqaError(f"sources directory {directory} does not exist",
                         "pass --sources DIR or set MYOQA_SOURCES")
    if not directory.is_dir():
        raise MyoqaError(f"sources path {directory} is not a directory", "pass --sources DIR")
    found, other = [], []
    for root, files in _walk(directory):
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if formats.format_of(name) is None:
                other.append(unsupported(relative))
                continue
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:
                raise MyoqaError(f"source file name {relative!r} is not valid UTF-8",
                                 "rename the file") from None
            found.append((relative, path))
    if not found:
        raise MyoqaError(f"sources directory {directory} holds no {SUPPORTED} files",
                         "add source files or pass --sources DIR")
    return sorted(found), sorted(other, key=lambda s: s.name)


def _walk(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) for every folder below `directory`, hidden and symlinked folders
    left out, with a stack instead of recursion: Python 3.11's os.walk recurses, so a tree a
    thousand folders deep would overflow it."""
    stack = [str(directory)]
    while stack:
        root = stack.pop()
        try:
            with os.scandir(root) as listing:
                entries = list(listing)
        except OSError:
            continue
        kinds = {e.name: _kind(e) for e in entries}
        yield root, [name for name, kind in kinds.items() if kind == "file"]
        stack.extend(os.path.join(root, name) for name in sorted(
            (n for n, kind in kinds.items() if kind == "folder" and not n.startswith(".")),
            reverse=True))


def _kind(entry: os.DirEntry[str]) -> str:
    """'folder' for a real folder, 'link' for a link to one (not followed), else 'file' (a
    broken or looping link included: reading it names the problem)."""
    try:
        if entry.is_dir():
            return "link" if entry.is_symlink() else "folder"
    except OSError:
        pass
    return "file"


def _too_big(path: Path, size: int, limit: int) -> MyoqaError:
    return MyoqaError(f"source {path} is {size / 2**20:.0f} MiB, over the "
                      f"{limit // 2**20} MiB limit for one file", "split it into smaller files")


def _is_document(name: str) -> bool:
    """Whether the file's text is extracted (PDF, HTML, Word) rather than the file itself."""
    fmt = formats.format_of(name)
    return fmt is not None and fmt.extract is not None


def _too_much(directory: Path) -> MyoqaError:
    return MyoqaError(f"the sources in {directory} hold more than "
                      f"{MAX_CORPUS_BYTES // 2**20} MiB of text, the limit for one index",
                      "index a smaller selection of files")


def _blocks(path: Path, limit: int) -> Iterator[bytes]:
    """A source file's bytes, block by block, refusing non-regular and oversized files first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise MyoqaError(f"source {path} is not a regular file",
                                 "remove it from the sources directory")
            if info.st_size > limit:
                raise _too_big(path, info.st_size, limit)
            total = 0
            while block := fh.read(BLOCK_BYTES):
                total += len(block)
                if total > limit:
                    raise _too_big(path, total, limit)
                yield block
    except OSError as exc:
        raise MyoqaError(f"cannot read source {path}: {exc.strerror or exc}",
                         "fix or remove the file") from None


def _read(paths: list[tuple[str, Path]], directory: Path, keep_bytes: bool
          ) -> Iterator[tuple[str, Path, str, bytes]]:
    """(name, path, SHA-256, bytes if kept) of every source, refusing text files of more than
    MAX_CORPUS_BYTES in all (documents count by their extracted text, in read_corpus)."""
    total = 0
    for name, path in paths:
        digest, kept = hashlib.sha256(), []
        document = _is_document(name)
        for block in _blocks(path, MAX_DOCUMENT_BYTES if document else MAX_SOURCE_BYTES):
            total += 0 if document else len(block)
            if total > MAX_CORPUS_BYTES:
                raise _too_much(directory)
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
    return {name: sha256 for name, _path, sha256, _data
            in _read(source_paths(directory), directory, keep_bytes=False)}


def read_corpus(directory: Path) -> Corpus:
    """Read every source under `directory`: text formats as UTF-8, documents extracted.

    A document that yields no text stays a source with empty text and is also `Skipped` with
    the reason; a text file that is not UTF-8 is an error (it needs converting, not skipping).
    """
    paths, skipped = scan(directory)
    sources = []
    held = 0
    for name, path, sha256, data in _read(paths, directory, keep_bytes=True):
        fmt = formats.format_of(name)
        if fmt is None or fmt.extract is None:
            sources.append(Source(name=name, text=decode(path, data), sha256=sha256))
            held += len(data)
            continue
        try:
            text = fmt.extract(data)
        except formats.ExtractionError as exc:
            skipped.append(Skipped(name, str(exc), sha256))
            text = ""
        except Exception as exc:  # noqa: BLE001 (parsers of untrusted files fail in many ways)
            skipped.append(Skipped(name, f"cannot be read as {fmt.label} ({type(exc).__name__})",
                                   sha256))
            text = ""
        held += len(text.encode("utf-8", "surrogatepass"))
        if held > MAX_CORPUS_BYTES:
            raise _too_much(directory)
        sources.append(Source(name=name, text=text, sha256=sha256))
    return Corpus(sources, sorted(skipped, key=lambda s: s.name))


def load_sources(directory: Path) -> list[Source]:
    """Every source under `directory` with its text (see read_corpus)."""
    return read_corpus(directory).sources
