"""What a backend is to the views: where a library's index lives (local files, a Milvus
server) behind four verbs, so the CLI, the chat, eval and bench never reach past them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from myoqa.diagnostics import Notify, say

if TYPE_CHECKING:
    from myoqa.corpus import Source
    from myoqa.index import ProgressFactory
    from myoqa.search import Searcher, SearchParams


@dataclass(frozen=True)
class Built:
    """What a build holds, for `myoqa index` to say: where it is (a folder, or a collection
    in Milvus at a server), its counts, when and how fast it was built, and how many vectors
    it took from the build before (None where builds do not reuse them)."""

    where: str
    passages: int
    spans: int
    sources: int
    built_at: str
    build_seconds: float
    reused_vectors: int | None = None


class Status(Protocol):
    """A backend's state for `info`/`status`: current, stale (why), damaged (what) or missing."""

    @property
    def reason(self) -> str | None: ...

    def to_json(self) -> dict[str, Any]: ...


class Backend(Protocol):
    """Open a searcher, say whether it is still current, build, report the state."""

    def open(self, params: SearchParams | None = None, notify: Notify = say,
             progress: ProgressFactory | None = None, sources: list[Source] | None = None,
             preload_late: bool = True, preload_query: bool = False) -> Searcher:
        """A searcher over the current index (built or rebuilt first when missing or stale);
        the late-interaction and query encoders start loading at once when asked to."""
        ...

    def is_current(self, searcher: Searcher) -> bool:
        """Whether the index `searcher` answers from still fits the sources and settings."""
        ...

    def build(self, rebuild: bool = False, notify: Notify = say,
              progress: ProgressFactory | None = None,
              sources: list[Source] | None = None) -> Built:
        """The current index, built when missing or stale, or anew when `rebuild`."""
        ...

    def status(self) -> Status:
        """The index's state for the sources here, read without building anything."""
        ...
