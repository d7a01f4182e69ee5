"""Source texts: which files count, how they are read, and their fingerprints.

Files are read in blocks after their size is checked, so an oversized file or corpus is refused
before it is held in memory, and a FIFO or device named like a source is refused, never waited on.
A source's text is its file decoded as UTF-8 (text, Markdown) or extracted (PDF, HTML, DOCX; see
formats.py); its fingerprint is always of the file's bytes. Files myoqa does not read, links
it does not follow (see `scan`), and documents that yield no text, are reported as `Skipped`,
never dropped silently.
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

    `sha256` is set for a file that was read but yielded no text (a scanned or damaged PDF), or
    only part of it: it is also among the sources, so a change to it triggers a rebuild.
    `group` names what the file is one of ("links"), for notes that count many at once.
    """

    name: str
    reason: str
    sha256: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Corpus:
    """Every source of a supported format, and every file that is not indexed."""

    sources: list[Source]
    skipped: list[Skipped]


@dataclass(frozen=True)
class Survey:
    """What the staleness check sees of a sources folder: each source's SHA-256, and the files
    left out (documents are hashed, not extracted, so those that yield no text are not among
    them)."""

    hashes: dict[str, str]
    skipped: list[Skipped]


SUPPORTED = ".txt, .md, .html, .pdf or .docx"
UNSUPPORTED_GROUP = "files of formats myoqa does not read"
LINKS_GROUP = "links"
FOLLOW_HINT = "pass --follow-links or set MYOQA_FOLLOW_LINKS=1 to read it"


def source_paths(directory: Path, follow_links: bool = False) -> list[tuple[str, Path]]:
    """Every file of a supported format below `directory`, sorted by name."""
    return scan(directory, follow_links)[0]


def unsupported(name: str) -> Skipped:
    """The note for a file whose format myoqa does not read."""
    dot = name.rfind(".")
    suffix = name[dot:] if dot > name.rfind("/") + 1 else "no suffix"
    return Skipped(name, f"not a supported format ({suffix})", group=UNSUPPORTED_GROUP)


@dataclass(frozen=True)
class _Found:
    """A source file found by the walk; `outside` when it was reached through a link that
    leaves the sources folder (only with follow_links)."""

    name: str
    path: Path
    outside: bool


def scan(directory: Path, follow_links: bool = False
         ) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """(name, path) of every source below `directory`, and the other files, both by name.

    Hidden files and folders are ignored. Links are not followed (as git and ripgrep do): a
    link whose target is inside the sources folder is read under its target's own name, so
    nothing is indexed twice; one that leaves it is named as skipped, unless `follow_links`
    (then its file, or folder, is read under the link's name, each target once).
    """
    if not directory.exists():
        raise MyoqaError(f"sources directory {directory} does not exist",
                         "pass --sources DIR or set MYOQA_SOURCES")
    if not directory.is_dir():
        raise MyoqaError(f"sources path {directory} is not a directory", "pass --sources DIR")
    root = directory.resolve()
    found: list[_Found] = []
    other: list[Skipped] = []
    folders_read = {_identity(root): "the sources folder"}
    stack = [(str(directory), False)]
    while stack:  # a stack, not recursion: Python 3.11's os.walk overflows 1,000 folders deep
        folder, outside = stack.pop()
        subfolders = []
        for entry in _entries(folder):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            relative = path.relative_to(directory).as_posix()
            is_folder, link = _is_folder(entry), entry.is_symlink()
            leaves = link and not _within(path, root)
            if link and not leaves:
                other.append(Skipped(relative, "a link within the sources folder (not followed: "
                                     "its target is read under its own name)", group=LINKS_GROUP))
            elif leaves and not follow_links:
                what = "folder" if is_folder else "file"
                other.append(Skipped(relative, f"a link to a {what} outside the sources folder "
                                     f"({FOLLOW_HINT})", group=LINKS_GROUP))
            elif is_folder:
                identity = _identity(path) if link or outside else None
                if identity is not None and identity in folders_read:
                    other.append(Skipped(relative, f"the same folder as {folders_read[identity]}",
                                         group=LINKS_GROUP))
                    continue
                if identity is not None:
                    folders_read[identity] = relative
                subfolders.append((entry.path, outside or link))
            elif formats.format_of(entry.name) is None:
                other.append(unsupported(relative))
            else:
                try:
                    relative.encode("utf-8")
                except UnicodeEncodeError:
                    raise MyoqaError(f"source file name {relative!r} is not valid UTF-8",
                                     "rename the file") from None
                found.append(_Found(relative, path, outside or link))
        stack.extend(reversed(subfolders))
    sources = _once(found, other) if follow_links else sorted((f.name, f.path) for f in found)
    if not sources:
        raise MyoqaError(f"sources directory {directory} holds no {SUPPORTED} files",
                         "add source files or pass --sources DIR")
    return sources, sorted(other, key=lambda s: s.name)


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """The entries of a folder by name; none when it cannot be listed."""
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda e: e.name)
    except OSError:
        return []


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Whether an entry is a folder or a link to one (a broken or looping link is a file:
    reading it names the problem)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _within(path: Path, root: Path) -> bool:
    """Whether a link's target (resolved through every link, even a broken one) lies in `root`."""
    return Path(os.path.realpath(path)).is_relative_to(root)


