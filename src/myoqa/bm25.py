"""BM25 scores from an inverted index held in NumPy arrays: the same numbers as rank-bm25.

rank-bm25's `BM25Okapi.get_scores` visits every document in Python for each query term, so its
cost grows with the corpus. Here each term's postings (documents and term counts) are stored once,
with their BM25 weights precomputed, so a query only touches the documents that hold its terms.
The formulas (Okapi BM25, k1=1.5, b=0.75, negative IDFs floored at 0.25 x the mean IDF) are
rank-bm25's; tests check both give the same scores to 1e-6.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from myoqa.analysis import WORD_RE, Analyzer

K1 = 1.5
B = 0.75
EPSILON = 0.25
INVERT_BATCH = 20_000
"""Documents inverted at once when building postings (memory holds one batch's tokens)."""
WEIGHT_CHUNK = 1_000_000
"""Postings whose BM25 weights are computed at once (bounds the temporaries)."""


@dataclass
class Postings:
    """The stored form: vocabulary, per-term ranges into `docs`/`tf`, and document lengths;
    term counts in the smallest unsigned integers that hold them (one byte, as a rule)."""

    vocab: list[str]
    indptr: np.ndarray
    docs: np.ndarray
    tf: np.ndarray
    doc_len: np.ndarray

    @classmethod
    def from_tokens(cls, corpus: list[list[str]]) -> Postings:
        """Invert documents given as term lists (the form rank-bm25 takes)."""
        ids: dict[str, int] = {}
        flat = [ids.setdefault(t, len(ids)) for doc in corpus for t in doc]
        return cls._invert(np.array(flat, dtype=np.int64),
                           np.array([len(doc) for doc in corpus], dtype=np.int64), list(ids))

    @classmethod
    def from_texts(cls, texts: Iterable[str], analyzer: Analyzer,
                   batch: int = INVERT_BATCH) -> Postings:
        """Analyse and invert documents; each distinct word is analysed once, so a million
        passages take seconds rather than minutes. Documents are inverted `batch` at a time
        into compact int32 triples, so memory holds one batch's tokens, not the corpus's."""
        word_ids: dict[str, int] = {}
        term_ids: dict[str, int] = {}
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        lengths: list[np.ndarray] = []
        flat = array("q")
        counts: list[int] = []

        def invert_batch() -> None:
            ids = np.frombuffer(flat, dtype=np.int64) if flat else np.zeros(0, np.int64)
            owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            keep = ids >= 0
            lengths.append(np.bincount(owner[keep], minlength=len(counts)).astype(np.int32))
            width = max(len(counts), 1)
            keys, tf = np.unique(ids[keep] * width + owner[keep], return_counts=True)
            terms, docs = np.divmod(keys, width)
            first = sum(len(x) for x in lengths[:-1])
            parts.append((terms.astype(np.int32), (docs + first).astype(np.int32),
                          tf.astype(np.int32)))

        for text in texts:
            words = WORD_RE.findall(text)
            found = list(map(word_ids.get, words))
            if None in found:
                for word in words:
                    if word not in word_ids:
                        term = analyzer.term(word)
                        word_ids[word] = term_ids.setdefault(term, len(term_ids)) if term else -1
                found = list(map(word_ids.__getitem__, words))
            flat.extend(found)
            counts.append(len(found))
            if len(counts) == batch:
                invert_batch()
                flat, counts = array("q"), []
        if counts or not parts:
            invert_batch()
        return cls._merge(parts, np.concatenate(lengths), list(term_ids))

    @classmethod
    def _merge(cls, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
               doc_len: np.ndarray, vocab: list[str]) -> Postings:
        """Postings from batches of (term, doc, tf) triples, each sorted by term then doc and
        the batches in document order: a counting sort places each batch, so no sort of the
        whole corpus's postings is ever held."""
        counts = np.zeros(len(vocab), dtype=np.int64)
        for terms, _, _ in parts:
            counts += np.bincount(terms, minlength=len(vocab))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        docs = np.empty(int(indptr[-1]), dtype=np.int32)
        most = max((int(part[2].max(initial=0)) for part in parts), default=0)
        tf = np.empty(int(indptr[-1]), dtype=np.min_scalar_type(max(most, 1)))
        cursor = indptr[:-1].copy()
        while parts:
            terms, batch_docs, batch_tf = parts.pop(0)
            starts = np.searchsorted(terms, terms)  # each triple's rank within its term
            at = cursor[terms] + np.arange(len(terms)) - starts
            docs[at], tf[at] = batch_docs, batch_tf
            cursor += np.bincount(terms, minlength=len(vocab))
        return cls(vocab=vocab, indptr=indptr, docs=docs, tf=tf, doc_len=doc_len)

    @classmethod
    def _invert(cls, flat: np.ndarray, doc_len: np.ndarray, vocab: list[str]) -> Postings:
        """Postings from each token's term id, documents' tokens being consecutive in `flat`."""
        n = max(len(doc_len), 1)
        owner = np.repeat(np.arange(len(doc_len), dtype=np.int64), doc_len)
        keys, tf = np.unique(flat * n + owner, return_counts=True)
        terms, docs = np.divmod(keys, n)
        counts = np.bincount(terms, minlength=len(vocab))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(vocab=vocab, indptr=indptr, docs=docs.astype(np.int32),
                   tf=tf.astype(np.int32), doc_len=doc_len.astype(np.int32))

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save next to the vocabulary."""
        return {"indptr": self.indptr, "docs": self.docs, "tf": self.tf, "doc_len": self.doc_len}


def raw_idf(n: int, df: np.ndarray) -> np.ndarray:
    """Okapi IDF of terms held by `df` of `n` documents (negative for a term in most of them)."""
    df = np.asarray(df, dtype=np.float64)
    raw: np.ndarray = np.log(n - df + 0.5) - np.log(df + 0.5)
    return raw


def idf_floor(raw: np.ndarray) -> float:
    """What a negative IDF becomes: EPSILON x the mean IDF of the vocabulary (rank-bm25's)."""
    return EPSILON * (math.fsum(raw) / len(raw)) if len(raw) else 0.0


def idf_from_df(n: int, df: np.ndarray, floor: float | None = None) -> np.ndarray:
    """The IDF of terms held by `df` of `n` documents, a negative one raised to `floor` (by
    default the floor of these terms, `df` being the whole vocabulary): the one formula for
    the local index and for a collection whose statistics are stored."""
    raw = raw_idf(n, df)
    idf: np.ndarray = np.where(raw < 0, idf_floor(raw) if floor is None else floor, raw)
    return idf


class SparseBM25:
    """Okapi BM25 over stored postings.

    With `idf_values` (one per term of `postings`) and `avgdl`, the postings are a part of a
    larger corpus (a question's candidates) scored with the whole corpus's statistics: the
    scores the whole corpus gives these documents."""

    def __init__(self, postings: Postings, idf_values: np.ndarray | None = None,
                 avgdl: float | None = None) -> None:
        self.postings = postings
        self.term_ids = {t: i for i, t in enumerate(postings.vocab)}
        n = len(postings.doc_len)
        self.idf_values = (idf_from_df(n, np.diff(postings.indptr)) if idf_values is None
                           else idf_values)
        doc_len = postings.doc_len.astype(np.float64)
        if avgdl is None:
            avgdl = doc_len.sum() / n if n else 1.0
        norm = K1 * (1 - B + B * doc_len / avgdl)
        self.weights = np.empty(len(postings.docs))
        for lo in range(0, len(postings.docs), WEIGHT_CHUNK):
            hi = min(lo + WEIGHT_CHUNK, len(postings.docs))
            term_of = np.searchsorted(postings.indptr, np.arange(lo, hi), side="right") - 1
            tf = postings.tf[lo:hi].astype(np.float64)
            self.weights[lo:hi] = (self.idf_values[term_of] * tf * (K1 + 1)
                                   / (tf + norm[postings.docs[lo:hi]]))
        self.size = n
        self.k1 = K1

    def idf(self, term: str) -> float | None:
        """The term's IDF, or None when no document holds it."""
        i = self.term_ids.get(term)
        return None if i is None else float(self.idf_values[i])

    @property
    def max_idf(self) -> float:
        """The IDF of the rarest term."""
        return float(self.idf_values.max()) if len(self.idf_values) else 0.0

    def scores(self, query: list[str]) -> np.ndarray:
        """BM25 score of every document; a repeated query term counts each time, as in rank-bm25."""
        out = np.zeros(self.size)
        for term, count in Counter(query).items():
            i = self.term_ids.get(term)
            if i is None:
                continue
            lo, hi = self.postings.indptr[i], self.postings.indptr[i + 1]
            out[self.postings.docs[lo:hi]] += count * self.weights[lo:hi]
        return out
