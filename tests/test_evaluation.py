"""The evaluation set, the evidence-overlap metrics, `myoqa eval`, and the quality floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import CONTROLS, FLUTTER, MED, SEEDS, run_cli
from myoqa import evaluation
from myoqa.config import PROJECT_ROOT, Settings
from myoqa.errors import MyoqaError
from myoqa.search import Searcher

QUESTIONS = PROJECT_ROOT / "eval" / "questions.jsonl"
HOLDOUT = PROJECT_ROOT / "eval" / "holdout.jsonl"
FOLLOWUPS = PROJECT_ROOT / "eval" / "followups.jsonl"
KEYS = {"id", "question", "kind", "answer", "evidence"}

# Hybrid-mode numbers reported in eval/RESULTS.md; quality is deterministic, so they must not drop.
# Late interaction, on by default, costs the check half one Hit@5 question of 43 (0.837 → 0.814)
# while it raises Hit@1 and MRR@10 on every set, unseen ones included (README, issue 18).
FLOOR = {
    "tune": {"hit_at_1": 0.70, "hit_at_5": 0.90, "mrr_at_10": 0.78, "full_at_5_multi": 0.85},
    "check": {"hit_at_1": 0.65, "hit_at_5": 0.81, "mrr_at_10": 0.73, "full_at_5_multi": 0.42},
}
HOLDOUT_FLOOR = {"hit_at_1": 0.66, "hit_at_5": 0.88, "mrr_at_10": 0.75, "full_at_5_multi": 0.60}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("path,size", [(QUESTIONS, 80), (HOLDOUT, 60)])
def test_question_set_format_and_exact_evidence(path: Path, size: int) -> None:
    rows = _lines(path)
    texts = {p.name: p.read_text(encoding="utf-8") for p in SEEDS.iterdir()}
    assert len(rows) >= size
    kinds = [r["kind"] for r in rows]
    assert kinds.count("paraphrase") * 3 >= len(rows)
    assert kinds.count("out_of_scope") >= 10 and kinds.count("multi") >= 5
    for r in rows:
        assert set(r) == KEYS, r["id"]
        assert (r["kind"] == "out_of_scope") == (r["evidence"] == [])
        for ev in r["evidence"]:
            assert ev["text"] in texts[ev["source"]], (r["id"], ev["text"])
            assert 4 <= len(ev["text"].split()) <= 35, r["id"]
        if r["kind"] == "multi":
            assert sorted(ev["source"] for ev in r["evidence"]) == sorted(texts)
    assert len({r["id"] for r in rows}) == len(rows)


def test_followup_set_has_exact_evidence() -> None:
    rows = _lines(FOLLOWUPS)
    assert len(rows) >= 12
    for r in rows:
        for ev in r["evidence"]:
            assert ev["text"] in (SEEDS / ev["source"]).read_text(encoding="utf-8")


def test_coverage_rule_is_half_the_evidence() -> None:
    places = [("a", 100, 200)]
    assert evaluation.covered(("a", 150, 400), places)
    assert not evaluation.covered(("a", 151, 400), places)
    assert not evaluation.covered(("b", 0, 400), places)


def test_evidence_is_found_across_whitespace_and_case_but_not_when_misquoted() -> None:
    text = "Like all hyperkinesis, myoclonus enhanced  For the treatment\n of jerks"
    quote = evaluation.Question("x", "?", "lexical", "", (
        evaluation.Evidence("s.txt", "myoclonus enhanced for the treatment of"),), 1)
    [[place]] = evaluation.evidence_ranges(quote, {"s.txt": text})
    assert text[place[1]:place[2]] == "myoclonus enhanced  For the treatment\n of"
    by_path = evaluation.Question("z", "?", "lexical", "", (
        evaluation.Evidence("seeds/s.txt", "all hyperkinesis"),), 1)
    assert evaluation.evidence_ranges(by_path, {"s.txt": text}) == [[("s.txt", 5, 21)]]
    wrong = evaluation.Question("y", "?", "lexical", "", (
        evaluation.Evidence("s.txt", "myoclonus reduced"),), 1)
    with pytest.raises(MyoqaError, match="evidence of question y is not in s.txt"):
        evaluation.evidence_ranges(wrong, {"s.txt": text})


def test_metrics_agree_with_ir_measures_when_passages_are_documents() -> None:
    import ir_measures

    ranked = [("d3", 0, 10), ("d1", 0, 10), ("d7", 0, 10), ("d2", 0, 10), ("d9", 0, 10)]
    evidence = [[("d1", 0, 10)], [("d2", 0, 10)]]
    ours = evaluation.question_metrics(ranked, evidence)
    qrels = {"q": {"d1": 1, "d2": 1}}
    run = {"q": {doc: 10.0 - i for i, (doc, _, _) in enumerate(ranked)}}
    theirs = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR @ 10], qrels, run)
    assert ours["nDCG@10"] == pytest.approx(theirs[ir_measures.nDCG @ 10])
    assert ours["MRR@10"] == pytest.approx(theirs[ir_measures.RR @ 10])
    assert ours["Hit@1"] == 0.0 and ours["Hit@3"] == 1.0 and ours["Full@5"] == 1.0


@pytest.mark.slow  # every question of eval/questions.jsonl
def test_tuned_quality_does_not_regress(searcher: Searcher) -> None:
    questions = evaluation.load_questions(QUESTIONS)
    summary = evaluation.summarize(evaluation.run(searcher, questions, "hybrid"))
    for half, floor in FLOOR.items():
        for metric, value in floor.items():
            assert getattr(summary[half], metric) >= value, (half, metric, summary[half])
    assert summary["all"].in_scope_abstained == evaluation.Count(0, 87)


@pytest.mark.slow  # every question of eval/holdout.jsonl
def test_held_out_quality_does_not_regress(searcher: Searcher) -> None:
    """eval/holdout.jsonl was written apart from the system and never used to choose a setting."""
    summary = evaluation.summarize(evaluation.run(searcher, evaluation.load_questions(HOLDOUT),
                                                  "hybrid"))["all"]
    for metric, value in HOLDOUT_FLOOR.items():
        assert getattr(summary, metric) >= value, (metric, summary)
    assert summary.in_scope_abstained == evaluation.Count(0, 50)


ESCAPES = "\x1b[2J\x1b]0;title\x07\u202e\u009b"


def test_eval_command_prints_a_table_and_writes_runs(seed_settings: Settings,
                                                     tmp_path: Path) -> None:
    subset = tmp_path / "six.jsonl"
    hostile = {"id": f"q{ESCAPES}x", "question": f"how do I bake sourdough bread {ESCAPES}?",
               "kind": "lexical", "answer": "", "evidence": [{
                   "source": FLUTTER,
                   "text": "syndrome often experience myoclonic jerking limbs fingers thumbs"}]}
    subset.write_text("\n".join(QUESTIONS.read_text(encoding="utf-8").splitlines()[:5])
                      + "\n" + json.dumps(hostile) + "\n", encoding="utf-8")
    run_out = tmp_path / "run.jsonl"
    (tmp_path / "kept").mkdir()
    run_out.symlink_to(tmp_path / "kept" / "run.jsonl")
    env = {"MYOQA_INDEX_DIR": str(seed_settings.index_dir)}
    proc = run_cli("eval", "--file", str(subset), "--mode", "all", "-k", "7", "--run-out",
                   str(run_out), env=env)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split()
    assert header == ["hybrid", "bm25", "dense"]
    assert "Hit@5" in proc.stdout and "Missed at Hit@5" in proc.stdout
    assert "0/0" not in proc.stdout, "rows that measure nothing are left out"
    assert "kind=lexical (1 question)" in proc.stdout and "tune kind=lexical" not in proc.stdout
    assert not CONTROLS & set(proc.stdout), "escape sequences reach the terminal"
    assert "q\\x1b[2J\\x1b]0;title\\x07\\u202e\\x9bx [lexical]" in proc.stdout
    assert run_out.is_symlink(), "the link is written through, not replaced"
    lines = [json.loads(x) for x in run_out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 6 and all(set(x) == {"id", "abstained", "passages"} for x in lines)
    assert all(len(x["passages"]) == 7 for x in lines)
    assert set(lines[0]["passages"][0]) == {"source", "start", "end", "score"}

    proc = run_cli("eval", "--file", str(subset), "--mode", "bm25", "-k", "3", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not CONTROLS & set(proc.stdout)
    report = json.loads(proc.stdout)
    assert {k: report[k] for k in ("file", "k", "modes", "model", "questions")} == {
        "file": str(subset), "k": 3, "modes": ["bm25"], "model": seed_settings.model,
        "questions": 6}
    bm25 = report["results"]["bm25"]
    assert set(bm25) == {"all", "tune", "check", "by_kind", "by_source", "tune_by_kind",
                         "check_by_kind", "misses"}
    assert set(bm25["by_kind"]) == {"multi", "paraphrase", "out_of_scope", "lexical"}
    assert bm25["all"]["out_of_scope_abstained"]["of"] == 1
    assert set(bm25["all"]) == {"questions", "hit_at_1", "hit_at_3", "hit_at_5", "mrr_at_10",
                                "ndcg_at_10", "full_at_5_multi", "out_of_scope_abstained",
                                "in_scope_abstained"}
    assert all(isinstance(bm25["all"][m], float) for m in ("hit_at_1", "mrr_at_10"))
    # the sourdough question shares no word with any passage: BM25 alone abstains (issue 12)
    assert bm25["all"]["in_scope_abstained"] == {"abstained": 1, "of": 5}
    assert hostile["id"] in [m["id"] for m in bm25["misses"]], "escaped, not altered"


def test_eval_rejects_a_malformed_file(tmp_path: Path, seed_settings: Settings) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q"}\n', encoding="utf-8")
    proc = run_cli("eval", "--file", str(bad), env={"MYOQA_INDEX_DIR":
                                                     str(seed_settings.index_dir)})
    assert proc.returncode == 1 and "bad.jsonl:1" in proc.stderr


@pytest.mark.med
def test_med_beir_collection(med_searcher: Searcher, med_root: Path, tmp_path: Path) -> None:
    """`eval --beir` through the CLI, on the MED index the session already built."""
    trec = tmp_path / "med.trec"
    proc = run_cli("eval", "--beir", str(MED), "--json", "--trec-out", str(trec),
                   "--index-dir", str(med_root), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    measures = json.loads(proc.stdout)["measures"]
    hybrid, bm25, dense = (measures[m]["ndcg_at_10"] for m in ("hybrid", "bm25", "dense"))
    assert hybrid >= 0.80 and hybrid > bm25 and hybrid > dense
    first = trec.read_text(encoding="utf-8").splitlines()[0].split()
    assert len(first) == 6 and first[1] == "Q0" and first[3] == "1"
