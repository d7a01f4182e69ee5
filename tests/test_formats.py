"""Sources in the formats people keep: PDF pages, visible HTML text, DOCX, Markdown suffixes.

Each document is made here (reportlab for PDF, the DOCX parts written as Word lays them out), so
the expected text is known exactly; extraction runs through the real libraries.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from helpers import docx_paragraph, make_docx, make_pdf
from myoqa import corpus, formats
from myoqa.errors import MyoqaError

LINK = ('<w:p><w:r><w:t xml:space="preserve">Ask the </w:t></w:r><w:hyperlink r:id="rId2"><w:r>'
        '<w:t>Myoclonus Foundation</w:t></w:r></w:hyperlink><w:r><w:t xml:space="preserve">'
        ' for help.</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r></w:p>')
TABLE = ('<w:tbl><w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr></w:tbl>'
         .format(docx_paragraph("clonazepam"), docx_paragraph("0.5 mg")))


def test_pdf_pages_are_separated_and_numbered_by_page_breaks(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "a.pdf", [["Myoclonus is a sudden jerk.", "It is brief."], [],
                                        ["Clonazepam treats cortical myoclonus."]])
    text = formats.pdf_text(pdf.read_bytes())
    assert text.split(formats.PAGE_SEPARATOR) == ["Myoclonus is a sudden jerk.\nIt is brief.\n", "",
                                                  "Clonazepam treats cortical myoclonus.\n"]
    start = text.index("Clonazepam")
    assert text.count(formats.PAGE_BREAK, 0, start) + 1 == 3, "a page without text still counts"


def test_pdf_without_a_text_layer_says_it_may_be_a_scan(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", [[], []])
    with pytest.raises(formats.ExtractionError, match=r"^has no text layer \(scanned\?\)"):
        formats.pdf_text(pdf.read_bytes())


@pytest.mark.parametrize("data", [b"%PDF-1.4\n1 0 obj garbage", b"not a pdf", b""])
def test_damaged_pdf_is_named_as_unreadable(data: bytes) -> None:
    with pytest.raises(formats.ExtractionError, match=r"^cannot be read as a PDF \("):
        formats.pdf_text(data)


PAGE = b"""<!DOCTYPE html><html><head><title>Myoclonus - Health Wiki</title>
<style>p { color: red }</style><script>var tracking = "script text";</script></head>
<body><nav><a href="/">Home</a> | <a href="/a">Articles</a></nav>
<noscript>Enable JavaScript</noscript><!-- a <p>comment</p> -->
<h1>Myoclonus: causes &amp; treatment</h1>
<p>  <b>Myo</b>clonus is a   sudden,
   brief jerk.</p><div hidden>hidden text</div><span style="display: none">gone</span>
<p>First line<br>second line</p>
<pre>  code
    indented</pre>
