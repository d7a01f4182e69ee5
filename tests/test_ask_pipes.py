"""`myoqa ask` in pipes and with every source format: questions from stdin, plain output that
keeps each passage exact, closed or broken stdout, citations with column and page, --open."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FLUTTER, cli_env, docx_paragraph, make_docx, make_pdf, run_cli
from myoqa import corpus
from myoqa.citation import locate
from myoqa.config import Settings

FAKE_EDITOR = """#!/bin/sh
# Records how it was called, and the file it was given, as an editor would open it.
printf '%s\\n' "$@" > "$RECORD/argv"
for last; do :; done
[ -f "$last" ] && cp "$last" "$RECORD/file" || printf '%s' "${last%%:*}" > "$RECORD/spec"
"""


def _editor(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A fake editor called `name`, and the environment that makes it $EDITOR."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(FAKE_EDITOR)
    program.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    return record, {"EDITOR": str(program), "RECORD": str(record), "VISUAL": ""}


HEAD = re.compile(r"^(\d+)\. (\S+):(\d+):(\d+) · chars \d+–\d+ · score (\S+)\n", re.MULTILINE)


def _passages(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["passages"]


@pytest.mark.parametrize("args", [[], ["-"]])
def test_question_from_stdin(seed_settings: Settings, args: list[str]) -> None:
    proc = run_cli("ask", *args, "--json", "--mode", "bm25", "-k", "1",
                   env=cli_env(seed_settings), stdin="what is diaphragmatic\nflutter?\n")
    assert json.loads(proc.stdout)["searched"] == "what is diaphragmatic flutter?"
    assert _passages(proc)[0]["source"] == FLUTTER


@pytest.mark.parametrize("stdin", ["", "  \n\n"])
def test_empty_stdin_is_a_usage_error(seed_settings: Settings, stdin: str) -> None:
    proc = run_cli("ask", env=cli_env(seed_settings), stdin=stdin)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("myoqa: error: no question on stdin (pipe a question in, or give it "
                           "as arguments)\n")


def test_plain_output_is_each_passage_exact_with_evidence_in_guillemets(
        seed_settings: Settings) -> None:
    question = ("what is diaphragmatic flutter?", "--mode", "bm25", "-k", "4")
    passages = _passages(run_cli("ask", *question, "--json", env=cli_env(seed_settings)))
    env = {**cli_env(seed_settings), "TERM": "dumb", "NO_COLOR": "1", "COLUMNS": "40"}
    proc = run_cli("ask", *question, env=env)
    assert proc.returncode == 0 and "\x1b" not in proc.stdout
    heads = HEAD.findall(proc.stdout)
    bodies = HEAD.split(proc.stdout)[::6][1:]
    assert len(heads) == len(bodies) == len(passages) and proc.stdout.startswith("1. ")
    for (rank, source, line, column, _score), body, p in zip(heads, bodies, passages,
                                                             strict=True):
        assert (int(rank), source, int(line), int(column)) == (
            p["rank"], p["source"], p["line"], p["column"])
        text, terms = body.rsplit("\n   terms: ", 1)
        evidence = next(h for h in p["highlights"] if h["kind"] == "evidence")
        assert text.count("«") == text.count("»") == 1
        assert text.replace("«", "").replace("»", "") == p["text"], "not wrapped, not changed"
        assert text.index("«") == evidence["start"]
        assert terms.endswith("\n\n") and "\n" not in terms.rstrip("\n")
    flutter = next(p for p in passages if p["source"] == FLUTTER)
    assert flutter["line"] == 1 and flutter["column"] == flutter["start"] + 1


def test_output_cut_short_by_a_closed_pipe_exits_quietly(seed_settings: Settings) -> None:
    """`myoqa ask … | head -1`: the reader is gone before myoqa writes."""
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "myoqa", "ask", "myoclonus", "-k", "20"],
                            stdout=write, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, **cli_env(seed_settings)}, text=True)
    os.close(write)
    os.close(read)
    _, err = proc.communicate(timeout=300)
    assert (proc.returncode, err) == (0, "")


def test_closed_stdout_is_one_line_and_a_failure(seed_settings: Settings) -> None:
    proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "myoqa",
                           "ask", "myoclonus"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **cli_env(seed_settings)}, check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("myoqa: error: standard output is closed (let myoqa write to a "
                           "terminal, a file or a pipe)\n")


@pytest.mark.parametrize("args", [["-myoclonus"], ["what", "is", "-myoclonus"]])
def test_question_word_like_an_option_suggests_double_dash(seed_settings: Settings,
                                                          args: list[str]) -> None:
    proc = run_cli("ask", *args, env=cli_env(seed_settings))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.rstrip().endswith("put -- before the question, as in: "
                                         "myoqa ask -- -myoclonus)")
    assert run_cli("ask", "--mode", "bm25", "--", *args, env=cli_env(seed_settings)).returncode == 0


def test_open_starts_the_editor_at_the_passage_in_the_source_file(
        seed_settings: Settings, tmp_path: Path) -> None:
    record, env = _editor(tmp_path, "vim")
    proc = run_cli("ask", "--open", "2", "--mode", "bm25", "diaphragmatic", "flutter",
                   env={**cli_env(seed_settings), **env})
    assert proc.returncode == 0, proc.stderr
    second = _passages(run_cli("ask", "--json", "--mode", "bm25", "diaphragmatic", "flutter",
                               env=cli_env(seed_settings)))[1]
    assert (record / "argv").read_text().splitlines() == [
        f"+call cursor({second['line']}, {second['column']})", "--",
        str(seed_settings.sources / second["source"])]
    assert proc.stdout == ""
    assert proc.stderr == (f"myoqa: opening {second['source']} at line {second['line']}, column "
                           f"{second['column']} with $EDITOR ({env['EDITOR']})\n")


def test_open_of_a_missing_editor_or_with_json_is_one_line(seed_settings: Settings) -> None:
    proc = run_cli("ask", "--open", "1", "flutter", env={**cli_env(seed_settings),
                                                         "VISUAL": "", "EDITOR": "no-such-ed"})
    assert proc.returncode == 1 and proc.stderr == (
        "myoqa: error: cannot run $EDITOR ('no-such-ed'): it is not installed (set $EDITOR or "
        "$PAGER to a program that is installed)\n")
    proc = run_cli("ask", "--open", "1", "--json", "flutter", env=cli_env(seed_settings))
    assert proc.returncode == 2 and "--open and --json" in proc.stderr


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str], str]:
    """An index of one file of each format (the real model), its sources' extracted texts,
    and what `myoqa index` said on stderr."""
    root = tmp_path_factory.mktemp("mixed")
    src = root / "sources"
    src.mkdir()
    first_page = [f"Myoclonus seen in case {n} was a brief, involuntary twitching of a muscle."
                  for n in range(15)]
    make_pdf(src / "paper.pdf", [first_page, [
        "Hiccups are a form of myoclonus that most people know.",
        "Levetiracetam and valproate are used to treat cortical myoclonus."]])
    make_pdf(src / "scan.pdf", [[]])
    (src / "page.html").write_bytes(
        b"<html><head><title>t</title><script>var hidden = 'serotonin';</script></head><body>"
        b"<h1>Sleep starts</h1><p>Hypnic jerks happen while falling <b>asl</b>eep.</p></body>")
    make_docx(src / "letter.docx", [docx_paragraph("Palatal myoclonus makes a clicking sound "
                                                   "in the ear.")])
    (src / "notes.markdown").write_bytes(b"# Notes\r\n\r\nStartle myoclonus follows a sudden "
                                         b"noise.\r\nIt is a reflex.\r\n")
    (src / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    settings = Settings.resolve(sources=src, index_dir=root / "index")
    proc = run_cli("index", env=cli_env(settings))
    assert proc.returncode == 0, proc.stderr
    texts = {s.name: s.text for s in corpus.read_corpus(src).sources}
    return settings, texts, proc.stderr


def test_skipped_files_are_named_once_when_indexing(mixed: tuple[Settings, dict, str]) -> None:
    _settings, _texts, said = mixed
    notes = [line for line in said.splitlines() if "skipped" in line]
    assert notes == ["myoqa: note: skipped old.doc: not a supported format (.doc)",
                     ("myoqa: note: skipped scan.pdf: has no text layer (scanned?); run OCR on "
                      "it to index it")]


@pytest.mark.parametrize("question,source,page", [
    ("which drugs treat cortical myoclonus?", "paper.pdf", 2),
    ("hypnic jerks falling asleep", "page.html", None),
    ("clicking sound in the ear", "letter.docx", None),
    ("startle after a sudden noise", "notes.markdown", None)])
def test_every_format_answers_with_exact_text_and_its_place(
        mixed: tuple[Settings, dict, str], question: str, source: str, page: int | None) -> None:
    settings, texts, _said = mixed
    passages = _passages(run_cli("ask", question, "--json", "-k", "1", env=cli_env(settings)))
    top = passages[0]
    assert top["source"] == source
    assert top["text"] == texts[source][top["start"]:top["end"]]
    assert "\f" not in top["text"], "a passage lies within one page"
    place = locate(texts[source], top["start"], source.endswith(".pdf"))
    assert (top["line"], top["column"], top["page"]) == (place.line, place.column, page)
    assert "serotonin" not in texts["page.html"] and "asleep" in texts["page.html"]


def test_plain_output_of_a_crlf_source_keeps_its_line_ends(
        mixed: tuple[Settings, dict, str]) -> None:
    settings, texts, _said = mixed
    proc = subprocess.run([sys.executable, "-m", "myoqa", "ask", "--mode", "bm25", "-k", "1",
                           "startle noise reflex"], capture_output=True, timeout=300, check=False,
                          env={**os.environ, **cli_env(settings)}, stdin=subprocess.DEVNULL)
    text = proc.stdout.decode().split("\n", 1)[1].rsplit("\n   terms:", 1)[0]
    assert text.replace("«", "").replace("»", "") in texts["notes.markdown"]
    assert "\r\n" in text and "\u240d" not in text


def test_open_a_pdf_passage_opens_its_extracted_text_at_line_and_column(
        mixed: tuple[Settings, dict, str], tmp_path: Path) -> None:
    settings, texts, _said = mixed
    record, env = _editor(tmp_path, "nano")
    question = ("levetiracetam valproate", "--mode", "bm25", "-k", "1")
    top = _passages(run_cli("ask", *question, "--json", env=cli_env(settings)))[0]
    proc = run_cli("ask", *question, "--open", "1", env={**cli_env(settings), **env})
    assert proc.returncode == 0, proc.stderr
    plus, path = (record / "argv").read_text().splitlines()
    assert plus == f"+{top['line']},{top['column']}" and top["page"] == 2
    assert Path(path).name == "paper.pdf.txt"
    assert (record / "file").read_text(encoding="utf-8") == texts["paper.pdf"]
    assert not Path(path).exists() and not Path(path).parent.exists(), "the copy is removed"


def test_open_with_the_pager_when_no_editor_is_set(mixed: tuple[Settings, dict, str],
                                                   tmp_path: Path) -> None:
    settings, _texts, _said = mixed
    record, env = _editor(tmp_path, "less")
    env = {**env, "PAGER": env["EDITOR"], "EDITOR": ""}
    proc = run_cli("ask", "--mode", "bm25", "--open", "1", "clicking sound",
                   env={**cli_env(settings), **env})
    assert proc.returncode == 0, proc.stderr
    assert (record / "argv").read_text().splitlines()[0] == "+1g"
    assert "with $PAGER" in proc.stderr


def test_open_of_a_rank_past_the_answer_is_one_line(mixed: tuple[Settings, dict, str],
                                                    tmp_path: Path) -> None:
    settings, _texts, _said = mixed
    record, env = _editor(tmp_path, "vim")
    proc = run_cli("ask", "--mode", "bm25", "--open", "100", "myoclonus",
                   env={**cli_env(settings), **env})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("myoqa: error: there is no passage of rank 100 (the answer has ")
    assert not (record / "argv").exists()
