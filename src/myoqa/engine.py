"""The one entry point the views use: a Searcher over the current index for some settings."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from myoqa.config import Settings
from myoqa.corpus import Source, source_hashes
from myoqa.errors import printable
from myoqa.index import BuildParams, Index, IndexProblem, ProgressFactory, encoders
from myoqa.index.health import staleness
from myoqa.index.opener import Notify, ready_index
from myoqa.search import Searcher, SearchParams
from myoqa.search.late import LateSignal


def stderr_notify(message: str) -> None:
    """Show a message from opening or building the index on stderr, for the CLI."""
    print(f"myoqa: {printable(message)}", file=sys.stderr, flush=True)


def query_encoder_factory(index: Index) -> Callable[[], Any]:
    """How to load the query encoder: the ONNX encoder the index was embedded with, whose
    files `health.check` verified when the index was opened."""

    def load() -> Any:
        encoder = encoders.load_encoder(index.encoder_dir)
        if encoder.dimension != index.dimension:
            raise IndexProblem(f"query encoder in {index.encoder_dir} makes vectors of dimension "
                               f"{encoder.dimension}, the index holds {index.dimension}")
        return encoder

    return load


def is_current(settings: Settings, searcher: Searcher) -> bool:
    """Whether the index `searcher` answers from still fits the sources and settings (the chat
    checks before every question)."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import is_current as milvus_current

        return milvus_current(settings, searcher)
    return staleness(searcher.index.manifest, BuildParams(model=settings.model),
                     source_hashes(settings.sources, settings.follow_links)) is None


def open_searcher(settings: Settings, params: SearchParams | None = None,
                  notify: Notify = stderr_notify, progress: ProgressFactory | None = None,
                  sources: list[Source] | None = None) -> Searcher:
    """A Searcher over the current index for `settings` (the one entry point for all views):
    the local index, or with `settings.backend` milvus the library's collection in Milvus."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import open_milvus_searcher

        return open_milvus_searcher(settings, params, notify, progress, sources)
    index = ready_index(settings, notify, progress=progress, sources=sources)
    return Searcher(index, query_encoder_factory(index), params, late_signal(index))


def late_signal(index: Index) -> LateSignal | None:
    """The late-interaction signal over the index's stored token vectors (None when the index
    has none); its encoder loads on the first question that needs it."""
    if index.passage_tokens is None:
        return None

    def load() -> Any:
        from myoqa.colbert import ColbertEncoder

        return ColbertEncoder()

    return LateSignal(index.passage_tokens, load)
