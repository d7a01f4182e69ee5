"""The ONNX encoder of a model: exported once per user, shared by every index folder, verified.

Builds embed passages and spans with it and queries use it, so vectors never depend on which
of the two paths made them, and once it exists a rebuild needs no torch. It lives in the user's
cache folder, `<cache>/encoders/<model>-<key>/`, with the digests of its files; a build's
manifest records its folder and those digests too, so a damaged or swapped encoder is found
before it can change an answer, and a second index folder of the same model costs nothing. The
late-interaction model's optimised onnxruntime graph is kept the same way, in
`<cache>/encoders/late-<key>/`. Exports hold a lock in the cache folder, so two processes
exporting at once do not disturb each other. Indexes built before kept theirs in their own
`encoders/` folder; those still load, and are pruned once a new build no longer uses them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myoqa.errors import MyoqaError
from myoqa.faultpoints import pause
from myoqa.index.locks import held
from myoqa.index.manifest import FileDigest, IndexProblem
from myoqa.index.ownership import (
    TMP_PREFIX,
    make_owned_dir,
    owned_dir,
    remove_owned,
    write_owned_file,
)

if TYPE_CHECKING:
    from myoqa.colbert import LateModel

ENCODERS = "encoders"
LATE_PREFIX = "late-"
DIGESTS = "digests.json"
LOCK = "encoders.lock"
HASH_BLOCK = 1 << 20
KEY_CHARS = 16

Notify = Callable[[str], None]


def export_key(model: str) -> str:
    """A short key that changes when the model's files change (name + package version for the
    bundled model; sizes and modification times of a model folder's files otherwise)."""
    from myoqa.embedding import bundled_version, model_path
    from myoqa.onnx_encoder import EXPORT_VERSION

    path = Path(model_path(model))
    version = bundled_version(model)
    if version:
        stamp = f"{model}={version};export={EXPORT_VERSION}"
    else:
        stamp = "\n".join(f"{p.relative_to(path)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                          for p in sorted(path.rglob("*")) if p.is_file())
        stamp += f";export={EXPORT_VERSION}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name)[:40] or "model"
    return f"{slug}-{hashlib.sha256(stamp.encode()).hexdigest()[:KEY_CHARS]}"


def digest(path: Path) -> FileDigest:
    """Size and SHA-256 of a file."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            sha.update(block)
            size += len(block)
    return FileDigest(size, sha.hexdigest())


def digests(folder: Path) -> dict[str, FileDigest]:
    """Digest of every file below `folder` but the ownership proof, by relative path."""
    return {p.relative_to(folder).as_posix(): digest(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (".owner", DIGESTS)}


def damage(folder: Path, expected: dict[str, FileDigest], full: bool = True) -> str | None:
    """What is wrong with the files of `folder` against `expected`, or None when they match.

    Sizes are always checked; contents too when `full`.
    """
    for name, want in expected.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path} is missing"
        if size != want.bytes:
            return f"{path} has {size} bytes, {want.bytes} expected"
        if full and digest(path).sha256 != want.sha256:
            return f"{path} does not match its recorded hash"
    return None


def encoder_folder(index_dir: Path, name: str) -> Path:
    """The encoder folder a manifest names: a folder of the user's cache (an absolute path), or,
    for an index built before encoders were shared, one inside its own `encoders/`."""
    return index_dir / ENCODERS / name


def ensure_encoder(cache: Path, model: str, notify: Notify) -> tuple[Path, dict[str, FileDigest]]:
    """The encoder folder for `model` in the user's `cache` and its digests, exported if needed.

    Exporting loads sentence-transformers (torch): seconds, once per model and user. An encoder
    whose files no longer match their digests is exported again.
    """
    key = export_key(model)
    folder = cache / ENCODERS / key
    recorded = read_digests(folder)
    if recorded is not None and encoder_damage(folder, recorded) is None:
        return folder, recorded
    with _cache_lock(cache, notify):
        recorded = read_digests(folder)  # another process may have exported it meanwhile
        if recorded is not None and encoder_damage(folder, recorded) is None:
            return folder, recorded
        notify(f"exporting the ONNX encoder of {model} (once per model)")
        from myoqa.embedding import load_model
        from myoqa.onnx_encoder import export_onnx

        return folder, _export(_encoders_root(cache), key,
                               lambda tmp: export_onnx(load_model(model), tmp))


def late_folder(cache: Path, late: LateModel) -> Path:
    """Where the optimised graph of the late-interaction model is kept in the user's `cache`:
    one folder per model and onnxruntime version (a graph is saved by, and for, one version)."""
    from myoqa.onnx_encoder import ORT_VERSION  # the encoder imports onnxruntime anyway;
    # importlib.metadata (email, zipfile, csv: 20 ms) is not needed for its version

    stamp = f"{late.key};onnxruntime={ORT_VERSION}"
    return (cache / ENCODERS
            / f"{LATE_PREFIX}{hashlib.sha256(stamp.encode()).hexdigest()[:KEY_CHARS]}")


def ensure_late_encoder(cache: Path, late: LateModel, notify: Notify
                        ) -> tuple[Any, Path, dict[str, FileDigest]]:
    """The late-interaction encoder for a build, its graph folder and its digests: loaded from
    the optimised graph saved in the user's `cache`, or (missing or damaged) saving it while
    loading."""
    from myoqa.colbert import MODEL_FILE, ColbertEncoder

    folder = late_folder(cache, late)
    recorded = read_digests(folder)
    if recorded is None or encoder_damage(folder, recorded) is not None:
        with _cache_lock(cache, notify):
            recorded = read_digests(folder)  # another process may have saved it meanwhile
            if recorded is None or encoder_damage(folder, recorded) is not None:
                made: list[Any] = []

                def save(tmp: Path) -> None:
                    made.append(ColbertEncoder(late.path, save_graph=tmp / MODEL_FILE))

                files = _export(_encoders_root(cache), folder.name, save)
                return made[0], folder, files
    return ColbertEncoder(late.path, graph=folder / MODEL_FILE), folder, recorded


def saved_late_graph(cache: Path, late: LateModel) -> Path | None:
    """The optimised graph a build saved for `late`, when its files match their digests."""
    from myoqa.colbert import MODEL_FILE

    folder = late_folder(cache, late)
    recorded = read_digests(folder)
    if recorded is None or MODEL_FILE not in recorded or encoder_damage(folder, recorded):
        return None
    return folder / MODEL_FILE


@contextmanager
def _cache_lock(cache: Path, notify: Notify) -> Iterator[None]:
    """Hold the lock of the encoders in the user's `cache`: one process exports at a time, and
    one waiting finds the encoder the other exported."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MyoqaError(f"cannot create the cache folder {cache} ({exc.strerror})",
                         "set MYOQA_CACHE_DIR to a folder you can write") from None
    with held(cache / LOCK, notify, "another process is exporting an encoder; waiting for it"):
        yield


