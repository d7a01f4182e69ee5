"""Opening the Milvus backend: check the stored build against the sources, rebuild it when
stale (built by the local build code, embedded here or on Ray, then uploaded), and search it."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from myoqa.backend import Built
from myoqa.config import MilvusSettings, Settings
from myoqa.corpus import Source, load_sources, source_hashes
from myoqa.diagnostics import Notify, say
from myoqa.embedders import check_embedder, encoder_for
from myoqa.errors import MyoqaError
from myoqa.index import BuildParams, ProgressFactory, encoders
from myoqa.index.build import EncoderInfo
from myoqa.index.ownership import check_place, claim
from myoqa.scale.milvus_client import connect, reported
from myoqa.scale.milvus_lock import BuildLock
from myoqa.scale.milvus_manifest import (
    MilvusManifest,
    StaleMilvusIndex,
    check_owner,
    current_collection,
    read_manifest,
)
from myoqa.scale.milvus_manifest import staleness as stale_reason
from myoqa.scale.milvus_schema import SourceText
from myoqa.scale.milvus_search import MilvusLibrary, load_build
from myoqa.scale.milvus_settings import alias_name
from myoqa.scale.milvus_upload import stream_build
from myoqa.search import Searcher, SearchParams


def made_from(params: BuildParams, milvus: MilvusSettings) -> dict[str, Any]:
    """What a Milvus build depends on besides its sources; a change means a rebuild."""
    return {**params.manifest_params(), "dense_index": milvus.dense_index}


def library_identity(settings: Settings, sources: list[Source] | None) -> str:
    """What a library is, recorded in each of its builds: its sources folder's resolved path,
    or (for sources given as a list, such as a BEIR collection) a digest of their names."""
    if sources is None:
        return os.path.realpath(settings.sources)
    names = "\n".join(sorted(s.name for s in sources)).encode("utf-8")
    return "set_" + hashlib.sha256(names).hexdigest()[:10]


def library_alias(settings: Settings, params: BuildParams, milvus: MilvusSettings,
                  sources: list[Source] | None) -> str:
    """The alias of this library: `--collection`, else named by its sources folder and a digest
    of the folder's resolved path and the settings (two folders called `msrc` are two
    libraries)."""
    if milvus.collection:
        return milvus.collection
    library = library_identity(settings, sources)
    name = Path(library).name if sources is None else library
    return alias_name(name, library, made_from(params, milvus))


def encoder_dir(settings: Settings) -> Path:
    """Where the ONNX encoder of the model is kept on this machine (the user's cache, shared by
    every index folder, exported once per model)."""
    return settings.cache / encoders.ENCODERS / encoders.export_key(settings.model)


def build_milvus(settings: Settings, params: BuildParams,
                 progress: ProgressFactory | None = None,
                 sources: list[Source] | None = None, notify: Notify = say
                 ) -> MilvusManifest:
    """Chunk and embed the sources with the local build code (embedding here or on Ray, as
    `settings.embed_with` says), then upload them as a new build of their alias, holding the
    library's build lock."""
    milvus = _milvus(settings)
    alias = library_alias(settings, params, milvus, sources)
    check_place(settings.index_dir, settings.sources if sources is None else None)
    library = library_identity(settings, sources)
    client = connect(milvus, notify)
    with reported(milvus.uri), BuildLock(client, alias, notify) as lock:
        check_owner(client, alias, library)
        return _build(client, settings, params, progress, sources, alias, library, lock)


def _build(client: Any, settings: Settings, params: BuildParams,
           progress: ProgressFactory | None, sources: list[Source] | None, alias: str,
           library: str, lock: BuildLock) -> MilvusManifest:
    """Build and upload, the lock held (checked again before the alias moves)."""
    milvus = _milvus(settings)
    sources = load_sources(settings.sources, settings.follow_links) if sources is None else sources
    if not any(s.has_words for s in sources):
        raise MyoqaError("the sources hold no text to index", "add text to the source files")
    claim(settings.index_dir)
    folder, files = encoders.ensure_encoder(settings.cache, params.model, say)
    return stream_build(client, [SourceText(s.name, s.text, s.sha256) for s in sources], params,
                        encoder_for(settings, folder), EncoderInfo(folder, files), alias, library,
                        milvus, progress, lock.check)


