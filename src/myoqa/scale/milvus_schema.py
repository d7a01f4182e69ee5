"""The four collections of a Milvus build, and the rows a batch of sources becomes.

Under `<alias>_<build>_`:
    passages  id, source, source_id, start, end, span_lo, span_hi, text, terms (myoqa's own
              analysed terms, fed to a BM25 function) → sparse (SPARSE_INVERTED_INDEX), vector
    spans     id, source_id, start, end, vector (evidence and the span lift of the dense score)
    texts     the source snapshots, cut under the VARCHAR limit, with each source's SHA-256
    vocab     each term's document frequency, so myoqa computes the same BM25 as locally
Ids are the positions a local build gives the same passages and spans, so both backends name a
passage alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.errors import MyoqaError
from myoqa.index import UnitTable
from myoqa.scale.milvus_settings import TEXT_ANALYZER

VARCHAR_MAX = 65535
SNAPSHOT_CHARS = 16000  # four UTF-8 bytes at most per character: under VARCHAR_MAX bytes
SOURCE_NAME_MAX = 4096
HASH_CHARS = 64
PAD_DIM = 2  # Milvus wants a vector field in every collection; texts and vocab carry a tiny one


@dataclass(frozen=True)
class SourceText:
    """One source as a build stores it: name, text and the hash of its file."""

    name: str
    text: str
    sha256: str


@dataclass(frozen=True)
class Batch:
    """Whole sources, chunked and embedded: what one step of a build writes. Source, passage
    and span numbers in the tables are the batch's own; `first_*` place them in the build."""

    sources: list[SourceText]
    passages: UnitTable
    spans: UnitTable
    passage_spans: np.ndarray
    passage_vectors: np.ndarray
    span_vectors: np.ndarray
    first_source: int
    first_passage: int
    first_span: int


def schema(part: str, dimension: int) -> Any:
    """The schema of one part's collection (`dimension`: the size of the stored vectors)."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    fields = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    if part == "vocab":
        fields.add_field("id", DataType.VARCHAR, is_primary=True, max_length=VARCHAR_MAX)
        fields.add_field("df", DataType.INT64)
        fields.add_field("pad", DataType.FLOAT_VECTOR, dim=PAD_DIM)
        return fields
    fields.add_field("id", DataType.INT64, is_primary=True)
    fields.add_field("source_id", DataType.INT64)
    if part == "texts":
        fields.add_field("name", DataType.VARCHAR, max_length=SOURCE_NAME_MAX)
        fields.add_field("sha256", DataType.VARCHAR, max_length=HASH_CHARS)
        fields.add_field("piece", DataType.INT64)
        fields.add_field("offset", DataType.INT64)
        fields.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
        fields.add_field("pad", DataType.FLOAT_VECTOR, dim=PAD_DIM)
        return fields
    fields.add_field("start", DataType.INT64)
    fields.add_field("end", DataType.INT64)
    if part == "passages":
        fields.add_field("source", DataType.VARCHAR, max_length=SOURCE_NAME_MAX)
        fields.add_field("span_lo", DataType.INT64)
        fields.add_field("span_hi", DataType.INT64)
        fields.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
        fields.add_field("terms", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True,
                         analyzer_params={"tokenizer": TEXT_ANALYZER})
        fields.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        fields.add_function(Function(name="terms_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["terms"], output_field_names=["sparse"]))
    fields.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    return fields


def index_params(client: Any, part: str, dense_index: str, dense_params: dict[str, Any]) -> Any:
    """The search indexes of one part: BM25 and the dense index kind on passages, an exact
    index on spans, a token one on the padding of texts and vocab."""
    from myoqa.bm25 import K1, B

    params = client.prepare_index_params()
    if part in ("texts", "vocab"):
        params.add_index("pad", index_type="FLAT", metric_type="L2")
        return params
    if part == "passages":
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                         params={"bm25_k1": K1, "bm25_b": B})
        params.add_index("vector", index_type=dense_index, metric_type="IP", params=dense_params)
    else:
        params.add_index("vector", index_type="FLAT", metric_type="IP")
    return params


def passage_rows(batch: Batch, analyzer: Analyzer) -> Iterator[dict[str, Any]]:
    """The batch's passages as rows, with their analysed terms (too many terms for one Milvus
    field is an error naming the passage)."""
    table = batch.passages
    texts = {s.name: s.text for s in batch.sources}
    for i in range(len(table)):
        unit = table[i]
        text = texts[unit.source][unit.start:unit.end]
        terms = " ".join(analyzer.terms(text))
        if len(terms.encode("utf-8")) > VARCHAR_MAX:
            raise MyoqaError(f"a passage of {unit.source} (characters {unit.start}-{unit.end}) "
                             f"has more than {VARCHAR_MAX} bytes of terms, too many for Milvus",
                             "split the long words in that source, or use the local backend")
        yield {"id": batch.first_passage + i, "source": unit.source,
               "source_id": batch.first_source + int(table.source[i]),
               "start": unit.start, "end": unit.end,
               "span_lo": batch.first_span + int(batch.passage_spans[i, 0]),
               "span_hi": batch.first_span + int(batch.passage_spans[i, 1]),
               "text": text if len(text.encode("utf-8")) <= VARCHAR_MAX else "",
               "terms": terms, "vector": batch.passage_vectors[i].tolist()}


def span_rows(batch: Batch) -> Iterator[dict[str, Any]]:
    """The batch's spans as rows."""
    spans = batch.spans
    for j in range(len(spans)):
        yield {"id": batch.first_span + j, "source_id": batch.first_source + int(spans.source[j]),
               "start": int(spans.start[j]), "end": int(spans.end[j]),
               "vector": np.asarray(batch.span_vectors[j]).tolist()}


def text_rows(batch: Batch, first_row: int) -> Iterator[dict[str, Any]]:
    """The batch's source snapshots, SNAPSHOT_CHARS a row (an empty source is one row)."""
    row = first_row
    for offset_id, source in enumerate(batch.sources):
        text = source.text
        for piece, offset in enumerate(range(0, max(len(text), 1), SNAPSHOT_CHARS)):
            yield {"id": row, "source_id": batch.first_source + offset_id, "name": source.name,
                   "sha256": source.sha256, "piece": piece, "offset": offset,
                   "text": text[offset:offset + SNAPSHOT_CHARS], "pad": [0.0] * PAD_DIM}
            row += 1


def vocab_rows(df: dict[str, int]) -> Iterator[dict[str, Any]]:
    """Each term with its document frequency."""
    for term, count in df.items():
        yield {"id": term, "df": count, "pad": [0.0] * PAD_DIM}
