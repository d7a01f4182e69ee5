"""What test files share besides fixtures: the seeds' names, the command runner, builders of
sources, PDFs and DOCX files, the stand-in encoder and a Milvus server (one copy of each, here;
fixtures stay in conftest.py). Imported as `from helpers import …`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from myoqa.config import PROJECT_ROOT, Settings
from myoqa.search import Answer, Searcher

SEEDS = PROJECT_ROOT / "seeds"
MED = PROJECT_ROOT / "eval" / "datasets" / "med"
SERVER_START_SECONDS = 120
FLUTTER = "000_0ea712277db854cc.txt"
PROSE = "001_f6f440b41de63d6e.txt"
DIM = 384
REBUILD = "myoqa index --rebuild"
# What a terminal acts on: C0 controls but newline, DEL, C1 controls, bidi overrides and isolates.
CONTROLS = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)),
            *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))} - {"\n"}


def eval_questions() -> list[str]:
    """The questions of eval/questions.jsonl, in order."""
    lines = (PROJECT_ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def two_signals(local: Searcher) -> Searcher:
    """`local` without late interaction: what the Milvus backend answers with (README)."""
    from myoqa.engine import query_encoder_factory

    return Searcher(local.index, query_encoder_factory(local.index), local.params)


def writable_copy(folder: Path, target: Path) -> Path:
    """Copy a folder of files, writable whatever the original's permissions."""
    shutil.copytree(folder, target)
    for path in [target, *target.iterdir()]:
        path.chmod(path.stat().st_mode | 0o200)
    return target


def copy_index(settings: Settings, tmp_path: Path, name: str = "index") -> Path:
    """A private copy of the session's seed index that a test may damage or rebuild."""
    target = tmp_path / name
    shutil.copytree(settings.index_dir, target)
    return target


def write_sources(folder: Path, files: dict[str, str | bytes]) -> Path:
    """A sources folder holding `files` (name → text or bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def cli_env(where: Settings | Path, sources: Path | None = None) -> dict[str, str]:
    """The environment that points `myoqa` at an index folder (given, or the settings' own) and
    a sources folder (given, else the settings' own, else the seeds)."""
    if isinstance(where, Settings):
        return {"MYOQA_INDEX_DIR": str(where.index_dir),
                "MYOQA_SOURCES": str(sources or where.sources)}
    return {"MYOQA_INDEX_DIR": str(where), "MYOQA_SOURCES": str(sources or SEEDS)}


def leftovers(index_dir: Path) -> list[str]:
    """What interrupted or killed builds left in an index folder."""
    try:
        return sorted(p.name for p in index_dir.iterdir() if p.name.startswith(".tmp-"))
    except FileNotFoundError:
        return []


def builds(index_dir: Path) -> set[str]:
    """Names of the build folders in an index folder."""
    return {p.name for p in index_dir.glob("build-*")}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            stdin: str | None = None, prefix: list[str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run `python -m myoqa` in a fresh process, as a user would; `stdin` is piped in when
    given (else stdin is empty and not a terminal); `prefix` goes before the command (such as
    `unprivileged()`)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "myoqa", *args],
                          capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False,
                          **({"input": stdin} if stdin is not None
                             else {"stdin": subprocess.DEVNULL}))


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF whose pages show the given lines as text; an empty page gets only a drawn shape,
    as a scan has no text layer. Written with reportlab, byte-for-byte the same each run."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), invariant=True)
    for lines in pages:
        if not lines:
            pdf.rect(72, 300, 300, 400, fill=1)
        for n, line in enumerate(lines):
            pdf.drawString(72, 760 - 14 * n, line)
        pdf.showPage()
    pdf.save()
    return path


_DOCX_NS = ('xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"')
_DOCX_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml"


def docx_paragraph(text: str) -> str:
    """The WordprocessingML of one paragraph holding `text` in one run."""
    from xml.sax.saxutils import escape

    return f'<w:p><w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'


def make_docx(path: Path, body: list[str], footnote: str = "") -> Path:
    """A DOCX as Word lays one out (document, relationships, content types, footnotes part),
    holding `body` (paragraph XML, see docx_paragraph) and footnote 1 when given."""
    import zipfile
    from xml.sax.saxutils import escape

    notes = (f'<w:footnotes {_DOCX_NS}><w:footnote w:type="separator" w:id="-1"><w:p><w:r>'
             '<w:separator/></w:r></w:p></w:footnote><w:footnote w:id="1"><w:p><w:r><w:footnoteRef/>'
             f'</w:r><w:r><w:t xml:space="preserve"> {escape(footnote)}</w:t></w:r></w:p>'
             '</w:footnote></w:footnotes>')
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/word/document.xml" ContentType="{_DOCX_TYPE}.document.main+xml"/>'
            f'<Override PartName="/word/footnotes.xml" ContentType="{_DOCX_TYPE}.footnotes+xml"/>'
            '</Types>'),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_DOCX_REL}/officeDocument" Target="word/document.xml"/>'
            '</Relationships>'),
        "word/_rels/document.xml.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_DOCX_REL}/footnotes" Target="footnotes.xml"/>'
            f'<Relationship Id="rId2" Type="{_DOCX_REL}/hyperlink" Target="https://example.org/" '
            'TargetMode="External"/></Relationships>'),
        "word/document.xml": f'<w:document {_DOCX_NS}><w:body>{"".join(body)}</w:body></w:document>',
        "word/footnotes.xml": notes if footnote else f"<w:footnotes {_DOCX_NS}/>",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, xml in parts.items():
            archive.writestr(name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + xml)
    return path


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"],
                                                  capture_output=True, check=False).returncode == 0:
        return ["unshare", "--user"]
    pytest.skip("running as root without user namespaces, so permissions cannot bite")


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The error line of a failed run, after checking it is the only error line and no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("myoqa: error: "), proc.stderr
    assert sum(line.startswith("myoqa: error: ") for line in lines) == 1
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[-1], (word, lines[-1])
    return lines[-1]


