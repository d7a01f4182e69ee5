"""The follow-up rule: clear cases of `contextualize`, and Hit@5 of eval/followups.jsonl with and
without it, on a real index of the seeds (run with -s to see the numbers)."""

from __future__ import annotations

import json

import pytest

from myoqa.config import PROJECT_ROOT
from myoqa.evaluation import Evidence, Question, evidence_ranges, question_metrics
from myoqa.followup import content_words, contextualize, is_followup
from myoqa.search import MODES, Searcher

FOLLOWUPS = PROJECT_ROOT / "eval" / "followups.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in FOLLOWUPS.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _question(row: dict, text: str, number: int) -> Question:
    evidence = tuple(Evidence(e["source"], e["text"]) for e in row["evidence"])
    return Question(row["id"], text, "paraphrase", "", evidence, number)


def hit_rate(searcher: Searcher, mode: str, with_rule: bool) -> float:
    """Share of follow-ups with a passage covering their evidence in the top 5."""
    hits = 0
    rows = _rows()
    for number, row in enumerate(rows, 1):
        text = contextualize(row["followup"], row["first"]) if with_rule else row["followup"]
        answer = searcher.search(text, mode, 5)
        ranked = [(r.source, r.start, r.end) for r in answer.results]
        spans = evidence_ranges(_question(row, text, number), searcher.index.texts)
        hits += question_metrics(ranked, spans)["Hit@5"] == 1.0
    return hits / len(rows)


def test_followup_file_is_valid(searcher: Searcher) -> None:
    rows = _rows()
    assert len(rows) >= 10
    for number, row in enumerate(rows, 1):
        assert row["first"] and row["followup"]
        assert evidence_ranges(_question(row, row["followup"], number), searcher.index.texts)


@pytest.mark.parametrize("mode", MODES)
def test_rule_raises_hit_at_5(searcher: Searcher, mode: str) -> None:
    without = hit_rate(searcher, mode, with_rule=False)
    with_rule = hit_rate(searcher, mode, with_rule=True)
    print(f"\nfollow-up Hit@5 ({mode}): without the rule {without:.3f}, with it {with_rule:.3f}")
    assert with_rule > without


def test_followup_carries_the_subject() -> None:
    searched = contextualize("what about its treatment?", "what is diaphragmatic flutter?")
    assert searched == "what about its treatment? diaphragmatic flutter"


@pytest.mark.parametrize("question", [
    "and gaba?",
    "how about in children?",
    "is it normal?",
    "which ones are less benign?",
    "which diseases exactly?",
    "what are its side effects?",
])
def test_followups_are_recognised(question: str) -> None:
    assert is_followup(question)
    assert contextualize(question, "what does serotonin do in myoclonus?").endswith(
        "serotonin myoclonus")


@pytest.mark.parametrize("question", [
    "what is myoclonus?",
    "which drug is most effective in juvenile myoclonic epilepsy",
    "can opioids cause myoclonus?",
    "does it cause jerks in the arms, legs and face during sleep?",
])
def test_standalone_questions_are_unchanged(question: str) -> None:
    assert not is_followup(question)
    assert contextualize(question, "what is diaphragmatic flutter?") == question


def test_no_previous_question_means_no_change() -> None:
    assert contextualize("what about its treatment?", None) == "what about its treatment?"
    assert contextualize("and gaba?", "") == "and gaba?"


def test_surface_words_are_kept_and_not_repeated() -> None:
    searched = contextualize("and is MERRF inherited?", "what does MERRF stand for?")
    assert searched == "and is MERRF inherited? stand"
    assert contextualize("does clonazepam lose its effect?", "how is Clonazepam dosed?") == (
        "does clonazepam lose its effect? dosed")


def test_previous_without_content_words_changes_nothing() -> None:
    assert contextualize("and then?", "what is it?") == "and then?"


def test_content_words_keep_order_and_spelling() -> None:
    assert content_words("What is the EEG in Cortical myoclonus, and the EEG?") == [
        "EEG", "Cortical", "myoclonus"]
