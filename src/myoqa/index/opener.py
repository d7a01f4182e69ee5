"""Opening an index for searching: reuse it when current, rebuild it when missing, stale or
damaged, refuse it when it cannot be either. Messages go to a `notify` callback; nothing here
prints, so the CLI, the chat and the evaluation each show them their own way."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from myoqa.corpus import Skipped, Source, read_corpus, survey
from myoqa.errors import MyoqaError
from myoqa.index import encoders, health, manifest
from myoqa.index.build import BuildParams, Encoder, EncoderInfo, ProgressFactory, build
from myoqa.index.manifest import IndexProblem
from myoqa.index.ownership import check_place, claim
from myoqa.index.store import build_lock, current_build, load, save
from myoqa.index.tables import Index

if TYPE_CHECKING:
    from myoqa.colbert import LateModel

EncoderFactory = Callable[[Path], Encoder]


class Place(Protocol):
    """What opening or building an index needs from the caller, as plain values (the edge's
    resolved settings have them): where the sources and the index are, the model, whether links
    out of the sources are read, the late-interaction model (None when off), and the user's
    cache folder holding the shared encoders."""

    @property
    def sources(self) -> Path: ...
    @property
    def index_dir(self) -> Path: ...
    @property
    def model(self) -> str: ...
    @property
    def follow_links(self) -> bool: ...
    @property
    def late(self) -> LateModel | None: ...
    @property
    def cache(self) -> Path: ...

Notify = Callable[[str], None]
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
LISTED_EMPTY = 3
LISTED_SKIPS = 3


def _write_error(index_dir: Path, exc: OSError) -> MyoqaError:
    """The one-line reason a build could not be written; the previous index is untouched.

    An error about a file outside the index folder (an unreadable entry of a model folder) is
    about reading that file, and says so, not that the index folder is not writable.
    """
    kept = "the previous index is unchanged"
    if exc.filename and not Path(os.path.abspath(exc.filename)).is_relative_to(
            os.path.abspath(index_dir)):
        return MyoqaError(f"cannot read {exc.filename}: {exc.strerror or exc}",
                          f"make it readable, or move it away; {kept}")
    if exc.errno in READ_ONLY:
        return MyoqaError(f"cannot write the index: {index_dir} is not writable",
                          f"make it writable or pass --index-dir DIR; {kept}")
    if exc.errno in NO_SPACE:
        return MyoqaError(f"cannot write the index in {index_dir}: no space left on the device",
                          f"free some space and run `myoqa index`; {kept}")
    return MyoqaError(f"cannot write the index in {index_dir}: {exc.strerror or exc}",
                      f"check free space and permissions; {kept}")


def _note_skipped(skipped: list[Skipped], notify: Notify) -> None:
    """Name each file that is not indexed, or not whole, and why; files of one group (formats
    myoqa does not read, links) are counted in one note beyond LISTED_SKIPS (`info` lists them
    all)."""
    groups: dict[str, list[Skipped]] = {}
    for s in skipped:
        if s.group is not None:
            groups.setdefault(s.group, []).append(s)
    for s in skipped:
        if s.group is None or len(groups[s.group]) <= LISTED_SKIPS:
            notify(f"note: skipped {s.name}: {s.reason}")
    for group, members in groups.items():
        if len(members) > LISTED_SKIPS:
            names = ", ".join(s.name for s in members[:LISTED_SKIPS])
            notify(f"note: skipped {len(members)} {group} ({names}, …)")


def _with_text(sources: list[Source], notify: Notify, skipped: list[Skipped]) -> None:
    """Note what is skipped and the sources without words (they add nothing), and refuse when
    none has any."""
    _note_skipped(skipped, notify)
    if not any(s.has_words for s in sources):
        raise MyoqaError("the sources hold no text to index", "add text to the source files")
    noted = {s.name for s in skipped}
    empty = [s.name for s in sources if not s.has_words and s.name not in noted]
    if len(empty) > LISTED_EMPTY:
        notify(f"note: {len(empty)} sources hold no text ({', '.join(empty[:LISTED_EMPTY])}, …); "
               "nothing from them is indexed")
    else:
        for name in empty:
            notify(f"note: source {name} holds no text; nothing from it is indexed")


def _load_current(index_dir: Path, params: BuildParams, hashes: dict[str, str]) -> Index:
    """The current build when it is whole and fits `params` and `hashes`, else IndexProblem.

    A rebuild may switch CURRENT and prune the build a reader had started on; the reader then
    retries on the build CURRENT names now instead of taking the index for damaged.
    """
    while True:
        state = health.check(index_dir, params, hashes)
        if state.state is not health.State.CURRENT:
            raise IndexProblem(state.reason or "the index is not current")
        try:
            index = load(index_dir)
            if index.path != state.build:
                continue
        except IndexProblem:
            with contextlib.suppress(IndexProblem):
                if current_build(index_dir) != state.build:
                    continue
            raise
        return index


def build_index(settings: Place, params: BuildParams, notify: Notify,
                progress: ProgressFactory | None = None, sources: list[Source] | None = None,
                force: bool = True, make_encoder: EncoderFactory | None = None) -> Index:
    """Embed the sources (read from settings.sources unless given) into a new build, locked,
    with the encoder `make_encoder` makes from the encoder folder (by default this process's,
    `encoders.load_encoder`).

    With `force` (`index --rebuild`) every passage and span is embedded again. Without it, a
    build that another process finished while this one waited for the lock is used instead of
    building the same index again, and the vectors of unchanged passages and spans are taken
    from the build being replaced.
    """
    from_folder = sources is None
    skipped: list[Skipped] = []
    if sources is None:
        corpus = read_corpus(settings.sources, settings.follow_links)
        sources, skipped = corpus.sources, corpus.skipped
    _with_text(sources, notify, skipped)
    index_dir = settings.index_dir
    claim(index_dir, settings.sources if from_folder else None)
    hashes = {s.name: s.sha256 for s in sources}
    try:
        if not os.access(index_dir, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(index_dir))
        with build_lock(index_dir, notify):
            if not force:
                with contextlib.suppress(IndexProblem):
                    return _load_current(index_dir, params, hashes)
            folder, files = encoders.ensure_encoder(settings.cache, params.model, notify)
            late, late_info = None, None
            if settings.late is not None and params.late_model == settings.late.key:
                late, late_folder, late_files = encoders.ensure_late_encoder(
                    settings.cache, settings.late, notify)
                late_info = EncoderInfo(late_folder, late_files)
            previous = None
            if not force:
                with contextlib.suppress(IndexProblem):
                    previous = load(index_dir)
            encoder = (make_encoder or encoders.load_encoder)(folder)
            built = build(sources, params, encoder,
                          EncoderInfo(folder, files), previous, progress,
                          [manifest.SkippedFile(s.name, s.reason) for s in skipped],
                          late, late_info)
            return save(built, index_dir)
    except OSError as exc:
        raise _write_error(index_dir, exc) from None


def build_params(settings: Place) -> BuildParams:
    """What a build for `settings` depends on: the model, and the late-interaction model's key
    when late interaction is on."""
    return BuildParams(model=settings.model,
                       late_model=settings.late.key if settings.late else None)


def ready_index(settings: Place, notify: Notify, params: BuildParams | None = None,
                progress: ProgressFactory | None = None, sources: list[Source] | None = None,
                make_encoder: EncoderFactory | None = None) -> Index:
    """The current index for `settings`, built or rebuilt first when missing, damaged or stale.

    Files added to the sources folder since the build that it does not index (an unsupported
    format, a link it does not follow) change nothing indexed, so no rebuild: they are named
    in a note, each time, until the next build records them.

    An index of a newer format is refused rather than rebuilt (NewerFormat).
    """
    params = params or build_params(settings)
    check_place(settings.index_dir, settings.sources if sources is None else None)
    found = survey(settings.sources, settings.follow_links) if sources is None else None
    hashes = found.hashes if found else {s.name: s.sha256 for s in sources or []}
    try:
        index = _load_current(settings.index_dir, params, hashes)
    except IndexProblem as problem:
        notify(f"{problem.message}; building the index in {settings.index_dir}")
        return build_index(settings, params, notify, progress, sources, force=False,
                           make_encoder=make_encoder)
    if found:
        noted = {s.name for s in index.manifest.skipped}
        _note_skipped([s for s in found.skipped if s.name not in noted], notify)
    return index