def _milvus(settings: Settings) -> MilvusSettings:
    if settings.milvus is None:
        raise MyoqaError("the milvus backend needs a server", "pass --milvus-uri URI")
    return settings.milvus


def _local_hashes(settings: Settings, sources: list[Source] | None) -> dict[str, str] | None:
    """The sources' hashes, or None for a client without the sources folder."""
    if sources is not None:
        return {s.name: s.sha256 for s in sources}
    if settings.sources.is_dir():
        return source_hashes(settings.sources, settings.follow_links)
    return None


def _staleness(client: Any, alias: str, library: str, params: BuildParams, dense_index: str,
               hashes: dict[str, str] | None) -> str | None:
    """Why the library's build must be (re)built, or None; an out-of-date build of another
    library is refused, never replaced."""
    try:
        manifest = read_manifest(client, alias)
    except StaleMilvusIndex as problem:
        return problem.message
    reason = stale_reason(manifest, params, dense_index, hashes)
    if reason is not None and manifest.library != library:
        check_owner(client, alias, library)
    return reason


def ready_milvus(settings: Settings, params: BuildParams | None = None, notify: Notify = say,
                 progress: ProgressFactory | None = None,
                 sources: list[Source] | None = None) -> tuple[Any, MilvusManifest, str]:
    """A client, the current build's manifest and its alias; built first when missing or
    stale (once, however many clients ask at the same time). Without a local sources folder
    the stored build is used as it is."""
    params = params or BuildParams(model=settings.model)
    check_place(settings.index_dir, settings.sources if sources is None else None)
    milvus = _milvus(settings)
    alias = library_alias(settings, params, milvus, sources)
    library = library_identity(settings, sources)
    hashes = _local_hashes(settings, sources)
    client = connect(milvus, notify)
    with reported(milvus.uri):
        kind = milvus.dense_index
        if _staleness(client, alias, library, params, kind, hashes) is not None:
            with BuildLock(client, alias, notify) as lock:
                reason = _staleness(client, alias, library, params, kind, hashes)  # built meanwhile?
                if reason is not None:
                    notify(f"{reason}; building the index in Milvus ({alias})")
                    _build(client, settings, params, progress, sources, alias, library, lock)
        return client, load_build(client, alias), alias


def query_encoder_factory(settings: Settings, alias: str, manifest: MilvusManifest  # noqa: ARG001
                          ) -> Callable[[], Any]:
    """The ONNX encoder kept on this machine (exported by the build, or by the first question
    asked here, which loads sentence-transformers once), else sentence-transformers."""
    directory = encoder_dir(settings)

    def load() -> Any:
        if not (directory / "model.onnx").is_file():
            with contextlib.suppress(MyoqaError):  # kept for the next question, if writable
                encoders.ensure_encoder(settings.cache, settings.model, say)
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
                         notify: Notify = say, progress: ProgressFactory | None = None,
                         sources: list[Source] | None = None) -> Searcher:
    """A Searcher over the library's current build in Milvus (built first when stale)."""
    client, manifest, alias = ready_milvus(settings, notify=notify, progress=progress,
                                           sources=sources)
    return Searcher(MilvusLibrary(client, manifest, _milvus(settings).uri),
                    query_encoder_factory(settings, alias, manifest), params)


