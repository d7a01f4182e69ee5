"""The model-free search stages on small hand-made inputs: candidates, fusion, BM25 scaling,
result assembly."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from myoqa.analysis import Analyzer
from myoqa.bm25 import Postings, SparseBM25
from myoqa.index import UnitTable
from myoqa.search import Convex, LateInteraction, SearchParams
from myoqa.search.abstention import Support, abstains
from myoqa.search.assembly import Assembly, pick
from myoqa.search.candidates import candidate_ids, top
from myoqa.search.highlight import answerable, best_span, highlights, is_caption, is_heading, snap
from myoqa.search.late import LateSignal, Preload, TokenVectors, maxsim, rerank, span_scores
from myoqa.search.signals import normalised_bm25
from myoqa.search.unmatched import (
    by_initial,
    content_words,
    missing_terms,
    note,
    unmatched_terms,
)

TEXT = " ".join(f"w{i}" for i in range(40))
"""One source of 40 one-token words; word i spans characters [3i, 3i + 2) for i < 10."""


def _table(ranges: list[tuple[int, int]], names: tuple[str, ...] = ("a",),
           sources: list[int] | None = None) -> UnitTable:
    n = len(ranges)
    return UnitTable(list(names), np.array(sources or [0] * n, dtype=np.int32),
                     np.array([s for s, _ in ranges], dtype=np.int64),
                     np.array([e for _, e in ranges], dtype=np.int64))


def _word(i: int) -> tuple[int, int]:
    start = TEXT.index(f"w{i} ") if i < 39 else TEXT.index("w39")
    return start, start + len(f"w{i}")


def test_candidates_are_every_passage_of_a_small_index_else_the_union_of_each_signals_best(
        ) -> None:
    assert candidate_ids(10, 5, [np.array([3])]).tolist() == list(range(10))
    union = candidate_ids(100, 5, [np.array([7, 3]), np.array([3, 50])])
    assert union.tolist() == [3, 7, 50]
    assert sorted(top(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist()) == [1, 3]


def test_fusion_is_typed_never_a_string() -> None:
    with pytest.raises(TypeError):
        SearchParams(fusion="rrf")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Convex(1.5)


class _Lexical:
    """A fusion strategy brought from outside the product (as eval/experiments.py does)."""

    def fuse(self, lexical: np.ndarray, dense: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return lexical + 0 * dense + 0 * raw


def test_any_fusion_strategy_with_a_fuse_method_is_accepted() -> None:
    assert isinstance(SearchParams(fusion=_Lexical()).fusion, _Lexical)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0, 1)), min_size=1, max_size=20),
       st.floats(0, 1))
def test_convex_fusion_stays_in_0_1(pairs: list[tuple[float, float]], weight: float) -> None:
    dense, lexical = (np.array(column) for column in zip(*pairs, strict=False))
    fused = Convex(weight).fuse(lexical, dense, lexical * 10)
    assert ((fused >= 0) & (fused <= 1)).all()


def test_ideal_bm25_scaling_stays_in_0_1_for_any_question() -> None:
    analyzer = Analyzer()
    docs = ["myoclonus jerks jerks jerks", "sleep starts are jerks", "valproate treats myoclonus"]
    bm25 = SparseBM25(Postings.from_texts(docs, analyzer))
    for question in ("jerks", "jerks myoclonus sleep valproate", "unknown words here"):
        terms = list(dict.fromkeys(analyzer.terms(question)))
        scaled = normalised_bm25(bm25.scores(terms), terms, bm25)
        assert ((scaled >= 0) & (scaled <= 1)).all()


HOW = Assembly(max_words=6, partial_min=0.5, source_penalty=0.03)


def test_pick_takes_the_best_non_overlapping_passages_and_widens_them() -> None:
    # passages of 4 words every 2 words, over words 0-11
    ranges = [(_word(i)[0], _word(i + 3)[1]) for i in range(0, 10, 2)]
    table = _table(ranges)
    fused = np.array([0.2, 0.9, 0.8, 0.1, 0.5])
    hits = pick(table, {"a": TEXT}, np.arange(5), fused, 2, HOW)
    # passage 1 (words 2-5) absorbs passage 2 (words 4-7): 6 words, within the cap
    assert (hits[0].start, hits[0].end) == (_word(2)[0], _word(7)[1])
    assert hits[0].score == 0.9 and hits[0].units == [1, 2]
    # passage 4 (words 8-11) overlaps nothing taken; the penalty lowers it by 0.03
    assert (hits[1].start, hits[1].end) == ranges[4]
    assert hits[1].score == pytest.approx(0.47)


def test_a_zero_score_passage_starts_no_result_but_may_complete_one() -> None:
    """Issue 18 item 5: in bm25 mode passages scoring 0 filled the list."""
    ranges = [(_word(i)[0], _word(i + 3)[1]) for i in range(0, 10, 2)]
    fused = np.array([0.0, 0.9, 0.0, 0.0, 0.0])
    hits = pick(_table(ranges), {"a": TEXT}, np.arange(5), fused, 5, HOW, fused > 0)
    assert len(hits) == 1 and hits[0].score == 0.9
    assert (hits[0].start, hits[0].end) == (_word(0)[0], _word(5)[1])
    assert any(h.score == 0 for h in pick(_table(ranges), {"a": TEXT}, np.arange(5), fused, 5, HOW))


def test_pick_shows_the_uncovered_part_of_a_passage_too_long_to_absorb() -> None:
    ranges = [(_word(0)[0], _word(3)[1]), (_word(2)[0], _word(9)[1])]
    hits = pick(_table(ranges), {"a": TEXT}, np.arange(2), np.array([0.9, 0.8]), 2, HOW)
    assert [(h.start, h.end) for h in hits] == [ranges[0], (_word(4)[0], _word(9)[1])]


def test_source_penalty_stops_at_zero() -> None:
    ranges = [_word(i) for i in range(0, 12, 2)]
    hits = pick(_table(ranges), {"a": TEXT}, np.arange(6),
                np.array([0.05, 0.04, 0.03, 0.02, 0.01, 0.0]), 6, HOW)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and min(scores) == 0.0


def test_source_penalty_lets_another_source_in() -> None:
    table = _table([_word(0), _word(2), _word(4), _word(0)], names=("a", "b"),
                   sources=[0, 0, 0, 1])
    hits = pick(table, {"a": TEXT, "b": TEXT}, np.arange(4),
                np.array([0.9, 0.89, 0.88, 0.87]), 2, HOW)
    assert [h.source_id for h in hits] == [0, 1]


def _unmatched(question: str, source_words: str) -> list[str]:
    analyzer = Analyzer()
    terms = set(analyzer.terms(source_words))
    grouped = by_initial(terms)
    return unmatched_terms(question, analyzer, terms.__contains__,
                           lambda initial: grouped.get(initial, []))


def test_every_content_word_no_source_contains_is_named() -> None:
    """Issue 18 item 4: everyday words are named too; stopwords, question words and generic
    verbs never are."""
    sources = "Treatment of myoclonus: clonazepam and valproate; the prognosis varies."
    assert _unmatched("is propranolol a treatment for myoclonus?", sources) == ["propranolol"]
    assert _unmatched("what is the dose of valproate in mg?", sources) == ["dose", "mg"]
    assert _unmatched("Does smoking make myoclonus worse?", sources) == ["smoking", "worse"]
    assert _unmatched("what medicine helps, and what is the outlook?", sources) == [
        "medicine", "outlook"]
    assert _unmatched("propranolol or Propranolol, 2018", sources) == ["propranolol"]


def test_a_misspelt_rare_word_is_not_named_but_a_common_look_alike_is() -> None:
    sources = "Clonazepam helps; plan the treatment."
    assert _unmatched("side effects of clonazapam", sources) == ["side", "effects"]
    assert _unmatched("can I take clonazepam on a plane?", sources) == ["plane"]


def test_content_words_leave_out_stopwords_question_and_generic_words() -> None:
    words = content_words("What drugs can help me? Does it make the twitching better, or is "
                          "something else best to take?", Analyzer())
    assert words == [("drugs", "drug"), ("twitching", "twitch")]


@pytest.mark.parametrize("question,sources", [
    ("why is he twitching", "a twitch of the face"),
    ("does it get worse", "drugs may worsen symptoms"),
    ("can children get it", "a child may have it"),
    ("what is the long-term outlook", "the longterm outlook varies"),
])
def test_a_word_is_found_by_its_stem_or_a_close_form(question: str, sources: str) -> None:
    assert _unmatched(question, sources) == []


def test_a_word_is_not_found_inside_another_word() -> None:
    assert _unmatched("can I fly with it", "a fling") == ["fly"]
    assert _unmatched("how long will I live", "the liver fails") == ["live"]


def test_a_passage_lacks_the_content_words_it_does_not_contain() -> None:
    question = "Does smoking make the twitching worse in children?"
    assert missing_terms(question, Analyzer(), "Twitches in a child may worsen.") == ["smoking"]
    assert missing_terms(question, Analyzer(), "Nothing here.") == [
        "smoking", "twitching", "worse", "children"]


def test_the_note_says_the_missing_words_are_a_lexical_fact() -> None:
    assert note(["smoking"]) == "no source mentions smoking (no source contains the word, in any form)"
    assert note(["fly", "plane"]).startswith(
        "no source mentions fly or plane (no source contains these words")


@pytest.mark.parametrize("found,expected", [
    (Support("hybrid", 0.5, 0.1, None, False), False),
    (Support("hybrid", 0.05, 0.1, None, False), True),
    (Support("hybrid", 0.05, 0.5, None, False), False),
    (Support("hybrid", 0.5, 0.1, 0.6, False), True),
    (Support("hybrid", 0.5, 0.1, 0.9, True), True),
    (Support("bm25", None, 0.0, None, False), True),
    (Support("bm25", None, 0.01, None, False), False),
    (Support("dense", 0.3, 0.0, None, False), False),
])
def test_abstention_rules(found: Support, expected: bool) -> None:
    assert abstains(found, dense_below=0.12, lexical_below=0.3, late_below=0.72,
                    on_units=True) is expected


def test_evidence_is_never_a_bare_heading() -> None:
    text = "Treatment of myoclonus\n\nTreatment depends on the cause. Drugs help."
    heading = (0, len("Treatment of myoclonus"), 0.9)
    sentence = (text.index("Treatment depends"), text.index("cause.") + 6, 0.5)
    assert answerable(text, [heading, sentence]) == [sentence]
    assert answerable(text, [heading]) == [heading]
    assert not is_heading(text, *sentence[:2])


def test_evidence_is_never_a_caption() -> None:
    """Issue 18 item 3: "what is the starting dose of piracetam?" marked a caption."""
    text = ("Table 2: Starting doses of piracetam\n"
            "Piracetam 2.4 g a day in three doses, raised every three days\n"
            "Clonazepam 0.5 mg at night")
    caption = (0, text.index("\n"), 0.9)
    row = (text.index("Piracetam 2.4"), text.index("days") + 4, 0.5)
    assert is_caption(text, *caption[:2]) and not is_caption(text, *row[:2])
    assert not is_heading(text, *row[:2])
    assert answerable(text, [caption, row]) == [row]


def test_evidence_joins_the_overlapping_windows_up_to_a_word_limit() -> None:
    """A keyword run's defining words lie just before the window that names the term."""
    text = " ".join(f"w{i}" for i in range(40))
    at = [m.start() for m in re.finditer(r"w\d+", text)]
    window = [(at[i], at[i + 19] + len(f"w{i + 19}"), score)
              for i, score in ((0, 0.5), (10, 0.9), (20, 0.7))]
    assert best_span([], window, {}, 0.3) == best_span([], window, {}, 0.3, text, 0)
    alone = best_span([], window, {}, 0.3)
    assert alone is not None and (alone.start, alone.end) == window[1][:2]
    joined = best_span([], window, {}, 0.3, text, 30)
    assert joined is not None and (joined.start, joined.end) == (window[1][0], window[2][1])
    whole = best_span([], window, {}, 0.3, text, 40)
    assert whole is not None and (whole.start, whole.end) == (0, len(text))


