"""Odd questions, options, files and index states: each ends in a correct answer or one clear line.

The fast half of the reliability cases, all in one place (process kills, Ctrl-C and concurrent
processes are in test_faults.py). Builds that only need *an* index use FakeEncoder, which stands in
for the model so a build takes milliseconds; what is checked is the code around the model.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conftest import CONTROLS, FLUTTER, PROSE, SEEDS, run_cli, unprivileged
from conftest import one_line_error as _one_line_error
from myoqa import corpus, embedding, onnx_encoder
from myoqa import index as store
from myoqa.chunking import ChunkParams, chunk
from myoqa.config import PROJECT_ROOT, Settings
from myoqa.engine import build_index, query_encoder_factory, ready_index
from myoqa.errors import MyoqaError, UsageError
from myoqa.search import MAX_QUESTION_CHARS, MODES, Answer, Searcher, check_request

DIM = 384
REBUILD = "myoqa index --rebuild"


class FakeEncoder:
    """Hashed bag-of-words vectors of the real model's size, in place of the real model."""

    dimension = DIM

    def __init__(self, _model: object = None) -> None:
        pass

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """One normalised vector per text."""
        out = np.full((len(texts), DIM), 1e-3, dtype=np.float32)
        for row, text in zip(out, texts, strict=True):
            for word in text.lower().split():
                row[zlib.crc32(word.encode("utf-8", "surrogatepass")) % DIM] += 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        if progress:
            progress(len(texts))
        return out


