"""Retrieval evaluation on question–evidence sets: relevance by evidence overlap, and metrics.

A returned passage is relevant to a question when it lies in the same source as one of the
question's evidence spans and covers at least half of that span's characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from myoqa import jsonl
from myoqa.errors import MyoqaError
from myoqa.search import Answer, Searcher

KINDS = ("lexical", "paraphrase", "multi", "out_of_scope")
FORMAT_HINT = "see the eval set format in the README"
CUTOFF = 10


@dataclass(frozen=True)
class Evidence:
    """An exact quote from a source that answers a question."""

    source: str
    text: str


@dataclass(frozen=True)
class Question:
    """One line of an evaluation file; `line` decides its half (odd: tune, even: check)."""

    id: str
    question: str
    kind: str
    answer: str
    evidence: tuple[Evidence, ...]
    line: int

    @property
    def half(self) -> str:
        """'tune' for odd lines, 'check' for even ones."""
        return "tune" if self.line % 2 else "check"


def load_questions(path: Path) -> list[Question]:
    """Read and validate an evaluation file in the documented JSONL format, refusing a bad line
    with its file, line and field."""
    out, seen = [], {}
    for number, row in jsonl.read_objects(path, "evaluation file", FORMAT_HINT):
        ident = jsonl.id_field(row, "id", path, number, seen)
        question = jsonl.text_field(row, "question", path, number)
        kind = jsonl.text_field(row, "kind", path, number)
        if kind not in KINDS:
            raise jsonl.line_error(path, number, f"kind {kind!r} is not one of {', '.join(KINDS)}",
                                   FORMAT_HINT)
        answer = jsonl.text_field(row, "answer", path, number, required=False, blank_ok=True)
        evidence = _evidence(row.get("evidence", []), path, number)
        if (kind == "out_of_scope") != (not evidence):
            raise jsonl.line_error(path, number, "out_of_scope questions, and only they, have "
                                   "no evidence", FORMAT_HINT)
        out.append(Question(ident, question, kind, answer, evidence, number))
    if not out:
        raise MyoqaError(f"evaluation file {path} holds no questions", FORMAT_HINT)
    return out


def _evidence(value: Any, path: Path, line: int) -> tuple[Evidence, ...]:
    """The evidence list: objects with a non-empty `source` and `text` (an empty quote would be
    found everywhere and count any passage as a hit)."""
    if not isinstance(value, list):
        raise jsonl.line_error(path, line, "field 'evidence' must be a list of objects",
                               FORMAT_HINT)
    out = []
    for position, item in enumerate(value, 1):
        where = f"evidence[{position}]"
        if not isinstance(item, dict):
            raise jsonl.line_error(path, line, f"field '{where}' must be an object with source "
                                   "and text", FORMAT_HINT)
        out.append(Evidence(
            jsonl.text_field(item, "source", path, line, label=f"{where}.source"),
            jsonl.text_field(item, "text", path, line, label=f"{where}.text")))
    return tuple(out)


def evidence_ranges(question: Question, texts: dict[str, str]) -> list[list[tuple[str, int, int]]]:
    """For each evidence span, every place its text occurs in its source (named by file name,
    or by a path ending in it)."""
    out = []
    for ev in question.evidence:
        source = ev.source if ev.source in texts else PurePath(ev.source).name
        if source not in texts:
            raise MyoqaError(f"question {question.id} cites {ev.source!r}, which is not indexed")
        text, places, pos = texts[source], [], 0
        while (pos := text.find(ev.text, pos)) >= 0:
            places.append((source, pos, pos + len(ev.text)))
            pos += 1
        if not places:
            places = [(source, m.start(), m.end()) for m in _loose(ev.text).finditer(text)]
        if not places:
            raise MyoqaError(f"evidence of question {question.id} is not in {ev.source}",
                             "evidence must be an exact quote of the source")
        out.append(places)
    return out


def _loose(quote: str) -> re.Pattern[str]:
    """The quote's words in order, across any whitespace and in any case: a quote copied with
    a line break or a single space where the source has two still finds its place."""
    return re.compile(r"\s+".join(map(re.escape, quote.split())) or "(?!)", re.IGNORECASE)


def covered(passage: tuple[str, int, int], places: list[tuple[str, int, int]]) -> bool:
    """Whether a passage covers at least half of the characters of the evidence span."""
    source, start, end = passage
    return any(src == source and 2 * (min(end, e) - max(start, s)) >= e - s
               for src, s, e in places)


def question_metrics(ranked: list[tuple[str, int, int]],
                     spans: list[list[tuple[str, int, int]]]) -> dict[str, float]:
    """Hit@1/3/5, MRR@10, nDCG@10 and Full@5 for one ranking of (source, start, end)."""
    first = None
    seen: set[int] = set()
    dcg = 0.0
    for rank, passage in enumerate(ranked[:CUTOFF], 1):
        hits = {i for i, places in enumerate(spans) if covered(passage, places)}
        if hits and first is None:
            first = rank
        if hits - seen:
            dcg += 1 / math.log2(rank + 1)
        seen |= hits
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(spans), CUTOFF) + 1))
    top5 = {i for p in ranked[:5] for i, places in enumerate(spans) if covered(p, places)}
    return {"Hit@1": float(first == 1), "Hit@3": float(first is not None and first <= 3),
            "Hit@5": float(first is not None and first <= 5),
            "MRR@10": 1 / first if first else 0.0, "nDCG@10": dcg / ideal if ideal else 0.0,
            "Full@5": float(len(top5) == len(spans))}


@dataclass
class Outcome:
    """What one mode did on one question."""

    question: Question
    answer: Answer
    metrics: dict[str, float] = field(default_factory=dict)


def run(searcher: Searcher, questions: list[Question], mode: str, k: int = CUTOFF,
        tick: Callable[[int], None] | None = None) -> list[Outcome]:
    """Ask every question in `mode` and score the in-scope ones."""
    outcomes = []
    for q in questions:
        answer = searcher.search(q.question, mode, k)
        ranked = [(r.source, r.start, r.end) for r in answer.results]
        metrics = (question_metrics(ranked, evidence_ranges(q, searcher.index.texts))
                   if q.evidence else {})
        outcomes.append(Outcome(q, answer, metrics))
        if tick:
            tick(1)
    return outcomes


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Count:
    """How many of a group's questions were abstained on."""

    abstained: int
    of: int

    def __str__(self) -> str:
        return f"{self.abstained}/{self.of}"


