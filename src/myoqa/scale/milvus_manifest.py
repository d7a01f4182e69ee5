"""What a Milvus build records: the index manifest a local build writes, and where it lives.

A build's passages collection carries, as a property, the same `index.manifest.Manifest` a local
build writes to manifest.json (model, chunking, analyzer, every source with its hash, counts,
versions, dense index), so `index.health.staleness` judges both stores by one rule. Around it,
what only Milvus has: the build's name, the library it belongs to, its four collections, the
corpus-wide BM25 numbers, and the dense index's build parameters. Its `files` are empty: the
build is made of collections, not files.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from myoqa.bm25 import idf_floor, idf_from_df, raw_idf
from myoqa.errors import MyoqaError
from myoqa.index import BuildParams
from myoqa.index.health import staleness as index_staleness
from myoqa.index.manifest import IndexProblem, Manifest
from myoqa.scale.milvus_client import REBUILD_HINT, reason, unreachable

MANIFEST_PROPERTY = "myoqa.manifest"
MANIFEST_FORMAT = 3  # 2: the manifest names its library; 3: it holds the index manifest
PARTS = ("passages", "spans", "texts", "vocab")
BUILD_NAME = r"b\d{8}t\d{6}_[0-9a-f]{6}"


class StaleMilvusIndex(MyoqaError):
    """The collection is missing, damaged or out of date; the message says which."""

    def __init__(self, message: str, hint: str = REBUILD_HINT) -> None:
        super().__init__(message, hint)


@dataclass(frozen=True)
class BM25Stats:
    """What myoqa's BM25 needs besides each passage's terms: the same numbers as locally."""

    passages: int
    avgdl: float
    idf_floor: float
    max_idf: float


@dataclass
class TermCounts:
    """The corpus-wide counts BM25 needs, kept while a build streams: each term's document
    frequency (terms in the order first met, as the local postings list them), and how many
    passages there are and how many terms they hold."""

    df: dict[str, int] = field(default_factory=dict)
    passages: int = 0
    length: int = 0

    def add(self, terms: list[str]) -> None:
        """Count one passage's terms."""
        self.passages += 1
        self.length += len(terms)
        for term in dict.fromkeys(terms):
            self.df[term] = self.df.get(term, 0) + 1

    def stats(self) -> BM25Stats:
        """The numbers the local BM25 (`myoqa.bm25.SparseBM25`) computes from its postings."""
        counts = np.fromiter(self.df.values(), dtype=np.float64, count=len(self.df))
        raw = raw_idf(self.passages, counts)
        floor = idf_floor(raw)
        idf = idf_from_df(self.passages, counts, floor)
        return BM25Stats(passages=self.passages,
                         avgdl=self.length / self.passages if self.passages else 1.0,
                         idf_floor=floor if bool((raw < 0).any()) else 0.0,
                         max_idf=float(idf.max()) if len(idf) else 0.0)