@pytest.fixture()
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Builds use FakeEncoder and a stand-in ONNX export; the list records each model load."""
    loads: list[str] = []

    def load_model(name: str) -> object:
        loads.append(name)
        return object()

    def export_onnx(_model: str, out: Path) -> None:
        out.mkdir()
        (out / "model.onnx").write_bytes(b"stand-in")

    monkeypatch.setattr(embedding, "load_model", load_model)
    monkeypatch.setattr(embedding, "model_path", lambda name: name)
    monkeypatch.setattr(embedding, "SentenceTransformerEncoder", FakeEncoder)
    monkeypatch.setattr(onnx_encoder, "export_onnx", export_onnx)
    return loads


def _sources(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def _copy_index(settings: Settings, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(settings.index_dir, target)
    return target


def _writable_copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def _env(index_dir: Path, sources: Path = SEEDS) -> dict[str, str]:
    return {"MYOQA_INDEX_DIR": str(index_dir), "MYOQA_SOURCES": str(sources)}


def _leftovers(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.name.startswith((".tmp-", ".CURRENT-")))


def _builds(index_dir: Path) -> set[str]:
    return {p.name for p in index_dir.glob("build-*")}


def _check_answer(searcher: Searcher, answer: Answer, k: int) -> None:
    """Ranked, exact, non-overlapping passages whose highlights lie inside them."""
    results = answer.results
    assert 1 <= len(results) <= k
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    scores = [r.score for r in results]
    assert all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)
    for r in results:
        source = searcher.index.texts[r.source]
        assert r.text == source[r.start:r.end] and r.text.strip()
        assert r.line == source.count("\n", 0, r.start) + 1
        assert sum(h.kind == "evidence" for h in r.highlights) <= 1
        for h in r.highlights:
            assert h.kind in ("term", "evidence") and 0 <= h.start < h.end <= len(r.text)
    json.dumps(answer.to_json())


# Questions -----------------------------------------------------------------------------------

ODD_QUESTIONS = [
    "x", "?", "!!! ... ???", "🙂🙂", "👍🏽", "миоклонус лечение", "肌阵挛的治疗",
    "myoclonus миоклонус 肌阵挛 μυόκλονος", "a\x00b", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07",
    "[bold]x[/]", "[link=https://example.org]click[/link]", "\u202eevil", "e\u0301\u0301\u0301",
    "\udcff myoclonus", "\t\nmyoclonus\r\n", "a" * 300, "ﷺ" * 50, "\u200b\u200bjerks",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("question", ODD_QUESTIONS, ids=range(len(ODD_QUESTIONS)))
def test_odd_questions_get_well_formed_answers(searcher: Searcher, question: str,
                                               mode: str) -> None:
    _check_answer(searcher, searcher.search(question, mode, 5), 5)


@pytest.mark.parametrize("question", ["", " ", "\n\t \r", "\x00", "\x1b", "\u200b", "\u202e"])
def test_blank_questions_are_usage_errors(searcher: Searcher, question: str) -> None:
    with pytest.raises(UsageError, match="empty"):
        searcher.search(question, "hybrid", 5)


@pytest.mark.parametrize("mode", MODES)
def test_100000_character_question_is_truncated_with_a_note_and_answered(searcher: Searcher,
                                                                         mode: str) -> None:
    answer = searcher.search("which drugs treat myoclonus " * 4000, mode, 3)
    assert len(answer.question) > 100_000 and len(answer.searched) <= MAX_QUESTION_CHARS
    assert any("truncated" in note for note in answer.notes)
    _check_answer(searcher, answer, 3)


def test_cli_answers_a_100000_character_question_with_a_note(seed_settings: Settings) -> None:
    proc = run_cli("ask", "myoclonus treatment " * 5000, "-k", "2",
                   env=_env(seed_settings.index_dir))
    assert proc.returncode == 0, proc.stderr
    assert "myoqa: note: question truncated" in proc.stderr
    assert proc.stdout.startswith("1. ") and "\n2. " in proc.stdout


def test_cli_question_in_invalid_utf8_bytes_is_answered(seed_settings: Settings) -> None:
    env = {**os.environ, **_env(seed_settings.index_dir)}
    proc = subprocess.run([sys.executable, "-m", "myoqa", "ask", b"\xff\xfe myoclonus", "--json"],
                          capture_output=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passages"]


@pytest.mark.parametrize("question", ["\x1b[2J\x1b[31mmyoclonus", "[bold red]myoclonus[/]",
                                      "\u202emyoclonus\x9b31m"])
@pytest.mark.parametrize("as_json", [False, True])
def test_cli_output_carries_no_control_sequences(seed_settings: Settings, question: str,
                                                 as_json: bool) -> None:
    proc = run_cli("ask", question, "-k", "3", "--mode", "bm25", *(["--json"] if as_json else []),
                   env=_env(seed_settings.index_dir))
    assert proc.returncode == 0, proc.stderr
    assert not CONTROLS & set(proc.stdout + proc.stderr)
    if as_json:
        assert json.loads(proc.stdout)["question"] == question


def test_non_utf8_terminal_gets_replacement_characters(seed_settings: Settings) -> None:
    proc = run_cli("ask", "миоклонус", "-k", "2", env={**_env(seed_settings.index_dir),
                                                       "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1. ")


# Options ---------------------------------------------------------------------------------------

BAD_OPTIONS = [
    ["ask"], ["ask", ""], ["ask", "   "], ["ask", "\x1b"], ["ask", "x", "--mode", "fuzzy"],
    ["ask", "x", "--mode"], ["ask", "x", "-k", "0"], ["ask", "x", "-k", "-1"],
    ["ask", "x", "-k", "101"], ["ask", "x", "-k", str(10**30)], ["ask", "x", "-k", "many"],
    ["ask", "x", "-k", ""], ["ask", "x", "-k", "2.5"], ["ask", "x", "-k"],
    ["ask", "x", "--frobnicate"], ["ask", "x", "--sources"], ["--frobnicate"], ["frobnicate"],
    ["index", "--frobnicate"], ["index", "extra"], ["info", "extra"], ["eval", "--mode", "fuzzy"],
    ["eval", "-k", "0"], ["eval", "--file"],
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=[" ".join(a) or "-" for a in BAD_OPTIONS])
def test_bad_options_are_one_line_usage_errors(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(*args, env=_env(tmp_path / "no-index", tmp_path / "no-sources"))
    line = _one_line_error(proc, 2)
    assert line.endswith(")") and proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert not (tmp_path / "no-index").exists()


# Sources ---------------------------------------------------------------------------------------

def test_missing_and_empty_source_directories(tmp_path: Path) -> None:
    proc = run_cli("index", env=_env(tmp_path / "index", tmp_path / "missing"))
    _one_line_error(proc, 1, "does not exist", "--sources")
    (tmp_path / "empty").mkdir()
    proc = run_cli("index", env=_env(tmp_path / "index", tmp_path / "empty"))
    _one_line_error(proc, 1, "no .txt, .md, .html, .pdf or .docx files")
    proc = run_cli("index", env=_env(tmp_path / "index", SEEDS / FLUTTER))
    _one_line_error(proc, 1, "is not a directory")


@pytest.mark.parametrize("payload,words", [
    (b"caf\xe9 au lait", "not UTF-8"), (b"\x00\x01binary\x00", "looks binary"),
    ("Myoclonus.".encode("utf-16"), "UTF-16"), (b"\x89PNG\r\n\x1a\n\x00\x00", "looks binary")])
def test_binary_and_non_utf8_sources_are_named(tmp_path: Path, payload: bytes,
                                               words: str) -> None:
    sources = _sources(tmp_path / "src", {"good.txt": "Myoclonus is a twitch.", "bad.txt": payload})
    proc = run_cli("index", env=_env(tmp_path / "index", sources))
    _one_line_error(proc, 1, "bad.txt", words)
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_non_utf8_file_name_is_named(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src", {"good.txt": "Myoclonus is a twitch."})
    with open(os.fsencode(sources) + b"/caf\xe9.txt", "w") as fh:
        fh.write("text")
    with pytest.raises(MyoqaError, match=r"caf\\udce9\.txt' is not valid UTF-8 \(rename"):
        corpus.load_sources(sources)


def test_utf8_byte_order_mark_is_not_part_of_the_text(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src", {"bom.txt": "\ufeffMyoclonus.".encode()})
    assert corpus.load_sources(sources)[0].text == "Myoclonus."


def test_empty_sources_are_skipped_with_a_note(tmp_path: Path, model_loads: list[str]) -> None:
    sources = _sources(tmp_path / "src", {"empty.txt": "", "blank.md": " \n\t\n",
                                          "real.txt": "Myoclonus is a sudden brief jerk."})
    said: list[str] = []
    settings = Settings.resolve(sources, tmp_path / "index")
    index = ready_index(settings, notify=said.append)
    assert [n for n in said if "note:" in n] == [
        "note: source blank.md holds no text; nothing from it is indexed",
        "note: source empty.txt holds no text; nothing from it is indexed"]
    assert {p.source for p in index.passages} == {"real.txt"}
    answer = Searcher(index, FakeEncoder).search("sudden jerk", "hybrid", 5)
    assert [r.source for r in answer.results] == ["real.txt"]
    assert ready_index(settings, notify=said.append).path == index.path, "reused, not rebuilt"


def test_many_empty_sources_get_one_note(tmp_path: Path, model_loads: list[str]) -> None:
    sources = _sources(tmp_path / "src", {**{f"e{i}.txt": "" for i in range(5)},
                                          "real.txt": "Myoclonus is a jerk."})
    said: list[str] = []
    ready_index(Settings.resolve(sources, tmp_path / "index"), notify=said.append)
    assert [n for n in said if "note:" in n] == [
        "note: 5 sources hold no text (e0.txt, e1.txt, e2.txt, …); nothing from them is indexed"]


def test_all_empty_sources_are_refused_before_loading_the_model(tmp_path: Path,
                                                                model_loads: list[str]) -> None:
    sources = _sources(tmp_path / "src", {"empty.txt": "", "blank.md": "  \n "})
    with pytest.raises(MyoqaError, match="hold no text to index"):
        ready_index(Settings.resolve(sources, tmp_path / "index"), notify=lambda _m: None)
    assert model_loads == []


def test_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src", {"small.txt": "Myoclonus."})
    line = b"Myoclonus is a brief involuntary twitching of a muscle or a group of muscles.\n"
    with open(sources / "huge.txt", "wb") as fh:
        fh.writelines(line for _ in range(50 * 2**20 // len(line) + 1))
    tracemalloc.start()
    try:
        for read in (corpus.source_hashes, corpus.load_sources):
            with pytest.raises(MyoqaError, match=r"huge.txt is 50 MiB, over the 16 MiB limit"):
                read(sources)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes held while refusing a 50 MiB file"
    proc = run_cli("index", env=_env(tmp_path / "index", sources))
    _one_line_error(proc, 1, "huge.txt", "16 MiB limit", "split it")


def test_file_longer_than_its_reported_size_is_cut_off_at_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _sources(tmp_path / "src", {"grows.txt": "word " * 300_000})
    real_fstat = os.fstat
    monkeypatch.setattr(corpus.os, "fstat", lambda fd: os.stat_result(
        (*real_fstat(fd)[:6], 0, *real_fstat(fd)[7:])))
    monkeypatch.setattr(corpus, "MAX_SOURCE_BYTES", 2**20)
    with pytest.raises(MyoqaError, match="grows.txt is 1 MiB, over the 1 MiB limit"):
        corpus.load_sources(sources)


def test_corpus_over_the_total_limit_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _sources(tmp_path / "src", {f"{i}.txt": "myoclonus " * 30_000 for i in range(4)})
    monkeypatch.setattr(corpus, "MAX_CORPUS_BYTES", 2**20)
    with pytest.raises(MyoqaError, match=r"more than 1 MiB of text, the limit for one index"):
        corpus.source_hashes(sources)


def test_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src", {"a.txt": "Alpha.", "sub/b.txt": "Beta."})
    (sources / "sub" / "loop").symlink_to("..")
    (sources / "up").symlink_to(".")
    assert [name for name, _ in corpus.source_paths(sources)] == ["a.txt", "sub/b.txt"]
    (sources / "self.txt").symlink_to("self.txt")
    with pytest.raises(MyoqaError, match="self.txt: Too many levels of symbolic links"):
        corpus.load_sources(sources)
    (sources / "self.txt").unlink()
    (sources / "gone.txt").symlink_to("nowhere.txt")
    with pytest.raises(MyoqaError, match=r"gone.txt: No such file or directory \(fix or remove"):
        corpus.source_hashes(sources)


def test_fifo_named_like_a_source_is_refused_not_waited_on(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "src", {"a.txt": "Alpha."})
    os.mkfifo(sources / "pipe.txt")
    proc = run_cli("index", env=_env(tmp_path / "index", sources), timeout=120)
    _one_line_error(proc, 1, "pipe.txt is not a regular file")


def test_same_file_names_in_different_folders_are_indexed_and_cited_apart(
        tmp_path: Path, model_loads: list[str]) -> None:
    sources = _sources(tmp_path / "src", {
        "adults/notes.txt": "Propofol infusion syndrome can cause myoclonic jerks in adults.",
        "children/notes.txt": "Opsoclonus myoclonus syndrome affects toddlers and children.",
        "notes.txt": "General remarks about sleep starts."})
    index = ready_index(Settings.resolve(sources, tmp_path / "index"), notify=lambda _m: None)
    assert sorted(index.texts) == ["adults/notes.txt", "children/notes.txt", "notes.txt"]
    answer = Searcher(index, FakeEncoder).search("myoclonic jerks syndrome", "bm25", 3)
    cited = {r.source: r.text for r in answer.results}
    assert cited["adults/notes.txt"].startswith("Propofol")
    assert cited["children/notes.txt"].startswith("Opsoclonus")


def test_file_changed_after_indexing_is_noticed_and_reindexed(seed_settings: Settings,
                                                              tmp_path: Path) -> None:
    sources = _writable_copy(SEEDS, tmp_path / "src")
    index_dir = _copy_index(seed_settings, tmp_path)
    with open(sources / PROSE, "a", encoding="utf-8") as fh:
        fh.write("\n\nZebras with myoclonus have stripe twitch syndrome.\n")
    proc = run_cli("ask", "stripe twitch zebras", "--json", "-k", "1",
                   env=_env(index_dir, sources))
    assert proc.returncode == 0, proc.stderr
    assert f"sources changed ({PROSE})" in proc.stderr
    top = json.loads(proc.stdout)["passages"][0]
    assert "stripe twitch syndrome" in top["text"]
    assert top["text"] == (sources / PROSE).read_text(encoding="utf-8")[top["start"]:top["end"]]


def test_file_changed_during_a_build_gives_a_consistent_index_then_a_rebuild(
        tmp_path: Path, model_loads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk of a muscle."})
    settings = Settings.resolve(sources, tmp_path / "index")
    real_encode = FakeEncoder.encode

    def encode_while_the_file_changes(self: FakeEncoder, texts: list[str],
                                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        (sources / "a.txt").write_text("Rewritten: hiccups are myoclonus of the diaphragm.",
                                       encoding="utf-8")
        return real_encode(self, texts, progress)

    monkeypatch.setattr(FakeEncoder, "encode", encode_while_the_file_changes)
    first = build_index(settings, store.BuildParams(model=settings.model), notify=lambda _m: None)
    monkeypatch.setattr(FakeEncoder, "encode", real_encode)
    assert first.texts["a.txt"] == "Myoclonus is a sudden jerk of a muscle."
    assert first.manifest["sources"][0]["sha256"] == corpus.fingerprint(
        b"Myoclonus is a sudden jerk of a muscle.")
    said: list[str] = []
    second = ready_index(settings, notify=said.append)
    assert said == [f"sources changed (a.txt); building the index in {settings.index_dir}"]
    assert second.texts["a.txt"].startswith("Rewritten")


# Index -----------------------------------------------------------------------------------------

def _flat(rows: int, dim: int) -> faiss.Index:
    flat = faiss.IndexFlatIP(dim)
    flat.add(np.ones((rows, dim), dtype=np.float32))
    return flat


def _edit_manifest(build: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    change(manifest)
    (build / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


DAMAGE: dict[str, tuple[Callable[[Path, Path], object], str]] = {
    "faiss truncated": (lambda d, b: (b / "passages.faiss").write_bytes(
        (b / "passages.faiss").read_bytes()[:1000]), "passages.faiss is damaged"),
    "faiss empty": (lambda d, b: (b / "passages.faiss").write_bytes(b""),
                    "passages.faiss is damaged"),
    "faiss garbage": (lambda d, b: (b / "passages.faiss").write_bytes(os.urandom(5000)),
                      "passages.faiss is damaged"),
    "faiss fewer rows than passages": (lambda d, b: faiss.write_index(
        _flat(3, DIM), str(b / "passages.faiss")), "holds 3 vectors of dimension 384"),
    "faiss of another dimension": (lambda d, b: faiss.write_index(
        _flat(store.load(d).passage_vectors.ntotal, 128), str(b / "passages.faiss")),
        "of dimension 128, expected"),
    "manifest says another dimension": (lambda d, b: _edit_manifest(
        b, lambda m: m["model"].update(dimension=512)), "of dimension 384, expected"),
    "manifest not json": (lambda d, b: (b / "manifest.json").write_text("{not json"),
                          "manifest.json is damaged"),
    "manifest nested too deep": (lambda d, b: (b / "manifest.json").write_text(
        "[" * 100_000 + "]" * 100_000), "manifest.json is damaged"),
    "manifest not an object": (lambda d, b: (b / "manifest.json").write_text("[1, 2]"),
                               "manifest.json is not a myoqa manifest"),
    "manifest model is text": (lambda d, b: _edit_manifest(b, lambda m: m.update(model="x")),
                               "manifest.json is not a well-formed"),
    "manifest dimension is text": (lambda d, b: _edit_manifest(
        b, lambda m: m["model"].update(dimension="big")), "manifest.json is not a well-formed"),
    "manifest without analyzer": (lambda d, b: _edit_manifest(b, lambda m: m.pop("analyzer")),
                                  "manifest.json is not a well-formed"),
    "manifest sources not a list": (lambda d, b: _edit_manifest(
        b, lambda m: m.update(sources="x")), "manifest.json is not a well-formed"),
    "manifest of an older format": (lambda d, b: _edit_manifest(
        b, lambda m: m.update(format_version=store.FORMAT_VERSION - 1)), "has an old format"),
    "texts not matching passages": (lambda d, b: (b / "sources.json").write_text(
        json.dumps({"names": [FLUTTER, PROSE], "texts": ["short", "short"]})),
        "do not match their sources"),
    "CURRENT names a missing build": (lambda d, b: (d / "CURRENT").write_text("build-gone\n"),
                                      "names a missing build 'build-gone'"),
    "CURRENT not UTF-8": (lambda d, b: (d / "CURRENT").write_bytes(b"\xff\xfe"),
                          "cannot read"),
    "CURRENT empty": (lambda d, b: (d / "CURRENT").write_text(""), "names a missing build ''"),
    "query encoder missing": (lambda d, b: shutil.rmtree(b / "encoder"),
                              "query encoder file"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_index_is_named_then_rebuilt(seed_settings: Settings, tmp_path: Path,
                                             model_loads: list[str], damage: str) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    before = store.current_build(index_dir)
    apply, words = DAMAGE[damage]
    apply(index_dir, before)
    if damage != "query encoder missing":
        with pytest.raises(store.IndexProblem) as info:
            store.load(index_dir)
        assert words in str(info.value) and "myoqa index" in str(info.value)
    said: list[str] = []
    fresh = ready_index(Settings.resolve(SEEDS, index_dir), notify=said.append)
    assert len(said) == 1 and words in said[0], said
    assert said[0].endswith(f"; building the index in {index_dir}")
    assert model_loads == ["all-MiniLM-L6-v2"] and fresh.path != before
    assert store.load(index_dir).path == fresh.path and not _leftovers(index_dir)


def test_index_of_a_newer_format_is_refused_not_rebuilt(seed_settings: Settings, tmp_path: Path,
                                                        model_loads: list[str]) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    build = store.current_build(index_dir)
    _edit_manifest(build, lambda m: m.update(format_version=store.FORMAT_VERSION + 1))
    with pytest.raises(MyoqaError, match="newer than this myoqa reads") as info:
        ready_index(Settings.resolve(SEEDS, index_dir), notify=lambda _m: None)
    assert not isinstance(info.value, store.IndexProblem) and "upgrade myoqa" in str(info.value)
    assert model_loads == [] and _builds(index_dir) == {build.name}
    proc = run_cli("ask", "myoclonus", env=_env(index_dir))
    _one_line_error(proc, 1, f"format {store.FORMAT_VERSION + 1}", "upgrade myoqa", REBUILD)


def test_missing_index_says_what_to_run(tmp_path: Path) -> None:
    proc = run_cli("info", env=_env(tmp_path / "none"))
    _one_line_error(proc, 1, "no index in", "run `myoqa index`")


def test_index_built_with_another_model_is_rebuilt(seed_settings: Settings, tmp_path: Path,
                                                   model_loads: list[str]) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    _edit_manifest(store.current_build(index_dir),
                   lambda m: m["model"].update(name="paraphrase-multilingual-MiniLM-L12-v2"))
    said: list[str] = []
    ready_index(Settings.resolve(SEEDS, index_dir), notify=said.append)
    assert said == [f"settings changed (model); building the index in {index_dir}"]
    assert store.read_manifest(index_dir)["model"]["name"] == "all-MiniLM-L6-v2"


ENCODER_DAMAGE: dict[str, tuple[str, Callable[[Path], object]]] = {
    "graph truncated": ("damaged (InvalidProtobuf)", lambda e: (e / "model.onnx").write_bytes(
        (e / "model.onnx").read_bytes()[:100])),
    "weights truncated": ("damaged (Fail)", lambda e: (e / "model.onnx.data").write_bytes(
        (e / "model.onnx.data").read_bytes()[:1000])),
    "config not json": ("damaged (JSONDecodeError)",
                        lambda e: (e / "onnx_encoder.json").write_text("{")),
    "tokenizer garbage": ("damaged (Exception)", lambda e: (e / "tokenizer.json").write_text("{}")),
    "config says another dimension": ("makes vectors of dimension 512, the index holds 384",
                                      lambda e: (e / "onnx_encoder.json").write_text(json.dumps(
                                          {**json.loads((e / "onnx_encoder.json").read_text()),
                                           "dimension": 512}))),
}


@pytest.mark.parametrize("damage", ENCODER_DAMAGE)
def test_damaged_query_encoder_is_named_with_the_fix(seed_settings: Settings, tmp_path: Path,
                                                     damage: str) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    words, apply = ENCODER_DAMAGE[damage]
    apply(store.current_build(index_dir) / "encoder")
    with pytest.raises(store.IndexProblem) as info:
        query_encoder_factory(store.load(index_dir))()
    assert words in str(info.value) and "encoder" in str(info.value)
    assert str(info.value).endswith(f"(run `{REBUILD}`)")
    if damage == "graph truncated":
        proc = run_cli("ask", "myoclonus", "--mode", "dense", env=_env(index_dir))
        _one_line_error(proc, 1, "query encoder in", REBUILD)
        proc = run_cli("ask", "myoclonus", "--mode", "bm25", env=_env(index_dir))
        assert proc.returncode == 0, "BM25 needs no query encoder"


def _run_unprivileged(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*unprivileged(), sys.executable, "-m", "myoqa", *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
                          stdin=subprocess.DEVNULL)


def test_read_only_index_still_answers(seed_settings: Settings, tmp_path: Path,
                                       read_only: Callable[[Path], None]) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    read_only(index_dir)
    proc = _run_unprivileged("ask", "what is diaphragmatic flutter?", "--json", "-k", "2",
                             env=_env(index_dir))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passages"][0]["source"] == FLUTTER


def test_stale_read_only_index_is_refused_naming_the_directory(
        seed_settings: Settings, tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    sources = _writable_copy(SEEDS, tmp_path / "src")
    (sources / "new.txt").write_text("Myoclonus after hypoxia is Lance-Adams syndrome.")
    index_dir = _copy_index(seed_settings, tmp_path)
    before = sorted(p.name for p in index_dir.iterdir())
    read_only(index_dir)
    proc = _run_unprivileged("ask", "myoclonus", env=_env(index_dir, sources))
    line = _one_line_error(proc, 1, f"{index_dir} is not writable", "--index-dir")
    assert "previous index is unchanged" in line
    assert "sources changed (new.txt)" in proc.stderr
    assert sorted(p.name for p in index_dir.iterdir()) == before


def _failing(kind: str, monkeypatch: pytest.MonkeyPatch, full: BinaryIO) -> str:
    """Make one write of a build fail as a full disk (or a dying disk) would; the expected words."""
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if kind == "json":
        real = store._write_json

        def write_json(path: Path, data: object) -> None:
            if path.name == "manifest.json":
                raise enospc
            real(path, data)

        monkeypatch.setattr(store, "_write_json", write_json)
    elif kind == "faiss to /dev/full":
        real_writer = faiss.PyCallbackIOWriter
        monkeypatch.setattr(faiss, "PyCallbackIOWriter", lambda _w, *a: real_writer(full.write, *a))
    elif kind == "fsync":
        def fsync(_fd: int) -> None:
            raise enospc

        monkeypatch.setattr(os, "fsync", fsync)
    elif kind == "encoder export":
        def export_onnx(_model: str, out: Path) -> None:
            out.mkdir()
            (out / "model.onnx.data").write_bytes(b"\0" * 1000)
            raise enospc

        monkeypatch.setattr(onnx_encoder, "export_onnx", export_onnx)
    else:
        def replace(_src: object, _dst: object) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(os, "replace", replace)
        return "cannot write the index in"
    return "no space left on the device"


@pytest.mark.parametrize("kind", ["json", "faiss to /dev/full", "fsync", "encoder export",
                                  "switching CURRENT"])
def test_failed_write_during_a_build_keeps_the_previous_index(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    good = store.load(index_dir)
    with open("/dev/full", "wb", buffering=0) as full:
        words = _failing(kind, monkeypatch, full)
        with pytest.raises(MyoqaError) as info:
            build_index(Settings.resolve(SEEDS, index_dir),
                        store.BuildParams(model="all-MiniLM-L6-v2"), notify=lambda _m: None)
        monkeypatch.undo()
    assert words in str(info.value) and "the previous index is unchanged" in str(info.value)
    assert store.current_build(index_dir) == good.path
    assert len(store.load(index_dir).passages) == len(good.passages)
    assert _builds(index_dir) == {good.path.name} and not _leftovers(index_dir)


def test_interrupt_while_writing_removes_the_partial_build(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    before = store.current_build(index_dir)

    def export_onnx(_model: str, out: Path) -> None:
        out.mkdir()
        (out / "model.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_encoder, "export_onnx", export_onnx)
    with pytest.raises(KeyboardInterrupt):
        build_index(Settings.resolve(SEEDS, index_dir), store.BuildParams(model="all-MiniLM-L6-v2"))
    assert store.current_build(index_dir) == before and _builds(index_dir) == {before.name}
    assert not _leftovers(index_dir)


def test_interrupt_while_switching_waits_for_the_switch(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    before = store.current_build(index_dir)
    real_rename = os.rename

    def rename_under_ctrl_c(src: Path, dst: Path) -> None:
        os.kill(os.getpid(), 2)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_under_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        build_index(Settings.resolve(SEEDS, index_dir), store.BuildParams(model="all-MiniLM-L6-v2"))
    monkeypatch.undo()
    after = store.current_build(index_dir)
    assert after != before and store.load(index_dir).path == after
    assert _builds(index_dir) == {before.name, after.name} and not _leftovers(index_dir)


def test_build_removes_what_killed_builds_left_and_keeps_two(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str]) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    before = store.current_build(index_dir)
    shutil.copytree(before, index_dir / ".tmp-killed")
    shutil.copytree(before, index_dir / "build-orphan-renamed-but-never-current")
    (index_dir / ".CURRENT-killed").write_text("build-orphan-renamed-but-never-current\n")
    settings = Settings.resolve(SEEDS, index_dir)
    first = build_index(settings, store.BuildParams(model="all-MiniLM-L6-v2"))
    assert _builds(index_dir) == {before.name, first.path.name} and not _leftovers(index_dir)
    second = build_index(settings, store.BuildParams(model="all-MiniLM-L6-v2"))
    assert _builds(index_dir) == {first.path.name, second.path.name}


# Concurrency (in one process; the process-level checks are in test_faults.py) ------------------

def test_reader_whose_build_is_pruned_retries_on_the_new_one(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    old = store.current_build(index_dir)
    shutil.copytree(old, index_dir / "build-next")
    real_load, calls = store.load, []

    def load_racing_two_rebuilds(directory: Path) -> store.Index:
        calls.append(directory)
        if len(calls) == 1:  # two rebuilds finish while this reader loads: its build is pruned
            (index_dir / "CURRENT").write_text("build-next\n")
            shutil.rmtree(old)
            raise store.IndexProblem(f"index file {old / 'sources.json'} is missing", REBUILD)
        return real_load(directory)

    monkeypatch.setattr(store, "load", load_racing_two_rebuilds)
    said: list[str] = []
    index = ready_index(Settings.resolve(SEEDS, index_dir), notify=said.append)
    assert index.path.name == "build-next" and said == [] and model_loads == []


def test_builds_take_turns_and_a_waiting_build_uses_the_one_just_made(
        tmp_path: Path, model_loads: list[str]) -> None:
    sources = _sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk."})
    settings = Settings.resolve(sources, tmp_path / "index")
    ready_index(settings, notify=lambda _m: None)
    (sources / "a.txt").write_text("Myoclonus is a sudden, brief jerk.")
    holding, decided, events = threading.Event(), threading.Event(), []

    def other_process_builds() -> None:
        with store.build_lock(settings.index_dir):
            holding.set()
            decided.wait()
            events.append("other builds")
            built = store.assemble(corpus.load_sources(sources),
                                   store.BuildParams(model=settings.model), FakeEncoder())
            store.save(built, settings.index_dir)
            events.append("other done")

    other = threading.Thread(target=other_process_builds)
    other.start()
    holding.wait()
    said: list[str] = []
    index = ready_index(settings, notify=lambda m: (said.append(m), decided.set()))
    events.append("this one done")
    other.join()
    assert events == ["other builds", "other done", "this one done"]
    assert said == [f"sources changed (a.txt); building the index in {settings.index_dir}"]
    assert model_loads == ["all-MiniLM-L6-v2"], "only the first build loaded the model"
    assert index.texts["a.txt"] == "Myoclonus is a sudden, brief jerk."
    assert index.path == store.current_build(settings.index_dir)


# Properties ------------------------------------------------------------------------------------

def _joined(pieces: list[str], max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=max_size).map("".join)


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=2000) | _joined(
    [*"ab .!?\n\t…\"')", "\n\n", "Dr. ", "e.g. ", "word ", "Jerks. "], 400)


@hsettings(max_examples=300, deadline=None)
@given(ANY_TEXT, st.sampled_from([ChunkParams(), ChunkParams(
    window_words=7, window_stride=3, prose_max_words=9, span_words=3, span_stride=2,
    whole_max_words=5, keyword_words_per_sentence=4)]))
def test_chunking_covers_any_text_with_exact_offsets(text: str, params: ChunkParams) -> None:
    passages, spans = chunk("x", text, params)
    for unit in passages + spans:
        assert unit.source == "x" and 0 <= unit.start < unit.end <= len(text)
        assert not text[unit.start].isspace() and not text[unit.end - 1].isspace()
    covered = np.zeros(len(text), dtype=bool)
    for p in passages:
        covered[p.start:p.end] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


ANY_QUESTION = st.text(st.characters(codec=None, exclude_categories=()), max_size=300) | _joined(
    ["myoclonus ", "jerk", "?", " ", "\x00", "\x1b[", "[b]", "肌", "🙂", "\u202e", "\udcff"],
    60) | st.just("treat myoclonus " * 200)


@hsettings(max_examples=150, deadline=None)
@given(question=ANY_QUESTION, mode=st.sampled_from(MODES), k=st.integers(1, 12))
def test_search_answers_any_question_or_says_it_is_empty(searcher: Searcher, question: str,
                                                         mode: str, k: int) -> None:
    try:
        answer = searcher.search(question, mode, k)
    except UsageError as exc:
        assert not "".join(ch for ch in question if ch.isprintable()).strip()
        assert str(exc).startswith("the question is empty")
        return
    _check_answer(searcher, answer, k)
    truncated = len(check_request(question, mode, k)) > MAX_QUESTION_CHARS
    assert any("truncated" in note for note in answer.notes) == truncated


# Security --------------------------------------------------------------------------------------

def test_no_code_path_can_unpickle() -> None:
    """No pickle-capable loader anywhere, and every np.load refuses pickles explicitly."""
    banned_modules = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}
    for path in (PROJECT_ROOT / "src").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not banned_modules & {n.split(".")[0] for n in names}, (path, names)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = ast.unparse(node.func)
                assert name not in ("torch.load", "eval", "exec", "np.loads"), (path, name)
                keywords = {k.arg: k.value for k in node.keywords}
                if name in ("np.load", "numpy.load"):
                    assert isinstance(keywords.get("allow_pickle"), ast.Constant), (path, name)
                    assert keywords["allow_pickle"].value is False, path
                assert not (isinstance(keywords.get("trust_remote_code"), ast.Constant)
                            and keywords["trust_remote_code"].value), path


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("target", ["passages.npy", "span_vectors.npy", "passages.faiss",
                                    "manifest.json"])
def test_pickled_payload_in_the_index_is_refused_and_never_runs(seed_settings: Settings,
                                                               tmp_path: Path,
                                                               target: str) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    build = store.current_build(index_dir)
    if target.endswith(".npy"):
        np.save(build / target, np.array([_Payload()], dtype=object), allow_pickle=True)
    else:
        (build / target).write_bytes(pickle.dumps(_Payload()))
    load = "import sys, pathlib; from myoqa import index; index.load(pathlib.Path(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", load, str(index_dir)], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "IndexProblem" in proc.stderr and target in proc.stderr
    assert not (tmp_path / "PWNED").exists()


def test_source_text_and_names_reach_the_terminal_inert(tmp_path: Path,
                                                        model_loads: list[str]) -> None:
    hostile = ("Myoclonus \x1b[2J\x1b]0;owned\x07 clears screens \x9b31m and [red]markup[/red] "
               "\u202ereversed\u202c text.\n")
    sources = _sources(tmp_path / "src", {"e\x1b[31mvil\u202e.txt": hostile,
                                          "plain.txt": "Myoclonus is a jerk."})
    index_dir = tmp_path / "index"
    ready_index(Settings.resolve(sources, index_dir), notify=lambda _m: None)
    env = _env(index_dir, sources)
    for args in (["ask", "myoclonus markup", "--mode", "bm25"],
                 ["ask", "myoclonus markup", "--mode", "bm25", "--json"], ["info"],
                 ["info", "--json"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert not CONTROLS & set(proc.stdout + proc.stderr), (args, proc.stdout)
    text_out = run_cli("ask", "markup", "--mode", "bm25", "-k", "1", env=env).stdout
    assert "[red]markup[/red]" in text_out and "e\\x1b[31mvil\\u202e.txt" in text_out
    passage = json.loads(run_cli("ask", "markup", "--mode", "bm25", "-k", "1", "--json",
                                 env=env).stdout)["passages"][0]
    assert passage["text"] == hostile.strip() and passage["source"] == "e\x1b[31mvil\u202e.txt"
    (sources / "plain.txt").write_bytes(b"\xff")
    proc = run_cli("ask", "x", env={**env, "MYOQA_SOURCES": str(sources)})
    _one_line_error(proc, 1, "plain.txt is not UTF-8")
    assert not CONTROLS & set(proc.stderr)
