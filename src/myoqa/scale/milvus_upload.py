"""Writing a build into Milvus: batch by batch, then indexed, loaded, recorded and switched to.

A build writes four new collections (see `milvus_schema`) as its batches come, holding only the
counts BM25 needs across the corpus (each term's document frequency, the passages' total
length) and one entry per source. When the last batch is in, it writes the vocabulary, builds
the search indexes, loads the collections and records the manifest on the passages collection;
only then is the alias switched to it, so a build killed at any point leaves readers on the
previous build, whole; the next build drops what it left. The build the alias replaced stays
for readers still on it, older ones are dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from myoqa.analysis import RULES_VERSION
from myoqa.config import MilvusSettings
from myoqa.errors import MyoqaError
from myoqa.faultpoints import pause
from myoqa.index import BuildParams, Index
from myoqa.index.build import EncoderInfo, ProgressFactory, _versions
from myoqa.index.manifest import Counts, Manifest, ModelInfo, SourceEntry
from myoqa.scale.milvus_batches import Tick, batches
from myoqa.scale.milvus_client import BATCH_ROWS, connection_error, drop, reason, unreachable
from myoqa.scale.milvus_manifest import (
    MANIFEST_PROPERTY,
    PARTS,
    MilvusManifest,
    TermCounts,
    build_of,
    builds_of,
    check_owner,
    collection_names,
    current_collection,
    new_build_name,
)
from myoqa.scale.milvus_schema import (
    Batch,
    SourceText,
    index_params,
    passage_rows,
    schema,
    span_rows,
    text_rows,
    vocab_rows,
)
from myoqa.scale.milvus_settings import dense_index_params

UPLOAD_LABEL = "embedding and uploading to Milvus"
BATCH_STEP = "milvus batch written"
"""The fault point after a batch is written (collections partly filled, the alias unchanged)."""


class BuildWriter:
    """One build being written under `alias`: its collections, made at the first batch, and the
    counts that span the corpus."""

    def __init__(self, client: Any, alias: str, params: BuildParams, settings: MilvusSettings
                 ) -> None:
        self.client = client
        self.alias = alias
        self.params = params
        self.settings = settings
        self.build = new_build_name()
        self.names = collection_names(alias, self.build)
        self.started = time.perf_counter()
        self.dimension = 0
        self.entries: list[SourceEntry] = []
        self.terms = TermCounts()
        self.spans = 0
        self.text_rows = 0

    def write(self, batch: Batch) -> None:
        """Insert one batch's passages, spans and source snapshots, counting its terms."""
        if not self.dimension:
            # a first batch without units is the only one (batches close on units): the build
            # then fails in `finish` and its collections are dropped
            self.dimension = int(batch.passage_vectors.shape[1]) or 1
            for part in PARTS:  # passages first: a build killed later leaves it for the next
                self.client.create_collection(self.names[part],
                                              schema=schema(part, self.dimension))
        self._insert("passages", self._counted(passage_rows(batch, self.params.analyzer)))
        self._insert("spans", span_rows(batch))
        before = self.text_rows
        self.text_rows += self._insert("texts", text_rows(batch, before))
        held = np.bincount(batch.passages.source, minlength=len(batch.sources))
        self.entries += [SourceEntry(s.name, s.sha256, len(s.text), int(n))
                         for s, n in zip(batch.sources, held, strict=True)]
        self.spans += len(batch.spans)
        pause(BATCH_STEP)

    def _counted(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The rows, each passage's terms counted into the document frequencies and lengths."""
        for row in rows:
            self.terms.add(row["terms"].split())
            yield row

    def _insert(self, part: str, rows: Iterator[dict[str, Any]]) -> int:
        """Insert rows BATCH_ROWS at a time; return how many."""
        count = 0
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH_ROWS:
                self.client.insert(self.names[part], batch)
                count, batch = count + len(batch), []
        if batch:
            self.client.insert(self.names[part], batch)
            count += len(batch)
        return count

    def finish(self, library: str, model: ModelInfo, holds: Callable[[], None] | None
               ) -> MilvusManifest:
        """Write the vocabulary, index and load every collection, record the manifest, then
        switch the alias (after `holds` confirms the build lock is still ours)."""
        if not self.terms.passages:
            raise MyoqaError("the sources hold no words to index", "add text to the source files")
        self._insert("vocab", vocab_rows(self.terms.df))
        dense_params = dense_index_params(self.settings.dense_index, self.terms.passages)
        for part in PARTS:
            self.client.flush(self.names[part])
            self.client.create_index(self.names[part], index_params(
                self.client, part, self.settings.dense_index, dense_params))
            self.client.load_collection(self.names[part])
        manifest = Manifest(
            model=replace(model, dimension=self.dimension), chunking=self.params.chunking,
            analyzer=self.params.analyzer, analyzer_rules=RULES_VERSION, sources=self.entries,
            counts=Counts(len(self.entries), self.terms.passages, self.spans), files={},
            versions=_versions(), built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            build_seconds=round(time.perf_counter() - self.started, 3),
            dense_index=self.settings.dense_index)
        final = MilvusManifest(build=self.build, library=library, collections=self.names,
                               bm25=self.terms.stats(),
                               dense_params=dense_params, manifest=manifest)
        self.client.alter_collection_properties(self.names["passages"], {
            MANIFEST_PROPERTY: json.dumps(final.to_json(), sort_keys=True)})
        if holds is not None:
            holds()
        if current_collection(self.client, self.alias) is None:
            self.client.create_alias(self.names["passages"], self.alias)
        else:
            self.client.alter_alias(self.names["passages"], self.alias)
        return final


def stream_build(client: Any, sources: Iterable[SourceText], params: BuildParams,
                 encoder: Any, info: EncoderInfo, alias: str, library: str,
                 settings: MilvusSettings, progress: ProgressFactory | None = None,
                 holds: Callable[[], None] | None = None) -> MilvusManifest:
    """Chunk, embed and write `sources` batch by batch as a new build of `library` under
    `alias`, switch the alias to it and drop older builds; return its manifest. `holds` raises
    when this process no longer holds the library's build lock; it is asked before the alias
    moves."""
    listed = sources if isinstance(sources, list) else None
    tick: Tick = (progress(UPLOAD_LABEL, len(listed)) if progress and listed is not None
                  else lambda _n: None)
    model = ModelInfo(params.model, 0, str(info.folder), info.files)

    def write(writer: BuildWriter) -> None:
        for batch in batches(sources, params.chunking, encoder):
            writer.write(batch)
            tick(len(batch.sources))

    return _written(client, alias, library, params, settings, model, write, holds)


def upload(client: Any, index: Index, alias: str, library: str, settings: MilvusSettings,
           holds: Callable[[], None] | None = None) -> MilvusManifest:
    """Write `index` (an in-memory build of `library`) as a new build under `alias`, switch the
    alias to it and drop older builds; return its manifest."""
    m = index.manifest
    params = BuildParams(model=m.model.name, chunking=m.chunking, analyzer=m.analyzer)
    whole = index_batch(index)
    return _written(client, alias, library, params, settings, m.model,
                    lambda writer: writer.write(whole), holds)


def index_batch(index: Index) -> Batch:
    """An in-memory index as one batch (its vectors as float32 rows)."""
    hashes = index.manifest.source_hashes()
    return Batch(sources=[SourceText(name, index.texts[name], hashes[name])
                          for name in index.passages.names],
                 passages=index.passages, spans=index.spans, passage_spans=index.passage_spans,
                 passage_vectors=index.passage_vectors.reconstruct_n(0, len(index.passages)),
                 span_vectors=np.asarray(index.span_vectors), first_source=0, first_passage=0,
                 first_span=0)


def _written(client: Any, alias: str, library: str, params: BuildParams,
             settings: MilvusSettings, model: ModelInfo, write: Callable[[BuildWriter], None],
             holds: Callable[[], None] | None) -> MilvusManifest:
    """Run `write` into a new build and finish it; on any failure drop what it wrote (the
    alias still names the previous build) and raise one clear error."""
    from pymilvus.exceptions import MilvusException

    check_owner(client, alias, library)
    writer = BuildWriter(client, alias, params, settings)
    try:
        replaced = current_collection(client, alias)
        write(writer)
        final = writer.finish(library, model, holds)
    except (MilvusException, MyoqaError) as exc:
        for name in writer.names.values():
            drop(client, name)
        if isinstance(exc, MyoqaError):
            raise
        if unreachable(exc):
            raise connection_error(exc, settings.uri) from None
        raise MyoqaError(f"Milvus refused the build of {alias} ({reason(exc)})",
                         "the previous index is unchanged") from None
    prune(client, alias, {writer.build} | ({build_of(alias, replaced)} if replaced else set()))
    return final


def prune(client: Any, alias: str, keep: set[str]) -> list[str]:
    """Drop every collection of `alias` whose build is not in `keep` (what killed or replaced
    builds left); return the dropped names."""
    dropped = []
    ours = builds_of(alias)
    for name in client.list_collections():
        if ours.fullmatch(name) and build_of(alias, name) not in keep:
            drop(client, name)
            dropped.append(name)
    return dropped
