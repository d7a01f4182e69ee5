"""Hostile files and inputs (issue 17, cases 1, 3, 8, 9 and 13): a file name that would read as a
command, links out of the sources folder, HTML nested past the parser's limit, inputs that never
end or expand without bound, and page breaks. Each test failed before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import (
    cli_env,
    copy_index,
    docx_paragraph,
    make_docx,
    make_pdf,
    one_line_error,
    run_cli,
    write_sources,
)
from myoqa import corpus, formats, jsonl
from myoqa.chunking import ChunkParams, chunk
from myoqa.citation import cite, locate
from myoqa.config import Settings
from myoqa.errors import MyoqaError, UsageError
from myoqa.index.opener import ready_index

PWNED_SOURCE = "+!touch PWNED.txt"


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_open_of_a_source_named_like_a_vim_command_runs_nothing(
        seed_settings: Settings, tmp_path: Path) -> None:
    """`ask --open` with `--sources .` and a source named "+!touch PWNED.txt": real vim (in ex
    mode, reading no terminal) is given the file's absolute path after "--", so it edits that
    file instead of running `:!touch PWNED.txt`."""
    sources = write_sources(tmp_path / "src", {
        PWNED_SOURCE: "Diaphragmatic flutter is a rare myoclonus of the diaphragm."})
    env = {**os.environ, **cli_env(copy_index(seed_settings, tmp_path), Path(".")),
           "HF_HUB_OFFLINE": "1", "VISUAL": "", "EDITOR": "vim -es -N -u NONE -i NONE"}
    proc = subprocess.run([sys.executable, "-m", "myoqa", "ask", "--open", "1", "--mode", "bm25",
                           "diaphragmatic flutter"], cwd=sources, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, check=False,
                          start_new_session=True)  # no controlling terminal: vim reads /dev/null
    assert proc.returncode == 0, proc.stderr
    assert f"opening {PWNED_SOURCE} at line 1" in proc.stderr
    assert sorted(p.name for p in sources.iterdir()) == [PWNED_SOURCE]


def _links_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Sources with a link to a file and one to a folder outside them, two links to one outside
    file, and a link to a source inside; and the outside folder."""
    outside = write_sources(tmp_path / "private", {
        "passwd": "root:x:0:0:root:/root:/bin/bash", "notes/diary.txt": "Secret diary words."})
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a brief jerk."})
    (sources / "passwd.txt").symlink_to(outside / "passwd")
    (sources / "again.txt").symlink_to(outside / "passwd")
    (sources / "notes").symlink_to(outside / "notes")
    (sources / "alias.txt").symlink_to("a.txt")
    return sources, outside


def test_links_out_of_the_sources_are_not_read_but_named(tmp_path: Path) -> None:
    """`ln -s /etc/passwd src/passwd.txt` no longer puts /etc/passwd into the index: links that
    leave the sources folder, to files or folders, are named as skipped; a link inside it is
    not read twice."""
    sources, _outside = _links_folder(tmp_path)
    read = corpus.read_corpus(sources)
    assert [s.name for s in read.sources] == ["a.txt"]
    assert [(s.name, s.reason) for s in read.skipped] == [
        ("again.txt", f"a link to a file outside the sources folder ({corpus.FOLLOW_HINT})"),
        ("alias.txt", ("a link within the sources folder (not followed: its target is read under "
                      "its own name)")),
        ("notes", f"a link to a folder outside the sources folder ({corpus.FOLLOW_HINT})"),
        ("passwd.txt", f"a link to a file outside the sources folder ({corpus.FOLLOW_HINT})")]


def test_follow_links_reads_them_each_target_once(tmp_path: Path) -> None:
    sources, _outside = _links_folder(tmp_path)
    read = corpus.read_corpus(sources, follow_links=True)
    assert {s.name: s.text for s in read.sources} == {
        "a.txt": "Myoclonus is a brief jerk.", "again.txt": "root:x:0:0:root:/root:/bin/bash",
        "notes/diary.txt": "Secret diary words."}
    assert [(s.name, s.reason) for s in read.skipped][:2] == [
        ("alias.txt", ("a link within the sources folder (not followed: its target is read under "
                      "its own name)")),
        ("passwd.txt", "the same file as again.txt")]


def test_follow_links_through_a_link_to_a_parent_reads_each_file_once(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "library" / "src", {"a.txt": "Myoclonus is a jerk."})
    write_sources(tmp_path / "library", {"extra.txt": "Clonazepam treats it."})
    (sources / "up").symlink_to("..")
    paths, skipped = corpus.scan(sources, follow_links=True)
    assert [name for name, _ in paths] == ["a.txt", "up/extra.txt"]
    assert [(s.name, s.reason) for s in skipped] == [
        ("up/src", "the same folder as the sources folder")]