def _encoders_root(cache: Path) -> Path:
    """The cache's `encoders/` folder, made with its proof when missing (or when only a proof a
    kill cut short is there); a folder myoqa did not make is refused. Call it holding
    `_cache_lock`."""
    root = cache / ENCODERS
    if not owned_dir(root):
        remove_owned(root)  # empty, or holding only a proof a kill cut short
        if root.exists() or root.is_symlink():
            raise MyoqaError(f"{root} was not made by myoqa", "move it out of the cache folder")
        make_owned_dir(root, "encoders proof")
    return root


def _export(root: Path, key: str, write: Callable[[Path], None]) -> dict[str, FileDigest]:
    """Fill a temporary folder with `write`, record its digests, then rename it to root/key
    (replacing one of ours), so a killed export leaves no half folder in use. Call it holding
    `_cache_lock`: the temporary folder's name is then this export's alone."""
    folder = root / key
    remove_owned(folder)  # damaged, or without readable digests
    tmp = root / f"{TMP_PREFIX}{key}"
    make_owned_dir(tmp, "export proof")
    try:
        write(tmp)
        found = digests(tmp)
        write_owned_file(tmp / DIGESTS, json.dumps(
            {n: [d.bytes, d.sha256, _stamp(tmp / n)] for n, d in found.items()}) + "\n")
        pause("export written")
        tmp.rename(folder)
    except BaseException:
        remove_owned(tmp)
        raise
    return found


def _stamp(path: Path) -> list[int]:
    """What changes whenever a file is written: inode, modification and change times."""
    info = path.stat()
    return [info.st_ino, info.st_mtime_ns, info.st_ctime_ns]


def _recorded(folder: Path) -> dict[str, tuple[FileDigest, list[int]]] | None:
    try:
        data = json.loads((folder / DIGESTS).read_text(encoding="utf-8"))
        return {str(n): (FileDigest(int(b), str(s)), [int(x) for x in stamp])
                for n, (b, s, stamp) in data.items()}
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return None


def read_digests(folder: Path) -> dict[str, FileDigest] | None:
    """The digests an encoder folder recorded, or None when it has none readable."""
    recorded = _recorded(folder)
    return None if recorded is None else {n: d for n, (d, _) in recorded.items()}


def encoder_damage(folder: Path, expected: dict[str, FileDigest]) -> str | None:
    """What is wrong with an encoder folder against a build's `expected` digests, or None.

    A file still carrying the inode and times recorded when it was exported and hashed is not
    hashed again (any write changes its change time), so the check before each question costs
    a few stats; a file that was touched, copied or replaced is hashed in full.
    """
    recorded = _recorded(folder) or {}
    for name, want in expected.items():
        path = folder / name
        have = recorded.get(name)
        try:
            unchanged = have is not None and have[0] == want and _stamp(path) == have[1]
        except OSError:
            return f"{path} is missing"
        if not unchanged:
            problem = damage(folder, {name: want})
            if problem:
                return problem
    return None


def load_encoder(folder: Path, spin: bool = False) -> Any:
    """An OnnxEncoder from a folder `encoder_damage` has checked (IndexProblem if unreadable);
    `spin`: see OnnxEncoder."""
    from myoqa.onnx_encoder import OnnxEncoder

    try:
        return OnnxEncoder(folder, spin=spin)
    except Exception as exc:  # noqa: BLE001 (onnxruntime and tokenizers raise bare Exception)
        raise IndexProblem(f"query encoder in {folder} is damaged ({type(exc).__name__})") from None
