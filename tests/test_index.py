"""The index on disk: typed manifest, current/stale/damaged, ownership of the index folder,
incremental builds that give the same answers as full ones."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from helpers import (
    FLUTTER,
    PROSE,
    SEEDS,
    builds,
    cli_env,
    copy_index,
    leftovers,
    one_line_error,
    run_cli,
    writable_copy,
    write_sources,
)
from myoqa.config import CACHE_ENV, PROJECT_ROOT, Settings
from myoqa.engine import open_searcher
from myoqa.errors import MyoqaError
from myoqa.evaluation import load_questions
from myoqa.index import BuildParams, IndexProblem, Manifest, NewerFormat
from myoqa.index.encoders import ENCODERS
from myoqa.index.health import State, check
from myoqa.index.manifest import FORMAT_VERSION, FileDigest
from myoqa.index.opener import build_index, ready_index
from myoqa.index.ownership import MARKER, make_owned_dir
from myoqa.index.store import current_build, load, read_manifest

QUIET = {"notify": lambda _m: None}
MAX_BUILD_MB = 10


def _hashes(sources: Path = SEEDS) -> dict[str, str]:
    from myoqa.corpus import source_hashes

    return source_hashes(sources)


def _check(index_dir: Path, full: bool = True) -> object:
    return check(index_dir, BuildParams(model="all-MiniLM-L6-v2"), _hashes(), full=full)


# Manifest --------------------------------------------------------------------------------------

def test_manifest_records_what_the_build_depends_on(seed_settings: Settings) -> None:
    manifest = read_manifest(current_build(seed_settings.index_dir))
    assert manifest.model.name == "all-MiniLM-L6-v2" and manifest.model.dimension == 384
    assert manifest.model.encoder_files and all(
        len(d.sha256) == 64 for d in manifest.model.encoder_files.values())
    assert manifest.chunking.window_words > 0 and manifest.analyzer.stem
    assert {s.name for s in manifest.sources} == {p.name for p in SEEDS.iterdir()}
    assert manifest.source_hashes() == _hashes()
    assert {"passages.faiss", "span_vectors.npy", "sources.json"} <= set(manifest.files)
    assert {"faiss-cpu", "numpy", "onnxruntime"} <= set(manifest.versions)
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json())), "x") == manifest


def test_build_folder_is_small_and_the_encoder_is_shared(seed_settings: Settings) -> None:
    build = current_build(seed_settings.index_dir)
    size = sum(p.stat().st_size for p in build.rglob("*") if p.is_file())
    assert size < MAX_BUILD_MB * 2**20, f"a seeds build takes {size / 2**20:.1f} MB"
    assert not (build / "encoder").exists()
    encoder = Path(read_manifest(build).model.encoder)
    assert encoder.parent == seed_settings.cache / ENCODERS and (encoder / "model.onnx").is_file()
    assert not (seed_settings.index_dir / ENCODERS).exists()


def test_a_second_index_folder_shares_the_users_encoder(seed_settings: Settings,
                                                        tmp_path: Path) -> None:
    """Each index folder exported its own ONNX encoder (87 MB, tens of seconds); now a second
    folder of the same model uses the one in the user's cache, and its rebuilds, which prune,
    never remove it."""
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden, brief jerk."})
    settings = replace(seed_settings, sources=sources, index_dir=tmp_path / "second")
    shared = read_manifest(current_build(seed_settings.index_dir)).model
    notes: list[str] = []
    for _ in range(3):
        index = build_index(settings, BuildParams(model=settings.model), notes.append)
        assert index.manifest.model.encoder == shared.encoder
        assert index.manifest.model.encoder_files == shared.encoder_files
    assert not any("exporting" in n for n in notes), notes
    assert not (settings.index_dir / ENCODERS).exists()
    assert check(seed_settings.index_dir, BuildParams(model=settings.model),
                 _hashes()).state is State.CURRENT


def test_two_exports_at_once_take_turns(tmp_path: Path, model_loads: list[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes exporting the same encoder into the cache at once: the second waits on the
    cache's lock and then finds the first one's export, whole."""
    from myoqa import onnx_encoder
    from myoqa.index import encoders

    cache = tmp_path / "cache"
    started, release = threading.Event(), threading.Event()

    def slow_export(_model: object, out: Path) -> None:
        started.set()
        release.wait()
        (out / "model.onnx").write_bytes(b"stand-in")

    monkeypatch.setattr(onnx_encoder, "export_onnx", slow_export)
    found: list[tuple[Path, dict[str, FileDigest]]] = []
    first = threading.Thread(target=lambda: found.append(
        encoders.ensure_encoder(cache, "all-MiniLM-L6-v2", lambda _m: None)))
    first.start()
    started.wait()
    waits: list[str] = []
    second = threading.Thread(target=lambda: found.append(
        encoders.ensure_encoder(cache, "all-MiniLM-L6-v2", waits.append)))
    second.start()
    while not waits:
        second.join(0.01)
    release.set()
    first.join()
    second.join()
    assert "waiting" in waits[0] and len(model_loads) == 1
    assert found[0] == found[1] and encoders.encoder_damage(*found[0]) is None
    assert not leftovers(cache / ENCODERS)


