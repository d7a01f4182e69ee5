"""What the search stages need from a backend, and nothing more: the `Library` protocol.

A backend (the local index, a collection in Milvus) answers term statistics and hands out, for
one question, a `Pool` of passages: every passage of a local index, the passages Milvus finds
for the question. The stages choose the candidates among the pool (`candidates.py`) and `take`
them: their places, vectors and spans as rows 0 … n-1, so scoring, fusion, assembly and
highlights run the same on either backend. Texts are always `texts[source][start:end]` of the
snapshot the passages were cut from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.index import UnitTable


@dataclass(frozen=True, eq=False)
class Candidates:
    """The passages one question is scored over, as rows: row i is passage `ids[i]` of the
    library, at `passages[i]`; `passage_spans[i]` is the [lo, hi) range of `spans` (and
    `span_vectors`) lying inside it. `passage_vectors` is there when taken for dense scoring,
    `holding` (whether each row holds a word of the question) when taken for BM25 alone."""

    ids: np.ndarray
    passages: UnitTable
    passage_spans: np.ndarray
    spans: UnitTable
    span_vectors: Any
    passage_vectors: np.ndarray | None = None
    holding: np.ndarray | None = None


class Pool(Protocol):
    """The passages a backend offers for one question, before the candidates are chosen."""

    @property
    def bm25(self) -> np.ndarray:
        """The raw BM25 score of each pooled passage (with the whole library's statistics)."""
        ...

    def nearest(self, query: np.ndarray, depth: int) -> np.ndarray:
        """Positions in the pool of the `depth` passages nearest to `query`."""
        ...

    def take(self, rows: np.ndarray, vectors: bool) -> Candidates:
        """The pooled passages at positions `rows`, in that order: with their vectors when
        `vectors`, else with whether each holds a word of the question."""
        ...


class Library(Protocol):
    """A searchable library: its analyzer, source texts and term statistics, and a pool of
    passages for each question."""

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer its terms were made with; questions must use the same."""
        ...

    @property
    def texts(self) -> Mapping[str, str]:
        """Each source's text as indexed (passages are ranges of it)."""
        ...

    @property
    def max_idf(self) -> float:
        """The IDF of the library's rarest term."""
        ...

    def idf(self, term: str) -> float | None:
        """The term's BM25 IDF in the whole library, or None when no passage holds it."""
        ...

    def holds(self, term: str) -> bool:
        """Whether any passage holds `term`."""
        ...

    def terms_starting(self, initial: str) -> list[str]:
        """The library's terms that start with `initial` (for the misspelling check)."""
        ...

    def pool(self, terms: list[str], query: np.ndarray | None, mode: str, depth: int) -> Pool:
        """The passages to choose `mode`'s candidates from for a question of distinct `terms`
        and query vector `query` (None for BM25 alone), `depth` being how many of each
        signal's best the stages take."""
        ...
