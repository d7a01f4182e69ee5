"""Citations people can follow (file:line:column, page), plain output for pipes, and opening a
passage in an editor or pager. Pure logic, no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from myoqa import editor
from myoqa.citation import PROSE_SEPARATOR, Place, cite, cite_passage, locate
from myoqa.errors import MyoqaError
from myoqa.render import location, passage_text, plain, plain_answer, plain_passage, safe
from myoqa.search import Answer, Result
from myoqa.search.highlight import Highlight
from myoqa.tui.transcript import Turn, citation, code_span, turn_markdown
from myoqa.tui.widgets import place

PASSAGE_PLACE = Place(3, 7, None)


def _result(text: str, highlights: list[Highlight], source: str = "a.txt",
            place: Place = PASSAGE_PLACE) -> Result:
    return Result(rank=1, source=source, start=40, end=40 + len(text), line=place.line,
                  column=place.column, page=place.page, score=0.5, text=text,
                  highlights=highlights)


@pytest.mark.parametrize("text,start,paged,place", [
    ("one line of keywords only", 12, False, Place(1, 13, None)),
    ("first\nsecond line\nthird", 13, False, Place(2, 8, None)),
    ("first\r\nsecond\r\n", 7, False, Place(2, 1, None)),
    ("é\nçà word", 4, False, Place(2, 3, None)),
    ("page one\n\f\npage two\n\f\npage three\n", 12, True, Place(3, 2, 2)),
    ("page one\n\f\npage two\n\f\npage three\n", 22, True, Place(5, 1, 3)),
    ("text with a\fform feed", 14, False, Place(1, 15, None)),
])
def test_locate_gives_line_column_and_page(text: str, start: int, paged: bool,
                                           place: Place) -> None:
    assert locate(text, start, paged) == place


def test_citation_reads_file_line_column_and_page() -> None:
    assert cite("notes/a.txt", Place(12, 5, None)) == "notes/a.txt:12:5"
    assert cite("paper.pdf", Place(40, 1, 3)) == "paper.pdf:40:1 p. 3"
    result = _result("x", [], "paper.pdf", Place(40, 1, 3))
    assert result.citation == "paper.pdf:40:1 p. 3"
    assert {"line": 40, "column": 1, "page": 3}.items() <= result.to_json().items()


def test_one_citation_wording_with_one_escaping_rule_per_medium() -> None:
    """The CLI line, the chat's card, the clipboard and the Markdown transcript cite a passage
    with the same words; only how the source's name is made safe differs by medium."""
    result = _result("x", [], "we\x1bird.pdf", Place(40, 1, 3))
    assert cite_passage(result) == "we\x1bird.pdf:40:1 p. 3 · chars 40–41"
    assert location(result) == "we\\x1bird.pdf:40:1 p. 3 · chars 40–41"
    assert place(result) == "we\u241bird.pdf:40:1 p. 3 · chars 40–41"
    assert citation(result) == "we\x1bird.pdf:40:1 p. 3, chars 40–41"
    assert cite_passage(result, code_span, PROSE_SEPARATOR) == (
        "`we\u241bird.pdf:40:1 p. 3`, chars 40–41")
    answer = Answer(question="q", mode="bm25", k=1, abstained=False, results=[result],
                    searched="q", best_similarity=None)
    head = turn_markdown(1, Turn("q", "q", "bm25", 1, answer))[4]
    assert head == "1. `we\u241bird.pdf:40:1 p. 3`, chars 40–41 (score 0.500)"


def test_crlf_line_ends_show_as_line_ends_with_offsets_kept() -> None:
    text = "Myoclonus is a jerk.\r\nClonazepam treats it.\r\n"
    shown = safe(text)
    assert "\u240d" not in shown and len(shown) == len(text)
    assert shown.split("\n")[:2] == ["Myoclonus is a jerk. ", "Clonazepam treats it. "]
    styled = passage_text(_result(text, [Highlight(22, 32, "term")]))
    assert styled.plain[22:32] == "Clonazepam"
    assert safe("a\rb\x1b[2Jc") == "a\u240db\u241b[2Jc", "a lone CR and escapes stay visible"


