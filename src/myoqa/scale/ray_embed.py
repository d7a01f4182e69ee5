"""The embedding job on Ray: passages and spans embedded by Ray Data batches on a pool of actors.

Each actor runs myoqa's ONNX encoder (onnxruntime and tokenizers, no torch), loaded from the
export the build wrote, whose files travel through Ray's object store, so workers need no shared
disk and no model download. The vectors are the ONNX encoder's, which match
sentence-transformers' to cosine ≥ 0.9999 (tested), so either backend can take them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.errors import MyoqaError
from myoqa.onnx_encoder import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, WEIGHTS_FILE, OnnxEncoder

ENCODER_FILES = (MODEL_FILE, WEIGHTS_FILE, TOKENIZER_FILE, CONFIG_FILE)
BATCH_TEXTS = 64
THREADS_PER_WORKER = 1
CONNECT_SECONDS = 10.0  # Ray itself retries an address that does not answer for minutes
RAY_HEAD_PORT = 6379  # Ray's default port for an address given without one
RAY_CLIENT_PREFIX = "ray://"
RAY_CORE_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"  # what Ray's C++ core prints on stderr
RAY_DATA_CONSOLE = "console"  # the name of Ray Data's own stderr log handler
ADDRESS_HINT = "check --ray-address (host:port of the Ray head), or leave it out to run Ray here"


class _Embedder:
    """One Ray actor: the ONNX encoder, written from the shipped files (an object reference to
    {name: bytes}, put once however many actors read it) into a private folder."""

    def __init__(self, files: Any) -> None:
        import ray

        folder = Path(tempfile.mkdtemp(prefix="myoqa-encoder-"))
        for name, data in ray.get(files).items():
            (folder / name).write_bytes(data)
        self.encoder = OnnxEncoder(folder, threads=THREADS_PER_WORKER)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"row": batch["row"], "vector": self.encoder.encode([str(t) for t in batch["text"]])}


def start_ray(address: str | None) -> None:
    """Join the Ray cluster at `address` (or `auto`), or start a local one with every core.
    An address that does not answer within CONNECT_SECONDS is one clear error, not Ray's
    endless retries; Ray's own log lines stay off the terminal."""
    os.environ.setdefault(RAY_CORE_LOG_LEVEL, "fatal")  # read when ray.init starts its core
    import ray

    for name in ("ray", "ray.data"):  # progress is myoqa's own; Ray's chatter stays quiet
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address and address != "auto":
        check_reachable(address)
    try:
        with _stderr_muted():
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise MyoqaError(f"cannot start or join Ray at {address or 'this machine'} "
                         f"({str(exc).splitlines()[0][:200]})", ADDRESS_HINT) from None


@contextlib.contextmanager
def _stderr_muted() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null inside the block: Ray's C++ core writes its
    connection warnings there before any of its log settings apply."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_reachable(address: str) -> None:
    """Raise one clear error unless something listens at `address` (host:port, or
    ray://host:port) within CONNECT_SECONDS."""
    host, _, port = address.removeprefix(RAY_CLIENT_PREFIX).rpartition(":")
    if not host:
        host, port = port, str(RAY_HEAD_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise MyoqaError(f"--ray-address {address!r} is not host:port", ADDRESS_HINT)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            return
    except OSError as exc:
        reason = (f"no answer within {CONNECT_SECONDS:.0f} s" if isinstance(exc, TimeoutError)
                  else exc.strerror or str(exc))
        raise MyoqaError(f"cannot reach Ray at {address} ({reason})", ADDRESS_HINT) from None


class RayEncoder:
    """Embeds texts as a Ray Data job; the same interface as the local encoders."""

    def __init__(self, encoder_dir: Path, address: str | None = None,
                 workers: int | None = None) -> None:
        import json

        self.files = {name: (encoder_dir / name).read_bytes() for name in ENCODER_FILES}
        self.dimension = int(json.loads(self.files[CONFIG_FILE])["dimension"])
        self.address = address
        self.workers = workers

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """Vectors for `texts`, in order; `progress` hears of each batch as it comes back."""
        import ray

        start_ray(self.address)
        import ray.data  # sets up Ray Data's own logging, which is quieted next

        for handler in logging.getLogger("ray.data").handlers:  # its console, not its file
            if handler.name == RAY_DATA_CONSOLE:
                handler.setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        dataset = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
        embedded = dataset.map_batches(
            _Embedder, fn_constructor_kwargs={"files": ray.put(self.files)},
            batch_size=BATCH_TEXTS, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
            batch_format="numpy")
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["row"]] = np.asarray(batch["vector"], dtype=np.float32)
            if progress:
                progress(len(batch["row"]))
        return out
