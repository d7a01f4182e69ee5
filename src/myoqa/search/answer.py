"""What a search returns: ranked passages with their exact text, score and highlights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from myoqa.citation import Place, cite
from myoqa.search.highlight import Highlight


@dataclass(frozen=True)
class Result:
    """One ranked passage: where it is, its exact text, score and highlights.

    `line` and `column` (1-based, in characters) are where the passage starts; `page` is its
    page for a PDF, else None. `missing_terms` are the question's content words the passage
    does not contain.
    """

    rank: int
    source: str
    start: int
    end: int
    line: int
    column: int
    page: int | None
    score: float
    text: str
    highlights: list[Highlight]
    missing_terms: list[str] = field(default_factory=list)

    @property
    def citation(self) -> str:
        """`file:line:column`, and the page for a PDF."""
        return cite(self.source, Place(self.line, self.column, self.page))

    def to_json(self) -> dict[str, Any]:
        """The passage entry of `ask --json`."""
        return {"rank": self.rank, "source": self.source, "start": self.start, "end": self.end,
                "line": self.line, "column": self.column, "page": self.page,
                "score": round(self.score, 6), "text": self.text,
                "highlights": [h.to_json() for h in self.highlights],
                "missing_terms": self.missing_terms}


@dataclass(frozen=True)
class Answer:
    """The ranked passages for one question, or an abstention with the nearest passages."""

    question: str
    mode: str
    k: int
    abstained: bool
    results: list[Result]
    searched: str
    best_similarity: float | None
    notes: list[str] = field(default_factory=list)
    unmatched_terms: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The object `ask --json` prints (schema in the README)."""
        return {"question": self.question, "mode": self.mode, "k": self.k,
                "abstained": self.abstained, "searched": self.searched,
                "best_similarity": None if self.best_similarity is None
                else round(self.best_similarity, 6),
                "notes": self.notes, "unmatched_terms": self.unmatched_terms,
                "passages": [r.to_json() for r in self.results]}
