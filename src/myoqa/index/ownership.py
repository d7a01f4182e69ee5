"""What in an index folder is myoqa's: the folder's marker, and a proof inside each entry it made.

myoqa creates an index only in a missing or empty folder, and marks it. Every folder it creates
inside (a build, an encoder, a temporary build) holds an `.owner` file naming that folder, so
pruning can tell its own entries from anything a user put there, and never removes the latter.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from pathlib import Path

from myoqa.errors import MyoqaError
from myoqa.faultpoints import pause

MARKER = ".myoqa-index"
MARKER_TEXT = json.dumps({"myoqa": "index"}) + "\n"
OWNER = ".owner"
TMP_PREFIX = ".tmp-"
# Temporary files of a marker or a proof as `write_owned_file` names them: earlier versions
# wrote both through it, and a kill could leave one behind.
MARKER_TMP = re.compile(re.escape(f"{TMP_PREFIX}{MARKER}-") + r"[0-9]+")
OWNER_TMP = re.compile(re.escape(f"{TMP_PREFIX}{OWNER}-") + r"[0-9]+")
LISTED_NAMES = 3
SMALL_FILE = 4096  # bytes: the most a marker, proof or CURRENT holds
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
        present = sorted(p.name for p in index_dir.iterdir()
                         if not _nested_indexes(p) and not _marker_leftover(p))
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
    or empty folder is created and marked, a marked one accepted.

    The marker is created in place, not renamed in: a kill after the folder is made leaves it
    empty, one after the marker is created leaves it marked; either is accepted next time.
    """
    check_place(index_dir, sources)
    if is_index_folder(index_dir):
        return
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(index_dir / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another process marked it first
            return
        try:
            pause("marker write")
            os.write(fd, MARKER_TEXT.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        for path in index_dir.iterdir():
            if _marker_leftover(path):
                path.unlink(missing_ok=True)
    except OSError as exc:
        raise MyoqaError(f"cannot create the index folder {index_dir}: {exc.strerror or exc}",
                         "pass --index-dir with a writable folder") from None


def _marker_leftover(path: Path) -> bool:
    """Whether `path` is the temporary file of a marker a killed myoqa was writing."""
    return bool(MARKER_TMP.fullmatch(path.name)) and _partial(path, MARKER_TEXT)


def _partial(path: Path, text: str) -> bool:
    """Whether `path` is a regular file holding the start of `text` (all of it, or less)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > len(text.encode()):
            return False
        return text.encode().startswith(path.read_bytes())
    except OSError:
        return False


def _legacy_index(index_dir: Path) -> bool:
    """Whether the folder holds an index of a myoqa from before the marker (CURRENT naming a
    build with a manifest); it is adopted, and its unmarked builds are left alone."""
    try:
        name = read_small(index_dir / "CURRENT").strip()
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


def make_owned_dir(path: Path, step: str) -> None:
    """Create `path` (which must not exist) with the proof that myoqa made it, in one step.

    The folder is made under its temporary name (`.tmp-<name>`, itself when `path` has one),
    gets its proof, then takes its name, so a folder with the name always holds the proof; a
    temporary one a kill left behind is recognised by `unfinished` and removed here or by
    pruning. `step` names the instant for `faultpoints`. Call it holding the build lock.
    """
    tmp = path.with_name(TMP_PREFIX + path.name.removeprefix(TMP_PREFIX))
    remove_owned(tmp)
    tmp.mkdir()
    try:
        pause(step)
        with open(tmp / OWNER, "w", encoding="utf-8") as fh:
            fh.write(_proof(tmp))
            fh.flush()
            os.fsync(fh.fileno())
        if tmp != path:
            os.rename(tmp, path)
    except BaseException:
        remove_owned(tmp)
        raise


def _proof(path: Path) -> str:
    return path.name.removeprefix(TMP_PREFIX) + "\n"


def unfinished(path: Path) -> bool:
    """Whether `path` is a folder myoqa was creating when it was stopped: a real folder holding
    nothing but its proof, whole or partly written (or that proof's temporary file)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    return all((p.name == OWNER or OWNER_TMP.fullmatch(p.name)) and _partial(p, _proof(path))
               for p in entries)


def remove_owned(path: Path) -> None:
    """Remove `path` if it is a folder myoqa made (`owned_dir`) or was making (`unfinished`);
    anything else is left alone.

    The folder first takes its temporary name, so no half-removed folder keeps a name in use,
    and its proof goes last, so a kill midway leaves a folder still proven ours, which pruning
    removes. Best effort, like `shutil.rmtree(ignore_errors=True)`.
    """
    if not (owned_dir(path) or unfinished(path)):
        return
    doomed = path.with_name(TMP_PREFIX + path.name.removeprefix(TMP_PREFIX))
    try:
        if doomed != path:
            remove_owned(doomed)
            os.rename(path, doomed)
        for entry in doomed.iterdir():
            if entry.name == OWNER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        pause("removal")
        (doomed / OWNER).unlink(missing_ok=True)
        doomed.rmdir()
    except OSError:
        return


def owned_dir(path: Path) -> bool:
    """Whether `path` is a folder myoqa made (not a link, and its proof names it)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        name = read_small(path / OWNER).strip()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(name) and path.name in (name, TMP_PREFIX + name)


def read_small(path: Path) -> str:
    """The text of a small file myoqa wrote (CURRENT, a proof), read without ever waiting: a
    FIFO, device or other file that is not a regular one, or one too large, is an OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > SMALL_FILE:
            raise OSError(errno.EFBIG, "too large for its role", str(path))
        return os.read(fd, SMALL_FILE).decode("utf-8")
    finally:
        os.close(fd)


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
