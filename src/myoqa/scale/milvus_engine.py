"""Opening the Milvus backend: check the stored build against the sources, rebuild it when
stale (built by the local build code, embedded here or on Ray, then uploaded), and search it."""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from myoqa.config import Settings
from myoqa.corpus import Source, load_sources, source_hashes
from myoqa.errors import MyoqaError, printable
from myoqa.index import BuildParams, ProgressFactory, encoders
from myoqa.index.build import EncoderInfo, build
from myoqa.index.opener import encoder_for
from myoqa.index.ownership import check_place, claim
from myoqa.scale.milvus_search import MilvusSearcher, load_build
from myoqa.scale.milvus_settings import MilvusSettings, alias_name
from myoqa.scale.milvus_store import (
    MilvusManifest,
    StaleMilvusIndex,
    connect,
    current_collection,
    read_manifest,
    upload,
)
from myoqa.scale.milvus_store import staleness as stale_reason
from myoqa.search import SearchParams

Notify = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"myoqa: {printable(message)}", file=sys.stderr, flush=True)


def made_from(params: BuildParams, milvus: MilvusSettings) -> dict[str, Any]:
    """What a Milvus build depends on besides its sources; a change means a rebuild."""
    return {**params.manifest_params(), "dense_index": milvus.dense_index}


def library_alias(settings: Settings, params: BuildParams, milvus: MilvusSettings,
                  sources: list[Source] | None) -> str:
    """The alias of this library: named by its sources folder, or (for sources given as a list,
    such as a BEIR collection) by a digest of their names; and by the settings."""
    if sources is None:
        library = settings.sources.name
    else:
        names = "\n".join(sorted(s.name for s in sources)).encode("utf-8")
        library = "set_" + hashlib.sha256(names).hexdigest()[:10]
    return alias_name(library, made_from(params, milvus))


def encoder_dir(settings: Settings) -> Path:
    """Where the ONNX encoder of the model is kept on this machine (the user's cache, shared by
    every index folder, exported once per model)."""
    return settings.cache / encoders.ENCODERS / encoders.model_key(settings.model)


def build_milvus(settings: Settings, params: BuildParams,
                 progress: ProgressFactory | None = None,
                 sources: list[Source] | None = None) -> MilvusManifest:
    """Chunk and embed the sources with the local build code (embedding here or on Ray, as
    `settings.embed_with` says), then upload them as a new build of their alias."""
    milvus = _milvus(settings)
    alias = library_alias(settings, params, milvus, sources)
    check_place(settings.index_dir, settings.sources if sources is None else None)
    sources = load_sources(settings.sources) if sources is None else sources
    if not any(s.has_words for s in sources):
        raise MyoqaError("the sources hold no text to index", "add text to the source files")
    client = connect(milvus)
    claim(settings.index_dir)
    folder, files = encoders.ensure_encoder(settings.cache, params.model, _stderr)
    built = build(sources, params, encoder_for(settings, folder), EncoderInfo(folder, files),
                  None, progress)
    return upload(client, built, alias, milvus, made_from(params, milvus),
                  {s.name: s.sha256 for s in sources}, progress)


def _milvus(settings: Settings) -> MilvusSettings:
    if settings.milvus is None:
        raise MyoqaError("the milvus backend needs a server", "pass --milvus-uri URI")
    return settings.milvus


def ready_milvus(settings: Settings, params: BuildParams | None = None, notify: Notify = _stderr,
                 progress: ProgressFactory | None = None,
                 sources: list[Source] | None = None) -> tuple[Any, MilvusManifest, str]:
    """A client, the current build's manifest and its alias; built first when missing or
    stale. Without a local sources folder the stored build is used as it is."""
    params = params or BuildParams(model=settings.model)
    check_place(settings.index_dir, settings.sources if sources is None else None)
    milvus = _milvus(settings)
    alias = library_alias(settings, params, milvus, sources)
    if sources is not None:
        hashes: dict[str, str] | None = {s.name: s.sha256 for s in sources}
    elif settings.sources.is_dir():
        hashes = source_hashes(settings.sources)
    else:
        hashes = None
    client = connect(milvus)
    try:
        manifest = read_manifest(client, alias)
        reason = stale_reason(client, manifest, made_from(params, milvus), hashes)
    except StaleMilvusIndex as problem:
        reason = problem.message
    if reason is not None:
        notify(f"{reason}; building the index in Milvus ({alias})")
        build_milvus(settings, params, progress, sources)
    return client, load_build(client, alias), alias


def query_encoder_factory(settings: Settings, alias: str, manifest: MilvusManifest
                          ) -> Callable[[], Any]:
    """The ONNX encoder kept on this machine (exported by the build, or by the first question
    asked here, which loads sentence-transformers once), else sentence-transformers."""
    directory = encoder_dir(settings)

    def load() -> Any:
        if not (directory / "model.onnx").is_file():
            with contextlib.suppress(MyoqaError):  # kept for the next question, if writable
                encoders.ensure_encoder(settings.cache, settings.model, _stderr)
        if (directory / "model.onnx").is_file():
            from myoqa.onnx_encoder import OnnxEncoder

            try:
                encoder: Any = OnnxEncoder(directory)
            except Exception as exc:  # noqa: BLE001 (onnxruntime and tokenizers raise bare Exception)
                raise MyoqaError(f"query encoder in {directory} is damaged "
                                 f"({type(exc).__name__})", f"remove {directory}") from None
        else:
            from myoqa.embedding import SentenceTransformerEncoder, load_model

            encoder = SentenceTransformerEncoder(load_model(settings.model))
        if encoder.dimension != manifest.dimension:
            raise MyoqaError(f"the query encoder makes vectors of dimension {encoder.dimension}, "
                             f"the Milvus index holds {manifest.dimension}",
                             "pass the --model the index was built with")
        return encoder

    return load


def open_milvus_searcher(settings: Settings, params: SearchParams | None = None,
                         notify: Notify = _stderr, progress: ProgressFactory | None = None,
                         sources: list[Source] | None = None) -> MilvusSearcher:
    """A Searcher over the library's current build in Milvus (built first when stale)."""
    client, manifest, alias = ready_milvus(settings, notify=notify, progress=progress,
                                           sources=sources)
    return MilvusSearcher(client, manifest, query_encoder_factory(settings, alias, manifest),
                          params)


def index_milvus(settings: Settings, rebuild: bool,
                 progress: ProgressFactory | None = None) -> str:
    """`myoqa index --backend milvus`: build when asked or stale; one line on what it holds."""
    params = BuildParams(model=settings.model)
    if rebuild:
        manifest = build_milvus(settings, params, progress)
        alias = library_alias(settings, params, _milvus(settings), None)
    else:
        _client, manifest, alias = ready_milvus(settings, params, progress=progress)
    return (f"index {alias} in Milvus at {_milvus(settings).uri} holds {manifest.passages} "
            f"passages and {manifest.spans} spans from {manifest.sources} sources (built "
            f"{manifest.built_at} in {manifest.build_seconds} s)")


def is_current(settings: Settings, searcher: Any) -> bool:
    """Whether `searcher` answers from the build its alias names now, and that build still fits
    the sources and settings."""
    params = BuildParams(model=settings.model)
    milvus = _milvus(settings)
    manifest: MilvusManifest = searcher.manifest
    alias = library_alias(settings, params, milvus, None)
    client = searcher.client
    if current_collection(client, alias) != manifest.collections["passages"]:
        return False
    hashes = source_hashes(settings.sources) if settings.sources.is_dir() else None
    return stale_reason(client, manifest, made_from(params, milvus), hashes) is None
