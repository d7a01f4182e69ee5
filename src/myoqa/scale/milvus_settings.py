"""How the Milvus backend stores an index: names and index parameters (the server address and
index type are settings, `config.MilvusSettings`, resolved at the edge).

A library is stored under one alias that names its current build: `--collection NAME`, else
`myoqa_<folder name>_<digest of the folder's resolved path and the settings>`, so two folders of
the same name are two libraries. Every build writes its own collections, so a rebuild never
changes what readers use until the alias is switched to it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

TEXT_ANALYZER = "standard"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
IVF_LISTS_PER_ROOT = 4
IVF_PROBED_SHARE = 4
DISKANN_SEARCH_LIST_MIN = 100
NAME_CHARS = re.compile(r"[^A-Za-z0-9_]+")
LIBRARY_NAME_MAX = 40


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
