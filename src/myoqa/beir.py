"""Evaluation on external collections in BEIR format, scored with ir_measures.

Each document becomes a source; short documents are one passage, long ones are chunked, and a
document scores as its best passage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.corpus import Source, fingerprint
from myoqa.errors import MyoqaError
from myoqa.search import Searcher

MEASURES = ("nDCG@10", "R@10", "R@100", "RR@10", "AP@100")
DEPTH = 100
CANDIDATES = 2000


CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = Path("qrels") / "test.tsv"


def input_files(directory: Path) -> list[Path]:
    """The files a BEIR evaluation reads, which no output may overwrite."""
    return [directory / CORPUS_FILE, directory / QUERIES_FILE, directory / QRELS_FILE]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        raise MyoqaError(f"BEIR file {path} is missing",
                         "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv"
                         ) from None
    except (OSError, ValueError) as exc:
        raise MyoqaError(f"cannot read BEIR file {path}: {exc}") from None


def load_corpus(directory: Path) -> list[Source]:
    """The collection's documents as sources named by their ids (title, blank line, text)."""
    out = []
    for row in _jsonl(directory / "corpus.jsonl"):
        text = "\n\n".join(part for part in (row.get("title", ""), row.get("text", "")) if part)
        out.append(Source(str(row["_id"]), text, fingerprint(text.encode("utf-8"))))
    return out


def load_queries(directory: Path) -> dict[str, str]:
    """Query id → text."""
    return {str(row["_id"]): row["text"] for row in _jsonl(directory / "queries.jsonl")}


def load_qrels(directory: Path) -> dict[str, dict[str, int]]:
    """Query id → {document id: relevance} from qrels/test.tsv."""
    path = directory / "qrels" / "test.tsv"
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MyoqaError(f"cannot read BEIR qrels {path}: {exc}") from None
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def rank_documents(searcher: Searcher, query: str, mode: str, depth: int = DEPTH
                   ) -> list[tuple[str, float]]:
    """Documents by their best passage's score, best first."""
    scored = searcher.score(query, mode)
    best: dict[str, float] = {}
    for j in np.argsort(-scored.fused, kind="stable"):
        doc = searcher.index.passages[int(scored.ids[j])].source
        if doc not in best:
            best[doc] = float(scored.fused[j])
            if len(best) == depth:
                break
    return list(best.items())


def evaluate(searcher: Searcher, directory: Path, mode: str,
             tick: Callable[[int], None] | None = None) -> tuple[dict[str, float], dict]:
    """(aggregate measures, run) for every query that has judgements."""
    import ir_measures

    queries = load_queries(directory)
    qrels = load_qrels(directory)
    run: dict[str, dict[str, float]] = {}
    for qid, text in queries.items():
        if qid in qrels:
            run[qid] = dict(rank_documents(searcher, text, mode))
        if tick:
            tick(1)
    measures = [ir_measures.parse_measure(m) for m in MEASURES]
    result = ir_measures.calc_aggregate(measures, qrels, run)
    return {str(m): float(v) for m, v in result.items()}, run


def trec_lines(run: dict[str, dict[str, float]], tag: str) -> str:
    """A TREC run file's text: `query_id Q0 doc_id rank score tag` lines."""
    lines = []
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda d: -d[1])
        lines += [f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n"
                  for rank, (doc, score) in enumerate(ranked, 1)]
    return "".join(lines)
