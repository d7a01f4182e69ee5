"""Sentence embeddings at query time without torch or sentence-transformers.

Importing sentence-transformers (and with it torch) costs seconds, which dominates a
one-shot query. At index-build time `export_onnx` turns the SentenceTransformer into an
ONNX graph plus a `tokenizers` file; at query time `OnnxEncoder` reproduces
`SentenceTransformer.encode(..., normalize_embeddings=True)` with onnxruntime alone.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# onnxruntime (1.29 and later) starts its telemetry when imported: it keeps a device id in the
# user's cache folder, warns on every run when HOME is not writable, and may reach out to the
# network. myoqa runs offline and writes nothing there, so it is off unless the user set it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort
from tokenizers import Tokenizer

ORT_VERSION: str = ort.__version__
"""The onnxruntime version, as its package metadata says (without importlib.metadata)."""

MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "onnx_encoder.json"
BATCH_SIZE = 32
ONNX_OPSET = 17
EXPORT_VERSION = 1  # raise when export_onnx changes what it writes: encoders are re-exported
_MEAN_EPS = 1e-9
_NORM_EPS = 1e-12


def export_onnx(model_path: str | Any, out_dir: Path) -> None:
    """Write model.onnx, tokenizer.json and onnx_encoder.json for `OnnxEncoder` into out_dir.

    `model_path` is a model folder, or a SentenceTransformer already loaded (the index build
    passes the one it embedded with, saving a second load).

    Runs at index-build time, where torch is acceptable. Uses torch's TorchScript exporter
    (`dynamo=False`): it needs only the `onnx` package beyond torch, works offline and takes
    a few seconds. The weights go to a separate model.onnx.data file, which onnxruntime
    memory-maps, so loading a session at query time is about twice as fast as parsing them
    out of one protobuf. Only the Transformer -> mean Pooling -> optional Normalize layout is
    supported, because that is all `OnnxEncoder` reimplements.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnx
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    model = (SentenceTransformer(model_path, device="cpu") if isinstance(model_path, str)
             else model_path)
    modules = list(model)
    if not (
        len(modules) in (2, 3)
        and isinstance(modules[0], Transformer)
        and isinstance(modules[1], Pooling)
        and modules[1].pooling_mode == "mean"
        and all(isinstance(m, Normalize) for m in modules[2:])
    ):
        raise ValueError(f"unsupported SentenceTransformer layout for ONNX export: {model}")
    transformer: Transformer = modules[0]
    hf_tokenizer = transformer.tokenizer
    max_seq_length = int(model.max_seq_length)
    dimension = int(model.get_embedding_dimension())

    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.enable_padding(
        pad_id=hf_tokenizer.pad_token_id,
        pad_token=hf_tokenizer.pad_token,
        pad_type_id=hf_tokenizer.pad_token_type_id,
    )

    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in hf_tokenizer.model_input_names:
        input_names.append("token_type_ids")

    class _LastHiddenState(torch.nn.Module):
        """Positional-argument wrapper so the exporter sees plain tensors in and out."""

        def __init__(self, hf_model: torch.nn.Module) -> None:
            super().__init__()
            self.hf_model = hf_model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.hf_model(
                **dict(zip(input_names, inputs, strict=True)), return_dict=True
            ).last_hidden_state

    # Sample texts of different lengths so the traced graph contains real padding masking.
    sample = tokenizer.encode_batch(
        ["a short sample", "a somewhat longer sample sentence for tracing"]
    )
    columns = {
        "input_ids": [e.ids for e in sample],
        "attention_mask": [e.attention_mask for e in sample],
        "token_type_ids": [e.type_ids for e in sample],
    }
    args = tuple(torch.tensor(columns[name], dtype=torch.long) for name in input_names)
    dynamic_axes = {
        name: {0: "batch", 1: "sequence"} for name in [*input_names, "last_hidden_state"]
    }

    wrapper = _LastHiddenState(transformer.auto_model).eval()
    graph = io.BytesIO()
    # The tracer warns about shape checks in transformers' masking code; they hold for any
    # batch/sequence size, which the tests verify against sentence-transformers.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            args,
            graph,
            input_names=input_names,
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic_axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        onnx.load_model_from_string(graph.getvalue()),
        str(out_dir / MODEL_FILE),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=WEIGHTS_FILE,
    )
    (out_dir / TOKENIZER_FILE).write_text(tokenizer.to_str(pretty=False), encoding="utf-8")
    config = {
        "max_seq_length": max_seq_length,
        "pooling": "mean",
        "normalize": len(modules) == 3,
        "dimension": dimension,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


class OnnxEncoder:
    """Embeds texts with an `export_onnx` directory, importing only numpy/onnxruntime/tokenizers."""

    def __init__(self, model_dir: Path, threads: int | None = None, spin: bool = False) -> None:
        """Load the tokenizer and an onnxruntime CPU session sized for a small (2-core) machine,
        or with `threads` threads (one per worker when several embed side by side); with
        `spin`, for an encoder that runs alone (no late-interaction encoder beside it)."""
        config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        if config["pooling"] != "mean":
            raise ValueError(
                f"unsupported pooling {config['pooling']!r} in {model_dir / CONFIG_FILE}"
            )
        self.dimension: int = int(config["dimension"])
        self.max_seq_length: int = int(config["max_seq_length"])
        self.normalize: bool = bool(config["normalize"])
        self._tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning, so they leave the second core to the
        # UI and the rest of the query between (and after) encodes. With `spin` they spin
        # between the operators of one run (a question encodes 13 % faster, the same vectors)
        # and stop when it ends; beside the late-interaction encoder they would slow it more.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if spin:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        self._session = ort.InferenceSession(
            str(model_dir / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = [i.name for i in self._session.get_inputs()]

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """Return float32 embeddings of shape (len(texts), dimension), in input order.

        Texts are batched longest-first (as sentence-transformers does) so each batch pads
        to similar lengths; `progress` is told how many texts each batch finished.
        """
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            result[batch] = self._encode_batch([texts[i] for i in batch])
            if progress:
                progress(len(batch))
        return result

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """Tokenize, run the transformer and mean-pool one padded batch."""
        encodings = self._tokenizer.encode_batch(texts)
        columns = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (hidden,) = self._session.run(None, {name: columns[name] for name in self._input_names})
        mask = columns["attention_mask"][:, :, None].astype(np.float32)
        summed = (hidden * mask).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1), _MEAN_EPS)
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), _NORM_EPS)
        return pooled.astype(np.float32, copy=False)
