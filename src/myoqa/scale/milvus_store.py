"""Storing a built index in Milvus: four collections per build, an alias naming the current one.

A build writes, under `<alias>_<build>_`:
    passages  id, source, source_id, start, end, span_lo, span_hi, text, terms (myoqa's own
              analysed terms, fed to a BM25 function) → sparse (SPARSE_INVERTED_INDEX), vector
    spans     id, source_id, start, end, vector (evidence and the span lift of the dense score)
    texts     the source snapshots, cut under the VARCHAR limit, with each source's SHA-256
    vocab     each term's document frequency, so myoqa computes the same BM25 as locally
The passages collection carries the manifest as a property. Only when every collection is
written, indexed and loaded is the alias switched to the new passages collection, so a build
killed at any point leaves readers on the previous build, whole; the next build drops what it
left. The build the alias replaced stays for readers still on it, older ones are dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.config import MilvusSettings
from myoqa.errors import MyoqaError
from myoqa.scale.milvus_settings import TEXT_ANALYZER, dense_index_params

MANIFEST_PROPERTY = "myoqa.manifest"
MANIFEST_FORMAT = 2  # 2: the manifest names its library
PARTS = ("passages", "spans", "texts", "vocab")
VARCHAR_MAX = 65535
SNAPSHOT_CHARS = 16000  # four UTF-8 bytes at most per character: under VARCHAR_MAX bytes
SOURCE_NAME_MAX = 4096
HASH_CHARS = 64
BATCH_ROWS = 1000
PAD_DIM = 2  # Milvus wants a vector field in every collection; texts and vocab carry a tiny one
REBUILD_HINT = "run `myoqa index --backend milvus --rebuild`"
CALL_SECONDS = 30
CONNECT_RETRY_SECONDS = (0.5, 1.0, 2.0)  # a server that refused a connection is tried again
UNAVAILABLE = 2  # pymilvus's code for a server it cannot connect to
LITE_LOCK = "LOCK"  # milvus-lite's advisory lock in its database folder
LITE_MARK = "collections"  # a folder every milvus-lite database holds
BUILD_NAME = r"b\d{8}t\d{6}_[0-9a-f]{6}"

Tick = Callable[[int], None]
_LITE_OPENED: set[str] = set()  # milvus-lite files this process runs (it holds their LOCK)


def connect(settings: MilvusSettings, notify: Callable[[str], None] | None = None) -> Any:
    """A MilvusClient whose server and database answered, or one clear error. A milvus-lite
    file serves one process at a time: another one using it is waited for."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own keep-alive chatter on stderr
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    for name in ("pymilvus", "milvus_lite"):  # errors reach the user as one line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    told = False
    mine = settings.is_file and os.path.abspath(settings.uri) in _LITE_OPENED
    retries = iter(CONNECT_RETRY_SECONDS)
    while True:
        if settings.is_file and not mine:
            told = _wait_for_lite(settings.uri, notify, told)
        try:
            # dedicated: a connection pymilvus shares per URI, idle long enough, can fail to
            # recover ("Fail connecting to server") although the server is up
            client = MilvusClient(uri=settings.uri, token=settings.token, timeout=CALL_SECONDS,
                                  dedicated=True)
            client.list_collections()  # a wrong database name is found here, not after a build
            if settings.is_file:
                _LITE_OPENED.add(os.path.abspath(settings.uri))
            return client
        except (MilvusException, OSError, ValueError) as exc:
            if settings.is_file and _lite_busy(settings.uri):
                continue  # another process opened it between our wait and our open
            if unreachable(exc):
                pause = next(retries, None)
                if pause is not None:  # a busy server can drop one handshake and take the next
                    time.sleep(pause)
                    continue
                raise connection_error(exc, settings.uri) from None
            raise MyoqaError(f"Milvus at {settings.uri} refused the connection ({_reason(exc)})",
                             "check --milvus-uri: a database name follows the port, as in "
                             "http://host:19530/NAME; check --milvus-token") from None


