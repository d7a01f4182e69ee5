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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from myoqa import __version__
from myoqa.analysis import Analyzer
from myoqa.chunking import ChunkParams, Unit, chunk
from myoqa.corpus import Source
from myoqa.errors import MyoqaError

FORMAT_VERSION = 1
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


@dataclass
class Index:
    """A loaded build: source texts, passages and spans as offsets, BM25 terms and vectors."""

    path: Path
    manifest: dict[str, Any]
    texts: dict[str, str]
    passages: list[Unit]
    spans: list[Unit]
    passage_terms: list[list[str]]
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


def _units_json(units: list[Unit], names: list[str]) -> dict[str, list[int]]:
    ids = {n: i for i, n in enumerate(names)}
    return {"source": [ids[u.source] for u in units], "start": [u.start for u in units],
            "end": [u.end for u in units]}


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
             progress: ProgressFactory = _no_progress) -> Index:
    """Chunk, tokenize and embed `sources` into an in-memory index (not yet on disk)."""
    import faiss

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
    terms = [params.analyzer.terms(texts[u.source][u.start:u.end]) for u in passages]
    tick = progress("embedding", len(passages) + len(spans))
    vectors = encoder.encode([texts[u.source][u.start:u.end] for u in passages + spans], tick)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors[:len(passages)])
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"name": params.model, "dimension": int(vectors.shape[1]),
                  "query_encoder": "sentence-transformers"},
        "chunking": params.chunking.params(),
        "analyzer": params.analyzer.params(),
        "sources": per_source,
        "counts": {"sources": len(sources), "passages": len(passages), "spans": len(spans)},
        "versions": _versions(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    return Index(path=Path(), manifest=manifest, texts=texts, passages=passages, spans=spans,
                 passage_terms=terms, passage_vectors=flat,
                 span_vectors=np.ascontiguousarray(vectors[len(passages):]))


def save(index: Index, index_dir: Path, export_encoder: Callable[[Path], None] | None = None
         ) -> Index:
    """Write `index` as a new build folder, then switch CURRENT to it; return it as loaded."""
    import faiss

    names = sorted(index.texts)
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write_json(tmp / "sources.json", index.texts)
        _write_json(tmp / "units.json", {"sources": names,
                                        "passages": _units_json(index.passages, names),
                                        "spans": _units_json(index.spans, names)})
        _write_json(tmp / "bm25.json", index.passage_terms)
        faiss.write_index(index.passage_vectors, str(tmp / "passages.faiss"))
        np.save(tmp / "spans.npy", index.span_vectors, allow_pickle=False)
        manifest = dict(index.manifest)
        if export_encoder:
            export_encoder(tmp / "encoder")
            manifest["model"] = {**manifest["model"], "query_encoder": "onnx"}
        _write_json(tmp / "manifest.json", manifest)
        final = index_dir / f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        os.rename(tmp, final)
        pointer = index_dir / f".CURRENT-{uuid.uuid4().hex[:8]}"
        pointer.write_text(final.name + "\n", encoding="utf-8")
        os.replace(pointer, index_dir / "CURRENT")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(index_dir, keep={final.name})
    return load(index_dir)


def _prune(index_dir: Path, keep: set[str]) -> None:
    """Remove failed temporaries and all builds but the newest two (a reader may be on the older)."""
    builds = sorted((p for p in index_dir.glob("build-*") if p.is_dir()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [b for b in builds if b.name not in keep][1:]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in index_dir.glob(".tmp-*"):
        if time.time() - tmp.stat().st_mtime > 3600:
            shutil.rmtree(tmp, ignore_errors=True)


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


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """The current build's manifest, checked for a format this version can read."""
    path = current_build(index_dir) / "manifest.json"
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
    return manifest


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise IndexProblem(f"index file {path} is missing", REBUILD_HINT) from None
    except (OSError, ValueError) as exc:
        raise IndexProblem(f"index file {path} is damaged ({exc.__class__.__name__})",
                           REBUILD_HINT) from None


def _units(data: dict[str, list[int]], names: list[str]) -> list[Unit]:
    return [Unit(names[s], a, b) for s, a, b in zip(data["source"], data["start"], data["end"])]


def load(index_dir: Path) -> Index:
    """Load the current build, checking that its parts agree with each other."""
    import faiss

    manifest = read_manifest(index_dir)
    build_dir = current_build(index_dir)
    texts = _read_json(build_dir / "sources.json")
    units = _read_json(build_dir / "units.json")
    terms = _read_json(build_dir / "bm25.json")
    try:
        names = units["sources"]
        passages = _units(units["passages"], names)
        spans = _units(units["spans"], names)
        bad = [u for u in passages + spans if not 0 <= u.start < u.end <= len(texts[u.source])]
    except (KeyError, TypeError, IndexError):
        raise IndexProblem(f"{build_dir / 'units.json'} is damaged", REBUILD_HINT) from None
    if bad or len(terms) != len(passages):
        raise IndexProblem(f"passages in {build_dir} do not match their sources", REBUILD_HINT)
    try:
        vectors = faiss.read_index(str(build_dir / "passages.faiss"))
        span_vectors = np.load(build_dir / "spans.npy", allow_pickle=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise IndexProblem(f"vector file in {build_dir} is damaged ({exc.__class__.__name__})",
                           REBUILD_HINT) from None
    dim = int(manifest["model"]["dimension"])
    if vectors.ntotal != len(passages) or vectors.d != dim:
        raise IndexProblem(f"{build_dir / 'passages.faiss'} holds {vectors.ntotal} vectors of "
                           f"dimension {vectors.d}, expected {len(passages)} of {dim}", REBUILD_HINT)
    if span_vectors.shape != (len(spans), dim) or span_vectors.dtype != np.float32:
        raise IndexProblem(f"{build_dir / 'spans.npy'} does not match the spans", REBUILD_HINT)
    return Index(path=build_dir, manifest=manifest, texts=texts, passages=passages, spans=spans,
                 passage_terms=terms, passage_vectors=vectors, span_vectors=span_vectors)


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
