"""Follow-up questions: carry the previous question's subject into a short, elliptical question.

A transparent rule, no language model. A question is a follow-up of the previous one when

* it opens like a continuation ("and …", "what about …", "how about …", "also …"), or
* it leans on the previous question through an anaphoric word ("it", "its", "they", "those", …)
  or an elliptical marker ("exactly", "else", …) and has few content words of its own.

A follow-up is searched as typed plus the content words (the subject) of the previous searched
text, in their original spelling. Anything else is searched unchanged.
"""

from __future__ import annotations

import re

from myoqa.analysis import STOPWORDS, WORD_RE

OPENERS = re.compile(r"^\s*(and|also|but|so|then|what about|how about|what of)\b", re.IGNORECASE)
ANAPHORA = frozenset(["it", "its", "it's", "itself", "this", "that", "they", "them", "their",
                      "theirs", "these", "those", "ones"])
ELLIPSIS = frozenset(["exactly", "specifically", "else", "too", "instead"])
MAX_OWN_WORDS = 4
MAX_CARRIED_WORDS = 8


def content_words(text: str) -> list[str]:
    """The words of `text` that are not stopwords, as written, first occurrence of each kept."""
    seen: set[str] = set()
    out = []
    for match in WORD_RE.finditer(text):
        word = match.group()
        key = word.lower()
        if key in STOPWORDS or key in ANAPHORA or key in ELLIPSIS or key in seen:
            continue
        seen.add(key)
        out.append(word)
    return out


def is_followup(question: str) -> bool:
    """Whether `question` reads as a continuation of an earlier one (see the module docstring)."""
    if OPENERS.match(question):
        return True
    words = {m.group().lower() for m in WORD_RE.finditer(question)}
    leans = bool(words & ANAPHORA) or bool(words & ELLIPSIS)
    return leans and len(content_words(question)) <= MAX_OWN_WORDS


def contextualize(question: str, previous: str | None) -> str:
    """What to search for `question`, given the previous searched text (None at the start)."""
    if not previous or not is_followup(question):
        return question
    own = {w.lower() for w in content_words(question)}
    subject = [w for w in content_words(previous) if w.lower() not in own][:MAX_CARRIED_WORDS]
    if not subject:
        return question
    return f"{question.strip()} {' '.join(subject)}"
