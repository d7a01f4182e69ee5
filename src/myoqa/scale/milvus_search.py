"""A library stored in Milvus, searched by myoqa's own stages (`myoqa.search.Searcher`).

`MilvusLibrary` is the Milvus side of `myoqa.search.source.Library`. Milvus finds each
question's pool: the best passages by its BM25 over myoqa's analysed terms and by its dense
index, as many of each as the local search takes. Only their membership is used (BM25 distances
differ in sign and scale between Milvus builds). The pool's terms, vectors and spans are then
fetched and scored exactly as locally: BM25 from the stored corpus statistics (`myoqa.bm25`'s
formulas), cosine from the stored vectors, over the exact source snapshots kept in Milvus. So a
passage that is a candidate in both backends gets the same score in both.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.bm25 import Postings, SparseBM25, idf_from_df
from myoqa.chunking import Unit
from myoqa.index import UnitTable
from myoqa.scale.milvus_client import BATCH_ROWS, reported
from myoqa.scale.milvus_manifest import MilvusManifest, read_manifest
from myoqa.scale.milvus_settings import dense_search_params
from myoqa.search.source import Candidates
from myoqa.search.unmatched import by_initial

CACHED_SOURCES = 64
PASSAGE_FIELDS = ["id", "source", "source_id", "start", "end", "span_lo", "span_hi", "terms",
                  "vector"]


def literal(text: str) -> str:
    """`text` as a Milvus filter string literal."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


class RemoteTexts(Mapping[str, str]):
    """Source texts read from the build's snapshot collection when first needed, then cached
    (the most recent CACHED_SOURCES), so a client with no local files shows exact text."""

    def __init__(self, client: Any, manifest: MilvusManifest, uri: str) -> None:
        self._client = client
        self._collection = manifest.collections["texts"]
        self._count = manifest.sources
        self._uri = uri
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._missing: set[str] = set()
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> str:
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        if name in self._missing:
            raise KeyError(name)
        with reported(self._uri):
            rows = self._client.query(self._collection, filter=f"name == {literal(name)}",
                                      output_fields=["piece", "text"], limit=16384)
        if not rows:
            self._missing.add(name)
            raise KeyError(name)
        text = "".join(r["text"] for r in sorted(rows, key=lambda r: r["piece"]))
        with self._lock:
            self._cache[name] = text
            while len(self._cache) > CACHED_SOURCES:
                self._cache.popitem(last=False)
        return text

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        with reported(self._uri):
            for batch in _batches(self._client, self._collection, BATCH_ROWS, "piece == 0",
                                  ["name"]):
                yield from (r["name"] for r in batch)


class RemotePassages:
    """The collection's passages as the views see them: a count, and the Unit of a passage id
    (from the rows taken for the last question, else read from Milvus)."""

    def __init__(self, client: Any, manifest: MilvusManifest, uri: str) -> None:
        self._client = client
        self._collection = manifest.collections["passages"]
        self._count = manifest.passages
        self._uri = uri
        self.seen: dict[int, Unit] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> Unit:
        unit = self.seen.get(int(i))
        if unit is None:
            with reported(self._uri):
                rows = self._client.get(self._collection, ids=[int(i)],
                                        output_fields=["source", "start", "end"])
            if not rows:
                raise IndexError(i)
            unit = Unit(rows[0]["source"], int(rows[0]["start"]), int(rows[0]["end"]))
        return unit


