"""The file formats a source can be in, and the text each one yields for indexing and display.

Plain text and Markdown are indexed as they are (Markdown unrendered, so a line and column in a
citation are the file's own). PDF, HTML and DOCX are extracted here, one function per format,
each from the file's bytes; the index stores the extracted text, and every passage shown is a
range of it. Libraries were chosen by measurement (see the commit that added this module):
pypdfium2 for PDF, lxml's HTML parser for HTML, docx2python for DOCX. Each is imported only when
a file of its format is read, so a question over plain-text sources never loads them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import zipfile

PAGE_BREAK = "\f"
PAGE_SEPARATOR = "\n" + PAGE_BREAK + "\n"
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mkdn", ".mdwn")
MAX_DOCX_EXPANDED_BYTES = 256 * 1024 * 1024
# docx2python holds every XML element of a document as Python objects (about 2.6 KB and 0.2 ms
# each): a 100 KB file of a million empty paragraphs took 228 s and 2.6 GB. Elements are counted
# before parsing; a 500-page book has about as many as the limit.
MAX_DOCX_ELEMENTS = 200_000


class ExtractionError(Exception):
    """A file of a known format that yields no usable text; the message says why, for a note."""


class Truncated(ExtractionError):
    """A file whose text could be read only in part: `text` is that part, the message says
    which part is missing, for a note."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


@dataclass(frozen=True)
class Format:
    """One supported file format: how its files are named and how their text is obtained.

    `extract` is None for text formats, which are decoded as UTF-8 and indexed as they are.
    `paged` formats separate their pages with PAGE_BREAK, so a citation can name the page.
    """

    label: str
    suffixes: tuple[str, ...]
    extract: Callable[[bytes], str] | None = None
    paged: bool = False


def pdf_text(data: bytes) -> str:
    """The text layer of a PDF, its pages separated by PAGE_BREAK.

    The page of an offset is then `text.count(PAGE_BREAK, 0, offset) + 1`. PDFium marks a word
    it found hyphenated across a line end with U+0002 and drops the line break; the mark is
    removed, so "manip-/ulation" becomes "manipulation". Pages are separated by a blank line
    and a line holding only the page break, so a page starts on a line of its own and every
    passage lies within one page (the blank line is a paragraph break to the chunker).
    """
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ExtractionError("is encrypted (open it and save a copy without a password)"
                                  ) from None
        raise ExtractionError(f"cannot be read as a PDF ({_pdfium_reason(exc)})") from None
    pages = []
    try:
        for page in document:
            textpage = page.get_textpage()
            pages.append(_pdf_page(textpage.get_text_bounded()))
            textpage.close()
            page.close()
    except pdfium.PdfiumError as exc:
        raise ExtractionError(f"cannot be read as a PDF ({_pdfium_reason(exc)})") from None
    finally:
        document.close()
    if not any(page.strip() for page in pages):
        raise ExtractionError("has no text layer (scanned?); run OCR on it to index it")
    return PAGE_SEPARATOR.join(pages)


def _pdfium_reason(exc: Exception) -> str:
    """PDFium's own words, e.g. "data format error"."""
    found = re.search(r"PDFium: ([^)]+)", str(exc))
    return found.group(1).lower() if found else str(exc)


_PDF_LINE_ENDS = re.compile(r"\r\n?")


def _pdf_page(text: str) -> str:
    """One page's text with newline line ends, hyphenation marks removed, ending in a newline."""
    text = _PDF_LINE_ENDS.sub("\n", text).replace("\x02", "").rstrip()
    return text + "\n" if text else ""


_HTML_DROPPED = ("script", "style", "head", "title", "noscript", "template", "svg", "math",
                 "iframe", "object", "embed", "canvas")
_HTML_BLOCKS = frozenset((
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend",
    "li", "listing", "main", "menu", "nav", "ol", "p", "plaintext", "pre", "section", "summary",
    "table", "tbody", "tfoot", "thead", "tr", "ul", "xmp"))
