"""Files the user names as outputs: written atomically, through links, directly into FIFOs and
devices, never over an input, and with one clear line when they cannot be written."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import FLUTTER, PROSE, cli_env, copy_index, one_line_error, run_cli, unprivileged
from myoqa import output_files
from myoqa.config import Settings
from myoqa.errors import MyoqaError
from myoqa.output_files import write_output


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_missing_file_is_created_with_the_usual_mode(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    write_output(out, "héllo\n")
    assert out.read_bytes() == "héllo\n".encode()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert _leftovers(tmp_path) == []


def test_regular_file_is_replaced_keeping_its_permission_bits(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    out.write_text("old", encoding="utf-8")
    out.chmod(0o640)
    write_output(out, b"new")
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_symlink_stays_a_link_and_its_target_gets_the_content(tmp_path: Path) -> None:
    elsewhere = tmp_path / "kept" / "results.jsonl"
    elsewhere.parent.mkdir()
    elsewhere.write_text("old", encoding="utf-8")
    hop = tmp_path / "hop"
    hop.symlink_to(elsewhere)
    link = tmp_path / "work" / "out.jsonl"
    link.parent.mkdir()
    link.symlink_to(hop)
    write_output(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(hop) and hop.is_symlink()
    assert elsewhere.read_text(encoding="utf-8") == "new"
    assert _leftovers(elsewhere.parent) == [] and _leftovers(link.parent) == []


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "out.trec"
    link.symlink_to(tmp_path / "real.trec")
    write_output(link, "x")
    assert link.is_symlink() and (tmp_path / "real.trec").read_text(encoding="utf-8") == "x"


def test_dangling_symlink_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    link = tmp_path / "out.trec"
    link.symlink_to(tmp_path / "gone" / "real.trec")
    with pytest.raises(MyoqaError, match="folder .*gone does not exist .where the link"):
        write_output(link, "x")
    assert link.is_symlink()


def test_symlink_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(MyoqaError, match="cannot write .*a"):
        write_output(tmp_path / "a", "x")


def test_fifo_is_written_directly_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_output(fifo, "through the pipe\n")
    reader.join(timeout=30)
    assert received == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_character_device_is_written_not_replaced() -> None:
    write_output(Path("/dev/null"), "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_dev_stdout_writes_to_the_stream_in_order(tmp_path: Path) -> None:
    """With stdout redirected to a file, /dev/stdout must append to the stream, not replace the
    file behind it (which would lose what was printed before)."""
    out = tmp_path / "captured.txt"
    code = ("import sys; from pathlib import Path; from myoqa.output_files import write_output; "
            "print('before'); write_output(Path(sys.argv[1]), 'middle\\n'); print('after')")
    with open(out, "wb") as fh:
        subprocess.run([sys.executable, "-c", code, "/dev/stdout"], stdout=fh, check=True)
    assert out.read_text(encoding="utf-8") == "before\nmiddle\nafter\n"


@pytest.mark.parametrize("spelling", [
    lambda q: q,
    lambda q: q.parent / "." / q.name,
    lambda q: _hard_link(q),
    lambda q: _symlink(q),
], ids=["same path", "other spelling", "hard link", "symlink"])
def test_an_input_is_never_overwritten(tmp_path: Path, spelling: Callable[[Path], Path]) -> None:
    question_file = tmp_path / "same.jsonl"
    question_file.write_bytes(b'{"id": "q1"}\n')
    with pytest.raises(MyoqaError, match="refusing to write .*: it is the input .*same.jsonl"):
        write_output(spelling(question_file), "run lines", inputs=[question_file])
    assert question_file.read_bytes() == b'{"id": "q1"}\n'


def _hard_link(path: Path) -> Path:
    other = path.with_name("hard.jsonl")
    os.link(path, other)
    return other


def _symlink(path: Path) -> Path:
    other = path.with_name("link.jsonl")
    other.symlink_to(path)
    return other


def test_folder_and_missing_parent_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MyoqaError, match="cannot write .*: it is a folder"):
        write_output(tmp_path, "x")
    with pytest.raises(MyoqaError, match="the folder .*nowhere does not exist"):
        write_output(tmp_path / "nowhere" / "out.jsonl", "x")


@pytest.mark.parametrize("failure,raised", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), MyoqaError),
    (KeyboardInterrupt(), KeyboardInterrupt),
], ids=["full disk", "ctrl-c"])
def test_failed_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException,
        raised: type[BaseException]) -> None:
    out = tmp_path / "run.jsonl"
    out.write_text("old", encoding="utf-8")

    def fail(_fd: int) -> None:
        raise failure

    monkeypatch.setattr(output_files.os, "fsync", fail)
    with pytest.raises(raised):
        write_output(out, "new")
    assert out.read_text(encoding="utf-8") == "old" and _leftovers(tmp_path) == []


def test_read_only_folder_is_one_line_and_the_file_is_unchanged(
        tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "run.jsonl").write_text("old", encoding="utf-8")
    read_only(folder)
    code = ("import sys; from pathlib import Path; from myoqa.output_files import write_output; "
            "from myoqa.errors import MyoqaError\n"
            "try: write_output(Path(sys.argv[1]), 'new')\n"
            "except MyoqaError as e: print(e)")
    proc = subprocess.run([*unprivileged(), sys.executable, "-c", code,
                           str(folder / "run.jsonl")], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == (f"cannot write {folder / 'run.jsonl'}: "
                                   f"the folder {folder} is not writable")
    assert (folder / "run.jsonl").read_text(encoding="utf-8") == "old"


def test_eval_refuses_to_write_its_runs_over_the_question_file(tmp_path: Path) -> None:
    same = tmp_path / "same.jsonl"
    same.write_bytes(b'{"id": "q1", "question": "what is myoclonus?", "kind": "out_of_scope", '
                     b'"evidence": []}\n')
    before = same.read_bytes()
    proc = run_cli("eval", "--file", str(same), "--run-out", str(same),
                   env={"MYOQA_INDEX_DIR": str(tmp_path / "index")})
    assert proc.returncode == 1, proc.stderr
    assert "refusing to write" in proc.stderr and "it is the input" in proc.stderr
    assert same.read_bytes() == before and not (tmp_path / "index").exists()


def test_eval_refuses_an_unwritable_output_before_any_work(tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'{"id": "q1", "question": "what is myoclonus?", "kind": '
                          b'"out_of_scope", "evidence": []}\n')
    for out, words in ((tmp_path / "missing" / "run.jsonl", "does not exist"),
                       (tmp_path, "it is a folder")):
        proc = run_cli("eval", "--file", str(questions), "--run-out", str(out),
                       env={"MYOQA_INDEX_DIR": str(tmp_path / "index")})
        one_line_error(proc, 1, words)
    assert not (tmp_path / "index").exists(), "refused before the index was opened"


# --- one rule: no output inside the sources or the index folder ---------------------------------

def _kept_places(tmp_path: Path) -> tuple[Path, Path, list[output_files.Kept]]:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "a.txt").write_text("myoclonus is a jerk\n", encoding="utf-8")
    index = tmp_path / "index"
    index.mkdir()
    (index / "CURRENT").write_text("build-1\n", encoding="utf-8")
    return sources, index, output_files.kept_folders(sources, index)


@pytest.mark.parametrize("name,where", [
    ("sources/a.txt", "the sources folder"),
    ("sources/new.jsonl", "the sources folder"),
    ("sources/./a.txt", "the sources folder"),
    ("index/CURRENT", "the index folder"),
    ("link-to-source", "the sources folder"),
    ("link-to-index/CURRENT", "the index folder"),
], ids=["a source", "new file in the sources", "other spelling", "CURRENT", "symlink to a source",
        "through a linked folder"])
def test_an_output_inside_the_sources_or_index_is_refused_by_name(
        tmp_path: Path, name: str, where: str) -> None:
    sources, index, kept = _kept_places(tmp_path)
    (tmp_path / "link-to-source").symlink_to(sources / "a.txt")
    (tmp_path / "link-to-index").symlink_to(index)
    with pytest.raises(MyoqaError, match=f"refusing to write .*: it is inside {where}"):
        write_output(tmp_path / name, "run lines", kept=kept)
    assert (sources / "a.txt").read_text(encoding="utf-8") == "myoclonus is a jerk\n"
    assert (index / "CURRENT").read_text(encoding="utf-8") == "build-1\n"
    assert sorted(p.name for p in sources.iterdir()) == ["a.txt"]


def test_an_output_folder_inside_the_sources_is_refused_and_one_beside_them_is_not(
        tmp_path: Path) -> None:
    sources, _index, kept = _kept_places(tmp_path)
    with pytest.raises(MyoqaError, match="refusing to write into .*: it is inside the sources"):
        output_files.check_folder(sources / "myoqa", kept)
    output_files.check_folder(tmp_path / "sources-exports", kept)
    write_output(tmp_path / "sources-run.jsonl", "x", kept=kept)
    assert (tmp_path / "sources-run.jsonl").read_text(encoding="utf-8") == "x"


@pytest.fixture()
def evaluated(seed_settings: Settings, source_copy: Path, tmp_path: Path
              ) -> tuple[Path, Path, Path]:
    """A copy of the seeds, a copy of their current index, and a one-question set."""
    index = copy_index(seed_settings, tmp_path)
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'{"id": "q1", "question": "what is myoclonus?", "kind": '
                          b'"out_of_scope", "evidence": []}\n')
    return source_copy, index, questions


@pytest.mark.parametrize("target", ["source", "link to a source", "CURRENT"])
def test_eval_run_out_never_replaces_a_source_or_the_index_pointer(
        evaluated: tuple[Path, Path, Path], tmp_path: Path, target: str) -> None:
    sources, index, questions = evaluated
    out = {"source": sources / FLUTTER, "CURRENT": index / "CURRENT",
           "link to a source": tmp_path / "run.jsonl"}[target]
    if target == "link to a source":
        out.symlink_to(sources / FLUTTER)
    before = {p: p.read_bytes() for p in [*sources.iterdir(), index / "CURRENT"]}
    proc = run_cli("eval", "--mode", "bm25", "--file", str(questions), "--run-out", str(out),
                   env=cli_env(index, sources))
    one_line_error(proc, 1, "refusing to write", "it is inside the",
                   "the index folder" if target == "CURRENT" else "the sources folder")
    assert {p: p.read_bytes() for p in [*sources.iterdir(), index / "CURRENT"]} == before


def test_beir_trec_out_never_goes_into_the_index_folder(tmp_path: Path) -> None:
    collection = tmp_path / "c"
    (collection / "qrels").mkdir(parents=True)
    (collection / "corpus.jsonl").write_text('{"_id": "d1", "text": "a brief jerk"}\n',
                                             encoding="utf-8")
    (collection / "queries.jsonl").write_text('{"_id": "q1", "text": "jerk"}\n', encoding="utf-8")
    (collection / "qrels" / "test.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    index = tmp_path / "index"
    proc = run_cli("eval", "--beir", str(collection), "--mode", "bm25",
                   "--trec-out", str(index / "beir" / "c" / "CURRENT"),
                   env={"MYOQA_INDEX_DIR": str(index)})
    one_line_error(proc, 1, "refusing to write", "it is inside the index folder")
    assert not index.exists(), "refused before any work"


def test_bench_out_inside_the_sources_is_refused_before_measuring(
        source_copy: Path, tmp_path: Path) -> None:
    proc = run_cli("bench", "--steps", "scale", "--sizes", "", "--out", str(source_copy / "bench"),
                   env=cli_env(tmp_path / "index", source_copy), timeout=120)
    one_line_error(proc, 1, "refusing to write into", "it is inside the sources folder")
    assert sorted(p.name for p in source_copy.iterdir()) == [FLUTTER, PROSE]
    assert not (tmp_path / "index").exists()
