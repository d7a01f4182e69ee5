"""Rerunnable tuning experiments behind eval/RESULTS.md: each varies one setting of myoqa.

Usage: python eval/experiments.py [EXPERIMENT ...]   (default: all; prints Markdown tables)
Embeddings are cached by text, so each configuration only embeds passages it has not seen.
"""

from __future__ import annotations

import sys

import numpy as np

from myoqa import evaluation
from myoqa.analysis import Analyzer
from myoqa.chunking import ChunkParams
from myoqa.config import DEFAULT_MODEL, PROJECT_ROOT
from myoqa.corpus import load_sources
from myoqa.embedding import SentenceTransformerEncoder, load_model
from myoqa.index import BuildParams, assemble
from myoqa.search import Convex, LexicalNorm, ReciprocalRank, Searcher, SearchParams

QUESTIONS = evaluation.load_questions(PROJECT_ROOT / "eval" / "questions.jsonl")
HOLDOUT = evaluation.load_questions(PROJECT_ROOT / "eval" / "holdout.jsonl")
SOURCES = load_sources(PROJECT_ROOT / "seeds")
COLUMNS = [("tune", "hit_at_1"), ("tune", "hit_at_5"), ("tune", "mrr_at_10"),
           ("tune kind=paraphrase", "hit_at_5"), ("tune kind=multi", "full_at_5_multi"),
           ("check", "hit_at_1"), ("check", "hit_at_5"), ("check", "mrr_at_10"),
           ("check kind=paraphrase", "hit_at_5"), ("check kind=multi", "full_at_5_multi")]


class CachedEncoder:
    """Wraps the real encoder; remembers each text's vector across configurations."""

    def __init__(self) -> None:
        self.inner = SentenceTransformerEncoder(load_model(DEFAULT_MODEL))
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], progress: object = None) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            self.cache.update(zip(new, self.inner.encode(new)))
        return np.vstack([self.cache[t] for t in texts]).astype(np.float32)


ENCODER = CachedEncoder()


DEFAULT_CHUNKING, DEFAULT_ANALYZER, DEFAULT_SEARCH = ChunkParams(), Analyzer(), SearchParams()


def measure(chunking: ChunkParams = DEFAULT_CHUNKING, analyzer: Analyzer = DEFAULT_ANALYZER,
            search: SearchParams = DEFAULT_SEARCH, mode: str = "hybrid",
            questions: list[evaluation.Question] = QUESTIONS
            ) -> dict[str, evaluation.GroupSummary]:
    """Summaries of one configuration on a question set (the bundled one by default)."""
    index = assemble(SOURCES, BuildParams(DEFAULT_MODEL, chunking, analyzer), ENCODER)
    searcher = Searcher(index, lambda: ENCODER, search)
    return evaluation.summarize(evaluation.run(searcher, questions, mode))


def row(label: str, summary: dict[str, evaluation.GroupSummary]) -> str:
    cells = [getattr(summary[g], m) if g in summary else None for g, m in COLUMNS]
    return f"| {label} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |"