def unreachable(exc: BaseException) -> bool:
    """Whether a failed Milvus call means the server could not be reached (or stopped)."""
    from pymilvus.exceptions import MilvusException

    return (not isinstance(exc, MilvusException) or getattr(exc, "code", None) == UNAVAILABLE
            or any(word in _reason(exc).lower() for word in ("connect", "unavailable",
                                                              "deadline")))


def connection_error(exc: BaseException, uri: str) -> MyoqaError:
    """One line for a failed Milvus call: the server gone or unreachable, or what it refused."""
    reason = _reason(exc)
    if unreachable(exc):
        return MyoqaError(f"cannot reach the Milvus server at {uri} ({reason})",
                          "check --milvus-uri and that the server is running")
    return MyoqaError(f"Milvus at {uri} refused a request ({reason})",
                      "check --milvus-uri and its database name; if the index is damaged, "
                      f"{REBUILD_HINT}")


@contextlib.contextmanager
def reported(uri: str) -> Iterator[None]:
    """Turn a Milvus failure inside the block (the server stopped mid-question, a dropped
    collection) into one clear error."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise connection_error(exc, uri) from None


def _lite_lock(uri: str) -> Path:
    return Path(uri) / LITE_LOCK


def _check_lite(uri: str) -> None:
    """A milvus-lite URI must name a new path or a milvus-lite database folder: milvus-lite
    would write its files into any folder, and fails with a traceback on a file."""
    path = Path(uri)
    if not path.exists() and not path.is_symlink():
        if not path.parent.is_dir():
            raise MyoqaError(f"the folder of the milvus-lite database {uri} does not exist",
                             "create it, or pass another --milvus-uri")
        return
    if not path.is_dir():
        raise MyoqaError(f"--milvus-uri {uri} names a file, not a milvus-lite database",
                         "pass a new path ending in .db, or an http:// server")
    if any(path.iterdir()) and not (path / LITE_MARK).is_dir():
        raise MyoqaError(f"--milvus-uri {uri} names a folder that is not a milvus-lite database",
                         "pass a new path ending in .db, or an http:// server")


def _lite_busy(uri: str) -> bool:
    """Whether another process has the milvus-lite database open (holds its LOCK)."""
    try:
        fd = os.open(_lite_lock(uri), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _wait_for_lite(uri: str, notify: Callable[[str], None] | None, told: bool) -> bool:
    """Check the path, then wait while another process has the database open; return whether
    the user was told of the wait."""
    _check_lite(uri)
    if not _lite_busy(uri):
        return told
    if not told and notify is not None:
        notify(f"another process has the milvus-lite database {uri} open; waiting for it")
    fd = os.open(_lite_lock(uri), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released at once: milvus-lite takes it next
    finally:
        os.close(fd)
    return True


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc).splitlines()[0][:200]


@dataclass(frozen=True)
class BM25Stats:
    """What myoqa's BM25 needs besides each passage's terms: the same numbers as locally."""

    passages: int
    avgdl: float
    idf_floor: float
    max_idf: float


@dataclass(frozen=True)
class MilvusManifest:
    """What a Milvus build was made from (checked for staleness) and where its parts are."""

    build: str
    library: str
    collections: dict[str, str]
    model: str
    dimension: int
    chunking: dict[str, Any]
    analyzer: dict[str, Any]
    sources: int
    sources_digest: str
    passages: int
    spans: int
    bm25: BM25Stats
    dense_index: str
    dense_params: dict[str, Any]
    built_at: str
    build_seconds: float
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        """The property value stored on the passages collection."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> MilvusManifest:
        """Parse and check the stored manifest; an unreadable one is a stale index."""
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError("format")
            data["bm25"] = BM25Stats(**data["bm25"])
            manifest = cls(**data)
            if set(manifest.collections) != set(PARTS) or manifest.dimension < 1:
                raise ValueError("collections")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise StaleMilvusIndex(f"the manifest of {where} is not one this myoqa reads"
                                   ) from None
        return manifest


