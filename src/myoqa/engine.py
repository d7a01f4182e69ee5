"""Opening a ready-to-search index: check it against its sources, rebuild it if stale, load it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from myoqa import index as store
from myoqa.config import Settings
from myoqa.corpus import Source, load_sources, source_hashes
from myoqa.errors import MyoqaError
from myoqa.search import SearchParams, Searcher

Notify = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"myoqa: {message}", file=sys.stderr, flush=True)


def build_index(settings: Settings, params: store.BuildParams,
                progress: store.ProgressFactory | None = None,
                sources: list[Source] | None = None) -> store.Index:
    """Embed the sources (read from settings.sources unless given) into a new build, locked."""
    from myoqa.embedding import SentenceTransformerEncoder, load_model
    from myoqa.onnx_encoder import export_onnx

    sources = load_sources(settings.sources) if sources is None else sources
    with store.build_lock(settings.index_dir):
        model = load_model(params.model)
        encoder = SentenceTransformerEncoder(model)
        path = _model_dir(params.model)
        try:
            built = store.assemble(sources, params, encoder, progress or store._no_progress)
            return store.save(built, settings.index_dir, lambda out: export_onnx(path, out))
        except OSError as exc:
            raise MyoqaError(f"cannot write the index in {settings.index_dir}: "
                             f"{exc.strerror or exc}",
                             "check free space and permissions; the previous index is unchanged"
                             ) from None


def _model_dir(model: str) -> str:
    from myoqa.embedding import model_path

    return model_path(model)


def ready_index(settings: Settings, params: store.BuildParams | None = None,
                notify: Notify = _stderr, progress: store.ProgressFactory | None = None,
                sources: list[Source] | None = None) -> store.Index:
    """The current index for `settings`, built or rebuilt first when missing, damaged or stale."""
    params = params or store.BuildParams(model=settings.model)
    hashes = (source_hashes(settings.sources) if sources is None
              else {s.name: s.sha256 for s in sources})
    try:
        manifest = store.read_manifest(settings.index_dir)
        reason = store.staleness(manifest, params, hashes)
        if reason is None:
            return store.load(settings.index_dir)
    except store.IndexProblem as problem:
        reason = problem.message
    notify(f"{reason}; building the index in {settings.index_dir}")
    return build_index(settings, params, progress, sources)


def query_encoder_factory(index: store.Index) -> Callable[[], Any]:
    """How to load the query encoder: the index's ONNX export, else sentence-transformers."""
    encoder_dir = index.path / "encoder"
    model = index.manifest["model"]["name"]

    def load() -> Any:
        if (encoder_dir / "model.onnx").is_file():
            from myoqa.onnx_encoder import OnnxEncoder

            return OnnxEncoder(encoder_dir)
        from myoqa.embedding import SentenceTransformerEncoder, load_model

        return SentenceTransformerEncoder(load_model(model))

    return load


def open_searcher(settings: Settings, params: SearchParams | None = None,
                  notify: Notify = _stderr, progress: store.ProgressFactory | None = None,
                  sources: list[Source] | None = None) -> Searcher:
    """A Searcher over the current index for `settings` (the one entry point for all views)."""
    index = ready_index(settings, notify=notify, progress=progress, sources=sources)
    if index.dimension <= 0:
        raise MyoqaError(f"index in {Path(settings.index_dir)} has no vectors", store.REBUILD_HINT)
    return Searcher(index, query_encoder_factory(index), params)
