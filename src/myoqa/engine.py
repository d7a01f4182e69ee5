"""Opening a ready-to-search index: check it against its sources, rebuild it if stale, load it."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from myoqa import index as store
from myoqa.config import Settings
from myoqa.corpus import Skipped, Source, read_corpus, source_hashes
from myoqa.errors import MyoqaError, printable
from myoqa.search import Searcher, SearchParams

Notify = Callable[[str], None]
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _stderr(message: str) -> None:
    print(f"myoqa: {printable(message)}", file=sys.stderr, flush=True)


def _write_error(index_dir: Path, exc: OSError) -> MyoqaError:
    """The one-line reason a build could not be written; the previous index is untouched."""
    kept = "the previous index is unchanged"
    if exc.errno in READ_ONLY:
        return MyoqaError(f"cannot write the index: {index_dir} is not writable",
                          f"make it writable or pass --index-dir DIR; {kept}")
    if exc.errno in NO_SPACE:
        return MyoqaError(f"cannot write the index in {index_dir}: no space left on the device",
                          f"free some space and run `myoqa index`; {kept}")
    return MyoqaError(f"cannot write the index in {index_dir}: {exc.strerror or exc}",
                      f"check free space and permissions; {kept}")


MAX_NAMED_SKIPS = 3


def _note_skipped(skipped: list[Skipped], notify: Notify) -> None:
    """Name each document that yielded no text, and the files of formats myoqa does not read
    (grouped beyond MAX_NAMED_SKIPS; `info` lists them all)."""
    other = [s for s in skipped if s.sha256 is None]
    for s in skipped:
        if s.sha256 is not None or len(other) <= MAX_NAMED_SKIPS:
            notify(f"note: skipped {s.name}: {s.reason}")
    if len(other) > MAX_NAMED_SKIPS:
        names = ", ".join(s.name for s in other[:MAX_NAMED_SKIPS])
        notify(f"note: skipped {len(other)} files of formats myoqa does not read ({names}, …)")


def _with_text(sources: list[Source], notify: Notify, skipped: list[Skipped]) -> None:
    """Note the sources without words (they add nothing), and refuse when none has any."""
    _note_skipped(skipped, notify)
    if not any(s.has_words for s in sources):
        raise MyoqaError("the sources hold no text to index", "add text to the source files")
    noted = {s.name for s in skipped}
    empty = [s.name for s in sources if not s.has_words and s.name not in noted]
    if len(empty) > 3:
        notify(f"note: {len(empty)} sources hold no text ({', '.join(empty[:3])}, …); "
               "nothing from them is indexed")
    else:
        for name in empty:
            notify(f"note: source {name} holds no text; nothing from it is indexed")


def _load_current(index_dir: Path, params: store.BuildParams, hashes: dict[str, str]
                  ) -> store.Index:
    """The current build when it fits `params` and `hashes`, else IndexProblem saying why not.

    A rebuild may switch CURRENT and prune the build a reader had started on; the reader then
    retries on the build CURRENT names now instead of taking the index for damaged.
    """
    while True:
        build = store.current_build(index_dir)
        try:
            reason = store.staleness(store.read_manifest(index_dir), params, hashes)
            if reason:
                raise store.IndexProblem(reason)
            index = store.load(index_dir)
            reason = store.staleness(index.manifest, params, hashes)
            if reason:
                raise store.IndexProblem(reason)
        except store.IndexProblem:
            if store.current_build(index_dir) != build:
                continue
            raise
        encoder = index.path / "encoder" / "model.onnx"
        if index.manifest["model"]["query_encoder"] == "onnx" and not encoder.is_file():
            raise store.IndexProblem(f"query encoder file {encoder} is missing", store.REBUILD_HINT)
        return index


@contextlib.contextmanager
def build_encoder(settings: Settings, model: Any
                  ) -> Iterator[tuple[Any, Callable[[Path], None]]]:
    """The encoder a build embeds with (sentence-transformers here, or the ONNX encoder on Ray
    with --embed-with ray) and how it writes the query encoder into the build."""
    if settings.embed_with == "ray":
        from myoqa.scale.ray_embed import ray_build_encoder

        with ray_build_encoder(model, settings.index_dir, settings.ray_address) as pair:
            yield pair
        return
    from myoqa.embedding import SentenceTransformerEncoder
    from myoqa.onnx_encoder import export_onnx

    yield SentenceTransformerEncoder(model), lambda out: export_onnx(model, out)


def build_index(settings: Settings, params: store.BuildParams,
                progress: store.ProgressFactory | None = None,
                sources: list[Source] | None = None, notify: Notify = _stderr,
                force: bool = True) -> store.Index:
    """Embed the sources (read from settings.sources unless given) into a new build, locked.

    Without `force`, a build that another process finished while this one waited for the lock
    is used instead of building the same index again.
    """
    skipped: list[Skipped] = []
    if sources is None:
        corpus = read_corpus(settings.sources)
        sources, skipped = corpus.sources, corpus.skipped
    _with_text(sources, notify, skipped)
    index_dir = settings.index_dir
    try:
        if index_dir.is_dir() and not os.access(index_dir, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(index_dir))
        with store.build_lock(index_dir):
            if not force:
                with contextlib.suppress(store.IndexProblem):
                    return _load_current(index_dir, params, {s.name: s.sha256 for s in sources})
            from myoqa.embedding import load_model

            model = load_model(params.model)
            with build_encoder(settings, model) as (encoder, export):
                built = store.assemble(sources, params, encoder, progress)
                return store.save(built, index_dir, export)
    except OSError as exc:
        raise _write_error(index_dir, exc) from None


def ready_index(settings: Settings, params: store.BuildParams | None = None,
                notify: Notify = _stderr, progress: store.ProgressFactory | None = None,
                sources: list[Source] | None = None) -> store.Index:
    """The current index for `settings`, built or rebuilt first when missing, damaged or stale.

    An index of a newer format is refused rather than rebuilt (MyoqaError, not IndexProblem).
    """
    params = params or store.BuildParams(model=settings.model)
    hashes = (source_hashes(settings.sources) if sources is None
              else {s.name: s.sha256 for s in sources})
    try:
        return _load_current(settings.index_dir, params, hashes)
    except store.IndexProblem as problem:
        notify(f"{problem.message}; building the index in {settings.index_dir}")
    return build_index(settings, params, progress, sources, notify, force=False)


def query_encoder_factory(index: store.Index, model: str | None = None) -> Callable[[], Any]:
    """How to load the query encoder: the index's ONNX export, else sentence-transformers.

    The fallback loads `model` (the user's setting; by default the name the manifest records,
    which `ready_index` has checked against that setting). A damaged export, or one whose
    vectors do not fit the index, is an IndexProblem naming the fix.
    """
    encoder_dir = index.path / "encoder"
    model = model or index.manifest["model"]["name"]

    def load() -> Any:
        if (encoder_dir / "model.onnx").is_file():
            from myoqa.onnx_encoder import OnnxEncoder

            try:
                encoder: Any = OnnxEncoder(encoder_dir)
            except Exception as exc:  # noqa: BLE001 (onnxruntime and tokenizers raise bare Exception)
                raise store.IndexProblem(f"query encoder in {encoder_dir} is damaged "
                                         f"({type(exc).__name__})", store.REBUILD_HINT) from None
        else:
            from myoqa.embedding import SentenceTransformerEncoder, load_model

            encoder = SentenceTransformerEncoder(load_model(model))
        if encoder.dimension != index.dimension:
            raise store.IndexProblem(f"query encoder in {encoder_dir} makes vectors of dimension "
                                     f"{encoder.dimension}, the index holds {index.dimension}",
                                     store.REBUILD_HINT)
        return encoder

    return load


def is_current(settings: Settings, searcher: Searcher) -> bool:
    """Whether the index `searcher` answers from still fits the sources and settings (the chat
    checks before every question)."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import is_current as milvus_current

        return milvus_current(settings, searcher)
    params = store.BuildParams(model=settings.model)
    return store.staleness(searcher.index.manifest, params,
                           source_hashes(settings.sources)) is None


def open_searcher(settings: Settings, params: SearchParams | None = None,
                  notify: Notify = _stderr, progress: store.ProgressFactory | None = None,
                  sources: list[Source] | None = None) -> Searcher:
    """A Searcher over the current index for `settings` (the one entry point for all views):
    the local index, or with `settings.backend` milvus the library's collection in Milvus."""
    if settings.backend == "milvus":
        from myoqa.scale.milvus_engine import open_milvus_searcher

        return open_milvus_searcher(settings, params, notify, progress, sources)
    index = ready_index(settings, notify=notify, progress=progress, sources=sources)
    return Searcher(index, query_encoder_factory(index, settings.model), params)