@dataclass(frozen=True)
class MilvusManifest:
    """One Milvus build: its index manifest (what it was made from and of, as locally) and
    where its parts are in Milvus."""

    build: str
    library: str
    collections: dict[str, str]
    bm25: BM25Stats
    dense_params: dict[str, Any]
    manifest: Manifest
    format: int = MANIFEST_FORMAT

    # Read-only views of `manifest`, named as the searcher and `status` read them.
    @property
    def dimension(self) -> int:
        """The size of the stored vectors."""
        return self.manifest.model.dimension

    @property
    def model(self) -> str:
        """The embedding model's name or path."""
        return self.manifest.model.name

    @property
    def analyzer(self) -> dict[str, Any]:
        """The analyzer's settings with its rules' version."""
        return {**self.manifest.analyzer.params(), "rules": self.manifest.analyzer_rules}

    @property
    def dense_index(self) -> str:
        """The Milvus index kind of the passage vectors (a setting: HNSW, IVF_FLAT, ...)."""
        return self.manifest.dense_index

    @property
    def sources(self) -> int:
        """How many sources the build holds."""
        return self.manifest.counts.sources

    @property
    def passages(self) -> int:
        """How many passages the build holds."""
        return self.manifest.counts.passages

    @property
    def spans(self) -> int:
        """How many spans the build holds."""
        return self.manifest.counts.spans

    @property
    def built_at(self) -> str:
        """When the build finished (UTC)."""
        return self.manifest.built_at

    @property
    def build_seconds(self) -> float:
        """How long the build took, reading the sources to the last collection loaded."""
        return self.manifest.build_seconds

    def milvus_json(self) -> dict[str, Any]:
        """What only a Milvus build records, JSON-ready (`status --json` shows it beside the
        index manifest, which has the local backend's shape)."""
        return {"format": self.format, "build": self.build, "library": self.library,
                "collections": self.collections, "bm25": asdict(self.bm25),
                "dense_params": self.dense_params}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data: the property stored on the passages collection."""
        return {**self.milvus_json(), "manifest": self.manifest.to_json()}

    @classmethod
    def from_json(cls, text: str, where: str) -> MilvusManifest:
        """Parse and check the stored manifest; an unreadable one is a stale index (a newer
        index manifest format is refused: `NewerFormat`)."""
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError("format")
            found = cls(build=str(data["build"]), library=str(data["library"]),
                        collections=dict(data["collections"]), bm25=BM25Stats(**data["bm25"]),
                        dense_params=dict(data["dense_params"]),
                        manifest=Manifest.from_json(data["manifest"], where))
            if set(found.collections) != set(PARTS):
                raise ValueError("collections")
        except IndexProblem as problem:
            raise StaleMilvusIndex(problem.message) from None
        except (ValueError, TypeError, KeyError, AttributeError):
            raise StaleMilvusIndex(f"the manifest of {where} is not one this myoqa reads"
                                   ) from None
        return found


def new_build_name() -> str:
    """A fresh build name: its time, then a random suffix (two builds in one second differ)."""
    return f"b{time.strftime('%Y%m%dt%H%M%S')}_{uuid.uuid4().hex[:6]}"


def collection_names(alias: str, build: str) -> dict[str, str]:
    """Part → collection name of one build: `<alias>_<build>_<part>`."""
    return {part: f"{alias}_{build}_{part}" for part in PARTS}


def build_of(alias: str, collection: str) -> str:
    """The build name in a collection name `<alias>_<build>_<part>`."""
    return collection.removeprefix(alias + "_").rsplit("_", 1)[0]


def builds_of(alias: str) -> re.Pattern[str]:
    """Matches the collection names of every build of `alias` (and of no other alias that
    merely starts with it)."""
    return re.compile(re.escape(alias) + f"_({BUILD_NAME})_({'|'.join(PARTS)})")


def current_collection(client: Any, alias: str) -> str | None:
    """The passages collection `alias` names, or None when there is no such alias."""
    from pymilvus.exceptions import MilvusException

    try:
        name: str | None = client.describe_alias(alias)["collection_name"] or None
    except MilvusException as exc:
        if unreachable(exc):
            raise
        return None
    return name


def read_manifest(client: Any, alias: str) -> MilvusManifest:
    """The manifest of the build `alias` names, or StaleMilvusIndex when there is none."""
    from pymilvus.exceptions import MilvusException

    if current_collection(client, alias) is None:
        raise StaleMilvusIndex(f"no myoqa index named {alias} in Milvus",
                               "run `myoqa index --backend milvus`")
    try:
        described = client.describe_collection(alias)
    except MilvusException as exc:
        raise MyoqaError(f"Milvus refused to describe {alias} ({reason(exc)})") from None
    text = (described.get("properties") or {}).get(MANIFEST_PROPERTY)
    if not text:
        raise StaleMilvusIndex(f"collection {alias} holds no myoqa manifest")
    return MilvusManifest.from_json(text, alias)


def staleness(manifest: MilvusManifest, params: BuildParams, dense_index: str,
              hashes: dict[str, str] | None) -> str | None:
    """Why the build no longer fits the settings or sources (None: current), by the local
    index's rule. Without local sources (`hashes` None: a client that has only the server) the
    build is taken as it is."""
    return index_staleness(manifest.manifest, params, hashes, dense_index)


def check_owner(client: Any, alias: str, library: str) -> None:
    """Refuse to build `library` under an alias whose current build holds another library
    (a build whose manifest cannot be read is damaged, and may be replaced)."""
    try:
        held = read_manifest(client, alias).library
    except StaleMilvusIndex:
        return
    if held != library:
        raise MyoqaError(f"the Milvus collection {alias} holds another library ({held}), not "
                         f"{library}", "pass another --collection NAME for this one")