_HTML_CELLS = frozenset(("td", "th"))
# Marks used while walking the tree, replaced once whitespace is collapsed: a paragraph break,
# a line break, a space and a tab that must survive (inside <pre>), and a table cell boundary.
_PARAGRAPH, _LINE, _SPACE, _TAB, _CELL = "\x00", "\x01", "\x02", "\x03", "\x04"
_PREFORMATTED = frozenset(("pre", "listing", "plaintext", "xmp", "textarea"))
_HTML_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_MARKS = re.compile("[\x00-\x04]")
_CELL_GAP = re.compile(" *\x04[ \x04]*")
_HTML_TOO_DEEP = re.compile(r"Excessive depth in document: (\d+)")


def html_text(data: bytes) -> str:
    """The visible text of an HTML page: no head, scripts, styles or hidden elements.

    Block elements (paragraphs, headings, list items, table rows) become paragraphs separated
    by a blank line, `<br>` a line break; other whitespace collapses as a browser shows it,
    except inside `<pre>`. Table cells of a row are separated by a tab. UTF-8 is assumed when
    the bytes are valid UTF-8, else the page's own charset declaration decides.

    libxml2 reads elements nested up to 256 deep, 2,048 with `huge_tree` (used here); past
    that it drops the rest of the page without an error, so that is raised as Truncated
    with the text before it.
    """
    import lxml.html
    from lxml import etree

    try:
        data.decode("utf-8")
        parser = lxml.html.HTMLParser(encoding="utf-8", huge_tree=True)
    except UnicodeDecodeError:
        parser = lxml.html.HTMLParser(huge_tree=True)
    try:
        root = lxml.html.document_fromstring(data, parser=parser)
    except etree.ParserError:  # nothing but whitespace or comments
        return ""
    too_deep = next(((e.line, found.group(1)) for e in parser.error_log
                     if (found := _HTML_TOO_DEEP.search(e.message))), None)
    etree.strip_elements(root, etree.Comment, etree.ProcessingInstruction, with_tail=False)
    hidden = root.xpath("//*[@hidden] | //*[contains(translate(@style, ' ', ''), "
                        "'display:none')] | " + " | ".join(f"//{tag}" for tag in _HTML_DROPPED))
    for element in hidden:
        if element.getparent() is not None:
            element.drop_tree()
    parts: list[str] = []
    pre = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        if event == "start":
            parts.append(_PARAGRAPH if tag in _HTML_BLOCKS else _CELL if tag in _HTML_CELLS
                         else _LINE if tag == "br" else "")
            pre += tag in _PREFORMATTED
            parts.append(_html_run(element.text, pre > 0))
        else:
            pre -= tag in _PREFORMATTED
            parts.append(_PARAGRAPH if tag in _HTML_BLOCKS else "")
            parts.append(_html_run(element.tail, pre > 0))
    text = _html_layout("".join(parts))
    if too_deep is not None:
        line, depth = too_deep
        raise Truncated(f"the text from line {line} on (elements nested more than {depth} "
                        "deep, which the HTML parser does not read)", text)
    return text


def _html_run(text: str | None, preformatted: bool) -> str:
    """A text node as the page shows it: whitespace collapsed, or kept inside <pre>."""
    if not text:
        return ""
    text = _MARKS.sub("", text)
    if preformatted:
        return text.replace("\r\n", "\n").translate({10: _LINE, 32: _SPACE, 9: _TAB})
    return _HTML_WHITESPACE.sub(" ", text)


def _html_layout(marked: str) -> str:
    """Paragraphs joined by blank lines, line breaks as newlines, no spaces at line edges."""
    paragraphs = []
    for block in marked.split(_PARAGRAPH):
        lines = [_CELL_GAP.sub(_CELL, re.sub(" +", " ", line)).strip(" " + _CELL)
                 for line in block.split(_LINE)]
        while lines and not lines[-1].strip(_SPACE + _TAB):
            lines.pop()
        while lines and not lines[0].strip(_SPACE + _TAB):
            lines.pop(0)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs).translate({ord(_SPACE): " ", ord(_TAB): "\t", ord(_CELL): "\t"})


_DOCX_LINK = re.compile(r'<a href="[^"]*">(.*?)</a>', re.DOTALL)
_DOCX_IMAGE = re.compile(r"----[^\s-][^\n]*?\.(?:png|jpe?g|gif|bmp|tiff?|emf|wmf|svg)----",
                         re.IGNORECASE)