@hsettings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=30))
def test_any_json_is_a_manifest_or_one_clear_problem(data: object) -> None:
    try:
        Manifest.from_json(data, "manifest.json")
    except (IndexProblem, NewerFormat) as problem:
        assert "manifest.json" in str(problem) and "\n" not in str(problem)


@hsettings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["model", "counts", "files", "sources",
                                                 "chunking", "format_version"]))
def test_manifest_with_any_field_replaced_is_refused_by_name(seed_settings: Settings,
                                                             junk: bytes, field: str) -> None:
    good = read_manifest(current_build(seed_settings.index_dir)).to_json()
    for value in (junk.decode("latin-1"), None, [], {}, 7, -1, True):
        try:
            Manifest.from_json({**good, field: value}, "m.json")
        except (IndexProblem, NewerFormat) as problem:
            assert "m.json" in str(problem)


# Current, stale, damaged -----------------------------------------------------------------------

def test_current_index_is_reused_without_rebuilding(seed_settings: Settings) -> None:
    said: list[str] = []
    before = current_build(seed_settings.index_dir)
    ready_index(seed_settings, said.append)
    assert said == [] and current_build(seed_settings.index_dir) == before
    assert _check(seed_settings.index_dir).state is State.CURRENT


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_a_quarter(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[: len(data) // 4] = bytes(len(data) // 4)
    path.write_bytes(bytes(data))


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def _more_passages(manifest: Path) -> None:
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["counts"]["passages"] += 1
    manifest.write_text(json.dumps(data), encoding="utf-8")


def _encoder(index_dir: Path) -> Path:
    """The encoder of a copied index, first moved to a cache of its own (`_cache`), so a test may
    damage it without damaging the one the session's indexes share."""
    build = current_build(index_dir)
    shared = Path(read_manifest(build).model.encoder)
    own = _cache(index_dir) / ENCODERS / shared.name
    if shared != own:
        shutil.copytree(shared.parent, own.parent, dirs_exist_ok=True)
        data = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
        data["model"]["encoder"] = str(own)
        (build / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return own


def _cache(index_dir: Path) -> Path:
    """The user's cache folder of a copied index whose encoder a test damages."""
    return index_dir.with_name(f"{index_dir.name}-cache")


DAMAGE = {
    "passages.faiss truncated": (lambda d, b: _truncate(b / "passages.faiss"), "passages.faiss"),
    "passages.npy truncated": (lambda d, b: _truncate(b / "passages.npy"), "passages.npy"),
    "span_vectors.npy truncated": (lambda d, b: _truncate(b / "span_vectors.npy"),
                                   "span_vectors.npy"),
    "arrays swapped": (lambda d, b: _swap(b / "bm25_docs.npy", b / "bm25_tf.npy"), "bm25_"),
    "same-size change": (lambda d, b: _zero_a_quarter(b / "span_vectors.npy"),
                         "span_vectors.npy does not match its recorded hash"),
    "encoder deleted": (lambda d, b: shutil.rmtree(_encoder(d)), "is missing"),
    "encoder weights zeroed (same size)": (lambda d, b: _zero_a_quarter(
        _encoder(d) / "model.onnx.data"), "model.onnx.data does not match its recorded hash"),
    "manifest not json": (lambda d, b: (b / "manifest.json").write_text("{"), "manifest.json"),
    "CURRENT names a missing build": (lambda d, b: (d / "CURRENT").write_text("build-gone\n"),
                                      "build-gone"),
    "CURRENT a FIFO": (lambda d, b: ((d / "CURRENT").unlink(), os.mkfifo(d / "CURRENT")),
                       "CURRENT: not a regular file"),
    "manifest counts altered": (lambda d, b: _more_passages(b / "manifest.json"),
                                "do not match its manifest's counts"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_found_named_and_reported_by_status(seed_settings: Settings, tmp_path: Path,
                                                      damage: str) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    apply, words = DAMAGE[damage]
    apply(index_dir, current_build(index_dir))
    health = _check(index_dir)
    assert health.state is State.DAMAGED and words in (health.reason or ""), health
    proc = run_cli("status", "--json", env=cli_env(index_dir))
    status = json.loads(proc.stdout)
    assert proc.returncode == 1 and status["state"] == "damaged" and status["stale"] is None
    assert words in status["damaged"]
    assert "damaged" in run_cli("info", env=cli_env(index_dir)).stdout


@pytest.mark.slow  # each repair exports the model again (torch)
def test_encoder_damage_is_found_before_each_question_and_repaired(
        seed_settings: Settings, tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    question = ["ask", "what is diaphragmatic flutter?", "--json", "-k", "3"]
    before = run_cli(*question, env=cli_env(index_dir))
    _zero_a_quarter(_encoder(index_dir) / "model.onnx.data")
    after = run_cli(*question, env={**cli_env(index_dir), CACHE_ENV: str(_cache(index_dir))})
    assert after.returncode == 0 and "model.onnx.data does not match its recorded hash" in \
        after.stderr and "exporting the ONNX encoder" in after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert _check(index_dir).state is State.CURRENT


def test_stale_index_says_why_in_status(seed_settings: Settings, source_copy: Path,
                                        tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    with open(source_copy / PROSE, "a", encoding="utf-8") as fh:
        fh.write("\nOne more sentence.\n")
    proc = run_cli("status", "--json", env=cli_env(index_dir, source_copy))
    status = json.loads(proc.stdout)
    assert proc.returncode == 0 and status["state"] == "stale"
    assert status["stale"] == f"sources changed ({PROSE})" and status["damaged"] is None
    assert status["sources"] == str(source_copy) and status["sources_from"] == "$MYOQA_SOURCES"


def test_index_of_a_newer_format_is_refused_not_rebuilt(seed_settings: Settings,
                                                        tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    build = current_build(index_dir)
    manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    (build / "manifest.json").write_text(json.dumps({**manifest,
                                                     "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(NewerFormat, match="upgrade myoqa"):
        ready_index(Settings.resolve(SEEDS, index_dir), **QUIET)
    proc = run_cli("ask", "myoclonus", env=cli_env(index_dir))
    one_line_error(proc, 1, f"format {FORMAT_VERSION + 1}", "upgrade myoqa")
    assert builds(index_dir) == {build.name}


# Incremental builds ----------------------------------------------------------------------------

@pytest.mark.slow  # a full rebuild, then every question of two sets on both indexes
def test_incremental_build_reembeds_only_what_changed_and_answers_as_a_full_one(
        seed_settings: Settings, source_copy: Path, tmp_path: Path) -> None:
    with open(source_copy / PROSE, "a", encoding="utf-8") as fh:
        fh.write("\nPropranolol is not discussed in this text about stripe twitch syndrome.\n")
    quick = Settings.resolve(source_copy, copy_index(seed_settings, tmp_path, "quick"))
    full = Settings.resolve(source_copy, copy_index(seed_settings, tmp_path, "full"))
    said: list[str] = []
    incremental = ready_index(quick, said.append)
    rebuilt = build_index(full, BuildParams(model=full.model), **QUIET)
    counts = incremental.manifest.counts
    assert said == [f"sources changed ({PROSE}); building the index in {quick.index_dir}"]
    assert 0 < counts.passages + counts.spans - incremental.manifest.reused_vectors <= 4
    assert rebuilt.manifest.reused_vectors == 0
    questions = [q.question for f in ("questions.jsonl", "holdout.jsonl")
                 for q in load_questions(PROJECT_ROOT / "eval" / f)]
    fast, slow = (open_searcher(s, **QUIET) for s in (quick, full))
    for question in questions:
        assert fast.search(question).to_json() == slow.search(question).to_json(), question


# Ownership ---------------------------------------------------------------------------------------

def _user_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_holding_user_files_is_refused_and_left_alone(tmp_path: Path,
                                                              model_loads: list[str]) -> None:
    proj = write_sources(tmp_path / "proj", {"build-scripts/deploy.sh": "x\n",
                                             "build-notes.txt": "n\n", ".tmp-session": "y\n"})
    before = _user_files(proj)
    proc = run_cli("index", "--index-dir", str(proj), env=cli_env(tmp_path / "unused"))
    one_line_error(proc, 1, "already holds files that are not a myoqa index", "build-notes.txt")
    assert _user_files(proj) == before and sorted(p.name for p in proj.iterdir()) == [
        ".tmp-session", "build-notes.txt", "build-scripts"]


@pytest.mark.parametrize("layout", ["same folder", "index inside sources", "sources inside index"])
def test_sources_and_index_nested_are_refused_by_name(tmp_path: Path, layout: str) -> None:
    outer = writable_copy(SEEDS, tmp_path / "outer")
    sources, index_dir = {"same folder": (outer, outer),
                          "index inside sources": (outer, outer / "idx"),
                          "sources inside index": (outer, tmp_path)}[layout]
    before = _user_files(tmp_path)
    proc = run_cli("ask", "myoclonus", env=cli_env(index_dir, sources))
    one_line_error(proc, 1, "sources folder")
    assert _user_files(tmp_path) == before and not (outer / "idx").exists()


def test_index_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    afile = write_sources(tmp_path, {"afile": "mine\n"}) / "afile"
    proc = run_cli("ask", "myoclonus", env=cli_env(afile))
    one_line_error(proc, 1, "is a file, not a folder")
    assert afile.read_text() == "mine\n"


def test_an_index_keeping_its_own_encoder_still_loads_and_its_next_builds_prune_it(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str]) -> None:
    """Indexes built before encoders were shared keep theirs in their own `encoders/`: such an
    index still loads as it is, and once builds no longer use that copy, pruning removes it."""
    index_dir = copy_index(seed_settings, tmp_path)
    build = current_build(index_dir)
    shared = Path(read_manifest(build).model.encoder)
    make_owned_dir(index_dir / ENCODERS, "test")
    shutil.copytree(shared, index_dir / ENCODERS / shared.name)
    data = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    data["model"]["encoder"] = shared.name
    (build / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    params = BuildParams(model=seed_settings.model)
    assert check(index_dir, params, _hashes()).state is not State.DAMAGED
    assert load(index_dir).encoder_dir == index_dir / ENCODERS / shared.name
    settings = replace(seed_settings, index_dir=index_dir, late=None)
    for _ in range(2):
        assert build_index(settings, params, **QUIET).manifest.model.encoder == str(shared)
    assert [p.name for p in (index_dir / ENCODERS).iterdir()] == [".owner"] and not model_loads
    assert (shared / "model.onnx").is_file()


def test_pruning_removes_only_what_myoqa_made(seed_settings: Settings, tmp_path: Path,
                                              model_loads: list[str]) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    first = current_build(index_dir)
    mine = write_sources(index_dir, {"build-notes.txt": "keep\n", "build-mine/a.txt": "keep\n",
                                     ".tmp-session": "keep\n", "encoders/notes.txt": "keep\n"})
    kept = {n: b for n, b in _user_files(mine).items() if "keep" in b.decode("latin-1")}
    shutil.copytree(first, index_dir / ".tmp-killed-build")
    (index_dir / ".tmp-killed-build" / ".owner").write_text("killed-build\n")
    settings = Settings.resolve(SEEDS, index_dir)
    second = build_index(settings, BuildParams(model=settings.model), **QUIET)
    third = build_index(settings, BuildParams(model=settings.model), **QUIET)
    assert builds(index_dir) == {second.path.name, third.path.name, "build-mine",
                                 "build-notes.txt"}
    assert not (index_dir / ".tmp-killed-build").exists() and leftovers(index_dir) == [
        ".tmp-session"]
    assert {n: b for n, b in _user_files(index_dir).items() if n in kept} == kept
    assert (index_dir / MARKER).is_file() and load(index_dir).path == third.path


def test_an_index_folder_is_only_created_empty_or_missing(tmp_path: Path,
                                                          model_loads: list[str]) -> None:
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk."})
    for index_dir in (tmp_path / "new" / "deeper", write_sources(tmp_path / "empty", {})):
        index = ready_index(Settings.resolve(sources, index_dir), **QUIET)
        assert (index_dir / MARKER).is_file() and index.texts == {
            "a.txt": "Myoclonus is a sudden jerk."}
    with pytest.raises(MyoqaError, match="not a myoqa index"):
        ready_index(Settings.resolve(sources, write_sources(tmp_path / "full", {"x": "y"})),
                    **QUIET)


def test_a_marker_a_kill_cut_short_is_taken_as_myoqas(tmp_path: Path,
                                                       model_loads: list[str]) -> None:
    """An older myoqa killed while writing the marker left only its temporary file; that folder
    was refused as "not a myoqa index" until deleted by hand. Another file of that name is not
    myoqa's and still refused."""
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk."})
    stuck = write_sources(tmp_path / "stuck", {f".tmp-{MARKER}-4242": '{"myo'})
    assert ready_index(Settings.resolve(sources, stuck), **QUIET).texts == {
        "a.txt": "Myoclonus is a sudden jerk."}
    assert (stuck / MARKER).is_file() and not leftovers(stuck)
    other = write_sources(tmp_path / "other", {f".tmp-{MARKER}-4242": "my notes\n"})
    with pytest.raises(MyoqaError, match="not a myoqa index"):
        ready_index(Settings.resolve(sources, other), **QUIET)
    assert _user_files(other) == {f".tmp-{MARKER}-4242": b"my notes\n"}


@pytest.mark.parametrize("left", ["encoders/ without its proof", "an encoder's folder without"])
def test_folders_a_kill_left_before_their_proof_are_replaced_or_pruned(
        tmp_path: Path, model_loads: list[str], left: str) -> None:
    """A kill between making a folder and writing its proof left `encoders/` unproven ("was not
    made by myoqa"), or an encoder's temporary folder in the way of the export ("File exists"),
    and a temporary build that no build removed; each is myoqa's and goes, a user's folder stays."""
    from myoqa.index.encoders import export_key

    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk."})
    settings = Settings.resolve(sources, tmp_path / "index")
    encoder = ({f"{ENCODERS}/.tmp-.owner-77": "enc"} if left.startswith("encoders/") else
               {f"{ENCODERS}/.owner": f"{ENCODERS}\n",
                f"{ENCODERS}/.tmp-{export_key(settings.model)}/.owner": ""})
    write_sources(settings.cache, encoder)
    index_dir = write_sources(settings.index_dir, {
        MARKER: "", ".tmp-build-20260101T000000-0123abcd/.tmp-.owner-9": "",
        ".tmp-mine/notes.txt": "mine\n"})
    index = build_index(settings, BuildParams(model=settings.model), **QUIET)
    assert index.texts == {"a.txt": "Myoclonus is a sudden jerk."} and model_loads
    assert leftovers(index_dir) == [".tmp-mine"] and not leftovers(settings.cache / ENCODERS)
    assert (index_dir / ".tmp-mine" / "notes.txt").read_text() == "mine\n"
    assert (settings.cache / ENCODERS / ".owner").read_text() == f"{ENCODERS}\n"


def test_damaged_index_is_rebuilt_on_the_next_question(seed_settings: Settings, tmp_path: Path,
                                                       model_loads: list[str]) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    before = current_build(index_dir)
    _truncate(before / "passages.faiss")
    said: list[str] = []
    fresh = ready_index(replace(seed_settings, index_dir=index_dir), said.append)
    assert len(said) == 1 and "passages.faiss has" in said[0]
    assert said[0].endswith(f"; building the index in {index_dir}")
    assert fresh.path != before and model_loads == [] and not leftovers(index_dir)
    assert np.array_equal(fresh.passages.array(), load(index_dir).passages.array())
    assert FLUTTER in fresh.texts