def test_without_similarities_only_a_span_with_a_question_word_is_evidence() -> None:
    text = "Nothing to see here. Valproate helps."
    spans = [(0, 20, 0.0), (21, len(text), 0.0)]
    weights = {"valproat": 1.0}
    marks = highlights(text, spans, Analyzer(), weights, 0.3, lexical_only=True)
    assert [(h.kind, text[h.start:h.end]) for h in marks] == [
        ("term", "Valproate"), ("evidence", "Valproate helps.")]
    none = highlights("Nothing to see here.", spans[:1], Analyzer(), weights, 0.3,
                      lexical_only=True)
    assert none == []


def test_evidence_edges_move_to_a_near_clause_boundary() -> None:
    text = ("The drug, which is old and cheap, helps a lot of people in many cases and it "
            "works well. Next one.")
    start, end = text.index("helps"), text.index("cases") + len("cases")
    assert text[slice(*snap(text, start, end))] == ("helps a lot of people in many cases and "
                                                    "it works well.")
    far = text.index("lot")
    assert snap(text, text.index("which"), far) == (text.index("which"), far)
    keywords = "myoclonus brief involuntary irregular twitching muscle joint group muscles"
    assert snap(keywords, 10, 30) == (10, 30)


def test_maxsim_takes_each_query_tokens_best_passage_token() -> None:
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    tokens = TokenVectors.from_list([np.array([[1.0, 0.0], [0.6, 0.8]]), np.array([[0.0, 1.0]])],
                                    np.float32)
    assert maxsim(q, [tokens.of(0), tokens.of(1)]).tolist() == pytest.approx([0.9, 0.5])
    assert maxsim(q, [tokens.of(1)]).tolist() == pytest.approx([0.5])


