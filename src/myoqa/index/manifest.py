"""The manifest: what a build was made from and of, as one typed record.

It is written last into a build folder and read first: `from_json` checks every field, so code
that reads a manifest meets typed attributes, never a missing key. A change to anything recorded
under "made from" (model, chunking, analyzer, sources) means the build is stale; the "made of"
part (files with sizes and hashes) lets a damaged build be told apart from a current one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from myoqa.analysis import Analyzer
from myoqa.chunking import ChunkParams
from myoqa.errors import MyoqaError

FORMAT_VERSION = 4
REBUILD_HINT = "run `myoqa index --rebuild`"


class IndexProblem(MyoqaError):
    """The index is missing, damaged or out of date; the message says which."""

    def __init__(self, message: str, hint: str = REBUILD_HINT) -> None:
        super().__init__(message, hint)


class NewerFormat(MyoqaError):
    """An index written by a newer myoqa: refused, never rebuilt over."""


@dataclass(frozen=True)
class FileDigest:
    """Size and SHA-256 of one stored file."""

    bytes: int
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """The embedding model: its name or path, vector size, and the ONNX encoder the build used."""

    name: str
    dimension: int
    encoder: str
    encoder_files: dict[str, FileDigest]


@dataclass(frozen=True)
class LateInfo:
    """The late-interaction token vectors stored with the passages: the model (`colbert.
    LateModel.key`), their size, how many there are, and the encoder folder holding the
    model's optimised graph with its files' digests ("" and {} in builds made without one)."""

    model: str
    dimension: int
    tokens: int
    encoder: str = ""
    encoder_files: dict[str, FileDigest] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceEntry:
    """One indexed source: name (relative path), hash of its file, extracted characters, passages."""

    name: str
    sha256: str
    chars: int
    passages: int


@dataclass(frozen=True)
class SkippedFile:
    """A skipped file as the manifest records it (name and why); `corpus.Skipped` is the
    richer one the survey makes."""

    name: str
    reason: str


@dataclass(frozen=True)
class Counts:
    """How many sources, passages and spans the build holds."""

    sources: int
    passages: int
    spans: int


@dataclass(frozen=True)
class Manifest:
    """Everything recorded about one build."""

    model: ModelInfo
    chunking: ChunkParams
    analyzer: Analyzer
    analyzer_rules: int
    sources: list[SourceEntry]
    counts: Counts
    files: dict[str, FileDigest]
    versions: dict[str, str]
    built_at: str
    build_seconds: float
    dense_index: str
    reused_vectors: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    late: LateInfo | None = None
    format_version: int = FORMAT_VERSION

    def source_hashes(self) -> dict[str, str]:
        """Name → SHA-256 of the sources the build was made from."""
        return {s.name: s.sha256 for s in self.sources}

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON-ready data (manifest.json, `status --json`)."""
        data = asdict(self)
        data["analyzer"] = {**data["analyzer"], "rules": data.pop("analyzer_rules")}
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """A Manifest from parsed JSON, or IndexProblem naming the first field that is wrong.

        A format newer than this myoqa reads is NewerFormat (refused, not rebuilt).
        """
        version = data.get("format_version") if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise IndexProblem(f"{where} is not a myoqa manifest")
        if version > FORMAT_VERSION:
            raise NewerFormat(f"the index manifest {where} has format {version}, newer than this "
                              f"myoqa reads ({FORMAT_VERSION})",
                              "upgrade myoqa, or rebuild with `myoqa index --rebuild`")
        if version < FORMAT_VERSION:
            raise IndexProblem(f"the index manifest {where} has the old format {version}")
        try:
            model = _obj(data, "model")
            analyzer = _obj(data, "analyzer")
            counts = _obj(data, "counts")
            manifest = cls(
                model=ModelInfo(_get(model, "name", str), _get(model, "dimension", int),
                                _get(model, "encoder", str),
                                _digests(_obj(model, "encoder_files"))),
                chunking=_chunking(_obj(data, "chunking")),
                analyzer=Analyzer(stem=_get(analyzer, "stem", bool),
                                  stopwords=_get(analyzer, "stopwords", bool)),
                analyzer_rules=_get(analyzer, "rules", int),
                sources=[SourceEntry(_get(s, "name", str), _get(s, "sha256", str),
                                     _get(s, "chars", int), _get(s, "passages", int))
                         for s in _list(data, "sources")],
                counts=Counts(_get(counts, "sources", int), _get(counts, "passages", int),
                              _get(counts, "spans", int)),
                files=_digests(_obj(data, "files")),
                versions={k: _get(_obj(data, "versions"), k, str) for k in _obj(data, "versions")},
                built_at=_get(data, "built_at", str),
                build_seconds=float(_get(data, "build_seconds", (int, float))),
                dense_index=_get(data, "dense_index", str),
                reused_vectors=_get(data, "reused_vectors", int),
                skipped=[SkippedFile(_get(s, "name", str), _get(s, "reason", str))
                         for s in _list(data, "skipped")],
                late=_late(data),
                format_version=version,
            )
        except _Bad as bad:
            raise IndexProblem(f"{where} is not a well-formed myoqa manifest ({bad})") from None
        if manifest.model.dimension < 1 or len(manifest.sources) != manifest.counts.sources:
            raise IndexProblem(f"{where} is not a well-formed myoqa manifest (counts)")
        return manifest


class _Bad(Exception):
    """A manifest field is missing or of the wrong type."""


def _obj(data: Any, key: str) -> dict[str, Any]:
    value: dict[str, Any] = _get(data, key, dict)
    return value


def _list(data: Any, key: str) -> list[Any]:
    value: list[Any] = _get(data, key, list)
    return value


def _get(data: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise _Bad(f"no field {key!r}")
    value = data[key]
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise _Bad(f"field {key!r} has the wrong type")
    return value


def _digests(data: dict[str, Any]) -> dict[str, FileDigest]:
    out = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
            raise _Bad(f"file name {name!r}")
        out[name] = FileDigest(_get(entry, "bytes", int), _get(entry, "sha256", str))
    return out


def _chunking(data: dict[str, Any]) -> ChunkParams:
    names = {f.name for f in fields(ChunkParams)}
    if set(data) != names:
        raise _Bad("chunking fields")
    return ChunkParams(**{name: _get(data, name, int) for name in names})



def _late(data: dict[str, Any]) -> LateInfo | None:
    """The optional `late` part (absent or null: the build has no token vectors)."""
    if data.get("late") is None:
        return None
    late = _obj(data, "late")
    return LateInfo(_get(late, "model", str), _get(late, "dimension", int),
                    _get(late, "tokens", int),
                    _get(late, "encoder", str) if "encoder" in late else "",
                    _digests(_obj(late, "encoder_files")) if "encoder_files" in late else {})