class StaleMilvusIndex(MyoqaError):
    """The collection is missing, damaged or out of date; the message says which."""

    def __init__(self, message: str, hint: str = REBUILD_HINT) -> None:
        super().__init__(message, hint)


def sources_digest(hashes: dict[str, str]) -> str:
    """One SHA-256 over every (name, hash) pair: equal digests mean equal sources."""
    text = "\n".join(f"{name}\t{hashes[name]}" for name in sorted(hashes))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(client: Any, alias: str) -> MilvusManifest:
    """The manifest of the build `alias` names, or StaleMilvusIndex when there is none."""
    from pymilvus.exceptions import MilvusException

    if current_collection(client, alias) is None:
        raise StaleMilvusIndex(f"no myoqa index named {alias} in Milvus",
                               "run `myoqa index --backend milvus`")
    try:
        described = client.describe_collection(alias)
    except MilvusException as exc:
        raise MyoqaError(f"Milvus refused to describe {alias} ({_reason(exc)})") from None
    text = (described.get("properties") or {}).get(MANIFEST_PROPERTY)
    if not text:
        raise StaleMilvusIndex(f"collection {alias} holds no myoqa manifest")
    return MilvusManifest.from_json(text, alias)


def current_collection(client: Any, alias: str) -> str | None:
    """The passages collection `alias` names, or None when there is no such alias."""
    from pymilvus.exceptions import MilvusException

    try:
        return client.describe_alias(alias)["collection_name"] or None
    except MilvusException as exc:
        if unreachable(exc):
            raise
        return None


def stored_hashes(client: Any, manifest: MilvusManifest) -> dict[str, str]:
    """Name → SHA-256 of the sources the build holds (from the first piece of each snapshot)."""
    rows = _query_all(client, manifest.collections["texts"], "piece == 0", ["name", "sha256"])
    return {r["name"]: r["sha256"] for r in rows}


def staleness(client: Any, manifest: MilvusManifest, made_from: dict[str, Any],
              hashes: dict[str, str] | None) -> str | None:
    """Why the build no longer fits the settings or sources (None: current). Without local
    sources (`hashes` None: a client that has only the server) the build is taken as it is."""
    recorded = {"model": manifest.model, "chunking": manifest.chunking,
                "analyzer": manifest.analyzer, "dense_index": manifest.dense_index}
    changed = [k for k, v in made_from.items() if recorded.get(k) != v]
    if changed:
        return f"settings changed ({', '.join(changed)})"
    if hashes is None or sources_digest(hashes) == manifest.sources_digest:
        return None
    built = stored_hashes(client, manifest)
    names = sorted(set(built) ^ set(hashes) | {n for n in built if built[n] != hashes.get(n,
                                                                                   built[n])})
    return f"sources changed ({', '.join(names[:3])}{'…' if len(names) > 3 else ''})"


def _query_all(client: Any, collection: str, expr: str, fields: list[str]) -> list[dict]:
    """Every row matching `expr`, read in batches (a query alone is capped by the server)."""
    iterator = client.query_iterator(collection, batch_size=BATCH_ROWS, filter=expr,
                                     output_fields=fields)
    rows: list[dict] = []
    try:
        while batch := iterator.next():
            rows += batch
    finally:
        iterator.close()
    return rows