def test_follow_links_setting_comes_from_the_flag_then_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MYOQA_FOLLOW_LINKS", raising=False)
    assert Settings.resolve(tmp_path).follow_links is False
    assert Settings.resolve(tmp_path, follow_links=True).follow_links_from == "--follow-links"
    monkeypatch.setenv("MYOQA_FOLLOW_LINKS", "yes")
    assert Settings.resolve(tmp_path).follow_links is True
    monkeypatch.setenv("MYOQA_FOLLOW_LINKS", "0")
    assert Settings.resolve(tmp_path).follow_links is False
    monkeypatch.setenv("MYOQA_FOLLOW_LINKS", "maybe")
    with pytest.raises(UsageError, match=r"\$MYOQA_FOLLOW_LINKS is 'maybe', not 1 or 0"):
        Settings.resolve(tmp_path)
    monkeypatch.delenv("MYOQA_FOLLOW_LINKS")
    status = run_cli("status", "--json", "--follow-links", env=cli_env(tmp_path / "index"))
    assert json.loads(status.stdout)["follow_links"] is True


def test_a_link_added_to_a_current_index_is_named_and_following_it_rebuilds(
        tmp_path: Path, model_loads: list[str]) -> None:
    """A link (or a file of another format) added after the build is named on the next ask
    though nothing is rebuilt; following it changes the sources, so the index is rebuilt."""
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a brief jerk."})
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash")
    settings = Settings.resolve(sources, tmp_path / "index")
    first = ready_index(settings, notify=lambda _m: None)
    (sources / "passwd.txt").symlink_to(tmp_path / "passwd")
    (sources / "slides.pptx").write_bytes(b"PK")
    said: list[str] = []
    assert ready_index(settings, notify=said.append).path == first.path, "nothing to rebuild"
    assert said == [(f"note: skipped passwd.txt: a link to a file outside the sources folder "
                    f"({corpus.FOLLOW_HINT})"),
                    "note: skipped slides.pptx: not a supported format (.pptx)"]
    said.clear()
    followed = ready_index(replace(settings, follow_links=True), notify=said.append)
    assert said[0].startswith("sources changed (passwd.txt); building the index")
    assert {p.source for p in followed.passages} == {"a.txt", "passwd.txt"}
    said.clear()
    ready_index(settings, notify=said.append)
    assert said[0].startswith("sources changed (passwd.txt); building the index"), "and back"