def _identity(path: Path) -> tuple[int, int] | None:
    """The device and inode a path leads to, so one target reached by two links is read once."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _once(found: list[_Found], other: list[Skipped]) -> list[tuple[str, Path]]:
    """The sources by name, each file once when links are followed: a file reached by two
    names is read under its own name inside the sources folder, else under the first link's;
    the other name is skipped."""
    kept: dict[tuple[int, int], str] = {}
    sources = []
    for item in sorted(found, key=lambda f: (f.outside, f.name)):
        identity = _identity(item.path)
        if identity is not None and identity in kept:
            other.append(Skipped(item.name, f"the same file as {kept[identity]}",
                                 group=LINKS_GROUP))
            continue
        if identity is not None:
            kept[identity] = item.name
        sources.append((item.name, item.path))
    return sorted(sources)


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


def _blocks(path: Path, limit: int, follow_links: bool) -> Iterator[bytes]:
    """A source file's bytes, block by block, refusing non-regular and oversized files first
    (and, unless following links, a file that became a link since the folder was listed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW))
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


def _read(paths: list[tuple[str, Path]], directory: Path, keep_bytes: bool, follow_links: bool
          ) -> Iterator[tuple[str, Path, str, bytes]]:
    """(name, path, SHA-256, bytes if kept) of every source, refusing text files of more than
    MAX_CORPUS_BYTES in all (documents count by their extracted text, in read_corpus)."""
    total = 0
    for name, path in paths:
        digest, kept = hashlib.sha256(), []
        document = _is_document(name)
        for block in _blocks(path, MAX_DOCUMENT_BYTES if document else MAX_SOURCE_BYTES,
                             follow_links):
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


def survey(directory: Path, follow_links: bool = False) -> Survey:
    """Name → SHA-256 of every source, streamed, and the files left out: cheap enough to check
    before each query."""
    paths, skipped = scan(directory, follow_links)
    return Survey({name: sha256 for name, _path, sha256, _data
                   in _read(paths, directory, keep_bytes=False, follow_links=follow_links)},
                  skipped)


def source_hashes(directory: Path, follow_links: bool = False) -> dict[str, str]:
    """Name → SHA-256 of every source (see `survey`)."""
    return survey(directory, follow_links).hashes


def read_corpus(directory: Path, follow_links: bool = False) -> Corpus:
    """Read every source under `directory`: text formats as UTF-8, documents extracted.

    A document that yields no text stays a source with empty text and is also `Skipped` with
    the reason (one read in part keeps that part, and is `Skipped` naming what is missing); a
    text file that is not UTF-8 is an error (it needs converting, not skipping).
    """
    paths, skipped = scan(directory, follow_links)
    sources = []
    held = 0
    for name, path, sha256, data in _read(paths, directory, keep_bytes=True,
                                          follow_links=follow_links):
        fmt = formats.format_of(name)
        if fmt is None or fmt.extract is None:
            sources.append(Source(name=name, text=decode(path, data), sha256=sha256))
            held += len(data)
            continue
        try:
            text = fmt.extract(data)
        except formats.Truncated as exc:
            skipped.append(Skipped(name, str(exc), sha256))
            text = exc.text
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


def load_sources(directory: Path, follow_links: bool = False) -> list[Source]:
    """Every source under `directory` with its text (see read_corpus)."""
    return read_corpus(directory, follow_links).sources
