"""Late-interaction token vectors in the index: every passage's token states from the
late-interaction model, computed at build time (a passage the previous build already encoded
with the same model keeps its vectors), stored in float16, checked when loaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.index.manifest import IndexProblem
from myoqa.index.textkey import text_key

VECTORS = "late_vectors"
OFFSETS = "late_offsets"
BATCH = 64
DTYPE = np.float16
"""float16 measured the same as float32 (eval/RESULTS.md) at half the size."""


@dataclass(frozen=True)
class TokenVectors:
    """Every passage's token vectors, concatenated: passage i owns rows offsets[i]:offsets[i+1]."""

    vectors: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_list(cls, per_passage: list[np.ndarray], dtype: Any = DTYPE) -> TokenVectors:
        """Pack per-passage (tokens, dimension) arrays."""
        sizes = [len(v) for v in per_passage]
        return cls(np.concatenate(per_passage).astype(dtype),
                   np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> np.ndarray:
        """Passage i's token vectors."""
        return self.vectors[self.offsets[i]:self.offsets[i + 1]]


def encode(texts: list[str], encoder: Any, previous: dict[bytes, np.ndarray],
           tick: Callable[[int], None]) -> TokenVectors:
    """Token vectors of `texts`, taken from `previous` (text key → vectors) where it has them."""
    keys = [text_key(t) for t in texts]
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        if key not in previous:
            first.setdefault(key, i)
    todo = list(first.values())
    known = dict(previous)
    tick(len(texts) - len(todo))
    for at in range(0, len(todo), BATCH):
        batch = todo[at:at + BATCH]
        for i, vectors in zip(batch, encoder.passages([texts[i] for i in batch]), strict=False):
            known[keys[i]] = vectors
        tick(len(batch))
    return TokenVectors.from_list([known[k] for k in keys])


def known(tokens: TokenVectors | None, texts: list[str]) -> dict[bytes, np.ndarray]:
    """Text key → token vectors of a previous build's passages (`texts`, in passage order)."""
    if tokens is None:
        return {}
    return {text_key(t): tokens.of(i) for i, t in enumerate(texts)}


def check(tokens: TokenVectors, passages: int, dimension: int, where: Path) -> TokenVectors:
    """`tokens` when they fit `passages` passages of `dimension`, else IndexProblem."""
    offsets, vectors = tokens.offsets, tokens.vectors
    if (offsets.dtype.kind not in "iu" or offsets.shape != (passages + 1,) or offsets[0] != 0
            or np.any(np.diff(offsets) < 1) or vectors.shape != (int(offsets[-1]), dimension)
            or vectors.dtype != DTYPE):
        raise IndexProblem(f"the late-interaction vectors in {where} do not match the passages")
    return tokens
