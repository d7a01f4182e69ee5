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
import re
import shutil
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from helpers import (
    CONTROLS,
    FLUTTER,
    PROSE,
    REBUILD,
    SEEDS,
    FakeEncoder,
    builds,
    check_answer,
    cli_env,
    copy_index,
    leftovers,
    one_line_error,
    run_cli,
    unprivileged,
    writable_copy,
    write_sources,
)
from myoqa import corpus, onnx_encoder
from myoqa.chunking import ChunkParams, chunk
from myoqa.config import PROJECT_ROOT, Settings
from myoqa.errors import MyoqaError, UsageError
from myoqa.index import BuildParams, Index, IndexProblem, encoders, opener, store
from myoqa.index.build import EncoderInfo, build
from myoqa.index.opener import build_index, ready_index
from myoqa.search import MAX_K, MAX_QUESTION_CHARS, MODES, Searcher, check_request

# Questions -----------------------------------------------------------------------------------

ODD_QUESTIONS = [
    "x", "?", "!!! ... ???", "🙂🙂", "👍🏽", "миоклонус лечение", "肌阵挛的治疗",
    "myoclonus миоклонус 肌阵挛 μυόκλονος", "a\x00b", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07",
    "[bold]x[/]", "[link=https://example.org]click[/link]", "\u202eevil", "e\u0301\u0301\u0301",
    "\udcff myoclonus", "\t\nmyoclonus\r\n", "a" * 300, "ﷺ" * 50, "\u200b\u200bjerks",
    "a\x00b\x1b[31m",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("question", ODD_QUESTIONS, ids=range(len(ODD_QUESTIONS)))
def test_odd_questions_get_well_formed_answers(searcher: Searcher, question: str,
                                               mode: str) -> None:
    answer = searcher.search(question, mode, 5)
    check_answer(searcher, answer, 5)
    if mode != "bm25":  # the model's nearest passages: always k (BM25 may find no word)
        assert len(answer.results) == 5


@pytest.mark.parametrize("question", ["", " ", "   \n\t", "\n\t \r", "\x00", "\x1b", "\u200b",
                                      "\u202e"])
def test_blank_questions_are_usage_errors(searcher: Searcher, question: str) -> None:
    with pytest.raises(UsageError, match="empty"):
        searcher.search(question, "hybrid", 5)


@pytest.mark.parametrize("mode,k,message", [
    ("fuzzy", 5, "unknown mode 'fuzzy'"),
    *[("hybrid", k, f"k must be between 1 and {MAX_K}, not {k}") for k in (0, -3, 10**9)]])
def test_bad_mode_or_k_is_a_usage_error_naming_it(searcher: Searcher, mode: str, k: int,
                                                  message: str) -> None:
    """The search itself refuses them, whatever view asked (the CLI checks its flags first)."""
    with pytest.raises(UsageError, match=re.escape(message)):
        searcher.search("ok?", mode, k)


@pytest.mark.parametrize("mode", MODES)
def test_100000_character_question_is_truncated_with_a_note_and_answered(searcher: Searcher,
                                                                         mode: str) -> None:
    answer = searcher.search("which drugs treat myoclonus " * 4000, mode, 3)
    assert len(answer.question) > 100_000 and len(answer.searched) <= MAX_QUESTION_CHARS
    assert answer.notes and "truncated" in answer.notes[0]
    check_answer(searcher, answer, 3)
    assert len(answer.results) == 3


def test_cli_answers_a_100000_character_question_with_a_note(seed_settings: Settings) -> None:
    proc = run_cli("ask", "myoclonus treatment " * 5000, "-k", "2",
                   env=cli_env(seed_settings.index_dir))
    assert proc.returncode == 0, proc.stderr
    assert "myoqa: note: question truncated" in proc.stderr
    assert proc.stdout.startswith("1. ") and "\n2. " in proc.stdout


def test_cli_question_in_invalid_utf8_bytes_is_answered(seed_settings: Settings) -> None:
    env = {**os.environ, **cli_env(seed_settings.index_dir)}
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
                   env=cli_env(seed_settings.index_dir))
    assert proc.returncode == 0, proc.stderr
    assert not CONTROLS & set(proc.stdout + proc.stderr)
    if as_json:
        assert json.loads(proc.stdout)["question"] == question


