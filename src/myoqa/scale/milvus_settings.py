"""Where the Milvus backend stores an index and how: server address, names and index types.

A library is stored under one alias that names its current build: `--collection NAME`, else
`myoqa_<folder name>_<digest of the folder's resolved path and the settings>`, so two folders of
the same name are two libraries. Every build writes its own collections, so a rebuild never
changes what readers use until the alias is switched to it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from myoqa.errors import UsageError

BACKENDS = ("local", "milvus")
DENSE_INDEXES = ("HNSW", "IVF_FLAT", "DISKANN", "FLAT")
DEFAULT_DENSE_INDEX = "HNSW"
TEXT_ANALYZER = "standard"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
IVF_LISTS_PER_ROOT = 4
IVF_PROBED_SHARE = 4
DISKANN_SEARCH_LIST_MIN = 100
NAME_CHARS = re.compile(r"[^A-Za-z0-9_]+")
LIBRARY_NAME_MAX = 40
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
LITE_SUFFIX = ".db"  # pymilvus runs milvus-lite in the process for a URI ending so


@dataclass(frozen=True)
class MilvusSettings:
    """A Milvus server (a file path for the in-process milvus-lite) and how to index there.

    `dense_index` is HNSW for a single server or milvus-lite; IVF_FLAT or DISKANN suit a
    cluster holding more vectors than fit in memory (README: Beyond one machine).
    """

    uri: str
    token: str = ""
    dense_index: str = DEFAULT_DENSE_INDEX
    collection: str = ""

    @property
    def is_file(self) -> bool:
        """Whether the URI names a milvus-lite database on this machine (one process at a time)."""
        return self.uri.endswith(LITE_SUFFIX)

    @classmethod
    def resolve(cls, uri: str | None = None, token: str | None = None,
                dense_index: str | None = None, collection: str | None = None
                ) -> MilvusSettings:
        """Flags win over MYOQA_MILVUS_URI / _TOKEN / _INDEX / _COLLECTION; a URI is required."""
        uri = uri or os.environ.get("MYOQA_MILVUS_URI")
        if not uri:
            raise UsageError("the milvus backend needs a server",
                             "pass --milvus-uri URI or set MYOQA_MILVUS_URI")
        kind = (dense_index or os.environ.get("MYOQA_MILVUS_INDEX") or DEFAULT_DENSE_INDEX).upper()
        if kind not in DENSE_INDEXES:
            raise UsageError(f"unknown Milvus index type {kind!r}",
                             f"choose one of {', '.join(DENSE_INDEXES)}")
        name = collection or os.environ.get("MYOQA_MILVUS_COLLECTION") or ""
        if name and not COLLECTION_NAME.fullmatch(name):
            raise UsageError(f"{name!r} cannot name a Milvus collection",
                             "use up to 100 letters, digits and underscores, not starting with a "
                             "digit")
        return cls(uri=uri, token=token or os.environ.get("MYOQA_MILVUS_TOKEN") or "",
                   dense_index=kind, collection=name)


def resolve_backend(backend: str | None) -> str:
    """--backend, else MYOQA_BACKEND, else local."""
    name = (backend or os.environ.get("MYOQA_BACKEND") or "local").lower()
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    return name


def dense_index_params(kind: str, rows: int) -> dict[str, Any]:
    """Build parameters for the dense index: IVF lists grow with the square root of the rows,
    as the local FAISS index's do."""
    if kind == "HNSW":
        return {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    if kind == "IVF_FLAT":
        return {"nlist": max(1, min(65536, int(IVF_LISTS_PER_ROOT * math.sqrt(rows))))}
    return {}


def dense_search_params(kind: str, build: dict[str, Any], depth: int) -> dict[str, Any]:
    """Search parameters deep enough to return `depth` candidates."""
    if kind == "HNSW":
        return {"ef": max(depth, HNSW_EF_CONSTRUCTION)}
    if kind == "IVF_FLAT":
        return {"nprobe": max(1, int(build.get("nlist", 1)) // IVF_PROBED_SHARE)}
    if kind == "DISKANN":
        return {"search_list": max(depth, DISKANN_SEARCH_LIST_MIN)}
    return {}


def alias_name(name: str, library: str, made_from: dict[str, Any]) -> str:
    """`myoqa_<name>_<digest>`: the digest covers the library's identity (its resolved path) and
    the settings, so another folder of the same name, or other settings, get their own alias."""
    slug = NAME_CHARS.sub("_", name).strip("_")[:LIBRARY_NAME_MAX] or "library"
    digest = hashlib.sha256(json.dumps([library, made_from], sort_keys=True).encode()
                            ).hexdigest()[:10]
    return f"myoqa_{slug}_{digest}"
