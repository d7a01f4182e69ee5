"""Where things live and which model is used, and why: flags, then MYOQA_* variables, then the
project (a myoqa checkout containing the current folder), then the defaults of an installed
package (the bundled seed texts, an index in the user's cache folder)."""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from myoqa.errors import UsageError
from myoqa.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from myoqa.colbert import LateModel

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SEEDS = Path(__file__).resolve().parent / "seeds"
APP_NAME = "myoqa"
KEY_CHARS = 12


def project_file(*parts: str, what: str, option: str) -> Path:
    """A file of the myoqa checkout around the current folder (its eval/ sets, its bench
    folder), or a UsageError saying to pass `option` when there is no checkout here."""
    root = project_root()
    if root is None:
        raise UsageError(f"no {what} here: the current folder is not inside a myoqa checkout",
                         f"pass {option}")
    return root.joinpath(*parts)


def project_root(start: Path | None = None) -> Path | None:
    """The myoqa checkout that holds `start` (default: the current folder), or None.

    A checkout is a folder whose pyproject.toml names the project "myoqa"; its seeds/ and
    index/ are then the defaults, so `make chat` works as it always has.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        try:
            data = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("project", {}).get("name") == APP_NAME:
            return folder
    return None


CACHE_ENV = "MYOQA_CACHE_DIR"


def user_cache() -> Path:
    """The user's cache folder for myoqa, where indexes live by default and the exported
    encoders once for every index: $MYOQA_CACHE_DIR, else platformdirs' cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


CLIPBOARD_ENV = "MYOQA_CLIPBOARD"
CLIPBOARD_AUTO, CLIPBOARD_OSC52 = "auto", "osc52"
CLIPBOARDS = (CLIPBOARD_AUTO, CLIPBOARD_OSC52)


@dataclass(frozen=True)
class Settings:
    """The places a run depends on, resolved once by the caller, with where each came from:
    sources, index, model, the late-interaction model (`late`, None when off), where the
    index lives (`backend`: local files, or a Milvus server in `milvus`), where a build
    embeds (`embed_with`: this process, or the Ray cluster at `ray_address`), whether
    links leaving the sources folder are read, the chat's own folder (`data_dir`) and export
    folder (`export_dir`; None: the defaults `tui.places` picks), how the chat copies
    (`clipboard`: `auto`, or `osc52` to trust the terminal's clipboard), whether an unexpected
    error shows its traceback (`debug`), the user's cache folder (`cache`) holding the
    exported encoders every index folder shares, the terminal's type (`term`, $TERM: `dumb`
    shows no styles) and the program that opens a passage (`viewer`, a command line from
    `viewer_from`: $VISUAL, $EDITOR or $PAGER; empty: less, when installed)."""

    sources: Path
    index_dir: Path
    model: str
    sources_from: str = "given"
    index_from: str = "given"
    model_from: str = "given"
    backend: str = "local"
    milvus: MilvusSettings | None = None
    embed_with: str = "local"
    ray_address: str | None = None
    follow_links: bool = False
    follow_links_from: str = "the default"
    late: LateModel | None = None
    late_from: str = "given"
    data_dir: Path | None = None
    data_dir_from: str = "the default"
    export_dir: Path | None = None
    export_dir_from: str = "the default"
    clipboard: str = CLIPBOARD_AUTO
    clipboard_from: str = "the default"
    debug: bool = False
    cache: Path = field(default_factory=user_cache)
    term: str = ""
    viewer: str = ""
    viewer_from: str = "the default"

    @classmethod
    def resolve(
        cls, sources: str | Path | None = None, index_dir: str | Path | None = None,
        model: str | None = None, backend: str | None = None, milvus_uri: str | None = None,
        milvus_token: str | None = None, embed_with: str | None = None,
        ray_address: str | None = None, follow_links: bool | None = None,
        late: str | None = None, milvus_collection: str | None = None,
        export_dir: str | Path | None = None,
    ) -> Settings:
        """Flags win over environment variables (MYOQA_SOURCES, MYOQA_BACKEND, …), which win
        over the project, then the defaults. `late` is `on`, `off` or a folder, as
        $MYOQA_COLBERT (late interaction is on by default; a word it does not know is a
        UsageError, a folder without the model a MyoqaError)."""
        from myoqa import colbert

        project = project_root()
        src, src_why = _pick(sources, "MYOQA_SOURCES", "--sources")
        if src is None:
            if project is not None and (project / "seeds").is_dir():
                src, src_why = project / "seeds", f"the project's seeds/ ({project})"
            else:
                src, src_why = PACKAGE_SEEDS, "the seed texts bundled with myoqa"
        idx, idx_why = _pick(index_dir, "MYOQA_INDEX_DIR", "--index-dir")
        if idx is None:
            if project is not None:
                idx, idx_why = project / "index", f"the project's index/ ({project})"
            else:
                idx, idx_why = cache_index_dir(src), "the user's cache folder"
        if model:
            name, model_why = model, "--model"
        elif os.environ.get("MYOQA_MODEL"):
            name, model_why = os.environ["MYOQA_MODEL"], "$MYOQA_MODEL"
        else:
            name, model_why = DEFAULT_MODEL, "the default"
        backend = resolve_backend(backend)
        follow, follow_why = _follow_links(follow_links)
        late_model, late_why = (colbert.resolve(late, "the late setting") if late
                                else colbert.resolve(os.environ.get(colbert.ENV)))
        data, data_why = _pick(None, DATA_ENV, "")
        export, export_why = _pick(export_dir, EXPORT_ENV, "--export-dir")
        copy, copy_why = _clipboard()
        return cls(src, idx, name, src_why, idx_why, model_why, backend=backend,
                   milvus=MilvusSettings.resolve(milvus_uri, milvus_token,
                                                 collection=milvus_collection)
                   if backend == "milvus" else None,
                   embed_with=embed_with or "local", ray_address=ray_address,
                   follow_links=follow, follow_links_from=follow_why,
                   late=late_model, late_from=late_why,
                   data_dir=data, data_dir_from=data_why or "the default",
                   export_dir=export, export_dir_from=export_why or "the default",
                   clipboard=copy, clipboard_from=copy_why, debug=debug_wanted(),
                   term=os.environ.get("TERM", ""), **_viewer())


