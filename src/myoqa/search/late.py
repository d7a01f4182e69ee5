"""Late interaction (ColBERT MaxSim), the third signal: each question token is matched to its
most similar token of a passage, so a passage that answers in other words than the question's
still matches word by word, where one vector per passage blurs it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from myoqa.index.tokens import TokenVectors
from myoqa.search.params import LateInteraction


def maxsim(query: np.ndarray, passages: list[np.ndarray]) -> np.ndarray:
    """For each passage's (tokens, dimension) vectors: the mean over query tokens of the best
    cosine with any of the passage's tokens (in [-1, 1])."""
    return np.array([float((p @ query.T).max(axis=0).mean()) for p in passages],
                    dtype=np.float64)


def rerank(fused: np.ndarray, late: np.ndarray | None, top: np.ndarray,
           how: LateInteraction) -> np.ndarray:
    """Fused scores with the late signal mixed in for the candidates at positions `top`:
    (1 − weight) × fused + weight × the late score min-max scaled over `top` (0 elsewhere), so
    the result stays in [0, 1] and only the candidates the first stage ranked high move."""
    out = (1 - how.weight) * fused
    if late is not None and len(top):
        low, high = late.min(), late.max()
        out[top] += how.weight * ((late - low) / (high - low) if high > low
                                  else np.ones_like(late))
    return out


def span_scores(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray,
                spans: list[tuple[int, int]]) -> list[float]:
    """MaxSim of `query` against the tokens lying inside each (start, end) span: how well the
    span alone answers, word by word (-1 for a span holding no token).

    Tokens (of possibly overlapping passages) are sorted by place, so the tokens of a span
    are one slice."""
    real = offsets[:, 1] > offsets[:, 0]
    offsets = offsets[real]
    order = np.lexsort((offsets[:, 1], offsets[:, 0]))
    starts = offsets[order, 0]
    ends = np.maximum.accumulate(offsets[order, 1]) if len(order) else offsets[order, 1]
    sims = vectors[real][order].astype(np.float32) @ query.T
    out = []
    for start, end in spans:
        lo = int(np.searchsorted(starts, start, side="left"))
        hi = int(np.searchsorted(ends, end, side="right"))
        out.append(float(sims[lo:hi].max(axis=0).mean()) if hi > lo else -1.0)
    return out


class Preload:
    """A value made on a thread from creation (with `start`), or in the first caller of
    `result` otherwise; `result` waits for it and raises what making it raised."""

    def __init__(self, make: Callable[[], Any], start: bool = True) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="myoqa-preload") if start else None
        if self._thread is not None:
            self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._make()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of `result`
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> Any:
        """The value, made now in this thread if no thread is making it."""
        if self._thread is None:
            with self._lock:
                if not self._done.is_set():
                    self._run()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class LateSignal:
    """The passages' stored token vectors and, loaded on first use, the query encoder.

    A passage's vectors are widened to float32 and its tokens' offsets found once, on first
    use, and kept (up to KEPT_TOKENS tokens, then forgotten all at once): warm questions touch
    the same passages again."""

    KEPT_TOKENS = 200_000
    """About 300 MB of float32 vectors: a small index is kept whole, a large one's hot part."""

    def __init__(self, tokens: TokenVectors, encoder_factory: Callable[[], Any]) -> None:
        self.tokens = tokens
        self.encoder_factory = encoder_factory
        self._encoder: Any = None
        self._vectors: dict[int, np.ndarray] = {}
        self._offsets: dict[int, np.ndarray] = {}
        self._kept = 0

    @property
    def encoder(self) -> Any:
        """The late-interaction encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        return self._encoder

    @property
    def ready(self) -> bool:
        """Whether the encoder is loaded (a question would not wait for it)."""
        return self._encoder is not None

    def query(self, text: str) -> np.ndarray:
        """The question's token vectors."""
        return np.asarray(self.encoder.query(text), dtype=np.float32)

    def vectors(self, i: int) -> np.ndarray:
        """Passage `i`'s token vectors in float32."""
        found = self._vectors.get(i)
        if found is None:
            found = self.tokens.of(i).astype(np.float32)
            if self._kept + len(found) > self.KEPT_TOKENS:
                self._vectors.clear()
                self._offsets.clear()
                self._kept = 0
            self._vectors[i] = found
            self._kept += len(found)
        return found

    def scores(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """MaxSim of `query` against each passage in `ids`."""
        return maxsim(query, [self.vectors(i) for i in ids.tolist()])

    def passage(self, i: int, text: str, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Passage `i`'s token vectors and their character offsets in its source (the passage
        `text` begins at `start`; its tokens are found again once, which takes microseconds)."""
        vectors = self.vectors(i)
        offsets = self._offsets.get(i)
        if offsets is None:
            offsets = self._offsets[i] = self.encoder.offsets(text)[:len(vectors)]
        return vectors, offsets + start
