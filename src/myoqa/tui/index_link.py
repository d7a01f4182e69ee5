"""The chat's one call into the storage layer: a searcher whose index fits the sources on disk.

The chat checks the sources before every question, as `myoqa ask` does, so an edited source is
never answered from its old text. Everything the chat needs from index storage goes through
`current_searcher`, so a change of the storage API is one edit here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from myoqa.config import Settings
    from myoqa.index import ProgressFactory
    from myoqa.search import Searcher

Notify = Callable[[str], None]
# What the chat calls to get its searcher: the one it has (None at start), a callback for
# messages and one for build progress; returns the same searcher while it is current.
SearcherFactory = Callable[["Searcher | None", Notify, "ProgressFactory"], "Searcher"]


def current_searcher(settings: Settings, searcher: Searcher | None, notify: Notify,
                     progress: ProgressFactory) -> Searcher:
    """`searcher` while its index fits the sources and settings, else a searcher over the
    current index, rebuilt first (with `notify` saying why) when it is missing or stale."""
    from myoqa.engine import is_current, open_searcher

    if searcher is not None and is_current(settings, searcher):
        return searcher
    return open_searcher(settings, notify=notify, progress=progress)


def searcher_factory(settings: Settings) -> SearcherFactory:
    """The chat's searcher factory for `settings`."""
    def factory(searcher: Searcher | None, notify: Notify, progress: ProgressFactory
                ) -> Searcher:
        return current_searcher(settings, searcher, notify, progress)

    return factory