def header(title: str) -> None:
    print(f"\n### {title}\n")
    names = [f"{g.split()[0]} {evaluation.METRIC_LABELS[m]}"
             + (" para" if "paraphrase" in g else " multi" if "multi" in g else "")
             for g, m in COLUMNS]
    print("| setting | " + " | ".join(names) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")


def exp_modes() -> None:
    header("Modes with default settings")
    for mode in ("bm25", "dense", "hybrid"):
        print(row(mode, measure(mode=mode)))


def exp_fusion() -> None:
    header("Fusion method (hybrid; convex weights in the next table)")
    print(row("rrf k=60", measure(search=SearchParams(fusion=ReciprocalRank(60)))))
    print(row("rrf k=10", measure(search=SearchParams(fusion=ReciprocalRank(10)))))
    print(row("convex (default)", measure()))


def exp_lexical_norm() -> None:
    header("BM25 normalisation before convex fusion (hybrid)")
    for norm in (LexicalNorm.MAX, LexicalNorm.IDEAL):
        for w in (0.5, 0.6, 0.7, 0.8, 0.9):
            print(row(f"{norm.value} w_dense={w}",
                      measure(search=SearchParams(fusion=Convex(w, norm)))))


def exp_span_weight() -> None:
    header("Span-level dense evidence mixed into passage score (hybrid)")
    for w in (0.0, 0.3, 0.5, 0.7, 1.0):
        print(row(f"span_weight={w}", measure(search=SearchParams(span_weight=w))))


def exp_widen() -> None:
    header("Results widened by the candidates that overlap them alone, up to N words; the part "
           "of a passage outside earlier results shown when at least half of it")
    settings = [("single passages, overlaps dropped", SearchParams(max_words=0, partial_min=2.0)),
                ("single passages, partial ones kept", SearchParams(max_words=0)),
                ("widened to 90 words, partial kept", SearchParams(max_words=90)),
                ("widened to 120 words, overlaps dropped", SearchParams(partial_min=2.0)),
                ("widened to 120 words, partial kept (final)", SearchParams())]
    for label, params in settings:
        print(row(label, measure(search=params)))


def exp_source_penalty() -> None:
    header("Score lowered per result already taken from the same source")
    for penalty in (0.0, 0.03, 0.05, 0.08, 0.12):
        print(row(f"source_penalty={penalty}", measure(search=SearchParams(source_penalty=penalty))))


def exp_holdout() -> None:
    print("\n### Held-out set (eval/holdout.jsonl, all 64 questions)\n")
    print("| setting | Hit@1 | Hit@5 | MRR@10 | Hit@5 para | Full@5 multi | OOS abstained |"
          " in-scope abstained |")
    print("|---|---|---|---|---|---|---|---|")
    settings = [("session-1 search (single passages, overlaps dropped, no source penalty)",
                 SearchParams(max_words=0, partial_min=2.0, source_penalty=0.0)),
                ("+ widened results", SearchParams(partial_min=2.0, source_penalty=0.0)),
                ("+ source penalty", SearchParams(partial_min=2.0)),
                ("+ partial passages kept (final)", SearchParams())]
    for label, params in settings:
        s = measure(search=params, questions=HOLDOUT)
        a, p, m = s["all"], s["kind=paraphrase"], s["kind=multi"]
        print(f"| {label} | {a.hit_at_1:.3f} | {a.hit_at_5:.3f} | {a.mrr_at_10:.3f} |"
              f" {p.hit_at_5:.3f} | {m.full_at_5_multi:.3f} |"
              f" {s['kind=out_of_scope'].out_of_scope_abstained} | {a.in_scope_abstained} |")


def exp_peer() -> None:
    header("A peer-like hybrid (100-word passages, RRF k=60, passage cosine only) against myoqa")
    peer_chunks = ChunkParams(window_words=100, window_stride=100, prose_max_words=100,
                              prose_overlap_sentences=0)
    peer = SearchParams(fusion=ReciprocalRank(60), span_weight=0.0, max_words=0, partial_min=2.0,
                        source_penalty=0.0)
    for mode in ("bm25", "dense", "hybrid"):
        print(row(f"peer-like {mode}", measure(peer_chunks, search=peer, mode=mode)))
    print(row("myoqa hybrid", measure()))


def exp_windows() -> None:
    header("Keyword-run windows (words/stride)")
    for size, stride in ((40, 20), (50, 25), (60, 30), (80, 40), (100, 50), (60, 20)):
        print(row(f"{size}/{stride}", measure(ChunkParams(window_words=size, window_stride=stride))))


def exp_prose() -> None:
    header("Prose passage size (max words / overlap sentences)")
    for size, ov in ((40, 0), (60, 0), (60, 1), (80, 1), (100, 1), (120, 1)):
        print(row(f"{size}/{ov}", measure(ChunkParams(prose_max_words=size,
                                                      prose_overlap_sentences=ov))))


def exp_spans() -> None:
    header("Span size (words/stride)")
    for size, stride in ((10, 5), (15, 8), (20, 10), (30, 15)):
        print(row(f"{size}/{stride}", measure(ChunkParams(span_words=size, span_stride=stride))))


def exp_analyzer() -> None:
    header("BM25 tokenizer")
    for stem in (False, True):
        for stop in (False, True):
            print(row(f"stem={stem} stopwords={stop}",
                      measure(analyzer=Analyzer(stem=stem, stopwords=stop))))


def exp_abstention() -> None:
    print("\n### Abstention threshold on the best dense similarity (hybrid, lexical guard 0.3)\n")
    print("| abstain below | tune OOS abstained | tune in-scope abstained | check OOS abstained |"
          " check in-scope abstained |")
    print("|---|---|---|---|---|")
    for t in (0.05, 0.10, 0.12, 0.15, 0.20, 0.30, 0.40):
        s = measure(search=SearchParams(abstain_below=t))
        print(f"| {t} | {s['tune'].out_of_scope_abstained} | {s['tune'].in_scope_abstained} |"
              f" {s['check'].out_of_scope_abstained} | {s['check'].in_scope_abstained} |")


EXPERIMENTS = {name[4:]: fn for name, fn in globals().items() if name.startswith("exp_")}

if __name__ == "__main__":
    for name in sys.argv[1:] or EXPERIMENTS:
        EXPERIMENTS[name]()
