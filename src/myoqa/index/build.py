"""Building an index in memory: sources → passages and spans → BM25 postings and vectors.

Vectors are looked up by content first: a unit whose text the previous build already embedded
(same model, same encoder) takes that vector, so after a small edit only the new or changed
passages and spans are embedded. Nothing here writes to disk (see `store`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from myoqa import __version__
from myoqa.analysis import RULES_VERSION, Analyzer
from myoqa.bm25 import Postings
from myoqa.chunking import ChunkParams, Unit, chunk
from myoqa.corpus import Source
from myoqa.errors import MyoqaError
from myoqa.index import tokens
from myoqa.index.dense import dense_index
from myoqa.index.manifest import (
    Counts,
    FileDigest,
    LateInfo,
    Manifest,
    ModelInfo,
    SkippedFile,
    SourceEntry,
)
from myoqa.index.tables import Index, UnitTable, spans_inside
from myoqa.index.textkey import text_key

EMBED_BATCH = 8192
"""Texts handed to the encoder at once: their vectors go straight into the index's arrays, so
a build holds one batch's vectors beyond the index (no second copy of every vector)."""
VERSIONED_PACKAGES = ("faiss-cpu", "rank-bm25", "sentence-transformers", "torch", "numpy",
                      "onnxruntime")

ProgressFactory = Callable[[str, int], Callable[[int], None]]


class Encoder(Protocol):
    """Anything that turns texts into normalised float32 vectors."""

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None
               ) -> np.ndarray: ...


@dataclass(frozen=True)
class BuildParams:
    """Everything a build depends on besides the sources; a change means a rebuild."""

    model: str
    chunking: ChunkParams = field(default_factory=ChunkParams)
    analyzer: Analyzer = field(default_factory=Analyzer)
    late_model: str | None = None
    """The late-interaction model's key (`colbert.LateModel.key`), None without token vectors."""

    def manifest_params(self) -> dict[str, Any]:
        """The settings as JSON-ready data (for stores that keep their own manifest, Milvus)."""
        return {"model": self.model, "chunking": asdict(self.chunking),
                "analyzer": self.analyzer.params()}


@dataclass(frozen=True)
class EncoderInfo:
    """The encoder a build embeds with: where it is and its files' digests."""

    folder: Path
    files: dict[str, FileDigest]


