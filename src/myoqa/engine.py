"""The one entry point the views use: a Searcher over the current index for some settings."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myoqa.config import Settings
from myoqa.corpus import Source, source_hashes
from myoqa.embedders import encoder_factory
from myoqa.errors import printable
from myoqa.index import Index, IndexProblem, ProgressFactory, encoders
from myoqa.index.health import staleness
from myoqa.index.opener import Notify, build_params, ready_index
from myoqa.index.store import current_build, read_manifest
from myoqa.search import Searcher, SearchParams
from myoqa.search.late import LateSignal, Preload

if TYPE_CHECKING:
    from myoqa.colbert import LateModel


def stderr_notify(message: str) -> None:
    """Show a message from opening or building the index on stderr, for the CLI."""
    print(f"myoqa: {printable(message)}", file=sys.stderr, flush=True)


def query_encoder_factory(index: Index, early: Preload | None = None, alone: bool = False
                          ) -> Callable[[], Any]:
    """How to load the query encoder: the ONNX encoder the index was embedded with, whose
    files `health.check` verified when the index was opened (the one loading in `early`,
    see `preload_query_encoder`, when it is of this build); `alone`: no late-interaction
    encoder runs beside it, so its threads may spin."""

    def load() -> Any:
        encoder = None
        if early is not None:
            with contextlib.suppress(Exception):  # e.g. no index yet: load it now
                build, encoder = early.result()
                if build != index.path:
                    encoder = None
        encoder = encoder or encoders.load_encoder(index.encoder_dir, spin=alone)
        if encoder.dimension != index.dimension:
            raise IndexProblem(f"query encoder in {index.encoder_dir} makes vectors of dimension "
                               f"{encoder.dimension}, the index holds {index.dimension}")
        return encoder

    return load


def preload_query_encoder(index_dir: Path, alone: bool = False) -> Preload:
    """Start loading, on a thread, the query encoder of the current build in `index_dir`
    (with its files checked as `health.check` does), so that onnxruntime builds its session
    while the index opens: it leaves Python's lock meanwhile. Gives (build, encoder)."""

    def load() -> tuple[Path, Any]:
        build = current_build(index_dir)
        model = read_manifest(build).model
        folder = encoders.encoder_folder(index_dir, model.encoder)
        problem = encoders.encoder_damage(folder, model.encoder_files)
        if problem:
            raise IndexProblem(problem)
        return build, encoders.load_encoder(folder, spin=alone)

    return Preload(load)


def is_current(settings: Settings, searcher: Searcher) -> bool:
    """Whether the index `searcher` answers from still fits the sources and settings (the chat
    checks before every question)."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import is_current as milvus_current

        return milvus_current(settings, searcher)
    return staleness(searcher.index.manifest, build_params(settings),
                     source_hashes(settings.sources, settings.follow_links)) is None


def open_searcher(settings: Settings, params: SearchParams | None = None,
                  notify: Notify = stderr_notify, progress: ProgressFactory | None = None,
                  sources: list[Source] | None = None, preload_late: bool = True,
                  preload_query: bool = False) -> Searcher:
    """A Searcher over the current index for `settings` (the one entry point for all views):
    the local index, or with `settings.backend` milvus the library's collection in Milvus.

    With late interaction on (and `preload_late`), its encoder starts loading on a thread at
    once, from the graph a build saved, while the index and the query encoder load; with
    `preload_query` (a one-shot question that needs it) the query encoder too. The chat
    leaves it off: it would slow the index's opening, so its first answer (BM25) comes later."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import open_milvus_searcher

        return open_milvus_searcher(settings, params, notify, progress, sources)
    late = settings.late
    early = None
    if late is not None and preload_late and (settings.cache / encoders.ENCODERS).is_dir():
        early = Preload(lambda: late_encoder(settings.cache, late))
    alone = late is None
    dense = preload_query_encoder(settings.index_dir, alone) if preload_query else None
    index = ready_index(settings, notify, progress=progress, sources=sources,
                        make_encoder=encoder_factory(settings))
    return Searcher(index, query_encoder_factory(index, dense, alone), params,
                    late_signal(index, settings, early))


def late_encoder(cache: Path, late: LateModel) -> Any:
    """The late-interaction encoder: from the optimised graph a build saved in the user's
    `cache` when it is there and intact, else from the model itself (slower to start)."""
    from myoqa.colbert import ColbertEncoder

    return ColbertEncoder(late.path, graph=encoders.saved_late_graph(cache, late))


def late_signal(index: Index, settings: Settings, early: Preload | None = None
                ) -> LateSignal | None:
    """The late-interaction signal over the index's stored token vectors (None when late
    interaction is off or the index has none of this model); its encoder is the one loading
    in `early`, else loads on the first question that needs it."""
    late = settings.late
    if (late is None or index.passage_tokens is None or index.manifest.late is None
            or index.manifest.late.model != late.key):
        return None

    def load() -> Any:
        if early is not None:
            with contextlib.suppress(Exception):  # e.g. a rebuild replaced its graph: again
                return early.result()
        return late_encoder(settings.cache, late)

    return LateSignal(index.passage_tokens, Preload(load, start=False).result)
