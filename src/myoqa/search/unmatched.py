"""Question words that no source uses and that are specific, not everyday English: the names of
drugs, diseases, genes or units a user asks about, which the sources may simply not discuss.

Common English (the ~29,000 words used at least once per million words, wordfreq's "small"
English list, Zipf ≥ 3) is left out, so a paraphrase such as "outlook" for "prognosis", or a
generic word like "medicine" or "help", is never reported. So is a misspelling of a word the
sources do use ("clonazapam"). Units of measure are reported even though they are common
words: asking for a quantity in a unit the sources never use ("dose in mg") asks for something
the sources do not give.

The word list is read from the installed wordfreq package's data file (msgpack), without
importing wordfreq (whose import costs seconds), and only when a question holds a word that no
source uses.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path

import msgpack

from myoqa.analysis import WORD_RE, Analyzer

COMMON_LIST = "wordfreq/data/small_en.msgpack.gz"
SAME_SPELLING = 0.85
"""Similarity (difflib ratio) above which a word reads as a misspelling of a source's word."""
UNITS = frozenset({
    "mg", "mcg", "µg", "ug", "ng", "kg", "g", "ml", "µl", "dl", "cc", "mmol", "µmol", "umol",
    "nmol", "mol", "meq", "iu", "mm", "cm", "km", "hz", "khz", "mhz", "mmhg", "kcal", "bpm",
    "mph", "kph", "mv", "µv", "uv", "hrs", "mins", "lbs", "lb", "oz"})
"""Units of measure (SI and clinical), written as users abbreviate them."""


def unmatched_terms(question: str, analyzer: Analyzer, in_sources: Callable[[str], bool],
                    source_terms: Callable[[str], Iterable[str]]) -> list[str]:
    """The question's specific words (as written, in order, once each) whose term no source
    uses; `in_sources(term)` says whether a term occurs in a source, `source_terms(initial)`
    lists the source terms starting with that letter (asked only when a rare word needs the
    misspelling check)."""
    out: list[str] = []
    seen: set[str] = set()
    for word in WORD_RE.findall(question):
        lower = word.lower()
        term = analyzer.term(word)
        if not term or lower in seen or in_sources(term) or lower.isdigit():
            continue
        seen.add(lower)
        if lower in UNITS or (not _is_common(lower) and not _misspelt(term, source_terms)):
            out.append(word)
    return out


def _is_common(word: str) -> bool:
    """Whether `word` is everyday English (always, when the word list cannot be read)."""
    common = _common_words()
    return not common or word in common


def _misspelt(term: str, source_terms: Callable[[str], Iterable[str]]) -> bool:
    """Whether `term` reads as a misspelling of a source term of about its length (with the
    same first letter)."""
    matcher = SequenceMatcher(b=term, autojunk=False)
    for other in source_terms(term[:1]):
        if abs(len(other) - len(term)) <= 2:
            matcher.set_seq1(other)
            if matcher.quick_ratio() >= SAME_SPELLING and matcher.ratio() >= SAME_SPELLING:
                return True
    return False


@lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    """Every English word of wordfreq's "small" list (Zipf frequency ≥ 3); empty when
    wordfreq is not installed."""
    from importlib import metadata  # imports email, zipfile, csv: only for such a question

    try:
        path = Path(str(metadata.distribution("wordfreq").locate_file(COMMON_LIST)))
        buckets = msgpack.unpackb(gzip.decompress(path.read_bytes()), raw=False)
    except (metadata.PackageNotFoundError, OSError, ValueError):
        return frozenset()
    return frozenset(word for bucket in buckets[1:] for word in bucket)


def by_initial(terms: Iterable[str]) -> dict[str, list[str]]:
    """Terms grouped by their first letter, for the misspelling check."""
    out: dict[str, list[str]] = {}
    for term in terms:
        out.setdefault(term[:1], []).append(term)
    return out
