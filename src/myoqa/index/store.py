"""The index on disk: atomic save, safe load, pruning, and the lock builders take turns on.

Layout of an index folder (see README, "How it works"):
    .myoqa-index          marker: myoqa made this folder (see `ownership`)
    CURRENT               name of the build in use (replaced atomically)
    build-<time>-<id>/    one complete build: manifest.json, sources.json, bm25_vocab.json,
                          passages.faiss and .npy arrays (offsets, postings, span vectors,
                          and float16 passage vectors above dense.FLAT_MAX passages)
    encoders/<model>/     (older builds) their ONNX encoder; builds now use the one in the
                          user's cache (see `encoders`), which pruning never touches
    .lock                 held while a build runs, so two builds never interleave
Readers follow CURRENT, so an ask during a rebuild sees the old build or the new one, whole.
No file is loaded with pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.bm25 import Postings
from myoqa.faultpoints import pause
from myoqa.index import tokens
from myoqa.index.dense import EXACT_DTYPE, DenseIndex
from myoqa.index.encoders import ENCODERS, digests, encoder_folder
from myoqa.index.locks import held
from myoqa.index.manifest import FileDigest, IndexProblem, Manifest
from myoqa.index.ownership import TMP_PREFIX, make_owned_dir, owned_dir, read_small, remove_owned
from myoqa.index.tables import Index, UnitTable

MANIFEST = "manifest.json"
SOURCES = "sources.json"  # the text every shown passage is cut from
BUILD_PREFIX = "build-"
POINTER = ".pointer"
EXACT_VECTORS = "passage_vectors"
"""The float16 passage vectors a large build's quantised index is rescored with."""
ARRAYS = ("passages", "spans", "passage_spans", "span_vectors", "bm25_indptr", "bm25_docs",
          "bm25_tf", "bm25_doc_len")

Notify = Callable[[str], None]


@contextmanager
def build_lock(index_dir: Path, notify: Notify) -> Iterator[None]:
    """Hold the index folder's lock; a second builder waits for the first to finish."""
    with held(index_dir / ".lock", notify, "another build of this index is running; waiting for it"):
        yield


def current_build(index_dir: Path) -> Path:
    """The build folder CURRENT names, or IndexProblem if there is none."""
    pointer = index_dir / "CURRENT"
    try:
        name = read_small(pointer).strip()
    except FileNotFoundError:
        raise IndexProblem(f"no index in {index_dir}", "run `myoqa index`") from None
    except OSError as exc:
        raise IndexProblem(f"cannot read {pointer}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise IndexProblem(f"cannot read {pointer}: {exc}") from None
    build_dir = index_dir / name
    if not name.startswith(BUILD_PREFIX) or "/" in name or not build_dir.is_dir():
        raise IndexProblem(f"{pointer} names a missing build {name!r}")
    return build_dir


def read_manifest(build_dir: Path) -> Manifest:
    """The typed manifest of a build folder (IndexProblem when missing or malformed)."""
    path = build_dir / MANIFEST
    return Manifest.from_json(_read_json(path), str(path))


def save(index: Index, index_dir: Path) -> Index:
    """Write `index` as a new build folder, then switch CURRENT to it; return it as loaded.

    Call it holding `build_lock` in a folder `ownership.claim` accepted. Readers see no change
    until CURRENT is replaced, and every file is synced first, so a crash leaves the old build
    or the new one, whole. A failure or an interrupt removes the partial build; in the main
    thread, Ctrl-C waits while CURRENT is switched and leftovers are removed. The replaced build
    stays for readers still on it; older builds of ours are removed, nothing else is.
    """
    import faiss

    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)

    handler = signal.getsignal(signal.SIGINT)
    guard = threading.current_thread() is threading.main_thread() and handler is not None
    names = list(index.texts)
    try:
        keep = {current_build(index_dir).name}
    except IndexProblem:
        keep = set()
    final = index_dir / f"{BUILD_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp = index_dir / f"{TMP_PREFIX}{final.name}"
    try:
        make_owned_dir(tmp, "build proof")
        _write_json(tmp / SOURCES, {"names": names, "texts": [index.texts[n]
                                                                     for n in names]})
        _write_json(tmp / "bm25_vocab.json", index.postings.vocab)
        arrays = {"passages": index.passages.array(), "spans": index.spans.array(),
                  "passage_spans": index.passage_spans, "span_vectors": index.span_vectors,
                  **{f"bm25_{k}": v for k, v in index.postings.arrays().items()}}
        if index.passage_vectors.exact is not None:
            arrays[EXACT_VECTORS] = index.passage_vectors.exact
        if index.passage_tokens is not None:
            arrays[tokens.VECTORS] = index.passage_tokens.vectors
            arrays[tokens.OFFSETS] = index.passage_tokens.offsets
        for name, array in arrays.items():
            _save_array(tmp / f"{name}.npy", array)
        with open(tmp / "passages.faiss", "wb") as fh:  # through Python, so errors are OSError
            faiss.write_index(index.passage_vectors.coarse,
                              faiss.PyCallbackIOWriter(fh.write))  # type: ignore[attr-defined]  # SWIG
        files = digests(tmp)
        manifest = Manifest(**{**vars(index.manifest), "files": files})
        _write_json(tmp / MANIFEST, manifest.to_json())
        _write_text(tmp / POINTER, final.name + "\n")
        for path in [*tmp.rglob("*"), tmp]:
            _sync(path)
        pause("build written")
        if guard:  # Ctrl-C from here on waits until CURRENT is switched and leftovers are gone
            signal.signal(signal.SIGINT, hold)
        os.rename(tmp, final)
        pause("current switch")
        os.replace(final / POINTER, index_dir / "CURRENT")
    except BaseException:
        if guard:
            signal.signal(signal.SIGINT, hold)
        remove_owned(tmp)
        remove_owned(final)
        raise
    else:
        _sync(index_dir)
        prune(index_dir, keep | {final.name})
    finally:
        if guard:
            signal.signal(signal.SIGINT, handler)
    if held:
        raise KeyboardInterrupt
    return load(index_dir)


