"""One answer to "can this index be searched as it is?": current, stale (why) or damaged (what)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from myoqa.analysis import RULES_VERSION
from myoqa.index.build import BuildParams
from myoqa.index.encoders import damage, encoder_damage, encoder_folder
from myoqa.index.manifest import IndexProblem, Manifest
from myoqa.index.store import current_build, load, read_manifest

LISTED_CHANGES = 3


class State(Enum):
    """What an index folder holds, for the sources and settings asked about."""

    MISSING = "missing"
    CURRENT = "current"
    STALE = "stale"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class Health:
    """The state of an index folder, why, and its build and manifest when readable."""

    state: State
    reason: str | None
    build: Path | None
    manifest: Manifest | None

    def to_json(self) -> dict[str, object]:
        """The `stale`/`damaged` part of `status --json`."""
        return {"state": self.state.value,
                "stale": self.reason if self.state is State.STALE else None,
                "damaged": self.reason if self.state is State.DAMAGED else None}


def check(index_dir: Path, params: BuildParams, hashes: dict[str, str], full: bool = False
          ) -> Health:
    """The state of the current build in `index_dir` for these settings and source hashes.

    Files are checked against the manifest's sizes always and hashes when `full` (`status`);
    the encoder always against its hashes (cheaply, see `encoder_damage`). When `full`, the
    build is also loaded, as `ask` does before searching it, so both apply one rule (a manifest
    whose counts disagree with its arrays is damaged for both). A manifest of a newer format
    raises NewerFormat: it is refused, never rebuilt.
    """
    try:
        build = current_build(index_dir)
    except IndexProblem as problem:
        missing = not (index_dir / "CURRENT").exists()
        return Health(State.MISSING if missing else State.DAMAGED, problem.message, None, None)
    try:
        manifest = read_manifest(build)
    except IndexProblem as problem:
        return Health(State.DAMAGED, problem.message, build, None)
    late = manifest.late if params.late_model is not None else None
    found = (damage(build, manifest.files, full)
             or encoder_damage(encoder_folder(index_dir, manifest.model.encoder),
                               manifest.model.encoder_files)
             or (encoder_damage(encoder_folder(index_dir, late.encoder), late.encoder_files)
                 if late is not None and late.encoder else None))
    if found:
        return Health(State.DAMAGED, found, build, manifest)
    if full:
        try:
            load(index_dir)
        except IndexProblem as damaged:
            return Health(State.DAMAGED, damaged.message, build, manifest)
    reason = staleness(manifest, params, hashes)
    return Health(State.STALE if reason else State.CURRENT, reason, build, manifest)


def staleness(manifest: Manifest, params: BuildParams, hashes: dict[str, str] | None,
              dense_index: str | None = None) -> str | None:
    """Why a build no longer fits its sources or settings, or None when it does: the one rule
    of both stores (the local folder, and Milvus, whose build records the same manifest).

    With late interaction off, a build's token vectors are left unused, not a reason to
    rebuild; with it on, a build needs them from the same model, with its saved graph.
    `dense_index` is given by a store whose dense index kind is a setting (Milvus); `hashes`
    None means the sources are not on this machine (a Milvus client): the build is taken as
    it is for them."""
    changed = [name for name, same in (
        ("model", manifest.model.name == params.model),
        ("chunking", manifest.chunking == params.chunking),
        ("analyzer", manifest.analyzer == params.analyzer and manifest.analyzer_rules
         == RULES_VERSION),
        ("late-interaction model",
         params.late_model is None or (manifest.late is not None and manifest.late.encoder != ""
                                       and manifest.late.model == params.late_model)),
        ("dense index", dense_index is None or manifest.dense_index == dense_index))
        if not same]
    if changed:
        return f"settings changed ({', '.join(changed)})"
    built = manifest.source_hashes()
    if hashes is not None and built != hashes:
        names = sorted(set(built) ^ set(hashes)
                       | {n for n in built if n in hashes and built[n] != hashes[n]})
        more = "…" if len(names) > LISTED_CHANGES else ""
        return f"sources changed ({', '.join(names[:LISTED_CHANGES])}{more})"
    return None
