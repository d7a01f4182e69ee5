"""Searching an index stored in Milvus with myoqa's own scoring, fusion and result assembly.

Milvus finds the candidates: the best passages by its BM25 over myoqa's analysed terms and by
its dense index, as many of each as the local search takes. Only their membership is used (BM25
distances differ in sign and scale between Milvus builds). myoqa then fetches the candidates'
terms, vectors and spans and scores them exactly as locally: BM25 from the stored corpus
statistics, cosine from the stored vectors, the same fusion, abstention, widening and
highlights, over the exact source snapshots kept in Milvus. So a passage that is a candidate
in both backends gets the same score in both.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.bm25 import K1, B, Postings, SparseBM25
from myoqa.chunking import ChunkParams, Unit
from myoqa.index import Index, UnitTable
from myoqa.index.manifest import Counts, Manifest, ModelInfo
from myoqa.scale.milvus_client import BATCH_ROWS, reported
from myoqa.scale.milvus_manifest import MilvusManifest, read_manifest
from myoqa.scale.milvus_settings import dense_search_params
from myoqa.search import Answer, Scores, Searcher, SearchParams

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

    def __init__(self, client: Any, manifest: MilvusManifest) -> None:
        self._client = client
        self._collection = manifest.collections["texts"]
        self._count = manifest.sources
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
        iterator = self._client.query_iterator(self._collection, batch_size=BATCH_ROWS,
                                               filter="piece == 0", output_fields=["name"])
        try:
            while batch := iterator.next():
                yield from (r["name"] for r in batch)
        finally:
            iterator.close()


class RemotePassages:
    """The collection's passages as the views see them: a count, and the Unit of a passage id
    (from the rows fetched for the last question, else read from Milvus)."""

    def __init__(self, client: Any, manifest: MilvusManifest) -> None:
        self._client = client
        self._collection = manifest.collections["passages"]
        self._count = manifest.passages
        self.seen: dict[int, Unit] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> Unit:
        unit = self.seen.get(int(i))
        if unit is None:
            rows = self._client.get(self._collection, ids=[int(i)],
                                    output_fields=["source", "start", "end"])
            if not rows:
                raise IndexError(i)
            unit = Unit(rows[0]["source"], int(rows[0]["start"]), int(rows[0]["end"]))
        return unit


@dataclass
class RemoteIndex:
    """What the views read from `searcher.index`, served from Milvus."""

    manifest: MilvusManifest
    texts: RemoteTexts
    passages: RemotePassages
    path: Path = field(default_factory=Path)

    @property
    def dimension(self) -> int:
        """Embedding dimension recorded at build time."""
        return self.manifest.dimension

    def text(self, unit: Unit) -> str:
        """The exact source text of a passage or span."""
        return self.texts[unit.source][unit.start:unit.end]


class CandidatePostings:
    """The candidates' postings, whose `vocab` is the whole collection's vocabulary (read only
    by the check for unmatched or misspelt question words); scoring goes through term ids."""

    def __init__(self, postings: Postings, vocabulary: Callable[[], list[str]]) -> None:
        self.indptr, self.docs, self.tf, self.doc_len = (postings.indptr, postings.docs,
                                                         postings.tf, postings.doc_len)
        self.terms = postings.vocab
        self._vocabulary = vocabulary

    @property
    def vocab(self) -> list[str]:
        """Every term of the collection (read from Milvus once, when first asked for)."""
        return self._vocabulary()


class CollectionBM25(SparseBM25):
    """BM25 over the candidates only, with the whole collection's statistics: the scores the
    local index gives these passages (rank-bm25's formulas, as in `myoqa.bm25`)."""

    def __init__(self, postings: Postings, manifest: MilvusManifest, df: dict[str, int],
                 vocabulary: Callable[[], list[str]]) -> None:
        stats = manifest.bm25
        self.postings = CandidatePostings(postings, vocabulary)  # type: ignore[assignment]
        self.term_ids = {t: i for i, t in enumerate(postings.vocab)}
        self.size = len(postings.doc_len)
        self.k1 = K1
        self._idf = {t: self._from_df(stats.passages, count, stats.idf_floor)
                     for t, count in df.items()}
        self._max_idf = stats.max_idf
        self.idf_values = np.array([self._idf.get(t, 0.0) for t in postings.vocab])
        doc_len = postings.doc_len.astype(np.float64)
        tf = postings.tf.astype(np.float64)
        norm = K1 * (1 - B + B * doc_len[postings.docs] / stats.avgdl)
        term_of = np.repeat(np.arange(len(postings.vocab)), np.diff(postings.indptr))
        self.weights = self.idf_values[term_of] * tf * (K1 + 1) / (tf + norm)

    @staticmethod
    def _from_df(n: int, df: int, floor: float) -> float:
        raw = float(np.log(np.float64(n) - df + 0.5) - np.log(np.float64(df) + 0.5))
        return floor if raw < 0 else raw

    def idf(self, term: str) -> float | None:
        """The term's IDF in the whole collection, or None when no passage holds it."""
        return self._idf.get(term)

    @property
    def max_idf(self) -> float:
        """The IDF of the collection's rarest term."""
        return self._max_idf


class _CandidateSearcher(Searcher):
    """The local search code run over the candidates Milvus returns for each question."""

    def __init__(self, remote: MilvusSearcher) -> None:
        self.remote = remote
        self.global_ids = np.zeros(0, dtype=np.int64)
        super().__init__(remote.empty_view(), lambda: remote.encoder, remote.params)
        self._memo: tuple[str, np.ndarray] | None = None

    def embed(self, text: str) -> np.ndarray:
        """The query vector, computed once per question."""
        if self._memo is None or self._memo[0] != text:
            self._memo = (text, self.remote.embed(text))
        return self._memo[1]

    def in_sources(self, term: str) -> bool:
        """Whether the collection holds `term`: the candidates' statistics know only the
        question's terms, so another term ("antiseizur" for "anti-seizure") is asked of Milvus."""
        return self.bm25.idf(term) is not None or self.remote.holds(term)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Fetch the candidates for `text` from Milvus, then score them as locally."""
        terms = self.analyzer.terms(text) if terms is None else terms
        query = None if mode == "bm25" else self.embed(text)
        self.index, self.bm25, self.global_ids = self.remote.candidates(terms, query, mode)
        return super().score(text, mode, terms)


class MilvusSearcher:
    """The Searcher of an index in Milvus: the same `search`, `score` and `index` the CLI, the
    chat and the evaluation use on a local index."""

    def __init__(self, client: Any, manifest: MilvusManifest,
                 encoder_factory: Callable[[], Any] | None, params: SearchParams | None = None,
                 uri: str = "Milvus") -> None:
        self.client = client
        self.uri = uri
        self.manifest = manifest
        self.params = params or SearchParams()
        self.analyzer = Analyzer(stem=manifest.analyzer["stem"],
                                 stopwords=manifest.analyzer["stopwords"])
        self.index = RemoteIndex(manifest, RemoteTexts(client, manifest),
                                 RemotePassages(client, manifest))
        self._encoder_factory = encoder_factory
        self._encoder: Any = None
        self._lock = threading.RLock()
        self._vocab: dict[str, int | None] = {}
        self._all_terms: list[str] | None = None

    @property
    def dense_ready(self) -> bool:
        """Whether dense search can run without loading the encoder first."""
        return self._encoder is not None

    @property
    def encoder(self) -> Any:
        """The loaded query encoder."""
        self.load_encoder()
        return self._encoder

    def load_encoder(self) -> None:
        """Load the query encoder now (the chat does this in a background worker)."""
        if self._encoder is None:
            from myoqa.errors import UsageError

            if self._encoder_factory is None:
                raise UsageError("dense search is not available for this index",
                                 "use --mode bm25")
            self._encoder = self._encoder_factory()

    def embed(self, text: str) -> np.ndarray:
        """The normalised query vector."""
        return np.asarray(self.encoder.encode([text]), dtype=np.float32)[0]

    def search(self, question: str, mode: str = "hybrid", k: int = 5) -> Answer:
        """Top-k passages for `question`, exactly as a local index answers over these
        candidates."""
        with self._lock, reported(self.uri):
            return _CandidateSearcher(self).search(question, mode, k)

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        """Scores of the candidate passages for `text`, by passage id in the collection."""
        with self._lock, reported(self.uri):
            view = _CandidateSearcher(self)
            scored = view.score(text, mode, terms)
            ids = view.global_ids[scored.ids]
            table = view.index.passages
            self.index.passages.seen = {int(g): table[int(i)] for g, i in zip(ids, scored.ids, strict=False)}
            return replace(scored, ids=ids)

    def empty_view(self) -> Index:
        """An index of no passages, the starting point of each question's candidates."""
        return self._view([], [], np.zeros((0, self.manifest.dimension), np.float32))

    def candidates(self, terms: list[str], query: np.ndarray | None, mode: str
                   ) -> tuple[Index, SparseBM25, np.ndarray]:
        """The candidates' view (an Index of just them), their BM25, and their passage ids."""
        depth = self.params.candidates
        collection = self.manifest.collections["passages"]
        found: set[int] = set()
        if mode != "dense" and terms:
            hits = self.client.search(collection, data=[" ".join(terms)], anns_field="sparse",
                                      limit=depth, output_fields=["id"],
                                      search_params={"metric_type": "BM25"})
            found.update(int(h["id"]) for h in hits[0])
        if mode == "bm25" and len(found) < min(depth, self.manifest.passages):
            # Locally, passages without a question word score 0 and follow in passage order.
            found.update(range(min(depth, self.manifest.passages)))
        if query is not None:
            params = dense_search_params(self.manifest.dense_index, self.manifest.dense_params,
                                         depth)
            hits = self.client.search(collection, data=[query.tolist()], anns_field="vector",
                                      limit=depth, output_fields=["id"],
                                      search_params={"metric_type": "IP", "params": params})
            found.update(int(h["id"]) for h in hits[0])
        ids = sorted(found)
        rows = self._rows(collection, ids, PASSAGE_FIELDS)
        spans = self._spans(rows)
        df = self._df(terms)
        passage_vectors = np.array([r["vector"] for r in rows], dtype=np.float32).reshape(
            len(rows), self.manifest.dimension)
        index = self._view(rows, spans, passage_vectors)
        postings = Postings.from_tokens([r["terms"].split() for r in rows])
        return (index, CollectionBM25(postings, self.manifest, df, self.vocabulary),
                np.array(ids, dtype=np.int64))

    def vocabulary(self) -> list[str]:
        """Every term of the collection, read once (only a rare unmatched word needs it)."""
        with self._lock:
            if self._all_terms is None:
                iterator = self.client.query_iterator(self.manifest.collections["vocab"],
                                                      batch_size=BATCH_ROWS * 10, filter="",
                                                      output_fields=["id"])
                terms: list[str] = []
                try:
                    while batch := iterator.next():
                        terms += [r["id"] for r in batch]
                finally:
                    iterator.close()
                self._all_terms = terms
            return self._all_terms

    def _rows(self, collection: str, ids: list[int], fields: list[str]) -> list[dict]:
        """Rows of `ids` in id order, fetched in batches."""
        rows: list[dict] = []
        for lo in range(0, len(ids), BATCH_ROWS):
            rows += self.client.get(collection, ids=ids[lo:lo + BATCH_ROWS], output_fields=fields)
        return sorted(rows, key=lambda r: r["id"])

    def _spans(self, rows: list[dict]) -> list[dict]:
        """Every span inside a run of overlapping candidates, as locally: the evidence of a
        widened result may be a span no single passage of it holds."""
        wanted: list[int] = []
        run_source, run_end, run_lo, run_hi = None, -1, 0, 0
        for r in rows:
            if r["source_id"] == run_source and r["start"] < run_end:
                run_end, run_hi = max(run_end, r["end"]), max(run_hi, r["span_hi"])
                continue
            wanted += range(run_lo, run_hi)
            run_source, run_end, run_lo, run_hi = r["source_id"], r["end"], r["span_lo"], r[
                "span_hi"]
        wanted += range(run_lo, run_hi)
        return self._rows(self.manifest.collections["spans"], sorted(set(wanted)),
                          ["id", "source_id", "start", "end", "vector"])

    def holds(self, term: str) -> bool:
        """Whether any passage of the collection holds `term` (its df, remembered)."""
        with self._lock:
            return term in self._df([term])

    def _df(self, terms: list[str]) -> dict[str, int]:
        """Document frequencies of the question's terms (remembered across questions)."""
        new = sorted({t for t in terms if t not in self._vocab})
        if new:
            got = {r["id"]: int(r["df"]) for r in self.client.get(
                self.manifest.collections["vocab"], ids=new, output_fields=["df"])}
            self._vocab.update({t: got.get(t) for t in new})
        return {t: df for t in set(terms) if (df := self._vocab[t]) is not None}

    def _view(self, rows: list[dict], spans: list[dict], passage_vectors: np.ndarray) -> Index:
        """An in-memory Index of the fetched passages and spans (sources named by the rows)."""
        import faiss

        names = list(dict.fromkeys(r["source"] for r in rows))
        local = {r["source_id"]: names.index(r["source"]) for r in rows}
        table = _table(rows, names, local)
        span_table = _table(spans, names, local)
        span_ids = np.array([s["id"] for s in spans], dtype=np.int64)
        ranges = np.array([[r["span_lo"], r["span_hi"]] for r in rows], dtype=np.int64
                          ).reshape(len(rows), 2)
        passage_spans = np.searchsorted(span_ids, ranges).astype(np.int64)
        span_vectors = np.array([s["vector"] for s in spans], dtype=np.float32).reshape(
            len(spans), self.manifest.dimension)
        flat = faiss.IndexFlatIP(self.manifest.dimension)
        flat.add(passage_vectors)
        analyzer = self.manifest.analyzer
        manifest = Manifest(
            model=ModelInfo(self.manifest.model, self.manifest.dimension, "", {}),
            chunking=ChunkParams(), analyzer=Analyzer(stem=analyzer["stem"],
                                                      stopwords=analyzer["stopwords"]),
            analyzer_rules=analyzer["rules"], sources=[],
            counts=Counts(len(names), len(rows), len(spans)), files={}, versions={},
            built_at=self.manifest.built_at, build_seconds=0.0, dense_index="flat")
        return Index(path=Path(), encoder_dir=Path(), manifest=manifest, texts=self.index.texts,
                     passages=table,
                     spans=span_table, passage_spans=passage_spans,
                     postings=Postings.from_tokens([]), passage_vectors=flat,
                     span_vectors=span_vectors)


def _table(rows: list[dict], names: list[str], local: dict[int, int]) -> UnitTable:
    return UnitTable(names, np.array([local[r["source_id"]] for r in rows], dtype=np.int32),
                     np.array([r["start"] for r in rows], dtype=np.int64),
                     np.array([r["end"] for r in rows], dtype=np.int64))


def load_build(client: Any, alias: str) -> MilvusManifest:
    """The manifest of the build `alias` names, its collections loaded for search."""
    manifest = read_manifest(client, alias)
    for name in manifest.collections.values():
        client.load_collection(name)
    return manifest