def test_ask_names_a_link_out_of_the_sources_and_follows_it_when_asked(
        seed_settings: Settings, tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src", {"a.txt": "Myoclonus is a brief jerk."})
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash")
    (sources / "passwd.txt").symlink_to(tmp_path / "passwd")
    env = cli_env(copy_index(seed_settings, tmp_path), sources)
    proc = run_cli("ask", "--json", "--mode", "bm25", "root bin bash", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passages"] == []  # a.txt holds none of the words
    assert ("myoqa: note: skipped passwd.txt: a link to a file outside the sources folder "
            f"({corpus.FOLLOW_HINT})") in proc.stderr.splitlines()
    proc = run_cli("ask", "--json", "--mode", "bm25", "--follow-links", "root bin bash", env=env)
    assert {p["source"] for p in json.loads(proc.stdout)["passages"]} == {"passwd.txt"}


def test_a_short_two_page_pdf_cites_the_page_its_words_are_on(tmp_path: Path) -> None:
    """A PDF of under 120 words is no longer one passage cited "p. 1": each page is its own."""
    (tmp_path / "src").mkdir()
    make_pdf(tmp_path / "src" / "leaflet.pdf", [
        ["Myoclonus is a brief jerk of a muscle."], ["Clonazepam is often prescribed."]])
    source = corpus.load_sources(tmp_path / "src")[0]
    passages, _spans = chunk(source.name, source.text, ChunkParams())
    cited = {source.text[p.start:p.end]: cite(p.source, locate(source.text, p.start, paged=True))
             for p in passages}
    assert cited == {"Myoclonus is a brief jerk of a muscle.": "leaflet.pdf:1:1 p. 1",
                     "Clonazepam is often prescribed.": "leaflet.pdf:4:1 p. 2"}


def _nested_html(depth: int) -> bytes:
    return (b"<html><body><p>Intro on myoclonus.</p>\n" + b"<div>" * depth + b"Deep text."
            + b"</div>" * depth + b"\n<p>Closing paragraph on clonazepam.</p></body></html>")


def test_html_nested_past_libxml2s_default_depth_is_read_whole() -> None:
    """300 levels (past libxml2's default of 256) used to lose everything from that point."""
    assert formats.html_text(_nested_html(300)) == (
        "Intro on myoclonus.\n\nDeep text.\n\nClosing paragraph on clonazepam.")


def test_html_nested_past_the_parsers_limit_is_named_as_truncated(tmp_path: Path) -> None:
    write_sources(tmp_path / "src", {"deep.html": _nested_html(3000).decode()})
    read = corpus.read_corpus(tmp_path / "src")
    assert [s.text for s in read.sources] == ["Intro on myoclonus."]
    assert [(s.name, s.reason) for s in read.skipped] == [(
        "deep.html", ("the text from line 2 on (elements nested more than 2048 deep, which the "
                     "HTML parser does not read)"))]


def _limited(memory: int) -> None:
    """In the child: at most `memory` bytes of address space, so a run that reads without
    bound fails with MemoryError instead of filling the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def _beir_with_fifo_corpus(folder: Path) -> Path:
    write_sources(folder, {"queries.jsonl": '{"_id": "q1", "text": "jerk"}\n',
                           "qrels/test.tsv": "q1\td1\t1\n"})
    os.mkfifo(folder / "corpus.jsonl")
    return folder


@pytest.mark.parametrize("kind", ["/dev/zero as --file", "FIFO as --file",
                                  "FIFO as a BEIR corpus.jsonl"])
def test_eval_input_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path,
                                                                   kind: str) -> None:
    """Before: `eval --file /dev/zero` grew to 10 GB, and a FIFO hung waiting for a writer."""
    if kind.startswith("/dev/zero"):
        args, named = ["--file", "/dev/zero"], "/dev/zero"
    elif kind.startswith("FIFO as --file"):
        os.mkfifo(tmp_path / "q.jsonl")
        args, named = ["--file", str(tmp_path / "q.jsonl")], "q.jsonl"
    else:
        args, named = ["--beir", str(_beir_with_fifo_corpus(tmp_path / "c"))], "corpus.jsonl"
    proc = subprocess.run([sys.executable, "-m", "myoqa", "eval", *args], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                          "MYOQA_INDEX_DIR": str(tmp_path / "index")},
                          stdin=subprocess.DEVNULL, timeout=120, check=False,
                          preexec_fn=lambda: _limited(2 * 2**30))
    line = one_line_error(proc, 1, named, "is not a regular file (a pipe or a device)")
    assert line.endswith("(give a file, or save the input to one first)")


def test_eval_input_over_the_size_limits_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "q1"}\n' * 100 + "x" * 200 + "\n")
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 100)
    with pytest.raises(MyoqaError, match=r"q.jsonl:101: is longer than 0 MiB, the limit for one "
                                         r"line \(split it\)"):
        list(jsonl.open_lines(path, "evaluation file"))
    monkeypatch.setattr(jsonl, "MAX_INPUT_BYTES", 1000)
    with pytest.raises(MyoqaError, match=r"evaluation file .*q.jsonl holds more than 0 MiB, the "
                                         r"limit for one file \(use a smaller file\)"):
        list(jsonl.open_lines(path, "evaluation file"))


def test_docx_of_a_million_paragraphs_is_refused_before_parsing(tmp_path: Path) -> None:
    """A 10 KB file of a million empty paragraphs took 228 s and 2.6 GB in docx2python; its
    elements are now counted first (a tenth of a second) and it is named as too large."""
    docx = make_docx(tmp_path / "bomb.docx", ["<w:p/>"] * 1_000_000)
    assert docx.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(formats.ExtractionError, match=r"^holds more than 200,000 XML elements, "
                                                          r"the limit for a DOCX \(split it"):
            formats.docx_text(docx.read_bytes())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB held while refusing it"


def test_docx_under_the_element_limit_is_read(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    docx = make_docx(tmp_path / "a.docx", [docx_paragraph("Myoclonus is a jerk.")] * 3)
    monkeypatch.setattr(formats, "MAX_DOCX_ELEMENTS", 40)
    assert formats.docx_text(docx.read_bytes()).split("\n\n") == ["Myoclonus is a jerk."] * 3
    monkeypatch.setattr(formats, "MAX_DOCX_ELEMENTS", 10)
    with pytest.raises(formats.ExtractionError, match="more than 10 XML elements"):
        formats.docx_text(docx.read_bytes())