_DOCX_ALT = re.compile(r"----Image alt text---->(.*?)<", re.DOTALL)
_DOCX_NOTE_MARK = re.compile(r"----(footnote|endnote)(\d+)----")
_DOCX_NOTE = re.compile(r"^(footnote|endnote)(\d+)\)\t ?", re.MULTILINE)
_DOCX_MAIN = re.compile(r"word/document\d*\.xml")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def docx_text(data: bytes) -> str:
    """The text of a Word document: headers, body with tables, footers, footnotes and endnotes.

    docx2python writes links as HTML anchors and pictures as "----media/x.png----"; here links
    keep their words, pictures their alt text, and a note reference reads "[footnote 1]",
    the note itself starting with the same mark.
    """
    import io
    import zipfile
    import zlib

    from docx2python import docx2python

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
            names = archive.namelist()
            if not any(_DOCX_MAIN.fullmatch(name) for name in names):
                raise ExtractionError("cannot be read as a DOCX (it has no word/document.xml)")
            if expanded > MAX_DOCX_EXPANDED_BYTES:
                raise ExtractionError(f"expands to {expanded // 2**20} MiB, over the "
                                      f"{MAX_DOCX_EXPANDED_BYTES // 2**20} MiB limit for a DOCX")
            elements = _xml_elements(archive, MAX_DOCX_ELEMENTS)
    except zipfile.BadZipFile:
        raise ExtractionError("cannot be read as a DOCX (it is not a zip archive)") from None
    except (zlib.error, EOFError, NotImplementedError):
        raise ExtractionError("cannot be read as a DOCX (a part of it is damaged)") from None
    if elements > MAX_DOCX_ELEMENTS:
        raise ExtractionError(f"holds more than {MAX_DOCX_ELEMENTS:,} XML elements, the limit "
                              "for a DOCX (split it into smaller files)")
    try:
        with docx2python(io.BytesIO(data)) as document:
            text = document.text
    except KeyError as exc:
        raise ExtractionError(f"cannot be read as a DOCX (it has no part {exc})") from None
    except Exception as exc:  # noqa: BLE001 (a damaged part can fail in zipfile, lxml or docx2python)
        raise ExtractionError(f"cannot be read as a DOCX ({type(exc).__name__})") from None
    text = _DOCX_LINK.sub(r"\1", text)
    text = _DOCX_ALT.sub(lambda m: f"[image: {m.group(1)}]" if m.group(1).strip() else "", text)
    text = _DOCX_IMAGE.sub("", text)
    text = _DOCX_NOTE_MARK.sub(r"[\1 \2]", text)
    text = _DOCX_NOTE.sub(r"[\1 \2] ", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


_XML_START_TAG = re.compile(rb"<[A-Za-z_]")
_XML_BLOCK_BYTES = 1024 * 1024


def _xml_elements(archive: zipfile.ZipFile, limit: int) -> int:
    """How many elements the archive's XML parts hold, counted by their start tags while
    decompressing block by block; counting stops once past `limit`."""
    count = 0
    for info in archive.infolist():
        if not info.filename.endswith((".xml", ".rels")):
            continue
        with archive.open(info) as part:
            tail = b""
            while block := part.read(_XML_BLOCK_BYTES):
                chunk = tail + block
                count += len(_XML_START_TAG.findall(chunk))
                if count > limit:
                    return count
                tail = chunk[-1:]  # a "<" at a block's end is counted with the next block
    return count


FORMATS = (
    Format("text", (".txt",)),
    Format("Markdown", MARKDOWN_SUFFIXES),
    Format("HTML", (".html", ".htm", ".xhtml"), html_text),
    Format("PDF", (".pdf",), pdf_text, paged=True),
    Format("DOCX", (".docx",), docx_text),
)
SUFFIXES = {suffix: fmt for fmt in FORMATS for suffix in fmt.suffixes}


def format_of(name: str) -> Format | None:
    """The format of a file by its suffix (any case), or None when myoqa does not read it."""
    dot = name.rfind(".")
    return SUFFIXES.get(name[dot:].lower()) if dot > name.rfind("/") else None


def is_paged(name: str) -> bool:
    """Whether a source's text has pages (so a citation names one)."""
    fmt = format_of(name)
    return fmt is not None and fmt.paged
