"""Question sets, BEIR folders and eval/bench options are checked at the door: a correct reading
or one line naming the file, the line and the field, never a bug message or a silent misreading."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from helpers import one_line_error, run_cli
from myoqa import beir, eval_report, evaluation
from myoqa.bench import harness
from myoqa.config import Settings
from myoqa.errors import MyoqaError

OK = {"id": "q1", "question": "what is myoclonus?", "kind": "lexical", "answer": "",
      "evidence": [{"source": "a.txt", "text": "a brief jerk"}]}
DOCS = [{"_id": "d1", "title": "", "text": "myoclonus is a brief jerk"},
        {"_id": "d2", "title": "Flutter", "text": "diaphragmatic flutter"}]
QUERIES = [{"_id": "q1", "text": "what is a jerk"}, {"_id": "q2", "text": "what is flutter"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
DEEP = "[" * 100_000 + "]" * 100_000


def _jsonl(rows: list[object]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _questions(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text(_jsonl(list(rows)), encoding="utf-8")
    return path


def _collection(folder: Path, corpus: list[object] | bytes = DOCS,
                queries: list[object] | bytes = QUERIES, qrels: str | bytes = QRELS) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for name, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries),
                          ("qrels/test.tsv", qrels)):
        data = content if isinstance(content, bytes) else (
            content if isinstance(content, str) else _jsonl(content)).encode("utf-8")
        (folder / name).write_bytes(data)
    return folder


# --- question sets -----------------------------------------------------------------------------

BAD_QUESTION_LINES = [
    ({**OK, "question": None}, "field 'question' must be text, not null"),
    ({**OK, "question": 5}, "field 'question' must be text, not number"),
    ({**OK, "question": " \t"}, "field 'question' is empty"),
    ({k: v for k, v in OK.items() if k != "id"}, "field 'id' is missing"),
    ({**OK, "id": ""}, "field 'id' is empty"),
    ({**OK, "id": 1.5}, "field 'id' must be text or a whole number, not number"),
    ('["q1", "what is myoclonus?"]', "is a JSON list, not an object"),
    (DEEP, "is JSON nested too deeply to read"),
    ('{"id": "q1", ', "is not valid JSON"),
    ({**OK, "kind": "trivia"}, "kind 'trivia' is not one of"),
    ({**OK, "evidence": "a brief jerk"}, "field 'evidence' must be a list of objects"),
    ({**OK, "evidence": ["a brief jerk"]}, "field 'evidence[1]' must be an object"),
    ({**OK, "evidence": [{"source": "a.txt"}]}, "field 'evidence[1].text' is missing"),
    ({**OK, "evidence": [{"source": "a.txt", "text": ""}]}, "field 'evidence[1].text' is empty"),
    ({**OK, "evidence": [{"source": "a.txt", "text": " \n"}]},
     "field 'evidence[1].text' is empty"),
    ({**OK, "evidence": [{"source": None, "text": "x"}]},
     "field 'evidence[1].source' must be text, not null"),
    ({**OK, "kind": "out_of_scope"}, "out_of_scope questions, and only they"),
    ('{"id": "q1", "question": "\\ud800?", "kind": "out_of_scope", "evidence": []}',
     "field 'question' holds an unpaired surrogate"),
]


@pytest.mark.parametrize("row,message", BAD_QUESTION_LINES,
                         ids=[m for _, m in BAD_QUESTION_LINES])
def test_a_bad_question_line_is_named_by_file_line_and_field(tmp_path: Path, row: object,
                                                             message: str) -> None:
    path = _questions(tmp_path, {**OK, "id": "q0"}, row)
    with pytest.raises(MyoqaError) as caught:
        evaluation.load_questions(path)
    assert str(caught.value).startswith(f"{path}:2: "), caught.value
    assert message in str(caught.value)


@pytest.mark.parametrize("first,second", [("q1", "q1"), (1, "1")])
def test_repeated_question_ids_are_refused_naming_both_lines(tmp_path: Path, first: object,
                                                             second: object) -> None:
    path = _questions(tmp_path, {**OK, "id": first}, {**OK, "id": "x"}, {**OK, "id": second})
    with pytest.raises(MyoqaError, match=r"set.jsonl:3: id '1?q?1' repeats line 1"):
        evaluation.load_questions(path)


def test_non_utf8_question_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_bytes(_jsonl([OK]).encode() + b'{"id": "caf\xe9"}\n')
    with pytest.raises(MyoqaError, match=r"set.jsonl:2: is not UTF-8 text"):
        evaluation.load_questions(path)


def test_question_file_that_is_a_folder_or_missing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(MyoqaError, match="is a folder, not a file"):
        evaluation.load_questions(tmp_path)
    with pytest.raises(MyoqaError, match="evaluation file .*nothing.jsonl is missing"):
        evaluation.load_questions(tmp_path / "nothing.jsonl")


def test_empty_evidence_no_longer_counts_as_a_hit(tmp_path: Path) -> None:
    """Before, a quote of "" was found at every offset, so any passage covered it."""
    path = _questions(tmp_path, {**OK, "question": "how do I bake bread?",
                                 "evidence": [{"source": "a.txt", "text": ""}]})
    with pytest.raises(MyoqaError, match="evidence\\[1\\].text' is empty"):
        evaluation.load_questions(path)


def test_a_valid_file_reads_numbers_as_ids_and_keeps_lines(tmp_path: Path) -> None:
    path = _questions(tmp_path, {**OK, "id": 7}, "",
                      {**OK, "id": "q2", "kind": "out_of_scope", "evidence": []})
    first, second = evaluation.load_questions(path)
    assert (first.id, first.line, first.half) == ("7", 1, "tune")
    assert (second.id, second.line, second.evidence) == ("q2", 3, ())


# --- BEIR collections --------------------------------------------------------------------------

def test_a_valid_collection_reads_whole(tmp_path: Path) -> None:
    collection = beir.load(_collection(tmp_path / "c"))
    assert [d.name for d in collection.documents] == ["d1", "d2"]
    assert collection.documents[1].text == "Flutter\n\ndiaphragmatic flutter"
    assert collection.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert list(collection.judged_queries) == ["q1", "q2"]


@pytest.mark.parametrize("qrels", [
    "q1\td1\t1\nq2\td2\t1\n",                                   # BEIR without its header
    "query-id corpus-id score\nq1 d1 1\nq2   d2 1\n",              # spaces
    "q1\t0\td1\t1\nq2 0 d2 1\r\n",                                # TREC qrels (4 columns), CRLF
    "\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n\nq2\td2\t1\nq2\td2\t1\n",  # BOM, blank, repeat
], ids=["headerless", "spaces", "trec-4-columns", "bom-blank-repeat"])
def test_qrels_layouts_are_read_alike(tmp_path: Path, qrels: str) -> None:
    collection = beir.load(_collection(tmp_path / "c", qrels=qrels))
    assert collection.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def test_the_first_judgement_is_not_taken_for_a_header(tmp_path: Path) -> None:
    collection = beir.load(_collection(tmp_path / "c", qrels="q1\td1\t2\n"))
    assert collection.qrels == {"q1": {"d1": 2}}


BAD_COLLECTIONS = [
    ({"corpus": [*DOCS, {"_id": "d1", "text": "other"}]},
     "corpus.jsonl:3: _id 'd1' repeats line 1"),
    ({"corpus": [{"_id": 1, "text": "x"}, {"_id": "1", "text": "y"}]},
     "corpus.jsonl:2: _id '1' repeats line 1"),
    ({"queries": [*QUERIES, {"_id": "q1", "text": "again"}]},
     "queries.jsonl:3: _id 'q1' repeats line 1"),
    ({"corpus": [*DOCS, {"text": "no id"}]}, "corpus.jsonl:3: field '_id' is missing"),
    ({"corpus": [*DOCS, ["d3", "text"]]}, "corpus.jsonl:3: is a JSON list, not an object"),
    ({"corpus": [*DOCS, 42]}, "corpus.jsonl:3: is a JSON number, not an object"),
    ({"corpus": [*DOCS, {"_id": "d3", "text": None}]},
     "corpus.jsonl:3: field 'text' must be text, not null"),
    ({"corpus": [*DOCS, {"_id": "d3", "text": 5}]},
     "corpus.jsonl:3: field 'text' must be text, not number"),
    ({"corpus": [*DOCS, {"_id": "d3", "title": ["t"], "text": "x"}]},
     "corpus.jsonl:3: field 'title' must be text, not list"),
    ({"corpus": [*DOCS, {"_id": True, "text": "x"}]},
     "corpus.jsonl:3: field '_id' must be text or a whole number"),
    ({"corpus": [*DOCS, DEEP]}, "corpus.jsonl:3: is JSON nested too deeply"),
    ({"corpus": _jsonl(DOCS).encode() + b'{"_id": "d3", "text": "caf\xe9"}\n'},
     "corpus.jsonl:3: is not UTF-8 text"),
    ({"corpus": []}, "holds no documents"),
    ({"queries": [*QUERIES, {"_id": "q3", "text": "  "}]}, "queries.jsonl:3: field 'text' is empty"),
    ({"queries": [{"_id": "q1"}]}, "queries.jsonl:1: field 'text' is missing"),
    ({"corpus": [*DOCS, {"_id": "d\n3", "text": "x"}]}, "corpus.jsonl:3: id 'd\\n3' cannot be used"),
    ({"corpus": [*DOCS, {"_id": "d 3", "text": "x"}]}, "corpus.jsonl:3: id 'd 3' cannot be used"),
    ({"corpus": [*DOCS, {"_id": "d\x1b[2J", "text": "x"}]},
     "corpus.jsonl:3: id 'd\\x1b[2J' cannot be used"),
    ({"queries": [*QUERIES, {"_id": "q\u202e3", "text": "x"}]},
     "queries.jsonl:3: id 'q\\u202e3' cannot be used"),
    ({"qrels": ""}, "qrels/test.tsv hold no judgements"),
    ({"qrels": "query-id\tcorpus-id\tscore\n"}, "qrels/test.tsv hold no judgements"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\tyes\n"},
     "test.tsv:2: score 'yes' is not a whole number"),
    ({"qrels": "q1\td1\t1.5\n"}, "test.tsv:1: score '1.5' is not a whole number"),
    ({"qrels": "q1\td1\t100000000000000000000000\n"},
     "test.tsv:1: score '100000000000000000000000' is outside -2147483648…2147483647"),
    ({"qrels": "q1\td1\t2147483648\n"}, "test.tsv:1: score '2147483648' is outside"),
    ({"qrels": "q1\td1\t-" + "9" * 5000 + "\n"}, "test.tsv:1: score '-99999999999999999999999…'"),
    ({"qrels": "q1\td1\n"}, "test.tsv:1: has 2 columns"),
    ({"qrels": "q1 0 d1 1 extra\n"}, "test.tsv:1: has 5 columns"),
    ({"qrels": "q1\td1\t1\nq1\td1\t0\n"}, "test.tsv:2: judges q1 d1 again with another score"),
    ({"qrels": "q1\td1\t1\nq9\td1\t1\n"}, "test.tsv:2: query 'q9' is not in"),
    ({"qrels": b"q1\td1\t1\n\xff\n"}, "test.tsv:2: is not UTF-8 text"),
]


@pytest.mark.parametrize("change,message", BAD_COLLECTIONS, ids=[m for _, m in BAD_COLLECTIONS])
def test_a_bad_collection_is_one_line_naming_file_line_and_field(
        tmp_path: Path, change: dict[str, object], message: str) -> None:
    folder = _collection(tmp_path / "c", **change)
    with pytest.raises(MyoqaError) as caught:
        beir.load(folder)
    assert message in str(caught.value), caught.value
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_beir_folder_missing_file_or_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(MyoqaError, match="BEIR path .*afile is not a folder"):
        beir.load(tmp_path / "afile")
    with pytest.raises(MyoqaError, match="BEIR folder .*none does not exist"):
        beir.load(tmp_path / "none")
    folder = _collection(tmp_path / "c")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(MyoqaError, match="queries.jsonl is missing .a BEIR folder holds"):
        beir.load(folder)


def test_beir_index_goes_below_the_index_folder_however_it_was_named(tmp_path: Path,
                                                                     monkeypatch) -> None:
    by_flag = Settings.resolve(index_dir=tmp_path / "D")
    monkeypatch.setenv("MYOQA_INDEX_DIR", str(tmp_path / "D"))
    by_env = Settings.resolve()
    for settings in (by_flag, by_env):
        assert eval_report.beir_index_dir(settings, Path("eval/datasets/med")) == \
            tmp_path / "D" / "beir" / "med"


def test_trec_lines_carry_every_checked_id_in_six_fields() -> None:
    text = beir.trec_lines({"q1": {"d-1": 0.5, "d/2": 0.75}}, "myoqa-bm25")
    assert text == "q1 Q0 d/2 1 0.750000 myoqa-bm25\nq1 Q0 d-1 2 0.500000 myoqa-bm25\n"


# --- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["eval", "--trec-out", "x.trec"], ["--trec-out needs --beir"]),
    (["eval", "--beir", "eval/datasets/med", "--run-out", "x.jsonl"], ["--run-out is for"]),
    (["eval", "--beir", "eval/datasets/med", "--file", "q.jsonl"], ["--file is for"]),
    (["bench", "--sizes=-5"], ["between 1 and"]),
    (["bench", "--sizes", "0"], ["between 1 and"]),
    (["bench", "--sizes", "10,junk"], ["'junk'"]),
], ids=["trec-out-without-beir", "run-out-with-beir", "file-with-beir", "sizes-negative",
        "sizes-zero", "sizes-junk"])
def test_option_misuse_is_a_usage_error_at_once(tmp_path: Path, args: list[str],
                                               words: list[str]) -> None:
    proc = run_cli(*args, env={"MYOQA_INDEX_DIR": str(tmp_path / "index")}, timeout=60)
    one_line_error(proc, 2, *words)
    assert not (tmp_path / "index").exists()


def test_bench_out_that_is_a_file_is_refused_before_measuring(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep", encoding="utf-8")
    proc = run_cli("bench", "--out", str(tmp_path / "afile"), timeout=60)
    one_line_error(proc, 2, "is not a folder")
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "keep"


def test_a_failed_benchmark_step_is_one_line_not_a_traceback() -> None:
    with pytest.raises(MyoqaError, match="the benchmark step 'scale 5 passages' failed: boom"):
        harness.child([sys.executable, "-c", "import sys; sys.exit('boom')"], "scale 5 passages")


def test_cli_names_the_bad_line_before_loading_anything(tmp_path: Path) -> None:
    path = _questions(tmp_path, {**OK, "question": None})
    proc = run_cli("eval", "--file", str(path), env={"MYOQA_INDEX_DIR": str(tmp_path / "i")})
    one_line_error(proc, 1, f"{path}:1: field 'question' must be text, not null")
    beir_proc = run_cli("eval", "--beir", str(tmp_path / "set.jsonl"),
                        env={"MYOQA_INDEX_DIR": str(tmp_path / "i")})
    one_line_error(beir_proc, 1, "is not a folder")
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize("place", ["a folder of other files", "inside the sources"])
def test_beir_eval_refuses_an_index_folder_that_ask_refuses(tmp_path: Path, place: str) -> None:
    folder = _collection(tmp_path / "c")
    sources = tmp_path / "sources"
    sources.mkdir()
    index = tmp_path / "mine" if place == "a folder of other files" else sources / "index"
    index.mkdir()
    (index / "notes.txt").write_text("my own notes\n", encoding="utf-8")
    env = {"MYOQA_SOURCES": str(sources), "MYOQA_INDEX_DIR": str(index)}
    words = ("already holds files that are not a myoqa index"
             if place == "a folder of other files" else "is inside the sources folder")
    ask_line = one_line_error(run_cli("ask", "jerk", env=env), 1, words)
    eval_line = one_line_error(run_cli("eval", "--beir", str(folder), "--mode", "bm25", env=env),
                               1, words)
    assert eval_line == ask_line
    assert sorted(p.name for p in index.iterdir()) == ["notes.txt"]


def test_a_qrels_score_too_large_to_score_is_refused_before_indexing(tmp_path: Path) -> None:
    folder = _collection(tmp_path / "c", qrels="q1\td1\t100000000000000000000000\nq2\td2\t1\n")
    proc = run_cli("eval", "--beir", str(folder), "--mode", "bm25",
                   env={"MYOQA_INDEX_DIR": str(tmp_path / "i")})
    one_line_error(proc, 1, f"{folder / 'qrels' / 'test.tsv'}:1: score '100000000000000000000000'"
                   " is outside -2147483648…2147483647")
    assert not (tmp_path / "i").exists()


# --- any bytes ---------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3), max_leaves=8)
FIELDS = ["id", "_id", "question", "kind", "answer", "evidence", "text", "title", "source"]
OBJECTS = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES | st.sampled_from(
    ["lexical", "out_of_scope", "q1", "", " "]) | st.just([{"source": "a", "text": "b"}]),
    max_size=6).map(lambda row: json.dumps(row).encode())
QREL_LINES = st.lists(st.sampled_from([b"q1", b"d1", b"0", b"1", b"yes", b"-2", b"query-id",
                                       b"corpus-id", b"score", b"\xff", b"\x1b"]),
                      max_size=5).map(lambda words: b"\t".join(words))
LINES = st.lists(OBJECTS | QREL_LINES | st.binary(max_size=30) | st.sampled_from(
    [b"[" * 5000, b"{", b"[1, 2]", b"null", b"\r", b"\xef\xbb\xbf{}"]), max_size=6)
ANY_FILE = LINES.map(lambda lines: b"\n".join(lines)) | st.binary(max_size=200)


@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(questions=ANY_FILE, corpus=ANY_FILE, queries=ANY_FILE, qrels=ANY_FILE)
def test_any_bytes_give_a_reading_or_one_clear_error(questions: bytes, corpus: bytes,
                                                     queries: bytes, qrels: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = _collection(Path(tmp), corpus, queries, qrels)
        (folder / "set.jsonl").write_bytes(questions)
        for read in (lambda: evaluation.load_questions(folder / "set.jsonl"),
                     lambda: beir.load_corpus(folder / "corpus.jsonl"),
                     lambda: beir.load_queries(folder / "queries.jsonl"),
                     lambda: beir.load_qrels(folder / "qrels" / "test.tsv"),
                     lambda: beir.load(folder)):
            try:
                read()
            except MyoqaError as exc:
                assert "\n" not in str(exc) and str(exc).strip()


# --- report paging -----------------------------------------------------------------------------

def test_a_long_report_is_paged_only_in_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    paged: list[str] = []
    monkeypatch.setattr("pydoc.pager", paged.append)
    monkeypatch.setattr(eval_report.shutil, "get_terminal_size",
                        lambda: os.terminal_size((80, 24)))
    lines = [f"row {i}" for i in range(30)]
    eval_report.show(lines)
    assert capsys.readouterr().out == "\n".join(lines) + "\n" and paged == [], "piped: printed"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    eval_report.show(lines[:10])
    assert capsys.readouterr().out.count("row") == 10 and paged == [], "fits: printed"
    eval_report.show(lines)
    assert paged == ["\n".join(lines)] and capsys.readouterr().out == ""


def test_report_groups_nest_under_fixed_keys_whatever_the_source_names() -> None:
    group = evaluation.GroupSummary(1, 1.0, 1.0, 1.0, 1.0, 1.0, None, evaluation.Count(0, 0),
                                    evaluation.Count(0, 1))
    nested = eval_report.summary_json({"all": group, "kind=lexical": group,
                                       "source=my notes=v2.txt": group,
                                       "check kind=multi": group})
    assert set(nested) == {"all", "by_kind", "by_source", "check_by_kind"}
    assert set(nested["by_source"]) == {"my notes=v2.txt"}
    assert nested["all"]["in_scope_abstained"] == {"abstained": 0, "of": 1}
    assert nested["all"]["full_at_5_multi"] is None
