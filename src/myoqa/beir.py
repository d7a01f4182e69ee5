"""Evaluation on external collections in BEIR format, scored with ir_measures.

Each document becomes a source; short documents are one passage, long ones are chunked, and a
document scores as its best passage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from myoqa import jsonl
from myoqa.corpus import Source, fingerprint
from myoqa.errors import MyoqaError
from myoqa.search import Searcher

# ir_measures' names → the keys of `eval --beir --json` (stable, snake_case).
MEASURES = {"nDCG@10": "ndcg_at_10", "R@10": "recall_at_10", "R@100": "recall_at_100",
            "RR@10": "rr_at_10", "AP@100": "ap_at_100"}
DEPTH = 100
CANDIDATES = 2000


CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = Path("qrels") / "test.tsv"
LAYOUT_HINT = "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv"
CORPUS_HINT = 'each line of corpus.jsonl is one object: {"_id": …, "title": …, "text": …}'
QUERIES_HINT = 'each line of queries.jsonl is one object: {"_id": …, "text": …}'
QRELS_HINT = ("qrels lines are `query-id corpus-id score` (tab- or space-separated, optional "
              "header) or TREC's `query-id 0 corpus-id score`")
_HEADER_WORDS = ({"query-id", "query_id", "qid", "query"}, {"corpus-id", "corpus_id", "doc-id",
                 "doc_id", "docid", "docno", "doc"}, {"score", "relevance", "rel", "label"})
_SCORE = re.compile(r"-?[0-9]+")
# ir_measures (pytrec_eval) keeps a relevance in a C int: past these it misreads it, or fails.
MIN_SCORE, MAX_SCORE = -(2**31), 2**31 - 1
SHOWN_SCORE_CHARS = 24


@dataclass(frozen=True)
class Collection:
    """A BEIR collection read and checked: documents as sources, queries, and judgements."""

    directory: Path
    documents: list[Source]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def judged_queries(self) -> dict[str, str]:
        """The queries that have judgements, the ones scored."""
        return {qid: text for qid, text in self.queries.items() if qid in self.qrels}


def input_files(directory: Path) -> list[Path]:
    """The files a BEIR evaluation reads, which no output may overwrite."""
    return [directory / CORPUS_FILE, directory / QUERIES_FILE, directory / QRELS_FILE]


def load(directory: Path) -> Collection:
    """Read and check a BEIR folder; one line naming file, line and field for bad data."""
    if not directory.exists():
        raise MyoqaError(f"BEIR folder {directory} does not exist", LAYOUT_HINT)
    if not directory.is_dir():
        raise MyoqaError(f"BEIR path {directory} is not a folder", LAYOUT_HINT)
    corpus, queries, qrels_path = input_files(directory)
    documents = load_corpus(corpus)
    query_texts = load_queries(queries)
    qrels, lines = load_qrels(qrels_path)
    for qid, line in lines.items():
        if qid not in query_texts:
            raise jsonl.line_error(qrels_path, line, f"query {qid!r} is not in {queries}")
    return Collection(directory, documents, query_texts, qrels)


def load_corpus(path: Path) -> list[Source]:
    """The collection's documents as sources named by their ids (title, blank line, text)."""
    out, seen = [], {}
    for number, row in jsonl.read_objects(path, "BEIR file", LAYOUT_HINT, CORPUS_HINT):
        ident = jsonl.id_field(row, "_id", path, number, seen, for_trec=True)
        title = jsonl.text_field(row, "title", path, number, required=False, blank_ok=True)
        body = jsonl.text_field(row, "text", path, number, blank_ok=True)
        text = "\n\n".join(part for part in (title, body) if part)
        out.append(Source(ident, text, fingerprint(text.encode("utf-8", "surrogatepass"))))
    if not out:
        raise MyoqaError(f"BEIR corpus {path} holds no documents", LAYOUT_HINT)
    return out


def load_queries(path: Path) -> dict[str, str]:
    """Query id → text; every query has text."""
    out, seen = {}, {}
    for number, row in jsonl.read_objects(path, "BEIR file", LAYOUT_HINT, QUERIES_HINT):
        ident = jsonl.id_field(row, "_id", path, number, seen, for_trec=True)
        out[ident] = jsonl.text_field(row, "text", path, number)
    if not out:
        raise MyoqaError(f"BEIR queries {path} hold no queries", LAYOUT_HINT)
    return out


def load_qrels(path: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(query id → {document id: relevance}, query id → the line of its first judgement)."""
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[str, int] = {}
    judged: dict[tuple[str, str], int] = {}
    for number, text in jsonl.open_lines(path, "BEIR qrels", LAYOUT_HINT):
        parts = text.split()
        if not judged and not first_line and _is_header(parts):
            continue
        if len(parts) not in (3, 4):
            raise jsonl.line_error(path, number, f"has {len(parts)} columns", QRELS_HINT)
        qid, doc, score = parts[0], parts[-2], parts[-1]
        for ident in (qid, doc):
            jsonl.check_id(ident, path, number)
        value = _score(score, path, number)
        if (qid, doc) in judged and qrels[qid][doc] != value:
            raise jsonl.line_error(path, number, f"judges {qid} {doc} again with another score "
                                   f"(line {judged[qid, doc]})")
        judged.setdefault((qid, doc), number)
        first_line.setdefault(qid, number)
        qrels.setdefault(qid, {})[doc] = value
    if not qrels:
        raise MyoqaError(f"BEIR qrels {path} hold no judgements", QRELS_HINT)
    return qrels, first_line


def _score(text: str, path: Path, number: int) -> int:
    """A judgement's relevance: a whole number that ir_measures can hold, checked here, before
    the collection is indexed, rather than failing (or being misread) once it is scored."""
    shown = text if len(text) <= SHOWN_SCORE_CHARS else text[:SHOWN_SCORE_CHARS] + "…"
    if not _SCORE.fullmatch(text):
        raise jsonl.line_error(path, number, f"score {shown!r} is not a whole number",
                               QRELS_HINT)
    digits = text.lstrip("-").lstrip("0") or "0"  # leading zeros do not count
    value = int(digits) * (-1 if text.startswith("-") else 1) \
        if len(digits) <= len(str(MAX_SCORE)) else None
    if value is None or not MIN_SCORE <= value <= MAX_SCORE:
        raise jsonl.line_error(path, number, f"score {shown!r} is outside {MIN_SCORE}…"
                               f"{MAX_SCORE}", "relevance grades are small whole numbers")
    return value


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 3 and all(p.lower() in words for p, words in zip(parts, _HEADER_WORDS, strict=False))


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


def evaluate(searcher: Searcher, collection: Collection, mode: str,
             tick: Callable[[int], None] | None = None) -> tuple[dict[str, float], dict]:
    """(aggregate measures by their JSON keys, run) over every query that has judgements."""
    import ir_measures

    run: dict[str, dict[str, float]] = {}
    for qid, text in collection.judged_queries.items():
        run[qid] = dict(rank_documents(searcher, text, mode))
        if tick:
            tick(1)
    measures = {ir_measures.parse_measure(name): key for name, key in MEASURES.items()}
    result = ir_measures.calc_aggregate(list(measures), collection.qrels, run)
    return {key: float(result[m]) for m, key in measures.items()}, run


def trec_lines(run: dict[str, dict[str, float]], tag: str) -> str:
    """A TREC run file's text: `query_id Q0 doc_id rank score tag` lines."""
    lines = []
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda d: -d[1])
        lines += [f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n"
                  for rank, (doc, score) in enumerate(ranked, 1)]
    return "".join(lines)