<table><tr><th>Drug</th><th>Dose</th></tr><tr><td>clonazepam</td><td>0.5&nbsp;mg</td></tr></table>
<ul><li>one</li><li>two</li></ul><template><p>template text</p></template>
<footer>&copy; 2026</footer></body></html>"""


def test_html_keeps_only_visible_text_in_paragraphs() -> None:
    assert formats.html_text(PAGE) == (
        "Home | Articles\n\nMyoclonus: causes & treatment\n\nMyoclonus is a sudden, brief jerk."
        "\n\nFirst line\nsecond line\n\n  code\n    indented\n\nDrug\tDose\n\nclonazepam\t0.5\xa0mg"
        "\n\none\n\ntwo\n\n© 2026")


def test_html_without_closing_tags_or_in_a_legacy_charset() -> None:
    messy = b"<HTML><HEAD><TITLE>Old</TITLE><BODY><P>First para<P>Caf\xe9 <B>bold</HTML>"
    assert formats.html_text(messy) == "First para\n\nCaf\xe9 bold"
    declared = ('<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
                '<p>\u201cquoted\u201d</p>').encode("cp1252")
    assert formats.html_text(declared) == "\u201cquoted\u201d"
    assert formats.html_text(b"  <!-- only a comment -->  ") == ""


def test_docx_gives_body_tables_link_words_and_footnotes(tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "a.docx", [docx_paragraph("Myoclonus <is> a jerk & a twitch."),
                                           LINK, TABLE], footnote="Caviness JN. Myoclonus. 2019.")
    assert formats.docx_text(docx.read_bytes()) == (
        "Myoclonus <is> a jerk & a twitch.\n\nAsk the Myoclonus Foundation for help.[footnote 1]"
        "\n\nclonazepam\n\n0.5 mg\n\n[footnote 1] Caviness JN. Myoclonus. 2019.")


def test_docx_that_is_not_a_document_or_expands_too_far(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(formats.ExtractionError, match=r"not a zip archive"):
        formats.docx_text(b"PK\x03\x04 truncated")
    empty = tmp_path / "empty.docx"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(formats.ExtractionError, match=r"^cannot be read as a DOCX \("):
        formats.docx_text(empty.read_bytes())
    big = make_docx(tmp_path / "big.docx", [docx_paragraph("word " * 5000)])
    monkeypatch.setattr(formats, "MAX_DOCX_EXPANDED_BYTES", 10_000)
    with pytest.raises(formats.ExtractionError, match=r"over the 0 MiB limit for a DOCX"):
        formats.docx_text(big.read_bytes())


@pytest.mark.parametrize("name,label", [
    ("a.txt", "text"), ("a.md", "Markdown"), ("a.markdown", "Markdown"), ("a.mdown", "Markdown"),
    ("a.mkd", "Markdown"), ("a.mkdn", "Markdown"), ("sub/A.MD", "Markdown"), ("a.htm", "HTML"),
    ("a.HTML", "HTML"), ("a.xhtml", "HTML"), ("a.pdf", "PDF"), ("a.docx", "DOCX"),
    ("a.mdx", None), ("a.doc", None), ("README", None), ("notes.pdf/README", None)])
def test_formats_are_known_by_suffix(name: str, label: str | None) -> None:
    fmt = formats.format_of(name)
    assert (fmt.label if fmt else None) == label
    assert formats.is_paged(name) == (label == "PDF")


def test_a_folder_of_every_format_is_read_and_the_rest_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_pdf(src / "paper.pdf", [["Myoclonus on page one."], ["Treatment on page two."]])
    make_pdf(src / "scan.pdf", [[]])
    (src / "page.html").write_bytes(PAGE)
    make_docx(src / "sub" / "letter.docx", [docx_paragraph("Dear colleague, myoclonus.")])
    (src / "notes.markdown").write_text("# Notes\r\n\r\n*Myoclonus* is a jerk.\r\n")
    (src / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (src / "README").write_text("no suffix")
    (src / ".hidden.pdf").write_bytes(b"ignored")
    read = corpus.read_corpus(src)
    texts = {s.name: s.text for s in read.sources}
    assert sorted(texts) == ["notes.markdown", "page.html", "paper.pdf", "scan.pdf",
                             "sub/letter.docx"]
    assert texts["notes.markdown"] == "# Notes\r\n\r\n*Myoclonus* is a jerk.\r\n", "read as is"
    assert texts["paper.pdf"] == "Myoclonus on page one.\n\n\f\nTreatment on page two.\n"
    assert texts["sub/letter.docx"] == "Dear colleague, myoclonus."
    assert texts["page.html"] == formats.html_text(PAGE)
    assert texts["scan.pdf"] == ""
    hashes = {s.name: s.sha256 for s in read.sources}
    assert hashes["paper.pdf"] == hashlib.sha256((src / "paper.pdf").read_bytes()).hexdigest()
    assert corpus.source_hashes(src) == hashes, "the staleness check sees the same files"
    assert [(s.name, s.reason, s.sha256 is not None) for s in read.skipped] == [
        ("README", "not a supported format (no suffix)", False),
        ("old.doc", "not a supported format (.doc)", False),
        ("scan.pdf", "has no text layer (scanned?); run OCR on it to index it", True)]


def test_a_folder_of_only_unsupported_files_names_the_formats(tmp_path: Path) -> None:
    (tmp_path / "a.doc").write_bytes(b"x")
    with pytest.raises(MyoqaError, match=r"holds no \.txt, \.md, \.html, \.pdf or \.docx files"):
        corpus.read_corpus(tmp_path)


def test_documents_may_be_larger_than_text_files_and_count_by_their_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pdf(tmp_path / "paper.pdf", [[f"Line {n} of a long paper on myoclonus." for n in range(40)]])
    size = (tmp_path / "paper.pdf").stat().st_size
    monkeypatch.setattr(corpus, "MAX_SOURCE_BYTES", size // 2)
    monkeypatch.setattr(corpus, "MAX_DOCUMENT_BYTES", size)
    assert "Line 39" in corpus.read_corpus(tmp_path).sources[0].text
    monkeypatch.setattr(corpus, "MAX_DOCUMENT_BYTES", size - 1)
    with pytest.raises(MyoqaError, match=r"paper.pdf is 0 MiB, over the 0 MiB limit for one file"):
        corpus.source_hashes(tmp_path)
    monkeypatch.setattr(corpus, "MAX_DOCUMENT_BYTES", size)
    monkeypatch.setattr(corpus, "MAX_CORPUS_BYTES", 1000)
    assert corpus.source_hashes(tmp_path), "the file's bytes do not count towards the text limit"
    with pytest.raises(MyoqaError, match=r"hold more than 0 MiB of text"):
        corpus.read_corpus(tmp_path)


@hsettings(max_examples=150, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=300).map(str.encode)
       | st.binary(max_size=400).map(lambda b: b"%PDF-1.4\n" + b)
       | st.binary(max_size=400).map(lambda b: b"PK\x03\x04" + b) | st.builds(
    lambda tags, text: "".join(f"<{t}>{text}" for t in tags).encode(),
    st.lists(st.sampled_from(["p", "pre", "td", "br", "script", "b", "head", "li", "/p",
                              "!--", "?x", "![CDATA["]), max_size=8),
    st.text(max_size=30)))
def test_any_bytes_give_text_or_a_reason(data: bytes) -> None:
    """What a damaged or hostile file can do to an extractor: text or ExtractionError only."""
    text = formats.html_text(data)
    assert isinstance(text, str) and not re.search("[\x00-\x04]", text), "no marks left behind"
    for extract in (formats.pdf_text, formats.docx_text):
        try:
            assert isinstance(extract(data), str)
        except formats.ExtractionError as exc:
            assert str(exc)
