"""The on-disk index: building it atomically, checking it is current, and loading it safely.

Layout of an index directory:
    CURRENT              name of the build in use (replaced atomically)
    build-<id>/          one complete build: manifest.json, sources.json, units.json,
                         bm25.json, passages.faiss, spans.npy[, encoder/]
    .lock                held while a build runs, so two builds never interleave
Readers follow CURRENT, so an ask during a rebuild sees either the old or the new build, whole.
No file is loaded with pickle.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from myoqa import __version__
from myoqa.analysis import Analyzer
from myoqa.bm25 import Postings
from myoqa.chunking import ChunkParams, Unit, chunk
from myoqa.corpus import Source
from myoqa.errors import MyoqaError

FORMAT_VERSION = 2
FLAT_MAX = 20_000
IVF_PROBED_SHARE = 4
REBUILD_HINT = "run `myoqa index --rebuild`"


class IndexProblem(MyoqaError):
    """The index is missing, damaged or out of date; `reason` says which, for a rebuild message."""


@dataclass(frozen=True)
class BuildParams:
    """Everything a build depends on besides the sources; a change means a rebuild."""

    model: str
    chunking: ChunkParams = field(default_factory=ChunkParams)
    analyzer: Analyzer = field(default_factory=Analyzer)

    def manifest_params(self) -> dict[str, Any]:
        """The part of the manifest that must match for an index to be current."""
        return {"model": self.model, "chunking": self.chunking.params(),
                "analyzer": self.analyzer.params()}


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
    """A loaded build: source texts, passages and spans as offsets, BM25 postings and vectors.

    `passage_spans[i]` is the [lo, hi) range of spans lying wholly inside passage i.
    """

    path: Path
    manifest: dict[str, Any]
    texts: dict[str, str]
    passages: UnitTable
    spans: UnitTable
    passage_spans: np.ndarray
    postings: Postings
    passage_vectors: Any
    span_vectors: np.ndarray

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer the BM25 terms were made with; questions must use the same."""
        params = self.manifest["analyzer"]
        return Analyzer(stem=params["stem"], stopwords=params["stopwords"])

    @property
    def dimension(self) -> int:
        """Embedding dimension recorded at build time."""
        return int(self.manifest["model"]["dimension"])

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


