"""Writing a file the user named, without harming what was there.

A regular (or missing) file is replaced atomically: the data goes to a temporary file beside it,
is synced, and renamed into place, so an interrupted or failed write leaves the old file whole,
and the old file's permission bits are kept. A symlink is written through: its final target is
replaced atomically beside itself and the link stays a link. A device, FIFO or socket (and
`/dev/stdout`, `/dev/fd/N`) is opened and written directly, never replaced.

One rule keeps every output off what a run reads or owns: a path that is, or resolves to, one of
the run's inputs (its question file), or that lands inside a kept folder (the sources folder,
the index folder), is refused by name before anything is written. Eval runs, bench results,
chat transcripts, screenshots and the question history all go through it.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from myoqa.errors import MyoqaError

# Names of an open file descriptor: writing there must reach the descriptor itself (in order
# with what the process already printed), not replace the file or pipe behind it.
_FD_PATH = re.compile(r"/(?:dev/(?:fd/(\d+)|(stdout)|(stderr))|proc/(self|\d+)/fd/(\d+))")
_NEW_FILE_MODE = 0o666  # less the umask, as for any new file
_TEMP_NAME_TRIES = 100
_WRITE_CHUNK = 1 << 20


@dataclass(frozen=True)
class Kept:
    """A folder no output may land in, and what it is, to name it ("the sources folder")."""

    path: Path
    what: str


def kept_folders(sources: Path | None = None, index_dir: Path | None = None) -> list[Kept]:
    """The folders a run's outputs stay out of: the sources it reads (a file written there
    would be indexed as a source) and the index folder it owns (a file written there could
    replace CURRENT or a build's file)."""
    kept = [Kept(sources, "the sources folder")] if sources is not None else []
    return kept + ([Kept(index_dir, "the index folder")] if index_dir is not None else [])


def _fail(path: Path, reason: str, hint: str = "") -> MyoqaError:
    return MyoqaError(f"cannot write {path}: {reason}", hint)


def _final_target(path: Path) -> Path:
    """Where writing `path` lands: the end of its symlink chain (which may not exist yet)."""
    try:
        return Path(os.path.realpath(path, strict=False))
    except OSError as exc:  # pragma: no cover - realpath(strict=False) raises only on odd systems
        raise _fail(path, exc.strerror or str(exc)) from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same inode, or the same resolved path."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _fd_number(path: Path) -> int | None:
    """The descriptor a /dev/stdout-like path names, or None."""
    match = _FD_PATH.fullmatch(os.path.abspath(path))
    if not match:
        return None
    fd, out, err, pid, proc_fd = match.groups()
    if pid not in (None, "self", str(os.getpid())):
        return None
    return 1 if out else 2 if err else int(fd or proc_fd)


def holder(path: Path, kept: Sequence[Kept]) -> Kept | None:
    """The kept folder that `path`, resolved through its links, is or is inside, or None."""
    target = _final_target(Path(path))
    return next((place for place in kept
                 if target.is_relative_to(os.path.realpath(place.path))), None)


def check_folder(folder: Path, kept: Sequence[Kept]) -> None:
    """Refuse an output folder (chat exports, bench results) that is, or is inside, a kept
    folder, before anything is written into it."""
    place = holder(folder, kept)
    if place is not None:
        raise MyoqaError(f"refusing to write into {folder}: it is inside {place.what} "
                         f"{place.path}", "choose a folder outside it")


def check_output(path: Path, *, inputs: Sequence[Path] = (), kept: Sequence[Kept] = ()) -> None:
    """Refuse, before any work, an output that is or resolves to an input, lands inside a kept
    folder, is a folder, or has no folder.

    `write_output` calls this too; commands call it early so that a long run does not end in
    an error about its output file.
    """
    path = Path(path)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise MyoqaError(f"refusing to write {path}: it is the input {source}",
                             "choose another output file")
    if _fd_number(path) is not None:
        return
    target = _final_target(path)
    place = holder(path, kept)
    if place is not None:
        where = "" if str(target) == os.path.abspath(path) else f" (the link points to {target})"
        raise MyoqaError(f"refusing to write {path}: it is inside {place.what} "
                         f"{place.path}{where}", "choose an output file outside it")
    info = _stat(path, target)
    if info is None and not target.parent.is_dir():
        where = "" if target == path.absolute() else f" (where the link {path} points)"
        raise _fail(path, f"the folder {target.parent} does not exist{where}",
                    "create it first or choose another output file")
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise _fail(path, "it is a folder", "name a file inside it")
    if (info is None or stat.S_ISREG(info.st_mode)) and not os.access(target.parent, os.W_OK):
        raise _fail(path, f"the folder {target.parent} is not writable")


def _stat(path: Path, target: Path) -> os.stat_result | None:
    """What `target` (the file `path` resolves to) is now, or None when it does not exist."""
    try:
        return os.stat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None


def write_output(path: Path, data: str | bytes, *, inputs: Sequence[Path] = (),
                 kept: Sequence[Kept] = ()) -> None:
    """Write `data` (text is UTF-8) to the user-named `path`, safely for whatever it is.

    Raises MyoqaError, naming the path, for an input given as output, a path inside a kept
    folder, a folder, a missing folder, or a failed write; the previous content is then
    unchanged.
    """
    path = Path(path)
    check_output(path, inputs=inputs, kept=kept)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd = _fd_number(path)
    if fd is not None:
        _write_descriptor(path, fd, payload)
        return
    target = _final_target(path)
    info = _stat(path, target)
    if info is not None and not stat.S_ISREG(info.st_mode):
        _write_in_place(path, target, payload)
        return
    _replace_atomically(path, target, payload, info)


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view[:_WRITE_CHUNK]):]


def _write_descriptor(path: Path, fd: int, payload: bytes) -> None:
    """Write to an already open descriptor, after what Python buffered for it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.fileno() == fd:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        _write_all(fd, payload)
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None


def _write_in_place(path: Path, target: Path, payload: bytes) -> None:
    """A device, FIFO or socket: open it and write, never replace it."""
    try:
        fd = os.open(target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None
    try:
        _write_all(fd, payload)
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def _create_temporary(path: Path, target: Path) -> tuple[int, Path]:
    """A new, exclusively created file beside `target` (mode 0o666 less the umask)."""
    for _ in range(_TEMP_NAME_TRIES):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(tmp, flags, _NEW_FILE_MODE), tmp
        except FileExistsError:
            continue
        except PermissionError:
            raise _fail(path, f"the folder {target.parent} is not writable") from None
        except OSError as exc:
            raise _fail(path, exc.strerror or str(exc)) from None
    raise _fail(path, f"no free temporary name in {target.parent}")


def _replace_atomically(path: Path, target: Path, payload: bytes,
                        old: os.stat_result | None) -> None:
    """Temporary file beside `target`, synced, with the old file's mode (and owner, when
    allowed), renamed over `target`."""
    fd, tmp = _create_temporary(path, target)
    try:
        try:
            _write_all(fd, payload)
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                if os.geteuid() == 0:
                    os.fchown(fd, old.st_uid, old.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        raise _fail(path, f"{exc.strerror or exc} (the previous file is unchanged)") from None
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable; some file systems cannot sync a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
