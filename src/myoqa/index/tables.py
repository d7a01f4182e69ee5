"""The loaded index: source texts, passages and spans as offset tables, postings and vectors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.analysis import Analyzer
from myoqa.bm25 import Postings
from myoqa.chunking import Unit
from myoqa.index.manifest import Manifest
from myoqa.index.tokens import TokenVectors


@dataclass(frozen=True, eq=False)
class UnitTable:
    """Passages or spans as parallel arrays (compact for millions); indexing gives a Unit."""

    names: list[str]
    source: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i: int) -> Unit:
        return Unit(self.names[int(self.source[i])], int(self.start[i]), int(self.end[i]))

    def __iter__(self) -> Iterator[Unit]:
        return (self[i] for i in range(len(self)))

    @classmethod
    def from_units(cls, units: list[Unit], names: list[str]) -> UnitTable:
        """Pack Units whose sources are among `names`."""
        ids = {n: i for i, n in enumerate(names)}
        return cls(names, np.array([ids[u.source] for u in units], dtype=np.int32),
                   np.array([u.start for u in units], dtype=np.int64),
                   np.array([u.end for u in units], dtype=np.int64))

    def array(self) -> np.ndarray:
        """(n, 3) int64 rows of source id, start, end, as saved."""
        return np.stack([self.source.astype(np.int64), self.start, self.end], axis=1)

    @classmethod
    def from_array(cls, rows: np.ndarray, names: list[str]) -> UnitTable:
        """The inverse of `array`."""
        return cls(names, rows[:, 0].astype(np.int32), rows[:, 1], rows[:, 2])


@dataclass
class Index:
    """A build, in memory: what search reads.

    `passage_spans[i]` is the [lo, hi) range of spans lying wholly inside passage i; `path` is
    the build folder it was loaded from (empty for an index not yet stored) and `encoder_dir`
    the ONNX query encoder it was embedded with.
    """

    path: Path
    encoder_dir: Path
    manifest: Manifest
    texts: dict[str, str]
    passages: UnitTable
    spans: UnitTable
    passage_spans: np.ndarray
    postings: Postings
    passage_vectors: Any
    span_vectors: np.ndarray
    passage_tokens: TokenVectors | None = None

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer the BM25 terms were made with; questions must use the same."""
        return self.manifest.analyzer

    @property
    def dimension(self) -> int:
        """Embedding dimension recorded at build time."""
        return self.manifest.model.dimension

    def text(self, unit: Unit) -> str:
        """The exact source text of a passage or span."""
        return self.texts[unit.source][unit.start:unit.end]


def spans_inside(passages: UnitTable, spans: UnitTable) -> np.ndarray:
    """For each passage, the [lo, hi) range of spans wholly inside it.

    Units of one source are stored in order, sources in the order of `names`, so a span's
    (source, start) and (source, end) keys are both sorted and a binary search finds the range.
    """
    width = int(max(passages.end.max(initial=0), spans.end.max(initial=0))) + 1
    span_starts = spans.source.astype(np.int64) * width + spans.start
    span_ends = spans.source.astype(np.int64) * width + spans.end
    lo = np.searchsorted(span_starts, passages.source.astype(np.int64) * width + passages.start)
    hi = np.searchsorted(span_ends, passages.source.astype(np.int64) * width + passages.end,
                         side="right")
    return np.stack([lo, np.maximum(lo, hi)], axis=1).astype(np.int64)
