"""The one door the views use: the backend the settings name (local files or Milvus), and a
Searcher over its current index."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myoqa.backend import Backend, Built
from myoqa.config import Settings
from myoqa.corpus import Source, source_hashes
from myoqa.diagnostics import Notify, say
from myoqa.embedders import check_embedder, encoder_factory
from myoqa.errors import MyoqaError
from myoqa.index import Index, IndexProblem, ProgressFactory, encoders
from myoqa.index.health import Health, State, check, staleness
from myoqa.index.opener import build_index, build_params, ready_index
from myoqa.index.ownership import check_place
from myoqa.index.store import current_build, read_manifest
from myoqa.search import Searcher, SearchParams
from myoqa.search.late import LateSignal, Preload

if TYPE_CHECKING:
    from myoqa.colbert import LateModel


def backend_for(settings: Settings) -> Backend:
    """The backend `settings.backend` names; Milvus (and with it pymilvus) is imported only
    when it is the one asked for."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import MilvusBackend

        return MilvusBackend(settings)
    return LocalBackend(settings)


def open_searcher(settings: Settings, params: SearchParams | None = None,
                  notify: Notify = say, progress: ProgressFactory | None = None,
                  sources: list[Source] | None = None, preload_late: bool = True,
                  preload_query: bool = False) -> Searcher:
    """A Searcher over the current index for `settings` (see `Backend.open`)."""
    return backend_for(settings).open(params, notify, progress, sources, preload_late,
                                      preload_query)


def is_current(settings: Settings, searcher: Searcher) -> bool:
    """Whether the index `searcher` answers from still fits the sources and settings (the chat
    checks before every question)."""
    return backend_for(settings).is_current(searcher)


def check_index_folder(settings: Settings) -> None:
    """Refuse an index folder `ask` would refuse (a file, one nested with the sources, one
    holding things that are not its index), before anything is read or written (eval checks
    it before loading a BEIR collection)."""
    check_place(settings.index_dir, settings.sources)


@dataclass(frozen=True)
class LocalBackend:
    """The index in a folder on this machine (`settings.index_dir`)."""

    settings: Settings

    def open(self, params: SearchParams | None = None, notify: Notify = say,
             progress: ProgressFactory | None = None, sources: list[Source] | None = None,
             preload_late: bool = True, preload_query: bool = False) -> Searcher:
        """With late interaction on (and `preload_late`), its encoder starts loading on a
        thread at once, from the graph a build saved, while the index and the query encoder
        load; with `preload_query` (a one-shot question that needs it) the query encoder too.
        The chat leaves it off: it would slow the index's opening, so its first answer (BM25)
        comes later."""
        settings = self.settings
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

    def is_current(self, searcher: Searcher) -> bool:
        settings = self.settings
        return staleness(searcher.index.manifest, build_params(settings),
                         source_hashes(settings.sources, settings.follow_links)) is None

    def build(self, rebuild: bool = False, notify: Notify = say,
              progress: ProgressFactory | None = None,
              sources: list[Source] | None = None) -> Built:
        settings = self.settings
        check_embedder(settings)
        if rebuild:
            index = build_index(settings, build_params(settings), notify, progress, sources,
                                make_encoder=encoder_factory(settings))
        else:
            index = ready_index(settings, notify, progress=progress, sources=sources,
                                make_encoder=encoder_factory(settings))
        m = index.manifest
        return Built(str(index.path), m.counts.passages, m.counts.spans, m.counts.sources,
                     m.built_at, m.build_seconds, m.reused_vectors)

    def status(self) -> Health:
        """Checked in full (every file against its hash); sources that cannot be read make a
        current index stale, with their problem as the reason."""
        settings = self.settings
        try:
            hashes = source_hashes(settings.sources, settings.follow_links)
        except MyoqaError as exc:
            hashes, problem = {}, exc.message
        else:
            problem = None
        state = check(settings.index_dir, build_params(settings), hashes, full=True)
        if problem and state.state is State.CURRENT:
            state = replace(state, state=State.STALE, reason=problem)
        return state


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
