"""What in an index folder is myoqa's: the folder's marker, and a proof inside each entry it made.

myoqa creates an index only in a missing or empty folder, and marks it. Every folder it creates
inside (a build, an encoder, a temporary build) holds an `.owner` file naming that folder, so
pruning can tell its own entries from anything a user put there, and never removes the latter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from myoqa.errors import MyoqaError

MARKER = ".myoqa-index"
OWNER = ".owner"
TMP_PREFIX = ".tmp-"
FIXED = frozenset({MARKER, "CURRENT", ".lock"})
LISTED_NAMES = 3
NESTED = "beir"


def check_place(index_dir: Path, sources: Path | None = None) -> None:
    """Refuse, without writing anything, an index folder myoqa may not build in: a file, the
    sources folder or one nested with it, or a folder holding things that are not its index."""
    if sources is not None:
        refuse_nesting(index_dir, sources)
    if index_dir.is_symlink() and not index_dir.exists():
        raise MyoqaError(f"index folder {index_dir} is a broken link", "pass --index-dir DIR")
    if index_dir.exists() and not index_dir.is_dir():
        raise MyoqaError(f"index folder {index_dir} is a file, not a folder",
                         "pass --index-dir with a new or empty folder")
    if not index_dir.is_dir() or is_index_folder(index_dir) or _legacy_index(index_dir):
        return
    try:
        present = sorted(p.name for p in index_dir.iterdir() if not _nested_indexes(p))
    except OSError as exc:
        raise MyoqaError(f"cannot read the index folder {index_dir}: {exc.strerror or exc}",
                         "pass --index-dir with a readable folder") from None
    if present:
        shown = ", ".join(present[:LISTED_NAMES]) + (", …" if len(present) > LISTED_NAMES else "")
        raise MyoqaError(f"index folder {index_dir} already holds files that are not a myoqa index "
                         f"({shown})", "pass --index-dir with a new or empty folder; "
                         "myoqa never writes into a folder it did not create")


def claim(index_dir: Path, sources: Path | None = None) -> None:
    """Make `index_dir` a myoqa index folder, or refuse by name (see `check_place`): a missing
    or empty folder is created and marked, a marked one accepted."""
    check_place(index_dir, sources)
    if is_index_folder(index_dir):
        return
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        write_owned_file(index_dir / MARKER, json.dumps({"myoqa": "index"}) + "\n")
    except OSError as exc:
        raise MyoqaError(f"cannot create the index folder {index_dir}: {exc.strerror or exc}",
                         "pass --index-dir with a writable folder") from None


def _legacy_index(index_dir: Path) -> bool:
    """Whether the folder holds an index of a myoqa from before the marker (CURRENT naming a
    build with a manifest); it is adopted, and its unmarked builds are left alone."""
    try:
        name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return name.startswith("build-") and "/" not in name and (
        index_dir / name / "manifest.json").is_file()


def _nested_indexes(path: Path) -> bool:
    """Whether `path` is the folder of collection indexes (`beir/`) holding only myoqa indexes,
    which `eval --beir` may create before the main index exists."""
    return (path.name == NESTED and path.is_dir() and not path.is_symlink()
            and all(is_index_folder(child) for child in path.iterdir()))


def is_index_folder(index_dir: Path) -> bool:
    """Whether `index_dir` carries myoqa's marker."""
    return (index_dir / MARKER).is_file()


def refuse_nesting(index_dir: Path, sources: Path) -> None:
    """Refuse an index folder inside the sources folder, or sources inside the index folder."""
    index_real, sources_real = index_dir.resolve(), sources.resolve()
    if index_real == sources_real:
        raise MyoqaError(f"the index folder {index_dir} is the sources folder",
                         "pass --index-dir with a separate folder")
    if index_real.is_relative_to(sources_real):
        raise MyoqaError(f"the index folder {index_dir} is inside the sources folder {sources}",
                         "pass --index-dir with a folder outside the sources")
    if sources_real.is_relative_to(index_real):
        raise MyoqaError(f"the sources folder {sources} is inside the index folder {index_dir}",
                         "keep sources and index in separate folders")


def make_owned_dir(path: Path) -> None:
    """Create `path` (which must not exist) with the proof that myoqa made it."""
    path.mkdir()
    write_owned_file(path / OWNER, path.name.removeprefix(TMP_PREFIX) + "\n")


def owned_dir(path: Path) -> bool:
    """Whether `path` is a folder myoqa made (not a link, and its proof names it)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        name = (path / OWNER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(name) and path.name in (name, TMP_PREFIX + name)


def write_owned_file(path: Path, text: str) -> None:
    """Write a small file myoqa owns, synced, replacing it atomically."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
