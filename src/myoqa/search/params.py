"""Search settings, typed: a fusion is a strategy object, not a string with a silent default."""

from __future__ import annotations

from dataclasses import dataclass, field

from myoqa.search.fusion import Convex, Fusion


@dataclass(frozen=True)
class LateInteraction:
    """Late interaction mixed into the fused score of the first stage's best `depth` passages."""

    weight: float = 0.15
    depth: int = 30

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"late-interaction weight must lie in [0, 1], not {self.weight}")
        if self.depth < 1:
            raise ValueError(f"late-interaction depth must be at least 1, not {self.depth}")


@dataclass(frozen=True)
class SearchParams:
    """Fusion, result assembly and abstention settings, chosen by measurement (eval/RESULTS.md)."""

    fusion: Fusion = field(default_factory=Convex)
    late: LateInteraction | None = field(default_factory=LateInteraction)
    span_weight: float = 0.5
    evidence_lexical_weight: float = 0.3
    answerable_evidence: bool = True
    evidence_token_weight: float = 0.75
    evidence_words: int = 40
    max_words: int = 120
    partial_min: float = 0.5
    source_penalty: float = 0.03
    abstain_below: float = 0.12
    abstain_lexical_below: float = 0.3
    abstain_late_below: float | None = 0.72
    abstain_on_units: bool = True
    candidates: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.fusion, Fusion):
            raise TypeError(f"fusion must be a Fusion (such as Convex), not {self.fusion!r}")
        if self.late is not None and not isinstance(self.late, LateInteraction):
            raise TypeError(f"late must be a LateInteraction or None, not {self.late!r}")