def _no_progress(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def known_vectors(previous: Index | None, encoder: EncoderInfo) -> dict[bytes, np.ndarray]:
    """Text key → vector of every unit of `previous`, when it was embedded by the same encoder."""
    if previous is None or previous.manifest.model.encoder_files != encoder.files:
        return {}
    found: dict[bytes, np.ndarray] = {}
    tables = ((previous.passages, None), (previous.spans, previous.span_vectors))
    for table, vectors in tables:
        if vectors is None:
            vectors = previous.passage_vectors.reconstruct_n(0, len(table))
        for i, unit in enumerate(table):
            found.setdefault(text_key(previous.text(unit)), vectors[i])
    return found


def build(sources: list[Source], params: BuildParams, encoder: Encoder, info: EncoderInfo,
          previous: Index | None = None, progress: ProgressFactory | None = None,
          skipped: list[SkippedFile] | None = None, late_encoder: Any | None = None,
          late_info: EncoderInfo | None = None) -> Index:
    """Chunk, tokenize and embed `sources` into an in-memory index, reusing what `previous`
    already embedded with the same encoder; with `late_encoder`, also every passage's
    late-interaction token vectors (reused likewise), `late_info` naming its saved graph."""
    started = time.perf_counter()
    passages: list[Unit] = []
    spans: list[Unit] = []
    entries = []
    for src in sources:
        p, s = chunk(src.name, src.text, params.chunking)
        passages += p
        spans += s
        entries.append(SourceEntry(src.name, src.sha256, len(src.text), len(p)))
    if not passages:
        raise MyoqaError("the sources hold no words to index", "add text to the source files")
    texts = {s.name: s.text for s in sources}
    units = passages + spans
    known = known_vectors(previous, info)
    keys = [text_key(texts[u.source][u.start:u.end]) for u in units]
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        if key not in known:
            first.setdefault(key, i)
    todo = list(first.values())
    tick = (progress or _no_progress)("embedding", len(todo))
    vectors: list[np.ndarray] = []
    for at in range(0, len(todo), EMBED_BATCH):
        batch = todo[at:at + EMBED_BATCH]
        fresh = encoder.encode([texts[units[i].source][units[i].start:units[i].end]
                                for i in batch], tick)
        if not vectors:
            vectors = [np.empty((len(t), fresh.shape[1]), np.float32) for t in (passages, spans)]
        for n, i in enumerate(batch):
            _row(vectors, len(passages), i)[:] = fresh[n]
    if not vectors:
        dimension = len(next(iter(known.values())))
        vectors = [np.empty((len(t), dimension), np.float32) for t in (passages, spans)]
    for i, key in enumerate(keys):
        if key in known:
            _row(vectors, len(passages), i)[:] = known[key]
        elif first[key] != i:
            _row(vectors, len(passages), i)[:] = _row(vectors, len(passages), first[key])
    index = from_parts(texts, passages, spans, vectors[0], vectors[1], params, entries,
                       ModelInfo(params.model, vectors[0].shape[1], str(info.folder), info.files),
                       reused=len(units) - len(todo), skipped=skipped or [], started=started,
                       encoder_dir=info.folder)
    if late_encoder is not None and params.late_model is not None:
        add_token_vectors(index, [texts[u.source][u.start:u.end] for u in passages],
                          params.late_model, late_encoder, previous, progress or _no_progress,
                          late_info)
    return index


def _row(vectors: list[np.ndarray], passages: int, i: int) -> np.ndarray:
    """Unit i's row: passages come first, then spans."""
    row: np.ndarray = vectors[0][i] if i < passages else vectors[1][i - passages]
    return row


def add_token_vectors(index: Index, texts: list[str], model: str, encoder: Any,
                      previous: Index | None, progress: ProgressFactory,
                      graph: EncoderInfo | None = None) -> None:
    """Give `index` its passages' late-interaction token vectors, taking those `previous`
    computed with the same model; `graph` is the encoder folder with its optimised graph."""
    known: dict[bytes, np.ndarray] = {}
    if (previous is not None and previous.passage_tokens is not None
            and previous.manifest.late is not None and previous.manifest.late.model == model):
        known = tokens.known(previous.passage_tokens,
                             [previous.text(u) for u in previous.passages])
    found = tokens.encode(texts, encoder, known, progress("late interaction", len(texts)))
    index.passage_tokens = found
    index.manifest = replace(index.manifest, late=LateInfo(
        model, int(found.vectors.shape[1]), len(found.vectors),
        str(graph.folder) if graph else "", graph.files if graph else {}))


def from_parts(texts: dict[str, str], passages: list[Unit] | UnitTable, spans: list[Unit],
               passage_vectors: np.ndarray, span_vectors: np.ndarray, params: BuildParams,
               entries: list[SourceEntry] | None = None, model: ModelInfo | None = None,
               reused: int = 0,
               skipped: list[SkippedFile] | None = None, started: float | None = None,
               encoder_dir: Path = Path()) -> Index:
    """An in-memory index from already-embedded units (also used by the scale benchmark, which
    gives its passages as a table: millions of Unit objects would outweigh the index)."""
    started = time.perf_counter() if started is None else started
    model = model or ModelInfo(params.model, int(passage_vectors.shape[1]), "", {})
    names = list(texts)
    table = (passages if isinstance(passages, UnitTable)
             else UnitTable.from_units(passages, names))
    span_table = UnitTable.from_units(spans, names)
    postings = Postings.from_texts((texts[u.source][u.start:u.end] for u in table),
                                   params.analyzer)
    vectors = dense_index(passage_vectors)
    manifest = Manifest(
        model=model, chunking=params.chunking, analyzer=params.analyzer,
        analyzer_rules=RULES_VERSION, sources=entries or [],
        counts=Counts(len(texts), len(passages), len(spans)), files={}, versions=_versions(),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        build_seconds=round(time.perf_counter() - started, 3),
        dense_index=vectors.description,
        reused_vectors=reused, skipped=skipped or [])
    return Index(path=Path(), encoder_dir=encoder_dir, manifest=manifest, texts=texts,
                 passages=table, spans=span_table, passage_spans=spans_inside(table, span_table),
                 postings=postings, passage_vectors=vectors, span_vectors=span_vectors)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"myoqa": __version__, "python": sys.version.split()[0]}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
