"""The question's content words that no source contains, as web search names them ("Missing: …").

A content word is any word of the question but a stopword, a question word or a generic word
("make", "take", "help", "thing", "best"): the words that say what the question is about. It is
matched by its Snowball stem, so "twitching" finds "twitch", and by a few endings, so an
inflection the stemmer does not join still counts: "worse" finds "worsen", "children" finds
"child" (but "live" does not find "liver"). A hyphenated word also matches its parts written
together ("long-term" finds "longterm", as the keyword-run seed writes it). The check is
lexical: a word no source contains may still be answered in other words, and the note says so.

A rare word that reads as a misspelling of a source word ("clonazapam") is not named: the user
means the source's word. Everyday English (wordfreq's "small" list, Zipf ≥ 3) skips that check,
since a common word close to a source word ("plane", "plan") is another word. The word list is
read from the installed wordfreq package's data file (msgpack), without importing wordfreq
(whose import costs seconds), and only when a question holds a word that no source uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache
from pathlib import Path

from myoqa.analysis import WORD_RE, Analyzer

COMMON_LIST = "wordfreq/data/small_en.msgpack.gz"
SAME_SPELLING = 0.85
"""Similarity (difflib ratio) above which a word reads as a misspelling of a source's word."""
UNITS = frozenset({
    "mg", "mcg", "µg", "ug", "ng", "kg", "g", "ml", "µl", "dl", "cc", "mmol", "µmol", "umol",
    "nmol", "mol", "meq", "iu", "mm", "cm", "km", "hz", "khz", "mhz", "mmhg", "kcal", "bpm",
    "mph", "kph", "mv", "µv", "uv", "hrs", "mins", "lbs", "lb", "oz"})
"""Units of measure (SI and clinical), written as users abbreviate them."""
GENERIC = frozenset({
    # question words and fillers the stopword list keeps
    "whats", "hows", "anyone", "anything", "anybody", "someone", "something", "somebody",
    "everyone", "everything", "thing", "things", "way", "ways", "kind", "sort", "lot", "lots",
    "really", "actually", "okay", "ok", "yes", "maybe", "probably", "possible", "possibly",
    "many", "long", "enough", "even", "still", "always", "never", "usually", "sometimes",
    "anyway", "else", "ever", "one", "ones",
    # generic verbs
    "make", "take", "help", "go", "come", "give", "keep", "need", "want", "know", "think",
    "say", "see", "feel", "try", "happen", "mean", "seem", "find", "look", "work", "put",
    "use", "done", "stop", "start", "tell", "ask", "able",
    # generic judgements
    "good", "bad", "better", "best", "normal", "real", "true", "big",
    "small", "little", "new", "old"})
"""Words that carry no subject of their own: never named as missing."""
ENDINGS = frozenset({"s", "es", "e", "d", "ed", "n", "en", "ren", "ing", "y", "i", "ly",
                     "ti", "iti", "al", "ic"})
"""Endings that a source term may add to a question word, or a question word to a source
term, and still count as the same word ("worse"/"worsen", "child"/"children", "safe"/
"safeti"); "r" is not one ("live" is not "liver")."""
PREFIX_MIN = 4
"""The shortest question word matched by prefix ("fly" must not find "fling")."""
SOURCE_PREFIX_MIN = 5
"""The shortest source term a longer question word may extend ("child" for "children")."""
HYPHENATED = re.compile(r"[^\W_]+(?:[-‐‑–][^\W_]+)+")


PASSAGES_KEPT = 512
"""Passages whose terms are kept for `missing_terms` (a warm question meets the same again)."""


def content_words(question: str, analyzer: Analyzer) -> list[tuple[str, str]]:
    """(word as written, its term) of each content word of `question`, in order, once each
    (by lower-case spelling); digits are not words."""
    return list(_content_words(question, analyzer))


@lru_cache(maxsize=64)
def _content_words(question: str, analyzer: Analyzer) -> tuple[tuple[str, str], ...]:
    """`content_words`, worked out once per question (each of its results asks again)."""
    out, seen = [], set()
    generic = _generic_terms(analyzer)
    for word in WORD_RE.findall(question):
        lower = word.lower()
        term = analyzer.term(word)
        if (not term or lower in seen or lower.isdigit() or lower in GENERIC
                or term in generic):
            continue
        seen.add(lower)
        out.append((word, term))
    return tuple(out)