def test_late_signal_keeps_float32_copies_within_its_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    per = [rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 2, 4)]
    late = LateSignal(TokenVectors.from_list(per), lambda: None)
    monkeypatch.setattr(LateSignal, "KEPT_TOKENS", 6)
    for i in (0, 1, 2, 0):
        got = late.vectors(i)
        assert got.dtype == np.float32 and np.allclose(got, per[i], atol=1e-2)
        assert late._kept <= 6
    q = rng.standard_normal((2, 4)).astype(np.float32)
    assert late.scores(q, np.array([2, 0])).tolist() == pytest.approx(
        maxsim(q, [late.vectors(2), late.vectors(0)]).tolist())


def test_preload_hands_over_its_value_or_its_error() -> None:
    assert Preload(lambda: 42).result() == 42
    made: list[int] = []
    lazy = Preload(lambda: made.append(1) or len(made), start=False)
    assert made == [] and lazy.result() == 1 and lazy.result() == 1 and made == [1]
    with pytest.raises(ZeroDivisionError):
        Preload(lambda: 1 // 0).result()


def test_late_rerank_moves_only_the_first_stage_best_and_stays_in_0_1() -> None:
    fused = np.array([0.9, 0.8, 0.7, 0.1])
    top = np.array([0, 1, 2])
    out = rerank(fused.copy(), np.array([0.5, 0.9, 0.7]), top, LateInteraction(0.25, 3))
    assert out.tolist() == pytest.approx([0.675, 0.85, 0.65, 0.075])
    assert ((out >= 0) & (out <= 1)).all()


def test_span_scores_use_only_the_tokens_inside_each_span() -> None:
    q = np.array([[1.0, 0.0]])
    vectors = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    offsets = np.array([[0, 0], [0, 5], [6, 11]])
    assert span_scores(q, vectors, offsets, [(0, 5), (6, 11), (20, 30)]) == [1.0, 0.0, -1.0]
