"""The connection to Milvus: a client whose server answered, and every Milvus failure as one line.

A milvus-lite file URI serves one process at a time (it holds an advisory lock in its folder):
another process using it is waited for. A server that drops a handshake is tried again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from myoqa.config import MilvusSettings
from myoqa.errors import MyoqaError

REBUILD_HINT = "run `myoqa index --backend milvus --rebuild`"
CALL_SECONDS = 30
CONNECT_RETRY_SECONDS = (0.5, 1.0, 2.0)  # a server that refused a connection is tried again
UNAVAILABLE = 2  # pymilvus's code for a server it cannot connect to
LITE_LOCK = "LOCK"  # milvus-lite's advisory lock in its database folder
LITE_MARK = "collections"  # a folder every milvus-lite database holds
BATCH_ROWS = 1000
"""Rows read or written in one call (a query alone is capped by the server)."""

_LITE_OPENED: set[str] = set()  # milvus-lite files this process runs (it holds their LOCK)


def connect(settings: MilvusSettings, notify: Callable[[str], None] | None = None) -> Any:
    """A MilvusClient whose server and database answered, or one clear error. A milvus-lite
    file serves one process at a time: another one using it is waited for."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own keep-alive chatter on stderr
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    for name in ("pymilvus", "milvus_lite"):  # errors reach the user as one line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    told = False
    mine = settings.is_file and os.path.abspath(settings.uri) in _LITE_OPENED
    retries = iter(CONNECT_RETRY_SECONDS)
    while True:
        if settings.is_file and not mine:
            told = _wait_for_lite(settings.uri, notify, told)
        try:
            # dedicated: a connection pymilvus shares per URI, idle long enough, can fail to
            # recover ("Fail connecting to server") although the server is up
            client = MilvusClient(uri=settings.uri, token=settings.token, timeout=CALL_SECONDS,
                                  dedicated=True)
            client.list_collections()  # a wrong database name is found here, not after a build
            if settings.is_file:
                _LITE_OPENED.add(os.path.abspath(settings.uri))
            return client
        except (MilvusException, OSError, ValueError) as exc:
            if settings.is_file and _lite_busy(settings.uri):
                continue  # another process opened it between our wait and our open
            if unreachable(exc):
                pause = next(retries, None)
                if pause is not None:  # a busy server can drop one handshake and take the next
                    time.sleep(pause)
                    continue
                raise connection_error(exc, settings.uri) from None
            raise MyoqaError(f"Milvus at {settings.uri} refused the connection ({reason(exc)})",
                             "check --milvus-uri: a database name follows the port, as in "
                             "http://host:19530/NAME; check --milvus-token") from None


def unreachable(exc: BaseException) -> bool:
    """Whether a failed Milvus call means the server could not be reached (or stopped)."""
    from pymilvus.exceptions import MilvusException

    return (not isinstance(exc, MilvusException) or getattr(exc, "code", None) == UNAVAILABLE
            or any(word in reason(exc).lower() for word in ("connect", "unavailable",
                                                              "deadline")))


def connection_error(exc: BaseException, uri: str) -> MyoqaError:
    """One line for a failed Milvus call: the server gone or unreachable, or what it refused."""
    why = reason(exc)
    if unreachable(exc):
        return MyoqaError(f"cannot reach the Milvus server at {uri} ({why})",
                          "check --milvus-uri and that the server is running")
    return MyoqaError(f"Milvus at {uri} refused a request ({why})",
                      "check --milvus-uri and its database name; if the index is damaged, "
                      f"{REBUILD_HINT}")


@contextlib.contextmanager
def reported(uri: str) -> Iterator[None]:
    """Turn a Milvus failure inside the block (the server stopped mid-question, a dropped
    collection) into one clear error."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise connection_error(exc, uri) from None


def _lite_lock(uri: str) -> Path:
    return Path(uri) / LITE_LOCK


def _check_lite(uri: str) -> None:
    """A milvus-lite URI must name a new path or a milvus-lite database folder: milvus-lite
    would write its files into any folder, and fails with a traceback on a file."""
    path = Path(uri)
    if not path.exists() and not path.is_symlink():
        if not path.parent.is_dir():
            raise MyoqaError(f"the folder of the milvus-lite database {uri} does not exist",
                             "create it, or pass another --milvus-uri")
        return
    if not path.is_dir():
        raise MyoqaError(f"--milvus-uri {uri} names a file, not a milvus-lite database",
                         "pass a new path ending in .db, or an http:// server")
    if any(path.iterdir()) and not (path / LITE_MARK).is_dir():
        raise MyoqaError(f"--milvus-uri {uri} names a folder that is not a milvus-lite database",
                         "pass a new path ending in .db, or an http:// server")


def _lite_busy(uri: str) -> bool:
    """Whether another process has the milvus-lite database open (holds its LOCK)."""
    try:
        fd = os.open(_lite_lock(uri), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _wait_for_lite(uri: str, notify: Callable[[str], None] | None, told: bool) -> bool:
    """Check the path, then wait while another process has the database open; return whether
    the user was told of the wait."""
    _check_lite(uri)
    if not _lite_busy(uri):
        return told
    if not told and notify is not None:
        notify(f"another process has the milvus-lite database {uri} open; waiting for it")
    fd = os.open(_lite_lock(uri), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released at once: milvus-lite takes it next
    finally:
        os.close(fd)
    return True


def reason(exc: BaseException) -> str:
    """The first line of a Milvus error, short enough for one line to the user."""
    return str(getattr(exc, "message", "") or exc).splitlines()[0][:200]


def drop(client: Any, name: str) -> None:
    """Drop a collection; one already gone (or refused) is left as it is."""
    from pymilvus.exceptions import MilvusException

    try:
        client.drop_collection(name)
    except MilvusException:
        return