def unmatched_terms(question: str, analyzer: Analyzer, in_sources: Callable[[str], bool],
                    source_terms: Callable[[str], Iterable[str]]) -> list[str]:
    """The question's content words (as written, in order, once each) that no source contains;
    `in_sources(term)` says whether a term occurs in a source, `source_terms(initial)` lists the
    source terms starting with that letter (asked only for a word no source has as it is)."""
    joined = _joined_parts(question, analyzer, in_sources)
    return [word for word, term in content_words(question, analyzer)
            if word.lower() not in joined
            and not mentions(word, term, in_sources, source_terms)
            and (word.lower() in UNITS or _is_common(word.lower())
                 or not _misspelt(term, source_terms))]


def missing_terms(question: str, analyzer: Analyzer, text: str) -> list[str]:
    """The question's content words (as written) that `text` does not contain: what a passage
    lacks, matched as `unmatched_terms` matches the sources."""
    terms, grouped = _passage_terms(text, analyzer)
    joined = _joined_parts(question, analyzer, terms.__contains__)
    return [word for word, term in content_words(question, analyzer)
            if word.lower() not in joined
            and not mentions(word, term, terms.__contains__,
                             lambda initial: grouped.get(initial, ()))]


@lru_cache(maxsize=PASSAGES_KEPT)
def _passage_terms(text: str, analyzer: Analyzer) -> tuple[frozenset[str], dict[str, list[str]]]:
    """A passage's distinct terms, and grouped by initial (read only by the caller)."""
    terms = frozenset(analyzer.terms(text))
    return terms, by_initial(terms)


def mentions(word: str, term: str, has: Callable[[str], bool],
             terms_from: Callable[[str], Iterable[str]]) -> bool:
    """Whether a text whose terms `has` tells (and `terms_from(initial)` lists) holds `word`:
    its term, or a term that is the word or its term plus one of the ENDINGS, or a term of at
    least SOURCE_PREFIX_MIN letters that the word's term is plus one of them. The close forms
    are looked for in the listed terms (a Milvus index knows only the question's terms' counts,
    but lists the collection's vocabulary)."""
    if has(term):
        return True
    lower = word.lower()
    stems = {s for s in (lower, term) if len(s) >= PREFIX_MIN}
    shorter = {term[:n] for n in range(SOURCE_PREFIX_MIN, len(term)) if term[n:] in ENDINGS}
    return any(other in shorter
               or any(other.startswith(s) and other[len(s):] in ENDINGS for s in stems)
               for other in terms_from(term[:1]))


def note(words: Collection[str]) -> str:
    """The sentence that names what no source mentions, said as the lexical fact it is."""
    names = list(words)
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    which = "the word" if len(names) == 1 else "these words"
    return f"no source mentions {listed} (no source contains {which}, in any form)"


def _joined_parts(question: str, analyzer: Analyzer, has: Callable[[str], bool]) -> set[str]:
    """The lower-case parts of the question's hyphenated words whose parts written together
    are a term of the text ("long-term" when it says "longterm")."""
    out: set[str] = set()
    for compound in HYPHENATED.findall(question):
        parts = WORD_RE.findall(compound)
        if has(analyzer.term("".join(parts))):
            out.update(p.lower() for p in parts)
    return out


@lru_cache(maxsize=4)
def _generic_terms(analyzer: Analyzer) -> frozenset[str]:
    """The terms of the generic words, so that their inflections are generic too."""
    return frozenset(filter(None, map(analyzer.term, GENERIC)))


def _is_common(word: str) -> bool:
    """Whether `word` is everyday English (always, when the word list cannot be read)."""
    common = _common_words()
    return not common or word in common


def _misspelt(term: str, source_terms: Callable[[str], Iterable[str]]) -> bool:
    """Whether `term` reads as a misspelling of a source term of about its length (with the
    same first letter; asked only for a word no source has, so difflib is imported here)."""
    from difflib import SequenceMatcher

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
    import gzip
    from importlib import metadata  # imports email, zipfile, csv: only for such a question

    import msgpack

    try:
        path = Path(str(metadata.distribution("wordfreq").locate_file(COMMON_LIST)))
        buckets = msgpack.unpackb(gzip.decompress(path.read_bytes()), raw=False)
    except (metadata.PackageNotFoundError, OSError, ValueError):
        return frozenset()
    return frozenset(word for bucket in buckets[1:] for word in bucket)


def by_initial(terms: Iterable[str]) -> dict[str, list[str]]:
    """Terms grouped by their first letter, for the misspelling and prefix checks."""
    out: dict[str, list[str]] = {}
    for term in terms:
        out.setdefault(term[:1], []).append(term)
    return out