def _schema(part: str, dimension: int) -> Any:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    if part == "vocab":
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=VARCHAR_MAX)
        schema.add_field("df", DataType.INT64)
        schema.add_field("pad", DataType.FLOAT_VECTOR, dim=PAD_DIM)
        return schema
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("source_id", DataType.INT64)
    if part == "texts":
        schema.add_field("name", DataType.VARCHAR, max_length=SOURCE_NAME_MAX)
        schema.add_field("sha256", DataType.VARCHAR, max_length=HASH_CHARS)
        schema.add_field("piece", DataType.INT64)
        schema.add_field("offset", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("pad", DataType.FLOAT_VECTOR, dim=PAD_DIM)
        return schema
    schema.add_field("start", DataType.INT64)
    schema.add_field("end", DataType.INT64)
    if part == "passages":
        schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_NAME_MAX)
        schema.add_field("span_lo", DataType.INT64)
        schema.add_field("span_hi", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("terms", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True,
                         analyzer_params={"tokenizer": TEXT_ANALYZER})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="terms_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["terms"], output_field_names=["sparse"]))
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    return schema


def _index_params(client: Any, part: str, manifest: MilvusManifest) -> Any:
    from myoqa.bm25 import K1, B

    params = client.prepare_index_params()
    if part in ("texts", "vocab"):
        params.add_index("pad", index_type="FLAT", metric_type="L2")
        return params
    if part == "passages":
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                         params={"bm25_k1": K1, "bm25_b": B})
        params.add_index("vector", index_type=manifest.dense_index, metric_type="IP",
                         params=manifest.dense_params)
    else:
        params.add_index("vector", index_type="FLAT", metric_type="IP")
    return params


def _passage_rows(index: Any) -> Iterator[dict[str, Any]]:
    analyzer = index.analyzer
    table = index.passages
    vectors = index.passage_vectors.reconstruct_n(0, len(table))
    for i in range(len(table)):
        unit = table[i]
        text = index.text(unit)
        terms = " ".join(analyzer.terms(text))
        if len(terms.encode("utf-8")) > VARCHAR_MAX:
            raise MyoqaError(f"a passage of {unit.source} (characters {unit.start}-{unit.end}) "
                             f"has more than {VARCHAR_MAX} bytes of terms, too many for Milvus",
                             "split the long words in that source, or use the local backend")
        yield {"id": i, "source": unit.source, "source_id": int(table.source[i]),
               "start": unit.start, "end": unit.end, "span_lo": int(index.passage_spans[i, 0]),
               "span_hi": int(index.passage_spans[i, 1]),
               "text": text if len(text.encode("utf-8")) <= VARCHAR_MAX else "",
               "terms": terms, "vector": vectors[i].tolist()}


def _span_rows(index: Any) -> Iterator[dict[str, Any]]:
    spans = index.spans
    for j in range(len(spans)):
        yield {"id": j, "source_id": int(spans.source[j]), "start": int(spans.start[j]),
               "end": int(spans.end[j]), "vector": np.asarray(index.span_vectors[j]).tolist()}


def _text_rows(index: Any, hashes: dict[str, str]) -> Iterator[dict[str, Any]]:
    row = 0
    for source_id, name in enumerate(index.passages.names):
        text = index.texts[name]
        for piece, offset in enumerate(range(0, max(len(text), 1), SNAPSHOT_CHARS)):
            yield {"id": row, "source_id": source_id, "name": name, "sha256": hashes[name],
                   "piece": piece, "offset": offset,
                   "text": text[offset:offset + SNAPSHOT_CHARS], "pad": [0.0] * PAD_DIM}
            row += 1


def _vocab_rows(index: Any) -> Iterator[dict[str, Any]]:
    postings = index.postings
    df = np.diff(postings.indptr)
    for term, count in zip(postings.vocab, df.tolist(), strict=False):
        yield {"id": term, "df": count, "pad": [0.0] * PAD_DIM}


def bm25_stats(index: Any) -> BM25Stats:
    """The corpus-wide numbers of the local BM25 (`myoqa.bm25.SparseBM25`), for the manifest."""
    from myoqa.bm25 import SparseBM25

    bm25 = SparseBM25(index.postings)
    n = len(index.postings.doc_len)
    avgdl = float(index.postings.doc_len.astype(np.float64).sum() / n) if n else 1.0
    negative = bm25.idf_values[_raw_idf(index.postings) < 0]
    floor = float(negative[0]) if len(negative) else 0.0
    return BM25Stats(passages=n, avgdl=avgdl, idf_floor=floor, max_idf=bm25.max_idf)


def _raw_idf(postings: Any) -> np.ndarray:
    from myoqa.bm25 import raw_idf

    return raw_idf(len(postings.doc_len), np.diff(postings.indptr))


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


