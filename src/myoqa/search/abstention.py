"""Whether the sources seem not to answer a question: the passages are then shown as the
nearest, weak matches, under a sentence saying so."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Support:
    """How well the best passages support an answer, as far as abstention cares (not the
    evaluation's `Evidence`, the quotes that answer a question)."""

    mode: str
    best_dense: float | None
    best_lexical: float
    best_late: float | None
    unmatched_units: bool


def abstains(found: Support, dense_below: float, lexical_below: float,
             late_below: float | None, on_units: bool) -> bool:
    """True when the sources do not seem to answer.

    - A unit of measure no source uses ("the dose in mg") asks for a quantity the sources do
      not give (`on_units`).
    - BM25 alone: no word of the question occurs in any passage.
    - Otherwise: the best dense similarity is below `dense_below` while BM25 finds no strong
      match (normalised score below `lexical_below`), or the best late-interaction MaxSim is
      below `late_below`.
    """
    if on_units and found.unmatched_units:
        return True
    if found.mode == "bm25" or found.best_dense is None:
        return found.best_lexical <= 0.0
    weak_dense = found.best_dense < dense_below and found.best_lexical < lexical_below
    weak_late = (late_below is not None and found.best_late is not None
                 and found.best_late < late_below)
    return weak_dense or weak_late
