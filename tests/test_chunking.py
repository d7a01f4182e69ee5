"""Passages and spans are exact ranges of their sources, sized as the parameters say."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import FLUTTER, PROSE, SEEDS
from myoqa.analysis import WORD_RE, Analyzer
from myoqa.chunking import ChunkParams, chunk, is_keyword_run
from myoqa.corpus import load_sources

PARAMS = ChunkParams()


def test_seed_shapes_are_detected() -> None:
    texts = {s.name: s.text for s in load_sources(SEEDS)}
    assert is_keyword_run(texts[FLUTTER], PARAMS)
    assert not is_keyword_run(texts[PROSE], PARAMS)


def test_every_passage_round_trips_and_stays_short() -> None:
    for src in load_sources(SEEDS):
        passages, spans = chunk(src.name, src.text, PARAMS)
        assert passages and spans
        for unit in passages + spans:
            text = src.text[unit.start:unit.end]
            assert text == text.strip() and text
            assert unit.source == src.name
        assert max(len(src.text[p.start:p.end].split()) for p in passages) <= 120


def test_passages_cover_every_word() -> None:
    for src in load_sources(SEEDS):
        passages, _ = chunk(src.name, src.text, PARAMS)
        covered = [False] * len(src.text)
        for p in passages:
            covered[p.start:p.end] = [True] * (p.end - p.start)
        assert all(covered[i] for i, ch in enumerate(src.text) if not ch.isspace())


def test_prose_passages_end_at_sentence_ends() -> None:
    src = next(s for s in load_sources(SEEDS) if s.name == PROSE)
    passages, _ = chunk(src.name, src.text, PARAMS)
    endings = [src.text[p.start:p.end].rstrip()[-1] for p in passages]
    assert sum(ch in ".!?" for ch in endings) >= len(passages) - 2


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=3000))
def test_chunking_any_text_covers_it_with_exact_offsets(text: str) -> None:
    passages, spans = chunk("x", text, ChunkParams(window_words=7, window_stride=3,
                                                  prose_max_words=9, span_words=3, span_stride=2,
                                                  whole_max_words=5))
    for unit in passages + spans:
        assert 0 <= unit.start < unit.end <= len(text)
        assert not text[unit.start].isspace() and not text[unit.end - 1].isspace()
    covered = [False] * len(text)
    for p in passages:
        covered[p.start:p.end] = [True] * (p.end - p.start)
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


def _matches_word_by_word(analyzer: Analyzer, text: str, terms: set[str]) -> list:
    return [(t, m.start(), m.end()) for m in WORD_RE.finditer(text)
            if (t := analyzer.term(m.group())) in terms]


@given(st.text(alphabet=st.sampled_from(list("ab_ 1-'éÉ\n²½\u0301")), max_size=60),
       st.sets(st.sampled_from(["a", "ab", "b", "ba", "1", "é", "ab1", "²", "a½"]), max_size=4))
def test_term_matches_agree_with_analysing_each_word(text: str, terms: set[str]) -> None:
    analyzer = Analyzer(stem=False, stopwords=False)
    assert analyzer.matches(text, terms) == _matches_word_by_word(analyzer, text, terms)


def test_term_matches_on_the_seeds() -> None:
    analyzer = Analyzer()
    for path in sorted(SEEDS.iterdir()):
        text = path.read_text(encoding="utf-8")
        for question in ("which drugs treat myoclonic jerks?", "diaphragmatic flutter",
                         "Myoclonus: sleep, SLEEPING and falling asleep"):
            terms = set(analyzer.terms(question))
            assert analyzer.matches(text, terms) == _matches_word_by_word(analyzer, text, terms)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab. \n"), max_size=60), min_size=1, max_size=6),
       st.booleans())
def test_no_passage_or_span_crosses_a_page_break(page_texts: list[str], short: bool) -> None:
    text = "\n\f\n".join(page_texts)
    params = ChunkParams(window_words=7, window_stride=3, prose_max_words=9, span_words=3,
                         span_stride=2, whole_max_words=500 if short else 5)
    passages, spans = chunk("x", text, params)
    for unit in passages + spans:
        assert "\f" not in text[unit.start:unit.end]
    covered = [False] * len(text)
    for p in passages:
        covered[p.start:p.end] = [True] * (p.end - p.start)
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


def test_a_short_two_page_text_is_one_passage_per_page() -> None:
    """Under `whole_max_words` a source is one passage, but a page break still divides it."""
    text = "Myoclonus is a jerk.\n\n\f\nClonazepam treats it."
    passages, _ = chunk("a.pdf", text, PARAMS)
    assert [text[p.start:p.end] for p in passages] == ["Myoclonus is a jerk.",
                                                       "Clonazepam treats it."]