class FakeEncoder:
    """Hashed bag-of-words vectors of the real model's size, in place of the real model."""

    dimension = DIM

    def __init__(self, _model: object = None) -> None:
        pass

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """One normalised vector per text."""
        out = np.full((len(texts), DIM), 1e-3, dtype=np.float32)
        for row, text in zip(out, texts, strict=True):
            for word in text.lower().split():
                row[zlib.crc32(word.encode("utf-8", "surrogatepass")) % DIM] += 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        if progress:
            progress(len(texts))
        return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def milvus_server(data: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`milvus-lite server` on 127.0.0.1 and a free port, its files in `data`: its URI and
    process (a test may kill it), stopped at the end."""
    port = free_port()
    log = open(data / "milvus-server.log", "w")  # noqa: SIM115 (open while it runs)
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                               str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            assert server.poll() is None, "milvus-lite server exited at start"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "milvus-lite server did not start listening"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def check_answer(searcher: Searcher, answer: Answer, k: int) -> None:
    """Ranked, exact, non-overlapping passages whose highlights lie inside them (none only
    when BM25 alone finds no question word in any passage, an abstention)."""
    results = answer.results
    none_found = answer.mode == "bm25" and answer.abstained
    assert (0 if none_found else 1) <= len(results) <= k
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    scores = [r.score for r in results]
    assert all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)
    for r in results:
        source = searcher.index.texts[r.source]
        assert r.text == source[r.start:r.end] and r.text.strip()
        assert r.line == source.count("\n", 0, r.start) + 1
        assert sum(h.kind == "evidence" for h in r.highlights) <= 1
        for h in r.highlights:
            assert h.kind in ("term", "evidence") and 0 <= h.start < h.end <= len(r.text)
    for i, a in enumerate(results):
        for b in results[i + 1:]:
            assert a.source != b.source or a.end <= b.start or b.end <= a.start, (a, b)
    json.dumps(answer.to_json())