def test_plain_output_keeps_the_text_exact_but_what_a_terminal_would_act_on() -> None:
    assert plain("line\r\nnext\tcell\f\nand\rlone\x1b[31m") == (
        "line\r\nnext\tcell\n\nand\u240dlone\u241b[31m")


def test_a_page_break_shows_as_a_line_break_never_as_a_symbol_or_raw() -> None:
    """A form feed (a PDF's page break, or one in a text file) is a line break in the chat, the
    styled and the plain output, never "\u240c" or a raw ^L; offsets still line up."""
    text = "end of page one\fstart of page two"
    for shown in (safe(text), plain(text), passage_text(_result(text, [])).plain):
        assert shown == "end of page one\nstart of page two"


def test_plain_passage_marks_the_evidence_and_nothing_else() -> None:
    text = "Some words. Clonazepam treats cortical myoclonus. More words."
    result = _result(text, [Highlight(12, 49, "evidence"), Highlight(12, 22, "term")])
    assert plain_passage(result) == (
        "Some words. «Clonazepam treats cortical myoclonus.» More words.")
    long = "word " * 40 + "end"
    assert plain_passage(_result(long, [])) == long, "never wrapped"
    answer = Answer(question="q", mode="bm25", k=1, abstained=False, results=[result],
                    searched="q", best_similarity=None)
    assert plain_answer(answer).splitlines() == [
        "1. a.txt:3:7 · chars 40–101 · score 0.500",
        "Some words. «Clonazepam treats cortical myoclonus.» More words.",
        "   terms: Clonazepam", ""]


PLACE = Place(12, 5, None)


F = str(Path("F").absolute())


@pytest.mark.parametrize("program,expected", [
    (["vim"], ["vim", "+call cursor(12, 7)", "--", F]),
    (["/usr/bin/nvim", "-n"], ["/usr/bin/nvim", "-n", "+call cursor(12, 7)", "--", F]),
    (["vi"], ["vi", "+12", F]),
    (["nano"], ["nano", "+12,5", F]),
    (["emacs", "-nw"], ["emacs", "-nw", "+12:5", F]),
    (["micro"], ["micro", "+12:5", F]),
    (["kak"], ["kak", "+12:5", F]),
    (["hx"], ["hx", F + ":12:5"]),
    (["code", "--wait"], ["code", "--wait", "--goto", F + ":12:5"]),
    (["less", "-R"], ["less", "-R", "+12g", "--", F]),
    (["more"], ["more", "+12", F]),
    (["ed"], ["ed", F]),
])
def test_editor_commands_start_at_the_passage(program: list[str], expected: list[str]) -> None:
    assert editor.command(program, Path("F"), PLACE, "éé  passage") == expected


@pytest.mark.parametrize("program", [*editor.JUMPS, "ed"])
@pytest.mark.parametrize("name", ["+!touch PWNED", "-c", "--cmd=!touch PWNED", "+:!id:1"])
def test_no_argument_made_from_a_file_name_reads_as_an_option(program: str, name: str) -> None:
    """A relative source path starting with '+' or '-' (`--sources .`) reaches the program as an
    absolute path, so neither vim's '+cmd' nor any option can be read from it."""
    argv = editor.command([program], Path(name), PLACE, "line")
    from_name = [arg for arg in argv[1:] if name in arg]
    assert from_name and all(arg.startswith("/") for arg in from_name), argv


def test_viewer_runs_the_configured_command_line() -> None:
    """The viewer's command line (config resolves $VISUAL, $EDITOR, $PAGER in that order:
    tests/test_views_door.py) is split as a shell would; an unclosed quote names its origin."""
    assert editor.viewer("less -R", "$PAGER") == (["less", "-R"], "$PAGER")
    assert editor.viewer("emacs -nw", "$EDITOR") == (["emacs", "-nw"], "$EDITOR")
    with pytest.raises(MyoqaError, match=r"\$VISUAL .* is not a valid command line"):
        editor.viewer("'unclosed", "$VISUAL")