def test_non_utf8_terminal_gets_replacement_characters(seed_settings: Settings) -> None:
    proc = run_cli("ask", "миоклонус", "-k", "2", env={**cli_env(seed_settings.index_dir),
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
    proc = run_cli(*args, env=cli_env(tmp_path / "no-index", tmp_path / "no-sources"))
    line = one_line_error(proc, 2)
    assert line.endswith(")") and proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert not (tmp_path / "no-index").exists()


# Sources ---------------------------------------------------------------------------------------

def test_missing_and_empty_source_directories(tmp_path: Path) -> None:
    proc = run_cli("index", env=cli_env(tmp_path / "index", tmp_path / "missing"))
    one_line_error(proc, 1, "does not exist", "--sources")
    (tmp_path / "empty").mkdir()
    proc = run_cli("index", env=cli_env(tmp_path / "index", tmp_path / "empty"))
    one_line_error(proc, 1, "no .txt, .md, .html, .pdf or .docx files")
    proc = run_cli("index", env=cli_env(tmp_path / "index", SEEDS / FLUTTER))
    one_line_error(proc, 1, "is not a directory")


@pytest.mark.parametrize("payload,words", [
    (b"caf\xe9 au lait", "not UTF-8"), (b"\x00\x01binary\x00", "looks binary"),
    ("Myoclonus.".encode("utf-16"), "UTF-16"), (b"\x89PNG\r\n\x1a\n\x00\x00", "looks binary")])
def test_binary_and_non_utf8_sources_are_named(tmp_path: Path, payload: bytes,
                                               words: str) -> None:
    sources = write_sources(tmp_path / "src", {"good.txt": "Myoclonus is a twitch.", "bad.txt": payload})
    proc = run_cli("index", env=cli_env(tmp_path / "index", sources))
    one_line_error(proc, 1, "bad.txt", words)
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_non_utf8_file_name_is_named(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src", {"good.txt": "Myoclonus is a twitch."})
    with open(os.fsencode(sources) + b"/caf\xe9.txt", "w") as fh:
        fh.write("text")
    with pytest.raises(MyoqaError, match=r"caf\\udce9\.txt' is not valid UTF-8 \(rename"):
        corpus.load_sources(sources)


def test_utf8_byte_order_mark_is_not_part_of_the_text(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src", {"bom.txt": "\ufeffMyoclonus.".encode()})
    assert corpus.load_sources(sources)[0].text == "Myoclonus."


def test_empty_sources_are_skipped_with_a_note(tmp_path: Path, model_loads: list[str]) -> None:
    sources = write_sources(tmp_path / "src", {"empty.txt": "", "blank.md": " \n\t\n",
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
    sources = write_sources(tmp_path / "src", {**{f"e{i}.txt": "" for i in range(5)},
                                          "real.txt": "Myoclonus is a jerk."})
    said: list[str] = []
    ready_index(Settings.resolve(sources, tmp_path / "index"), notify=said.append)
    assert [n for n in said if "note:" in n] == [
        "note: 5 sources hold no text (e0.txt, e1.txt, e2.txt, …); nothing from them is indexed"]


def test_all_empty_sources_are_refused_before_loading_the_model(tmp_path: Path,
                                                                model_loads: list[str]) -> None:
    sources = write_sources(tmp_path / "src", {"empty.txt": "", "blank.md": "  \n "})
    with pytest.raises(MyoqaError, match="hold no text to index"):
        ready_index(Settings.resolve(sources, tmp_path / "index"), notify=lambda _m: None)
    assert model_loads == []


def test_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src", {"small.txt": "Myoclonus."})
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
    proc = run_cli("index", env=cli_env(tmp_path / "index", sources))
    one_line_error(proc, 1, "huge.txt", "16 MiB limit", "split it")


def test_file_longer_than_its_reported_size_is_cut_off_at_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = write_sources(tmp_path / "src", {"grows.txt": "word " * 300_000})
    real_fstat = os.fstat
    monkeypatch.setattr(corpus.os, "fstat", lambda fd: os.stat_result(
        (*real_fstat(fd)[:6], 0, *real_fstat(fd)[7:])))
    monkeypatch.setattr(corpus, "MAX_SOURCE_BYTES", 2**20)
    with pytest.raises(MyoqaError, match="grows.txt is 1 MiB, over the 1 MiB limit"):
        corpus.load_sources(sources)


def test_corpus_over_the_total_limit_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sources = write_sources(tmp_path / "src", {f"{i}.txt": "myoclonus " * 30_000 for i in range(4)})
    monkeypatch.setattr(corpus, "MAX_CORPUS_BYTES", 2**20)
    with pytest.raises(MyoqaError, match=r"more than 1 MiB of text, the limit for one index"):
        corpus.source_hashes(sources)


def test_sources_a_thousand_folders_deep_are_found(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src", {"top.txt": "Hiccups are myoclonus."})
    folder = str(sources)
    for _ in range(1000):  # one level at a time: a path this long is refused in one call
        folder = os.path.join(folder, "d")
        os.mkdir(folder)
    with open(os.path.join(folder, "a.txt"), "w", encoding="utf-8") as fh:
        fh.write("Myoclonus is a jerk.")
    try:
        assert [name for name, _ in corpus.source_paths(sources)] == ["d/" * 1000 + "a.txt",
                                                                       "top.txt"]
    finally:  # bottom up: pytest's own recursive clean-up of old temporary folders would overflow
        os.remove(os.path.join(folder, "a.txt"))
        while folder != str(sources):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def test_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    """Links are not followed inside the sources folder, looping or broken ones included (each
    is named as skipped); followed out of it (--follow-links), a broken or looping one is an
    error naming it."""
    sources = write_sources(tmp_path / "src", {"a.txt": "Alpha.", "sub/b.txt": "Beta."})
    (sources / "sub" / "loop").symlink_to("..")
    (sources / "up").symlink_to(".")
    (sources / "self.txt").symlink_to("self.txt")
    (sources / "gone.txt").symlink_to("nowhere.txt")
    for follow in (False, True):
        paths, skipped = corpus.scan(sources, follow)
        assert [name for name, _ in paths] == ["a.txt", "sub/b.txt"]
        assert [s.name for s in skipped] == ["gone.txt", "self.txt", "sub/loop", "up"]
    (tmp_path / "loop.txt").symlink_to("loop.txt")
    (sources / "out.txt").symlink_to(tmp_path / "loop.txt")
    assert "out.txt" in {s.name for s in corpus.survey(sources).skipped}
    with pytest.raises(MyoqaError, match="out.txt: Too many levels of symbolic links"):
        corpus.load_sources(sources, follow_links=True)
    (sources / "out.txt").unlink()
    (sources / "away.txt").symlink_to(tmp_path / "nowhere.txt")
    with pytest.raises(MyoqaError, match=r"away.txt: No such file or directory \(fix or remove"):
        corpus.source_hashes(sources, follow_links=True)


def test_fifo_named_like_a_source_is_refused_not_waited_on(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src", {"a.txt": "Alpha."})
    os.mkfifo(sources / "pipe.txt")
    proc = run_cli("index", env=cli_env(tmp_path / "index", sources), timeout=120)
    one_line_error(proc, 1, "pipe.txt is not a regular file")


def test_same_file_names_in_different_folders_are_indexed_and_cited_apart(
        tmp_path: Path, model_loads: list[str]) -> None:
    sources = write_sources(tmp_path / "src", {
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
    sources = writable_copy(SEEDS, tmp_path / "src")
    index_dir = copy_index(seed_settings, tmp_path)
    with open(sources / PROSE, "a", encoding="utf-8") as fh:
        fh.write("\n\nZebras with myoclonus have stripe twitch syndrome.\n")
    proc = run_cli("ask", "stripe twitch zebras", "--json", "-k", "1",
                   env=cli_env(index_dir, sources))
    assert proc.returncode == 0, proc.stderr
    assert f"sources changed ({PROSE})" in proc.stderr
    top = json.loads(proc.stdout)["passages"][0]
    assert "stripe twitch syndrome" in top["text"]
    assert top["text"] == (sources / PROSE).read_text(encoding="utf-8")[top["start"]:top["end"]]


def _forge_stored_text(index_dir: Path) -> str:
    """Overwrite a word of the stored source text in the current build, keeping its size (so
    the size check passes); the forged text."""
    stored = store.current_build(index_dir) / "sources.json"
    data = stored.read_bytes()
    forged = b"X" * len(b"diaphragmatic")
    assert b"diaphragmatic flutter" in data
    stored.write_bytes(data.replace(b"diaphragmatic flutter", forged + b" flutter"))
    assert stored.stat().st_size == len(data)
    return forged.decode() + " flutter"


def test_same_size_edit_of_the_stored_text_is_never_shown(seed_settings: Settings,
                                                          tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    forged = _forge_stored_text(index_dir)
    proc = run_cli("ask", "diaphragmatic flutter", "--json", "-k", "3", env=cli_env(index_dir))
    assert proc.returncode == 0, proc.stderr
    assert "sources.json does not match its recorded hash; building the index" in proc.stderr
    source = (SEEDS / FLUTTER).read_text(encoding="utf-8")
    for passage in json.loads(proc.stdout)["passages"]:
        assert forged not in passage["text"]
        if passage["source"] == FLUTTER:
            assert passage["text"] == source[passage["start"]:passage["end"]]


def test_same_size_edit_of_a_read_only_index_is_refused(
        seed_settings: Settings, tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    _forge_stored_text(index_dir)
    read_only(index_dir)
    proc = run_cli("ask", "diaphragmatic flutter", env=cli_env(index_dir), prefix=unprivileged())
    one_line_error(proc, 1, f"{index_dir} is not writable")
    assert "does not match its recorded hash" in proc.stderr and "XXXX" not in proc.stdout


def test_file_changed_during_a_build_gives_a_consistent_index_then_a_rebuild(
        tmp_path: Path, model_loads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk of a muscle."})
    # late interaction off: a build of these settings (no token vectors) is then current
    settings = Settings.resolve(sources, tmp_path / "index", late="off")
    real_encode = FakeEncoder.encode

    def encode_while_the_file_changes(self: FakeEncoder, texts: list[str],
                                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        (sources / "a.txt").write_text("Rewritten: hiccups are myoclonus of the diaphragm.",
                                       encoding="utf-8")
        return real_encode(self, texts, progress)

    monkeypatch.setattr(FakeEncoder, "encode", encode_while_the_file_changes)
    first = build_index(settings, BuildParams(model=settings.model), notify=lambda _m: None)
    monkeypatch.setattr(FakeEncoder, "encode", real_encode)
    assert first.texts["a.txt"] == "Myoclonus is a sudden jerk of a muscle."
    assert first.manifest.sources[0].sha256 == corpus.fingerprint(
        b"Myoclonus is a sudden jerk of a muscle.")
    said: list[str] = []
    second = ready_index(settings, notify=said.append)
    assert said == [f"sources changed (a.txt); building the index in {settings.index_dir}"]
    assert second.texts["a.txt"].startswith("Rewritten")


def test_read_only_index_still_answers(seed_settings: Settings, tmp_path: Path,
                                       read_only: Callable[[Path], None]) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    read_only(index_dir)
    proc = run_cli("ask", "what is diaphragmatic flutter?", "--json", "-k", "2",
                   env=cli_env(index_dir), prefix=unprivileged())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passages"][0]["source"] == FLUTTER


def test_stale_read_only_index_is_refused_naming_the_directory(
        seed_settings: Settings, tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    sources = writable_copy(SEEDS, tmp_path / "src")
    (sources / "new.txt").write_text("Myoclonus after hypoxia is Lance-Adams syndrome.")
    index_dir = copy_index(seed_settings, tmp_path)
    before = sorted(p.name for p in index_dir.iterdir())
    read_only(index_dir)
    proc = run_cli("ask", "myoclonus", env=cli_env(index_dir, sources), prefix=unprivileged())
    line = one_line_error(proc, 1, f"{index_dir} is not writable", "--index-dir")
    assert "previous index is unchanged" in line
    assert "sources changed (new.txt)" in proc.stderr
    assert sorted(p.name for p in index_dir.iterdir()) == before


def test_unreadable_entry_of_a_model_folder_is_named_not_taken_for_the_index_folder(
        tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "extra").mkdir(parents=True)
    (model / "config.json").write_text("{}", encoding="utf-8")
    (model / "extra" / "notes").write_text("x", encoding="utf-8")
    (model / "extra").chmod(0o644)  # names listed, entries not reachable
    try:
        sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a brief jerk."})
        proc = run_cli("index", "--model", str(model), env=cli_env(tmp_path / "index", sources),
                       prefix=unprivileged())
    finally:
        (model / "extra").chmod(0o755)
    line = one_line_error(proc, 1, f"cannot read {model / 'extra' / 'notes'}: "
                          f"{os.strerror(errno.EACCES)}")
    assert "not writable" not in line


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
    else:
        def replace(_src: object, _dst: object) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(os, "replace", replace)
        return "cannot write the index in"
    return "no space left on the device"


@pytest.mark.parametrize("kind", ["json", "faiss to /dev/full", "fsync", "switching CURRENT"])
def test_failed_write_during_a_build_keeps_the_previous_index(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    good = store.load(index_dir)
    with open("/dev/full", "wb", buffering=0) as full:
        words = _failing(kind, monkeypatch, full)
        with pytest.raises(MyoqaError) as info:
            build_index(replace(seed_settings, index_dir=index_dir),
                        BuildParams(model="all-MiniLM-L6-v2"), notify=lambda _m: None)
        monkeypatch.undo()
    assert words in str(info.value) and "the previous index is unchanged" in str(info.value)
    assert store.current_build(index_dir) == good.path
    assert len(store.load(index_dir).passages) == len(good.passages)
    assert builds(index_dir) == {good.path.name} and not leftovers(index_dir)


def _file_size_limit(limit: int) -> Callable[[], None]:
    """For a child process: files stop growing at `limit` bytes, as a nearly full disk stops
    them (a write across it is cut short, the next fails with an errno)."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_array_write_cut_short_names_the_system_reason(seed_settings: Settings,
                                                       tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    good = store.current_build(index_dir)
    span_vectors = (good / "span_vectors.npy").stat().st_size
    assert (good / "sources.json").stat().st_size < span_vectors // 2
    proc = subprocess.run([sys.executable, "-m", "myoqa", "index", "--rebuild"],
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **cli_env(index_dir)},
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL, preexec_fn=_file_size_limit(span_vectors // 2))
    line = one_line_error(proc, 1, f"cannot write the index in {index_dir}: "
                          f"{os.strerror(errno.EFBIG)}", "the previous index is unchanged")
    assert "requested" not in line
    assert store.current_build(index_dir) == good and not leftovers(index_dir)


def test_interrupt_while_writing_removes_the_partial_build(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    before = store.current_build(index_dir)
    real_save = store._save_array

    def save_then_interrupt(path: Path, array: np.ndarray) -> None:
        real_save(path, array)
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_save_array", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_index(replace(seed_settings, index_dir=index_dir), BuildParams(model="all-MiniLM-L6-v2"),
                    lambda _m: None)
    assert store.current_build(index_dir) == before and builds(index_dir) == {before.name}
    assert not leftovers(index_dir)


def test_failed_or_interrupted_encoder_export_leaves_nothing_behind(
        tmp_path: Path, model_loads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk."})
    settings = Settings.resolve(sources, tmp_path / "index")
    for failure in (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), KeyboardInterrupt()):
        def export_onnx(_model: object, out: Path, failure: BaseException = failure) -> None:
            (out / "model.onnx.data").write_bytes(b"\0" * 1000)
            raise failure

        monkeypatch.setattr(onnx_encoder, "export_onnx", export_onnx)
        with pytest.raises((MyoqaError, KeyboardInterrupt)) as info:
            ready_index(settings, lambda _m: None)
        if isinstance(failure, OSError):
            assert "no space left on the device" in str(info.value)
        assert not (settings.index_dir / "CURRENT").exists()
        assert [p.name for p in (settings.cache / "encoders").iterdir()] == [".owner"]


def test_interrupt_while_switching_waits_for_the_switch(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    before = store.current_build(index_dir)
    real_rename = os.rename

    def rename_under_ctrl_c(src: Path, dst: Path) -> None:
        os.kill(os.getpid(), 2)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_under_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        build_index(replace(seed_settings, index_dir=index_dir), BuildParams(model="all-MiniLM-L6-v2"),
                    lambda _m: None)
    monkeypatch.undo()
    after = store.current_build(index_dir)
    assert after != before and store.load(index_dir).path == after
    assert builds(index_dir) == {before.name, after.name} and not leftovers(index_dir)


# Concurrency (in one process; the process-level checks are in test_faults.py) ------------------

def test_reader_whose_build_is_pruned_retries_on_the_new_one(
        seed_settings: Settings, tmp_path: Path, model_loads: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    old = store.current_build(index_dir)
    shutil.copytree(old, index_dir / "build-next")
    real_load, calls = opener.load, []

    def load_racing_two_rebuilds(directory: Path) -> Index:
        calls.append(directory)
        if len(calls) == 1:  # two rebuilds finish while this reader loads: its build is pruned
            (index_dir / "CURRENT").write_text("build-next\n")
            shutil.rmtree(old)
            raise IndexProblem(f"index file {old / 'sources.json'} is missing", REBUILD)
        return real_load(directory)

    monkeypatch.setattr(opener, "load", load_racing_two_rebuilds)
    said: list[str] = []
    index = ready_index(Settings.resolve(SEEDS, index_dir), notify=said.append)
    assert index.path.name == "build-next" and said == [] and model_loads == []


def test_builds_take_turns_and_a_waiting_build_uses_the_one_just_made(
        tmp_path: Path, model_loads: list[str]) -> None:
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a sudden jerk."})
    settings = Settings.resolve(sources, tmp_path / "index")
    ready_index(settings, notify=lambda _m: None)
    (sources / "a.txt").write_text("Myoclonus is a sudden, brief jerk.")
    holding, decided, events = threading.Event(), threading.Event(), []

    def other_process_builds() -> None:
        with store.build_lock(settings.index_dir, lambda _m: None):
            holding.set()
            decided.wait()
            events.append("other builds")
            folder, files = encoders.ensure_encoder(settings.cache, settings.model,
                                                    lambda _m: None)
            built = build(corpus.load_sources(sources), BuildParams(model=settings.model),
                          FakeEncoder(), EncoderInfo(folder, files))
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
    assert said == [f"sources changed (a.txt); building the index in {settings.index_dir}",
                    "another build of this index is running; waiting for it"]
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
    check_answer(searcher, answer, k)
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
    index_dir = copy_index(seed_settings, tmp_path)
    build = store.current_build(index_dir)
    if target.endswith(".npy"):
        np.save(build / target, np.array([_Payload()], dtype=object), allow_pickle=True)
    else:
        (build / target).write_bytes(pickle.dumps(_Payload()))
    load = ("import sys, pathlib; from myoqa.index import store; "
            "store.load(pathlib.Path(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", load, str(index_dir)], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "IndexProblem" in proc.stderr and target in proc.stderr
    assert not (tmp_path / "PWNED").exists()


def test_source_text_and_names_reach_the_terminal_inert(tmp_path: Path,
                                                        model_loads: list[str]) -> None:
    hostile = ("Myoclonus \x1b[2J\x1b]0;owned\x07 clears screens \x9b31m and [red]markup[/red] "
               "\u202ereversed\u202c text.\n")
    sources = write_sources(tmp_path / "src", {"e\x1b[31mvil\u202e.txt": hostile,
                                          "plain.txt": "Myoclonus is a jerk."})
    index_dir = tmp_path / "index"
    ready_index(Settings.resolve(sources, index_dir), notify=lambda _m: None)
    env = cli_env(index_dir, sources)
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
    one_line_error(proc, 1, "plain.txt is not UTF-8")
    assert not CONTROLS & set(proc.stderr)