@dataclass(frozen=True)
class GroupSummary:
    """The metrics of one group of questions; a metric is None when no question measures it
    (Full@5 needs multi questions, the hit metrics in-scope ones)."""

    questions: int
    hit_at_1: float | None
    hit_at_3: float | None
    hit_at_5: float | None
    mrr_at_10: float | None
    ndcg_at_10: float | None
    full_at_5_multi: float | None
    out_of_scope_abstained: Count
    in_scope_abstained: Count


# GroupSummary fields → their names in the table.
METRIC_LABELS = {"hit_at_1": "Hit@1", "hit_at_3": "Hit@3", "hit_at_5": "Hit@5",
                 "mrr_at_10": "MRR@10", "ndcg_at_10": "nDCG@10",
                 "full_at_5_multi": "Full@5 (multi)",
                 "out_of_scope_abstained": "out-of-scope abstained",
                 "in_scope_abstained": "in-scope abstained"}


def summarize_group(items: list[Outcome]) -> GroupSummary:
    """Mean metrics over the in-scope questions, Full@5 over the multi ones, and counts."""
    scored = [o for o in items if o.metrics]
    oos = [o for o in items if o.question.kind == "out_of_scope"]

    def mean(name: str, of: list[Outcome] = scored) -> float | None:
        return _mean([o.metrics[name] for o in of])

    return GroupSummary(
        questions=len(items), hit_at_1=mean("Hit@1"), hit_at_3=mean("Hit@3"),
        hit_at_5=mean("Hit@5"), mrr_at_10=mean("MRR@10"), ndcg_at_10=mean("nDCG@10"),
        full_at_5_multi=mean("Full@5", [o for o in scored if o.question.kind == "multi"]),
        out_of_scope_abstained=Count(sum(o.answer.abstained for o in oos), len(oos)),
        in_scope_abstained=Count(sum(o.answer.abstained for o in scored), len(scored)))


def summarize(outcomes: list[Outcome]) -> dict[str, GroupSummary]:
    """Metrics overall ("all"), by half ("tune", "check"), kind ("kind=K"), source
    ("source=S") and half and kind ("tune kind=K"); only groups that have questions."""
    groups: dict[str, list[Outcome]] = {"all": outcomes}
    for half in ("tune", "check"):
        groups[half] = [o for o in outcomes if o.question.half == half]
    for kind in KINDS:
        groups[f"kind={kind}"] = [o for o in outcomes if o.question.kind == kind]
    sources = sorted({e.source for o in outcomes for e in o.question.evidence})
    for src in sources:
        groups[f"source={src}"] = [o for o in outcomes
                                   if {e.source for e in o.question.evidence} == {src}]
    for half in ("tune", "check"):
        for kind in KINDS:
            groups[f"{half} kind={kind}"] = [o for o in groups[half] if o.question.kind == kind]
    return {name: summarize_group(items) for name, items in groups.items() if items}


def run_lines(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The --run-out records: one per question, its ranked passages."""
    return [{"id": o.question.id, "abstained": o.answer.abstained,
             "passages": [{"source": r.source, "start": r.start, "end": r.end,
                           "score": round(r.score, 6)} for r in o.answer.results]}
            for o in outcomes]


def misses(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """In-scope questions with no relevant passage in the top 5, and what came first instead."""
    out = []
    for o in outcomes:
        if o.metrics and not o.metrics["Hit@5"]:
            top = o.answer.results[0] if o.answer.results else None
            out.append({"id": o.question.id, "kind": o.question.kind,
                        "question": o.question.question,
                        "first": None if top is None else
                        {"source": top.source, "start": top.start, "end": top.end,
                         "text": top.text[:90]}})
    return out
