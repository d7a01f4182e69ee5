"""What a search request may be: the modes, the limits, and the cleaned question and its terms."""

from __future__ import annotations

from myoqa.analysis import Analyzer
from myoqa.errors import UsageError
from myoqa.modes import MAX_K, MODES

MAX_QUESTION_CHARS = 2000
MODEL_WORDS = 150


def check_request(question: str, mode: str, k: int) -> str:
    """The cleaned question, or a UsageError naming what is wrong with the request."""
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}", f"choose one of {', '.join(MODES)}")
    if not 1 <= k <= MAX_K:
        raise UsageError(f"k must be between 1 and {MAX_K}, not {k}")
    cleaned = "".join(ch if ch.isprintable() else " " for ch in question).strip()
    if not cleaned:
        raise UsageError("the question is empty", "type a question about myoclonus")
    return cleaned


def searched_text(cleaned: str, mode: str) -> tuple[str, list[str]]:
    """The text actually searched (cut to MAX_QUESTION_CHARS), and notes the user should see."""
    notes = []
    if len(cleaned) > MAX_QUESTION_CHARS:
        cleaned = cleaned[:MAX_QUESTION_CHARS]
        notes.append(f"question truncated to its first {MAX_QUESTION_CHARS} characters")
    if mode != "bm25" and len(cleaned.split()) > MODEL_WORDS:
        notes.append(f"the embedding model reads only about the first {MODEL_WORDS} words; "
                     "BM25 uses all of them")
    return cleaned, notes


def query_terms(analyzer: Analyzer, text: str) -> list[str]:
    """The question's distinct terms, in order: a repeated word counts once, so repeating it
    changes neither the ranking nor the 0-1 range of the normalised BM25 score."""
    return list(dict.fromkeys(analyzer.terms(text)))