def dense_index(vectors: np.ndarray) -> Any:
    """Exact inner-product search up to FLAT_MAX vectors, an IVF index above (see README)."""
    import faiss

    n, dim = vectors.shape
    if n <= FLAT_MAX:
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        return flat
    lists = int(np.sqrt(n))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = 10
    ivf.cp.spherical = True
    sample = vectors[np.random.default_rng(0).choice(n, min(n, 50 * lists), replace=False)]
    ivf.train(sample)
    ivf.add(vectors)
    ivf.nprobe = max(32, lists // IVF_PROBED_SHARE)
    ivf.make_direct_map()
    return ivf


ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _no_progress(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"myoqa": __version__, "python": sys.version.split()[0]}
    for pkg in ("faiss-cpu", "rank-bm25", "sentence-transformers", "torch", "numpy", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index directory's lock; a second builder waits for the first to finish."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("myoqa: another build of this index is running; waiting for it", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def assemble(sources: list[Source], params: BuildParams, encoder: Any,
             progress: ProgressFactory | None = None) -> Index:
    """Chunk, tokenize and embed `sources` into an in-memory index (not yet on disk)."""
    started = time.perf_counter()
    passages: list[Unit] = []
    spans: list[Unit] = []
    per_source = []
    for src in sources:
        p, s = chunk(src.name, src.text, params.chunking)
        passages += p
        spans += s
        per_source.append({"name": src.name, "sha256": src.sha256, "chars": len(src.text),
                           "passages": len(p)})
    if not passages:
        raise MyoqaError("the sources hold no words to index", "add text to the source files")
    texts = {s.name: s.text for s in sources}
    tick = (progress or _no_progress)("embedding", len(passages) + len(spans))
    vectors = encoder.encode([texts[u.source][u.start:u.end] for u in passages + spans], tick)
    return from_parts(texts, passages, spans, vectors[:len(passages)],
                      np.ascontiguousarray(vectors[len(passages):]), params,
                      {"sources": per_source, "started": started})


def from_parts(texts: dict[str, str], passages: list[Unit], spans: list[Unit],
               passage_vectors: np.ndarray, span_vectors: np.ndarray, params: BuildParams,
               extra: dict[str, Any]) -> Index:
    """An in-memory index from already-embedded units (also used by the scale benchmark)."""
    names = list(texts)
    table = UnitTable.from_units(passages, names)
    span_table = UnitTable.from_units(spans, names)
    postings = Postings.from_texts((texts[u.source][u.start:u.end] for u in passages),
                                   params.analyzer)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"name": params.model, "dimension": int(passage_vectors.shape[1]),
                  "query_encoder": "sentence-transformers"},
        "chunking": params.chunking.params(),
        "analyzer": params.analyzer.params(),
        "sources": extra.get("sources", []),
        "counts": {"sources": len(texts), "passages": len(passages), "spans": len(spans)},
        "versions": _versions(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    vectors = dense_index(passage_vectors)
    manifest["dense_index"] = (f"ivf(lists={vectors.nlist}, nprobe={vectors.nprobe})"
                               if hasattr(vectors, "nprobe") else "flat")
    index = Index(path=Path(), manifest=manifest, texts=texts, passages=table, spans=span_table,
                  passage_spans=spans_inside(table, span_table), postings=postings,
                  passage_vectors=vectors, span_vectors=span_vectors)
    manifest["build_seconds"] = round(time.perf_counter() - extra.get("started",
                                                                      time.perf_counter()), 3)
    return index


def save(index: Index, index_dir: Path, export_encoder: Callable[[Path], None] | None = None
         ) -> Index:
    """Write `index` as a new build folder, then switch CURRENT to it; return it as loaded.

    Call it holding `build_lock`. Readers see no change until CURRENT is replaced, and every file
    is synced first, so a crash leaves the old build or the new one, whole. A failure or an
    interrupt removes the partial build; in the main thread, Ctrl-C waits while CURRENT is
    switched and leftovers are removed. The replaced build stays for readers still on it; older
    builds and what killed builds left behind are removed.
    """
    import signal
    import threading

    import faiss

    def sync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)

    handler = signal.getsignal(signal.SIGINT)
    guard = threading.current_thread() is threading.main_thread() and handler is not None
    names = list(index.texts)
    index_dir.mkdir(parents=True, exist_ok=True)
    try:
        keep = {current_build(index_dir).name}
    except IndexProblem:
        keep = set()
    tmp = index_dir / f".tmp-{uuid.uuid4().hex[:12]}"
    final = index_dir / f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    pointer = index_dir / f".CURRENT-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_json(tmp / "sources.json", {"names": names, "texts": [index.texts[n]
                                                                     for n in names]})
        _write_json(tmp / "bm25_vocab.json", index.postings.vocab)
        arrays = {"passages": index.passages.array(), "spans": index.spans.array(),
                  "passage_spans": index.passage_spans, "span_vectors": index.span_vectors,
                  **{f"bm25_{k}": v for k, v in index.postings.arrays().items()}}
        for name, array in arrays.items():
            _save_array(tmp / f"{name}.npy", array)
        with open(tmp / "passages.faiss", "wb") as fh:  # through Python, so errors are OSError
            faiss.write_index(index.passage_vectors, faiss.PyCallbackIOWriter(fh.write))
        manifest = dict(index.manifest)
        if export_encoder:
            export_encoder(tmp / "encoder")
            manifest["model"] = {**manifest["model"], "query_encoder": "onnx"}
        _write_json(tmp / "manifest.json", manifest)
        for path in [*tmp.rglob("*"), tmp]:
            sync(path)
        if guard:  # Ctrl-C from here on waits until CURRENT is switched and leftovers are gone
            signal.signal(signal.SIGINT, hold)
        os.rename(tmp, final)
        with open(pointer, "w", encoding="utf-8") as fh:
            fh.write(final.name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, index_dir / "CURRENT")
    except BaseException:
        if guard:
            signal.signal(signal.SIGINT, hold)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        pointer.unlink(missing_ok=True)
        raise
    else:
        sync(index_dir)
        _prune(index_dir, keep | {final.name})
    finally:
        if guard:
            signal.signal(signal.SIGINT, handler)
    if held:
        raise KeyboardInterrupt
    return load(index_dir)