def cache_index_dir(sources: Path) -> Path:
    """The index folder in the user's cache for a sources folder: one per folder."""
    real = sources.resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", real.name)[:40] or "sources"
    key = hashlib.sha256(str(real).encode("utf-8", "surrogateescape")).hexdigest()[:KEY_CHARS]
    return user_cache() / "indexes" / f"{slug}-{key}"


FOLLOW_LINKS_ENV = "MYOQA_FOLLOW_LINKS"
DATA_ENV = "MYOQA_DATA_DIR"
EXPORT_ENV = "MYOQA_EXPORT_DIR"
DEBUG_ENV = "MYOQA_DEBUG"


def debug_wanted() -> bool:
    """Whether an unexpected error shows its traceback: $MYOQA_DEBUG set to anything. Read
    once by `cli.main` before anything else can fail, and kept in Settings."""
    return bool(os.environ.get(DEBUG_ENV))
VIEWER_ENVS = ("VISUAL", "EDITOR", "PAGER")


def _viewer() -> dict[str, str]:
    """The program to open a passage with, as the user wrote it, and where it came from: the
    first of $VISUAL, $EDITOR, $PAGER that is set (`editor.viewer` splits it)."""
    for variable in VIEWER_ENVS:
        value = os.environ.get(variable, "").strip()
        if value:
            return {"viewer": value, "viewer_from": f"${variable}"}
    return {}


_YES, _NO = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _follow_links(flag: bool | None) -> tuple[bool, str]:
    """Whether links leaving the sources folder are read: --follow-links, else
    $MYOQA_FOLLOW_LINKS (1/true/yes/on or 0/false/no/off), else not (as git and ripgrep)."""
    if flag is not None:
        return flag, "--follow-links"
    value = os.environ.get(FOLLOW_LINKS_ENV, "").strip().lower()
    if value in _YES:
        return True, f"${FOLLOW_LINKS_ENV}"
    if value in _NO:
        return False, f"${FOLLOW_LINKS_ENV}" if value else "the default"
    raise UsageError(f"${FOLLOW_LINKS_ENV} is {os.environ[FOLLOW_LINKS_ENV]!r}, not 1 or 0",
                     f"set {FOLLOW_LINKS_ENV}=1 to follow links out of the sources folder, "
                     "or unset it")


def _clipboard() -> tuple[str, str]:
    """How the chat copies: $MYOQA_CLIPBOARD (there is no flag), else `auto` (the system
    clipboard, then OSC 52 where the terminal is known to take it); `osc52` trusts the
    terminal's clipboard. Another word is a UsageError."""
    chosen = os.environ.get(CLIPBOARD_ENV, "")
    word = chosen.strip().lower()
    if not word:
        return CLIPBOARD_AUTO, "the default"
    if word not in CLIPBOARDS:
        raise UsageError(f"${CLIPBOARD_ENV} is {chosen!r}, not {' or '.join(CLIPBOARDS)}",
                         f"set {CLIPBOARD_ENV}={CLIPBOARD_OSC52} if your terminal accepts OSC 52, "
                         "or unset it")
    return word, f"${CLIPBOARD_ENV}"


def _pick(flag: str | Path | None, env: str, option: str) -> tuple[Path | None, str]:
    if flag:
        return Path(flag).expanduser(), option
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser(), f"${env}"
    return None, ""


BACKENDS = ("local", "milvus")
DENSE_INDEXES = ("HNSW", "IVF_FLAT", "DISKANN", "FLAT")
DEFAULT_DENSE_INDEX = "HNSW"
MILVUS_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MILVUS_LITE_SUFFIX = ".db"  # pymilvus runs milvus-lite in the process for a URI ending so


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
        return self.uri.endswith(MILVUS_LITE_SUFFIX)

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
        if name and not MILVUS_COLLECTION_NAME.fullmatch(name):
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