def prune(index_dir: Path, keep: set[str]) -> None:
    """Remove our builds but `keep`, what interrupted or killed builds left, and encoders no
    kept build uses; entries myoqa did not make are never touched (see `remove_owned`).

    `save` calls it holding `build_lock`; `keep` is the new build and the one it replaced,
    which a reader may still be loading.
    """
    used: set[str] = set()
    for path in index_dir.iterdir():
        if path.name in keep:
            try:
                kept = read_manifest(path)
            except IndexProblem:
                continue
            used |= {kept.model.encoder, kept.late.encoder if kept.late else ""}
        elif path.name.startswith((BUILD_PREFIX, TMP_PREFIX)):
            remove_owned(path)
    encoders = index_dir / ENCODERS
    if owned_dir(encoders):
        for path in encoders.iterdir():
            if path.name not in used:
                remove_owned(path)


def load(index_dir: Path) -> Index:
    """Load the current build, checking that its parts agree with each other."""
    import faiss

    build_dir = current_build(index_dir)
    manifest = read_manifest(build_dir)
    stored = _read_json(build_dir / SOURCES, manifest.files.get(SOURCES))
    vocab = _read_json(build_dir / "bm25_vocab.json")
    arrays = {name: _load_array(build_dir / f"{name}.npy", mmap=name == "span_vectors")
              for name in ARRAYS}
    try:
        names, texts = stored["names"], stored["texts"]
        if (len(names) != len(texts) or len(set(names)) != len(names)
                or not all(isinstance(x, str) for x in [*names, *texts])):
            raise ValueError("sources.json is malformed")
        passages = UnitTable.from_array(arrays["passages"], names)
        spans = UnitTable.from_array(arrays["spans"], names)
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        for table in (passages, spans):
            if len(table) and not (np.all(table.start >= 0) and np.all(table.start < table.end)
                                   and np.all(table.end <= lengths[table.source])):
                raise ValueError("offsets outside their sources")
    except (KeyError, TypeError, IndexError, ValueError):
        raise IndexProblem(f"passages in {build_dir} do not match their sources") from None
    counts = manifest.counts
    if (len(names), len(passages), len(spans)) != (counts.sources, counts.passages, counts.spans):
        raise IndexProblem(f"the arrays in {build_dir} do not match its manifest's counts")
    postings = Postings(vocab, arrays["bm25_indptr"], arrays["bm25_docs"], arrays["bm25_tf"],
                        arrays["bm25_doc_len"])
    if not _consistent(postings, arrays["passage_spans"], len(passages), len(spans)):
        raise IndexProblem(f"BM25 postings in {build_dir} do not match the passages")
    try:
        vectors = faiss.read_index(str(build_dir / "passages.faiss"))
    except (RuntimeError, OSError) as exc:
        raise IndexProblem(f"vector file {build_dir / 'passages.faiss'} is damaged "
                           f"({exc.__class__.__name__})") from None
    dim = manifest.model.dimension
    if vectors.ntotal != len(passages) or vectors.d != dim:
        raise IndexProblem(f"{build_dir / 'passages.faiss'} holds {vectors.ntotal} vectors of "
                           f"dimension {vectors.d}, expected {len(passages)} of {dim}")
    span_vectors = arrays["span_vectors"]
    if span_vectors.shape != (len(spans), dim) or span_vectors.dtype != np.float32:
        raise IndexProblem(f"{build_dir / 'span_vectors.npy'} does not match the spans")
    exact = None
    if hasattr(vectors, "nprobe"):
        exact = _load_array(build_dir / f"{EXACT_VECTORS}.npy", mmap=True)
        if exact.shape != (len(passages), dim) or exact.dtype != EXACT_DTYPE:
            raise IndexProblem(f"{build_dir / f'{EXACT_VECTORS}.npy'} does not match the passages")
    late = None
    if manifest.late is not None:
        late = tokens.check(tokens.TokenVectors(
            _load_array(build_dir / f"{tokens.VECTORS}.npy", mmap=True),
            _load_array(build_dir / f"{tokens.OFFSETS}.npy")), len(passages),
            manifest.late.dimension, build_dir)
    return Index(path=build_dir, encoder_dir=encoder_folder(index_dir, manifest.model.encoder),
                 manifest=manifest, texts=dict(zip(names, texts, strict=False)), passages=passages,
                 spans=spans, passage_spans=arrays["passage_spans"], postings=postings,
                 passage_vectors=DenseIndex(vectors, exact), span_vectors=span_vectors,
                 passage_tokens=late)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def _read_json(path: Path, recorded: FileDigest | None = None) -> Any:
    """A JSON index file; with `recorded`, only if its bytes hash as the manifest recorded
    (the stored source text is checked so on every load: what is shown is what was indexed)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded.sha256:
            raise IndexProblem(f"index file {path} does not match its recorded hash")
        return json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise IndexProblem(f"index file {path} is missing") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise IndexProblem(f"index file {path} is damaged ({exc.__class__.__name__})") from None


class _PythonWrites:
    """A file as numpy sees it when given only a `write` method: it then writes through
    Python, whose failed write is an OSError with its errno (ENOSPC: "no space left"), not
    C's fwrite, whose short write on a nearly full disk numpy reports as "N requested and M
    written"."""

    def __init__(self, fh: Any) -> None:
        self.write = fh.write


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(_PythonWrites(fh), array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _load_array(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        array: np.ndarray = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        return array
    except FileNotFoundError:
        raise IndexProblem(f"index file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise IndexProblem(f"index file {path} is damaged ({exc.__class__.__name__})") from None


def _consistent(postings: Postings, ranges: np.ndarray, passages: int, spans: int) -> bool:
    """Whether postings and span ranges are well-formed for this many passages and spans, so a
    damaged file is caught here rather than as a wrong score or a crash at query time."""
    arrays = [postings.indptr, postings.docs, postings.tf, postings.doc_len, ranges]
    if any(a.dtype.kind not in "iu" for a in arrays) or ranges.shape != (passages, 2):
        return False
    indptr = postings.indptr
    return bool(
        len(postings.doc_len) == passages and len(indptr) == len(postings.vocab) + 1
        and all(isinstance(t, str) for t in postings.vocab)
        and len(set(postings.vocab)) == len(postings.vocab)
        and indptr[0] == 0 and np.all(np.diff(indptr) >= 0)
        and indptr[-1] == len(postings.docs) == len(postings.tf)
        and np.all((postings.docs >= 0) & (postings.docs < passages))
        and np.all(postings.tf >= 1) and np.all(postings.doc_len >= 0)
        and np.all((ranges[:, 0] >= 0) & (ranges[:, 0] <= ranges[:, 1]) & (ranges[:, 1] <= spans)))