def _prune(index_dir: Path, keep: set[str]) -> None:
    """Remove every build but `keep` and whatever interrupted or killed builds left behind.

    `save` calls it holding `build_lock`, so no other build is writing here; `keep` is the new
    build and the one it replaced, which a reader may still be loading.
    """
    for path in index_dir.iterdir():
        if path.name in keep or not path.name.startswith(("build-", ".tmp-", ".CURRENT-")):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def current_build(index_dir: Path) -> Path:
    """The build folder CURRENT names, or IndexProblem if there is none."""
    pointer = index_dir / "CURRENT"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexProblem(f"no index in {index_dir}", "run `myoqa index`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexProblem(f"cannot read {pointer}: {exc}", REBUILD_HINT) from None
    build_dir = index_dir / name
    if not name.startswith("build-") or "/" in name or not build_dir.is_dir():
        raise IndexProblem(f"{pointer} names a missing build {name!r}", REBUILD_HINT)
    return build_dir


def read_manifest(index_dir: Path, build_dir: Path | None = None) -> dict[str, Any]:
    """The manifest of `build_dir` (default: the current build), checked for a format this
    version reads and well-formed fields, so nothing that reads it later meets a surprise."""
    path = (build_dir or current_build(index_dir)) / "manifest.json"
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format_version"), int):
        raise IndexProblem(f"{path} is not a myoqa manifest", REBUILD_HINT)
    if manifest["format_version"] > FORMAT_VERSION:
        raise MyoqaError(f"the index in {index_dir} has format {manifest['format_version']}, newer "
                         f"than this myoqa reads ({FORMAT_VERSION})",
                         "upgrade myoqa, or rebuild with `myoqa index --rebuild`")
    if manifest["format_version"] < FORMAT_VERSION:
        raise IndexProblem(f"the index in {index_dir} has an old format "
                           f"{manifest['format_version']}", REBUILD_HINT)

    def fits(value: Any, shape: Any) -> bool:
        if isinstance(shape, dict):
            return isinstance(value, dict) and all(fits(value.get(k), t) for k, t in shape.items())
        return isinstance(value, shape)

    shape = {"model": {"name": str, "dimension": int, "query_encoder": str},
             "analyzer": {"stem": bool, "stopwords": bool}, "chunking": {},
             "counts": {"sources": int, "passages": int, "spans": int},
             "built_at": str, "build_seconds": (int, float), "sources": list}
    source = {"name": str, "sha256": str, "chars": int, "passages": int}
    if not (fits(manifest, shape) and manifest["model"]["dimension"] >= 1
            and all(fits(s, source) for s in manifest["sources"])):
        raise IndexProblem(f"{path} is not a well-formed myoqa manifest", REBUILD_HINT)
    return manifest


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise IndexProblem(f"index file {path} is missing", REBUILD_HINT) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise IndexProblem(f"index file {path} is damaged ({exc.__class__.__name__})",
                           REBUILD_HINT) from None


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _load_array(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise IndexProblem(f"index file {path} is missing", REBUILD_HINT) from None
    except (OSError, ValueError) as exc:
        raise IndexProblem(f"index file {path} is damaged ({exc.__class__.__name__})",
                           REBUILD_HINT) from None


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


def load(index_dir: Path) -> Index:
    """Load the current build, checking that its parts agree with each other."""
    import faiss

    build_dir = current_build(index_dir)
    manifest = read_manifest(index_dir, build_dir)
    stored = _read_json(build_dir / "sources.json")
    vocab = _read_json(build_dir / "bm25_vocab.json")
    arrays = {name: _load_array(build_dir / f"{name}.npy", mmap=name == "span_vectors")
              for name in ("passages", "spans", "passage_spans", "span_vectors", "bm25_indptr",
                           "bm25_docs", "bm25_tf", "bm25_doc_len")}
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
        raise IndexProblem(f"passages in {build_dir} do not match their sources",
                           REBUILD_HINT) from None
    postings = Postings(vocab, arrays["bm25_indptr"], arrays["bm25_docs"], arrays["bm25_tf"],
                        arrays["bm25_doc_len"])
    if not _consistent(postings, arrays["passage_spans"], len(passages), len(spans)):
        raise IndexProblem(f"BM25 postings in {build_dir} do not match the passages",
                           REBUILD_HINT)
    try:
        vectors = faiss.read_index(str(build_dir / "passages.faiss"))
    except (RuntimeError, OSError) as exc:
        raise IndexProblem(f"vector file {build_dir / 'passages.faiss'} is damaged "
                           f"({exc.__class__.__name__})", REBUILD_HINT) from None
    dim = int(manifest["model"]["dimension"])
    if vectors.ntotal != len(passages) or vectors.d != dim:
        raise IndexProblem(f"{build_dir / 'passages.faiss'} holds {vectors.ntotal} vectors of "
                           f"dimension {vectors.d}, expected {len(passages)} of {dim}", REBUILD_HINT)
    span_vectors = arrays["span_vectors"]
    if span_vectors.shape != (len(spans), dim) or span_vectors.dtype != np.float32:
        raise IndexProblem(f"{build_dir / 'span_vectors.npy'} does not match the spans",
                           REBUILD_HINT)
    if hasattr(vectors, "nprobe"):
        faiss.extract_index_ivf(vectors).make_direct_map()
    return Index(path=build_dir, manifest=manifest, texts=dict(zip(names, texts)),
                 passages=passages, spans=spans, passage_spans=arrays["passage_spans"],
                 postings=postings, passage_vectors=vectors, span_vectors=span_vectors)


def staleness(manifest: dict[str, Any], params: BuildParams, hashes: dict[str, str]) -> str | None:
    """Why an index no longer fits its sources or settings, or None when it is current."""
    old = {"model": manifest.get("model", {}).get("name"), "chunking": manifest.get("chunking"),
           "analyzer": manifest.get("analyzer")}
    changed = [k for k, v in params.manifest_params().items() if old.get(k) != v]
    if changed:
        return f"settings changed ({', '.join(changed)})"
    built = {s["name"]: s["sha256"] for s in manifest.get("sources", [])}
    if built != hashes:
        changed = sorted(set(built) ^ set(hashes) | {n for n in built if built[n] != hashes.get(n,
                                                                                        built[n])})
        return f"sources changed ({', '.join(changed[:3])}{'…' if len(changed) > 3 else ''})"
    return None
