"""Sources → batches of chunked, embedded passages and spans, a few sources at a time.

A Milvus build streams: each batch is written as soon as it is embedded, so its memory is one
batch's units and vectors, whatever the corpus size. A batch closes at the first source that
brings it to EMBED_BATCH units (one source is never split: a long one is a batch of its own).
Within a batch, units are embedded as a local build embeds them (passages, then spans, each
distinct text once), so a corpus of one batch gets the local build's vectors exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from myoqa.chunking import ChunkParams, Unit, chunk
from myoqa.index import UnitTable
from myoqa.index.build import EMBED_BATCH, Encoder
from myoqa.index.tables import spans_inside
from myoqa.index.textkey import text_key
from myoqa.scale.milvus_schema import Batch, SourceText

Tick = Callable[[int], None]


def batches(sources: Iterable[SourceText], chunking: ChunkParams, encoder: Encoder,
            units_per_batch: int = EMBED_BATCH) -> Iterator[Batch]:
    """The sources, chunked and embedded, in batches of whole sources."""
    pending: list[SourceText] = []
    chunks: list[tuple[list[Unit], list[Unit]]] = []
    units = 0
    first_source = first_passage = first_span = 0
    for source in sources:
        pending.append(source)
        chunks.append(chunk(source.name, source.text, chunking))
        units += len(chunks[-1][0]) + len(chunks[-1][1])
        if units >= units_per_batch:
            batch = _embedded(pending, chunks, encoder, first_source, first_passage, first_span)
            yield batch
            first_source += len(pending)
            first_passage += len(batch.passages)
            first_span += len(batch.spans)
            pending, chunks, units = [], [], 0
    if pending:
        yield _embedded(pending, chunks, encoder, first_source, first_passage, first_span)


def _embedded(sources: list[SourceText], chunks: list[tuple[list[Unit], list[Unit]]],
              encoder: Encoder, first_source: int, first_passage: int, first_span: int) -> Batch:
    """One batch: its units packed into tables, each distinct text embedded once."""
    names = [s.name for s in sources]
    passages = UnitTable.from_units([u for p, _ in chunks for u in p], names)
    spans = UnitTable.from_units([u for _, s in chunks for u in s], names)
    texts = [s.text for s in sources]
    keys = [text_key(texts[int(t.source[i])][int(t.start[i]):int(t.end[i])])
            for t in (passages, spans) for i in range(len(t))]
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    todo = list(first.values())
    found: np.ndarray | None = None
    for at in range(0, len(todo), EMBED_BATCH):
        part = todo[at:at + EMBED_BATCH]
        fresh = encoder.encode([_text(texts, passages, spans, i) for i in part])
        if found is None:
            found = np.empty((len(todo), fresh.shape[1]), np.float32)
        found[at:at + len(part)] = fresh
    dimension = 0 if found is None else found.shape[1]
    where = {i: n for n, i in enumerate(todo)}
    vectors = (np.empty((0, dimension), np.float32) if found is None
               else found[[where[first[key]] for key in keys]])
    return Batch(sources=sources, passages=passages, spans=spans,
                 passage_spans=spans_inside(passages, spans),
                 passage_vectors=vectors[:len(passages)], span_vectors=vectors[len(passages):],
                 first_source=first_source, first_passage=first_passage, first_span=first_span)


def _text(texts: list[str], passages: UnitTable, spans: UnitTable, i: int) -> str:
    """Unit i's text: passages come first, then spans."""
    table, j = (passages, i) if i < len(passages) else (spans, i - len(passages))
    return texts[int(table.source[j])][int(table.start[j]):int(table.end[j])]
