"""What `myoqa index`, `info` and `status` print: what a build holds, which sources and index
are used and why, and the index's state (current, stale, damaged, missing)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from myoqa.errors import ExitCode, MyoqaError, json_text, printable
from myoqa.index.health import Health, State
from myoqa.index.manifest import REBUILD_HINT, Manifest

if TYPE_CHECKING:
    from myoqa.backend import Built, Status
    from myoqa.config import Settings
    from myoqa.scale.milvus_engine import MilvusStatus


def built_line(built: Built) -> str:
    """One line on what a build holds (`myoqa index`)."""
    vectors = built.passages + built.spans
    reused = ("" if built.reused_vectors is None
              else f"; {built.reused_vectors} of {vectors} vectors reused")
    return printable(f"index {built.where} holds {built.passages} passages and {built.spans} "
                     f"spans from {built.sources} sources (built {built.built_at} in "
                     f"{built.build_seconds} s{reused})")


def show_status(settings: Settings, status: Status, as_json: bool) -> int:
    """Print `info`/`status` (as JSON with `as_json`); a damaged or missing index is an error
    once it is shown (exit 1)."""
    if isinstance(status, Health):
        _show_local(settings, status, as_json)
        if status.state is State.MISSING:
            raise MyoqaError(status.reason or "no index", "run `myoqa index`")
        if status.state is State.DAMAGED:
            raise MyoqaError(f"the index is damaged: {status.reason}", REBUILD_HINT)
        return ExitCode.OK
    milvus: MilvusStatus = status  # type: ignore[assignment]
    _show_milvus(settings, milvus, as_json)
    if milvus.state in ("missing", "damaged"):
        raise MyoqaError(milvus.reason or "no index", "run `myoqa index --backend milvus`")
    return ExitCode.OK


def _show_local(settings: Settings, state: Health, as_json: bool) -> None:
    """The local index folder's state, and what its manifest records."""
    m = state.manifest
    if as_json:
        data: dict[str, Any] = {
            "sources": str(settings.sources), "sources_from": settings.sources_from,
            "follow_links": settings.follow_links,
            "follow_links_from": settings.follow_links_from,
            "index_dir": str(settings.index_dir), "index_from": settings.index_from,
            "model": settings.model, "model_from": settings.model_from,
            "late_model": settings.late.key if settings.late else None,
            "late_from": settings.late_from,
            "build": str(state.build) if state.build else None, **state.to_json(),
            "manifest": m.to_json() if m else None}
        print(json_text(data, indent=2))
        return
    lines = [f"sources:   {settings.sources}  ({settings.sources_from})",
             (f"links:     {'followed' if settings.follow_links else 'not followed'} out of "
              f"the sources  ({settings.follow_links_from})"),
             f"index:     {settings.index_dir}  ({settings.index_from})",
             (f"late:      {'on, ' + settings.late.key if settings.late else 'off'}  "
              f"({settings.late_from})"),
             f"state:     {state.state.value}" + (f": {state.reason}" if state.reason else "")]
    if m:
        lines += [f"build:     {state.build}",
                  (f"built:     {m.built_at} in {m.build_seconds} s "
                   f"({m.reused_vectors} vectors reused)"),
                  (f"model:     {m.model.name} (dimension {m.model.dimension}, "
                   f"encoder {m.model.encoder})"),
                  f"passages:  {m.counts.passages}, spans: {m.counts.spans}",
                  *_made_of(m)]
    for line in lines:
        print(printable(line))


def _show_milvus(settings: Settings, status: MilvusStatus, as_json: bool) -> None:
    """The state of the library's build in Milvus, and what its manifest records."""
    m = status.manifest
    if as_json:
        print(json_text({"sources": str(settings.sources), "sources_from": settings.sources_from,
                         "model": settings.model, "model_from": settings.model_from,
                         **status.to_json()}, indent=2))
        return
    lines = [f"sources:   {settings.sources}  ({settings.sources_from})",
             f"index:     {status.collection} in Milvus at {status.uri}",
             f"state:     {status.state}" + (f": {status.reason}" if status.reason else "")]
    if m:
        lines += [f"build:     {m.build} of {m.library}",
                  f"built:     {m.built_at} in {m.build_seconds} s",
                  f"model:     {m.model} (dimension {m.dimension}, {m.dense_index})",
                  f"passages:  {m.passages}, spans: {m.spans}, sources: {m.sources}",
                  *_made_of(m.manifest)]
    for line in lines:
        print(printable(line))


def _made_of(m: Manifest) -> list[str]:
    """The lines of what a build was made from: settings, sources, skipped files (the same for
    a local build and a Milvus one)."""
    return [f"chunking:  {json.dumps(vars(m.chunking))}",
            f"analyzer:  {json.dumps(vars(m.analyzer))} rules {m.analyzer_rules}",
            *(f"source:    {src.name}  {src.chars} chars, {src.passages} passages, "
              f"sha256 {src.sha256[:16]}…" for src in m.sources),
            *(f"skipped:   {s.name}  ({s.reason})" for s in m.skipped)]