def index_milvus(settings: Settings, rebuild: bool, progress: ProgressFactory | None = None,
                 notify: Notify = say, sources: list[Source] | None = None) -> Built:
    """`myoqa index --backend milvus`: build when asked or stale; what the build holds."""
    params = BuildParams(model=settings.model)
    milvus = _milvus(settings)
    if rebuild:
        manifest = build_milvus(settings, params, progress, sources, notify)
        alias = library_alias(settings, params, milvus, sources)
    else:
        _client, manifest, alias = ready_milvus(settings, params, notify, progress, sources)
    return Built(f"{alias} in Milvus at {milvus.uri}", manifest.passages, manifest.spans,
                 manifest.sources, manifest.built_at, manifest.build_seconds)


def is_current(settings: Settings, searcher: Any) -> bool:
    """Whether `searcher` answers from the build its alias names now, and that build still fits
    the sources and settings."""
    params = BuildParams(model=settings.model)
    milvus = _milvus(settings)
    manifest: MilvusManifest = searcher.index.manifest
    alias = library_alias(settings, params, milvus, None)
    client = searcher.index.client
    with reported(milvus.uri):
        if current_collection(client, alias) != manifest.collections["passages"]:
            return False
        hashes = (source_hashes(settings.sources, settings.follow_links)
                  if settings.sources.is_dir() else None)
        return stale_reason(manifest, params, milvus.dense_index, hashes) is None


@dataclass(frozen=True)
class MilvusStatus:
    """What `myoqa status --backend milvus` reports: which collection serves the library, and
    whether its build is current, stale (why), damaged or missing."""

    uri: str
    collection: str
    library: str
    state: str
    reason: str | None
    manifest: MilvusManifest | None

    def to_json(self) -> dict[str, Any]:
        """The backend's part of `status --json` (the local keys where they mean the same)."""
        return {"backend": "milvus", "milvus_uri": self.uri, "collection": self.collection,
                "library": self.library, "state": self.state,
                "stale": self.reason if self.state == "stale" else None,
                "damaged": self.reason if self.state in ("damaged", "missing") else None,
                "build": self.manifest.build if self.manifest else None,
                "milvus_build": self.manifest.milvus_json() if self.manifest else None,
                "manifest": self.manifest.manifest.to_json() if self.manifest else None}


def milvus_status(settings: Settings) -> MilvusStatus:
    """The state of the library's build in Milvus for the sources here (a client without the
    sources folder sees the stored build as current)."""
    params = BuildParams(model=settings.model)
    milvus = _milvus(settings)
    alias = library_alias(settings, params, milvus, None)
    library = library_identity(settings, None)
    hashes = _local_hashes(settings, None)
    client = connect(milvus, say)
    with reported(milvus.uri):
        manifest = None
        try:
            manifest = read_manifest(client, alias)
            reason = stale_reason(manifest, params, milvus.dense_index, hashes)
            state = "current" if reason is None else "stale"
            if reason is not None and manifest.library != library:
                reason = f"{reason}; the collection holds another library ({manifest.library})"
        except StaleMilvusIndex as problem:
            reason = problem.message
            state = "missing" if current_collection(client, alias) is None else "damaged"
    return MilvusStatus(milvus.uri, alias, library, state, reason, manifest)


@dataclass(frozen=True)
class MilvusBackend:
    """The library's collection in a Milvus server (`settings.milvus`), built by the local
    build code and uploaded; searched with two signals (BM25 and dense)."""

    settings: Settings

    def open(self, params: SearchParams | None = None, notify: Notify = say,
             progress: ProgressFactory | None = None, sources: list[Source] | None = None,
             preload_late: bool = True, preload_query: bool = False  # noqa: ARG002 (loaded on use)
             ) -> Searcher:
        return open_milvus_searcher(self.settings, params, notify, progress, sources)

    def is_current(self, searcher: Searcher) -> bool:
        return is_current(self.settings, searcher)

    def build(self, rebuild: bool = False, notify: Notify = say,
              progress: ProgressFactory | None = None,
              sources: list[Source] | None = None) -> Built:
        check_embedder(self.settings)
        return index_milvus(self.settings, rebuild, progress, notify, sources)

    def status(self) -> MilvusStatus:
        return milvus_status(self.settings)