def upload(client: Any, index: Any, alias: str, library: str, settings: MilvusSettings,
           made_from: dict[str, Any], hashes: dict[str, str],
           progress: Callable[[str, int], Tick] | None = None,
           holds: Callable[[], None] | None = None) -> MilvusManifest:
    """Write `index` (an in-memory build of `library`) as a new build under `alias`, switch
    the alias to it, and drop older builds; return its manifest. `holds` raises when this
    process no longer holds the library's build lock; it is asked before the alias moves."""
    from pymilvus.exceptions import MilvusException

    started = time.perf_counter()
    build = f"b{time.strftime('%Y%m%dt%H%M%S')}_{uuid.uuid4().hex[:6]}"
    names = {part: f"{alias}_{build}_{part}" for part in PARTS}
    n = len(index.passages)
    check_owner(client, alias, library)
    manifest = MilvusManifest(
        build=build, library=library, collections=names, model=made_from["model"],
        dimension=index.dimension,
        chunking=made_from["chunking"], analyzer=made_from["analyzer"],
        sources=len(index.texts), sources_digest=sources_digest(hashes), passages=n,
        spans=len(index.spans), bm25=bm25_stats(index), dense_index=settings.dense_index,
        dense_params=dense_index_params(settings.dense_index, n),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), build_seconds=0.0)
    rows = {"passages": (_passage_rows(index), n), "spans": (_span_rows(index), len(index.spans)),
            "texts": (_text_rows(index, hashes), None),
            "vocab": (_vocab_rows(index), len(index.postings.vocab))}
    total = n + len(index.spans) + len(index.postings.vocab)
    tick = progress("uploading to Milvus", total) if progress else (lambda _n: None)
    try:
        replaced = current_collection(client, alias)
        for part in PARTS:  # passages first: a build killed later leaves it for the next to drop
            client.create_collection(names[part], schema=_schema(part, index.dimension),
                                     index_params=_index_params(client, part, manifest))
            source, count = rows[part]
            for batch in _batches(source):
                client.insert(names[part], batch)
                if count is not None:
                    tick(len(batch))
            client.flush(names[part])
            client.load_collection(names[part])
        final = replace(manifest, build_seconds=round(time.perf_counter() - started, 3))
        client.alter_collection_properties(names["passages"],
                                           {MANIFEST_PROPERTY: final.to_json()})
        if holds is not None:
            holds()
        if replaced is None:
            client.create_alias(names["passages"], alias)
        else:
            client.alter_alias(names["passages"], alias)
    except (MilvusException, MyoqaError) as exc:
        for name in names.values():
            _drop(client, name)
        if isinstance(exc, MyoqaError):
            raise
        if unreachable(exc):
            raise connection_error(exc, settings.uri) from None
        raise MyoqaError(f"Milvus refused the build of {alias} ({_reason(exc)})",
                         "the previous index is unchanged") from None
    keep = {build} | ({_build_of(alias, replaced)} if replaced else set())
    prune(client, alias, keep)
    return final


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def prune(client: Any, alias: str, keep: set[str]) -> list[str]:
    """Drop every collection of `alias` whose build is not in `keep` (what killed or replaced
    builds left); return the dropped names."""
    dropped = []
    ours = re.compile(re.escape(alias) + f"_({BUILD_NAME})_({'|'.join(PARTS)})")
    for name in client.list_collections():
        if not ours.fullmatch(name):  # another alias may start with this one
            continue
        if _build_of(alias, name) not in keep:
            _drop(client, name)
            dropped.append(name)
    return dropped


def _build_of(alias: str, collection: str) -> str:
    """The build id in a collection name `<alias>_<build>_<part>`."""
    return collection.removeprefix(alias + "_").rsplit("_", 1)[0]


def _drop(client: Any, name: str) -> None:
    from pymilvus.exceptions import MilvusException

    try:
        client.drop_collection(name)
    except MilvusException:
        return