def _batches(client: Any, collection: str, size: int, where: str,
             fields: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The rows of `collection` matching `where`, a batch at a time."""
    iterator = client.query_iterator(collection, batch_size=size, filter=where,
                                     output_fields=fields)
    try:
        while batch := iterator.next():
            yield batch
    finally:
        iterator.close()


class MilvusLibrary:
    """A build in Milvus as a `myoqa.search.source.Library`, and what the views read from
    `searcher.index` (texts, passages, manifest). Calls to Milvus are serialised and a failure
    is reported in one line."""

    def __init__(self, client: Any, manifest: MilvusManifest, uri: str = "Milvus") -> None:
        self.client = client
        self.uri = uri
        self.manifest = manifest
        self.path = Path()
        self._analyzer = Analyzer(stem=manifest.analyzer["stem"],
                                  stopwords=manifest.analyzer["stopwords"])
        self._texts = RemoteTexts(client, manifest, uri)
        self.passages = RemotePassages(client, manifest, uri)
        self._lock = threading.RLock()
        self._df: dict[str, int | None] = {}
        self._idf: dict[str, float] = {}
        self._by_initial: dict[str, list[str]] | None = None

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer the collection's terms were made with."""
        return self._analyzer

    @property
    def texts(self) -> RemoteTexts:
        """The sources' snapshots kept in Milvus."""
        return self._texts

    @property
    def dimension(self) -> int:
        """Embedding dimension recorded at build time."""
        return self.manifest.dimension

    def text(self, unit: Unit) -> str:
        """The exact source text of a passage or span."""
        return self.texts[unit.source][unit.start:unit.end]

    @property
    def max_idf(self) -> float:
        """The IDF of the collection's rarest term (recorded at build time)."""
        return self.manifest.bm25.max_idf

    def idf(self, term: str) -> float | None:
        """The term's IDF in the whole collection, or None when no passage holds it."""
        self.frequencies([term])
        return self._idf.get(term)

    def holds(self, term: str) -> bool:
        """Whether any passage of the collection holds `term`."""
        return term in self.frequencies([term])

    def terms_starting(self, initial: str) -> list[str]:
        """The collection's terms that start with `initial` (the vocabulary is read once, when
        a rare unmatched word first needs it)."""
        with self._lock:
            if self._by_initial is None:
                with reported(self.uri):
                    self._by_initial = by_initial(
                        r["id"] for batch in _batches(self.client,
                                                      self.manifest.collections["vocab"],
                                                      BATCH_ROWS * 10, "", ["id"])
                        for r in batch)
            return self._by_initial.get(initial, [])

    def frequencies(self, terms: list[str]) -> dict[str, int]:
        """Document frequencies of `terms` held by some passage (remembered across questions,
        with their IDFs)."""
        with self._lock:
            new = sorted({t for t in terms if t not in self._df})
            if new:
                with reported(self.uri):
                    rows = self.client.get(self.manifest.collections["vocab"], ids=new,
                                           output_fields=["df"])
                got = {r["id"]: int(r["df"]) for r in rows}
                stats = self.manifest.bm25
                for t in new:
                    df = self._df[t] = got.get(t)
                    if df is not None:
                        self._idf[t] = float(idf_from_df(stats.passages, np.array([df]),
                                                         stats.idf_floor)[0])
            return {t: df for t in set(terms) if (df := self._df[t]) is not None}

    def pool(self, terms: list[str], query: np.ndarray | None, mode: str,
             depth: int) -> MilvusPool:
        """The passages Milvus finds for the question: the `depth` best by its BM25 (unless
        `mode` is dense) and by the dense index (with a `query`), fetched."""
        collection = self.manifest.collections["passages"]
        found: set[int] = set()
        with self._lock, reported(self.uri):
            if mode != "dense" and terms:
                hits = self.client.search(collection, data=[" ".join(terms)],
                                          anns_field="sparse", limit=depth,
                                          output_fields=["id"],
                                          search_params={"metric_type": "BM25"})
                found.update(int(h["id"]) for h in hits[0])
            if mode == "bm25" and len(found) < min(depth, self.manifest.passages):
                # Locally, passages without a question word score 0 and follow in passage order.
                found.update(range(min(depth, self.manifest.passages)))
            if query is not None:
                params = dense_search_params(self.manifest.dense_index,
                                             self.manifest.dense_params, depth)
                hits = self.client.search(collection, data=[query.tolist()],
                                          anns_field="vector", limit=depth, output_fields=["id"],
                                          search_params={"metric_type": "IP",
                                                         "params": params})
                found.update(int(h["id"]) for h in hits[0])
            rows = self.rows(collection, sorted(found), PASSAGE_FIELDS)
        idf = {t: self._idf[t] for t in self.frequencies(terms)}
        return MilvusPool(self, rows, terms, idf)

    def rows(self, collection: str, ids: list[int], fields: list[str]) -> list[dict[str, Any]]:
        """Rows of `ids` in id order, fetched in batches."""
        out: list[dict[str, Any]] = []
        with self._lock, reported(self.uri):
            for lo in range(0, len(ids), BATCH_ROWS):
                out += self.client.get(collection, ids=ids[lo:lo + BATCH_ROWS],
                                       output_fields=fields)
        return sorted(out, key=lambda r: r["id"])


class MilvusPool:
    """The passages Milvus found for one question (rows in id order), BM25-scored with the
    whole collection's statistics: the scores the local index gives these passages."""

    def __init__(self, library: MilvusLibrary, rows: list[dict[str, Any]], terms: list[str],
                 idf: dict[str, float]) -> None:
        self._library = library
        self._rows = rows
        self._terms = terms
        postings = Postings.from_tokens([r["terms"].split() for r in rows])
        self._bm25 = SparseBM25(postings, np.array([idf.get(t, 0.0) for t in postings.vocab]),
                                library.manifest.bm25.avgdl)
        self.bm25 = self._bm25.scores(terms)
        self._vectors = np.array([r["vector"] for r in rows], dtype=np.float32).reshape(
            len(rows), library.dimension)

    def nearest(self, query: np.ndarray, depth: int) -> np.ndarray:
        """Positions of the `depth` pooled passages nearest to `query`."""
        return np.argsort(-(self._vectors @ query), kind="stable")[:depth]

    def take(self, rows: np.ndarray, vectors: bool) -> Candidates:
        """The pooled passages at `rows`, with every span inside a run of overlapping ones (as
        locally: the evidence of a widened result may be a span no single passage of it
        holds)."""
        rows = np.asarray(rows, dtype=np.int64)
        taken = [self._rows[i] for i in rows.tolist()]
        spans = self._spans(sorted(taken, key=lambda r: r["id"]))
        names = list(dict.fromkeys(r["source"] for r in taken))
        local = {r["source_id"]: names.index(r["source"]) for r in taken}
        span_ids = np.array([s["id"] for s in spans], dtype=np.int64)
        ranges = np.array([[r["span_lo"], r["span_hi"]] for r in taken], dtype=np.int64
                          ).reshape(len(taken), 2)
        ids = np.array([r["id"] for r in taken], dtype=np.int64)
        table = _table(taken, names, local)
        self._library.passages.seen = dict(zip(ids.tolist(), table, strict=True))
        return Candidates(
            ids=ids, passages=table,
            passage_spans=np.searchsorted(span_ids, ranges).astype(np.int64),
            spans=_table(spans, names, local),
            span_vectors=np.array([s["vector"] for s in spans], dtype=np.float32).reshape(
                len(spans), self._library.dimension),
            passage_vectors=self._vectors[rows] if vectors else None,
            holding=None if vectors else self._holding()[rows])

    def _spans(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The spans of each run of overlapping `rows` (in id order)."""
        wanted: list[int] = []
        run_source, run_end, run_lo, run_hi = None, -1, 0, 0
        for r in rows:
            if r["source_id"] == run_source and r["start"] < run_end:
                run_end, run_hi = max(run_end, r["end"]), max(run_hi, r["span_hi"])
                continue
            wanted += range(run_lo, run_hi)
            run_source, run_end = r["source_id"], r["end"]
            run_lo, run_hi = r["span_lo"], r["span_hi"]
        wanted += range(run_lo, run_hi)
        return self._library.rows(self._library.manifest.collections["spans"],
                                  sorted(set(wanted)),
                                  ["id", "source_id", "start", "end", "vector"])

    def _holding(self) -> np.ndarray:
        """Per pooled passage, whether it holds a word of the question."""
        out = np.zeros(len(self._rows), dtype=bool)
        postings = self._bm25.postings
        for term in self._terms:
            i = self._bm25.term_ids.get(term)
            if i is not None:
                out[postings.docs[postings.indptr[i]:postings.indptr[i + 1]]] = True
        return out


def _table(rows: list[dict[str, Any]], names: list[str], local: dict[int, int]) -> UnitTable:
    return UnitTable(names, np.array([local[r["source_id"]] for r in rows], dtype=np.int32),
                     np.array([r["start"] for r in rows], dtype=np.int64),
                     np.array([r["end"] for r in rows], dtype=np.int64))


def load_build(client: Any, alias: str) -> MilvusManifest:
    """The manifest of the build `alias` names, its collections loaded for search."""
    manifest = read_manifest(client, alias)
    for name in manifest.collections.values():
        client.load_collection(name)
    return manifest
