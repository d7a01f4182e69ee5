"""Turning text into index terms: one tokenizer for passages and questions, with offsets kept.

Questions carry stopwords and inflections ("are used", "treating") that the keyword-run source lacks,
so both sides are lower-cased, stripped of stopwords and Snowball-stemmed before BM25 sees them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass
from functools import lru_cache

import Stemmer

RULES_VERSION = 2
WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)

STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "can't", "cannot", "could", "couldn't", "did", "didn't", "do",
    "does", "doesn't", "doing", "don't", "down", "during", "each", "else", "etc", "ever", "few",
    "for", "from", "further", "get", "gets", "got", "had", "hadn't", "has", "hasn't", "have",
    "haven't", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how",
    "however", "i", "if", "in", "into", "is", "isn't", "it", "it's", "its", "itself", "just", "let",
    "like", "me", "might", "more", "most", "much", "must", "my", "myself", "no", "nor", "not",
    "now", "of", "off", "often", "on", "once", "only", "or", "other", "ought", "our", "ours",
    "ourselves", "out", "over", "own", "please", "per", "same", "shall", "she", "should",
    "shouldn't", "so", "some", "such", "tell", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "thus", "to", "too",
    "under", "until", "up", "upon", "us", "very", "was", "wasn't", "we", "were", "weren't", "what",
    "when", "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "won't",
    "would", "wouldn't", "yet", "you", "your", "yours", "yourself", "yourselves", "s", "t", "d",
    "ll", "m", "re", "ve",
])


@dataclass(frozen=True)
class Analyzer:
    """How words become terms; its settings are recorded in the index manifest."""

    stem: bool = True
    stopwords: bool = True

    def params(self) -> dict[str, bool | int]:
        """The settings and the rules' version, for the manifest: a change means a rebuild."""
        return {**asdict(self), "rules": RULES_VERSION}

    def term(self, word: str) -> str:
        """The index term of one word, or '' for a stopword."""
        word = word.lower()
        if self.stopwords and word in STOPWORDS:
            return ""
        return _stem(word) if self.stem else word

    def terms(self, text: str) -> list[str]:
        """Index terms of `text`, in order, repeats kept (BM25 counts them).

        Each distinct word is analysed once and remembered, because indexing a large corpus
        meets the same words millions of times.
        """
        words = WORD_RE.findall(text)
        known = _CACHES.setdefault((self.stem, self.stopwords), {})
        terms = list(map(known.get, words))
        if None in terms:
            if len(known) > 2_000_000:
                known.clear()
            for word in words:
                if word not in known:
                    known[word] = self.term(word)
            terms = list(map(known.__getitem__, words))
        return list(filter(None, terms))

    def matches(self, text: str, terms: Collection[str]) -> list[tuple[str, int, int]]:
        """(term, start, end) of each word of `text` whose term is one of `terms`, in order, so
        a question's words can be highlighted in place.

        Only the distinct words are analysed (a 120-word passage repeats many); the few that
        match are then found with str.find, far faster than a regex over every word.
        """
        known = _CACHES.setdefault((self.stem, self.stopwords), {})
        found = {}
        for word in set(WORD_RE.findall(text)):
            term = known.get(word)
            if term is None:
                term = known[word] = self.term(word)
            if term and term in terms:
                found[word] = term
        places = [(start, start + len(word), term) for word, term in found.items()
                  for start in _places(text, word)]
        return [(term, start, end) for start, end, term in sorted(places)]


_CACHES: dict[tuple[bool, bool], dict[str, str]] = {}


def _places(text: str, word: str) -> list[int]:
    r"""Where `word` stands in `text` as a whole WORD_RE token (no letter or digit either side;
    `[^\W_]` is exactly `str.isalnum`)."""
    out, size = [], len(word)
    start = text.find(word)
    while start >= 0:
        end = start + size
        if ((start == 0 or not text[start - 1].isalnum())
                and (end == len(text) or not text[end].isalnum())):
            out.append(start)
        start = text.find(word, start + 1)
    return out


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """Snowball stem, with Greek '-sis' nouns first turned into their verbs.

    Snowball leaves "diagnosis" as "diagnosi" but "diagnosed" as "diagnos"; reading the noun as
    "diagnose" makes the two meet (likewise prognosis, sclerosis, paralysis).
    """
    if word.endswith("sis") and len(word) > 6:
        word = word[:-2] + "e"
    return _stemmer().stemWord(word)
