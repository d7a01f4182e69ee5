"""One build of a library at a time, across every client of a Milvus server.

Milvus has no lock, but creating a collection whose name exists fails (or, on servers that
treat an identical create as a no-op, leaves the first creator's properties), so the lock is a
collection `<alias>__lock` whose `holder` property names the process that created it. The holder
renews a `beat` property while it builds; a waiter takes the lock over when the holder is a dead
process on this machine, or its beat has not changed for LEASE_SECONDS (a holder killed on
another machine). Taking over renames the lock away first (exactly one rename of a name
succeeds), so two waiters never both take it. A holder checks it still holds the lock before
switching the alias.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from myoqa.errors import MyoqaError

LOCK_SUFFIX = "__lock"
HOLDER = "myoqa.lock.holder"
BEAT = "myoqa.lock.beat"
BEAT_SECONDS = 5.0
LEASE_SECONDS = 60.0
POLL_SECONDS = 0.5
PAD_DIM = 2

Notify = Callable[[str], None]


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: host, process id and a token unique to this acquisition."""

    host: str
    pid: int
    token: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder recorded in a lock, or None when it is not one myoqa wrote."""
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        return cls(host, int(pid), rest) if pid.isdigit() and host else None

    def is_dead_here(self) -> bool:
        """Whether the holder is a process of this machine that no longer runs."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def lock_name(alias: str) -> str:
    """The lock collection of a library's alias (never a build's collection name)."""
    return alias + LOCK_SUFFIX


class BuildLock:
    """Held while a library is built: `with BuildLock(client, alias, notify): ...`."""

    def __init__(self, client: Any, alias: str, notify: Notify) -> None:
        self.client = client
        self.alias = alias
        self.name = lock_name(alias)
        self.notify = notify
        self.me = Holder(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Wait until this process holds the lock (saying once whom it waits for)."""
        told = False
        seen: tuple[str, str] | None = None
        seen_since = time.monotonic()
        while True:
            if self._create():
                self._beater = threading.Thread(target=self._beat, daemon=True,
                                                name="myoqa-milvus-lock")
                self._beater.start()
                return
            props = self._properties(self.name)
            if props is None:  # released between our create and our look
                continue
            holder, beat = props.get(HOLDER, ""), props.get(BEAT, "")
            if (holder, beat) != seen:
                seen, seen_since = (holder, beat), time.monotonic()
            owner = Holder.parse(holder)
            if (owner is None or owner.is_dead_here()
                    or time.monotonic() - seen_since > LEASE_SECONDS):
                self._take_over(holder)
                continue
            if not told:
                self.notify(f"another myoqa ({owner.host}, process {owner.pid}) is building "
                            f"{self.alias} in Milvus; waiting for it")
                told = True
            time.sleep(POLL_SECONDS)

    def holds(self) -> bool:
        """Whether the lock is still this process's (a holder stalled past the lease may have
        lost it)."""
        props = self._properties(self.name)
        return props is not None and props.get(HOLDER) == str(self.me)

    def check(self) -> None:
        """Raise unless this process still holds the lock."""
        if not self.holds():
            raise MyoqaError(f"another myoqa took over the build of {self.alias} (this one "
                             f"stalled for over {LEASE_SECONDS:.0f} s)",
                             "the index in Milvus is unchanged; run the command again")

    def release(self) -> None:
        """Stop renewing and drop the lock if it is still this process's."""
        from pymilvus.exceptions import MilvusException

        self._stop.set()
        if self._beater is not None:
            self._beater.join()
            self._beater = None
        try:
            if self.holds():
                self.client.drop_collection(self.name)
        except MilvusException:
            return  # the server is gone: the lease lets the next build take it over

    def _create(self) -> bool:
        from pymilvus import DataType, MilvusClient
        from pymilvus.exceptions import MilvusException

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("pad", DataType.FLOAT_VECTOR, dim=PAD_DIM)
        try:
            self.client.create_collection(self.name, schema=schema,
                                          properties={HOLDER: str(self.me), BEAT: "0"})
        except MilvusException as exc:
            if "exist" not in str(exc):
                raise
            return False
        return self.holds()

    def _take_over(self, stale: str) -> None:
        """Move a stale lock aside; put it back if it turned out to be a new holder's."""
        from pymilvus.exceptions import MilvusException

        aside = f"{self.name}_stale_{uuid.uuid4().hex[:8]}"
        try:
            self.client.rename_collection(self.name, aside)
        except MilvusException:
            return  # another waiter moved it first
        props = self._properties(aside) or {}
        try:
            if props.get(HOLDER, "") == stale:
                self.client.drop_collection(aside)
            else:
                self.client.rename_collection(aside, self.name)
        except MilvusException:
            return

    def _properties(self, name: str) -> dict[str, str] | None:
        from pymilvus.exceptions import MilvusException

        try:
            return dict(self.client.describe_collection(name).get("properties") or {})
        except MilvusException as exc:
            if "exist" in str(exc):
                return None
            raise

    def _beat(self) -> None:
        from pymilvus.exceptions import MilvusException

        count = 0
        while not self._stop.wait(BEAT_SECONDS):
            count += 1
            try:
                if self.holds():
                    self.client.alter_collection_properties(self.name, {BEAT: str(count)})
            except MilvusException:
                continue  # the server may come back; the holder checks before switching
