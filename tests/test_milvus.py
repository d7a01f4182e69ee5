"""The Milvus backend against a real Milvus: milvus-lite's server on 127.0.0.1 (started by the
`milvus_uri` fixture) and the in-process file URI. Same answers as the local index, exact text
without local files, staleness, a killed build, and MED through Milvus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import FLUTTER, MED, SEEDS, run_cli
from myoqa import beir
from myoqa.cli import MILVUS_TWO_SIGNALS
from myoqa.config import PROJECT_ROOT, MilvusSettings, Settings
from myoqa.corpus import load_sources
from myoqa.engine import query_encoder_factory
from myoqa.index import BuildParams, Index
from myoqa.index.ownership import claim
from myoqa.scale.milvus_engine import (
    encoder_dir,
    library_alias,
    made_from,
    open_milvus_searcher,
)
from myoqa.scale.milvus_store import connect, current_collection, upload
from myoqa.search import MODES, Searcher

QUESTIONS = [json.loads(line)["question"] for line in
             (PROJECT_ROOT / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
KILL_WAIT_SECONDS = 600
MED_NDCG_TARGET = 0.78


def on_milvus(settings: Settings, uri: str) -> Settings:
    """`settings` with the Milvus backend at `uri`."""
    return replace(settings, backend="milvus", milvus=MilvusSettings.resolve(uri))


def publish(settings: Settings, index: Index, sources: list | None = None) -> str:
    """Upload an index already built locally as the library's current build in Milvus (as a
    build would, without embedding again) with its query encoder; return the alias."""
    params = BuildParams(model=settings.model)
    alias = library_alias(settings, params, settings.milvus, sources)
    listed = sources if sources is not None else load_sources(settings.sources)
    upload(connect(settings.milvus), index, alias, settings.milvus,
           made_from(params, settings.milvus), {s.name: s.sha256 for s in listed})
    if not encoder_dir(settings).exists():
        import shutil

        claim(settings.index_dir)
        shutil.copytree(index.encoder_dir.parent, encoder_dir(settings).parent)
    return alias


def fail(message: str) -> None:
    raise AssertionError(f"unexpected rebuild: {message}")


def two_signals(local: Searcher) -> Searcher:
    """`local` without late interaction: what the Milvus backend answers with (README)."""
    return Searcher(local.index, query_encoder_factory(local.index), local.params)


@pytest.fixture(scope="module")
def seeds_on_server(seed_settings: Settings, searcher: Searcher, milvus_uri: str) -> Settings:
    """The seeds' local index published to the session's Milvus server."""
    settings = on_milvus(seed_settings, milvus_uri)
    publish(settings, searcher.index)
    return settings


def test_seeds_answers_are_the_local_ones(seeds_on_server: Settings, searcher: Searcher) -> None:
    """Every bundled question in every mode: the same passages, offsets, scores, highlights,
    abstentions and --json through Milvus as locally."""
    remote = open_milvus_searcher(seeds_on_server, notify=fail)
    local = two_signals(searcher)
    differ = [(mode, q) for mode in MODES for q in QUESTIONS
              if remote.search(q, mode, 5).to_json() != local.search(q, mode, 5).to_json()]
    assert differ == []


def test_ask_json_through_milvus_from_environment(seeds_on_server: Settings,
                                                  searcher: Searcher) -> None:
    """MYOQA_BACKEND / MYOQA_MILVUS_URI select the backend; the text is source[start:end]."""
    question = "which drugs are used to treat myoclonus?"
    proc = run_cli("ask", "--json", question, "--index-dir", str(seeds_on_server.index_dir),
                   env={"MYOQA_BACKEND": "milvus", "MYOQA_MILVUS_URI": seeds_on_server.milvus.uri})
    assert proc.returncode == 0, proc.stderr
    assert MILVUS_TWO_SIGNALS in proc.stderr
    answer = json.loads(proc.stdout)
    assert answer == two_signals(searcher).search(question).to_json()
    for p in answer["passages"]:
        assert p["text"] == (SEEDS / p["source"]).read_text(encoding="utf-8")[p["start"]:p["end"]]


def test_file_uri_serves_a_client_without_the_sources(tmp_path: Path, seed_settings: Settings,
                                                      searcher: Searcher) -> None:
    """The in-process milvus-lite file: a client with neither the sources folder nor an index
    folder answers from the stored snapshots, with the same exact text, and keeps the ONNX
    query encoder it exported for its next questions."""
    settings = on_milvus(seed_settings, str(tmp_path / "myoqa.db"))
    publish(settings, searcher.index)
    elsewhere = replace(settings, sources=tmp_path / "absent" / SEEDS.name,
                        index_dir=tmp_path / "client")
    remote = open_milvus_searcher(elsewhere, notify=fail)
    question = "what is diaphragmatic flutter?"
    assert remote.search(question).to_json() == two_signals(searcher).search(question).to_json()
    assert remote.index.texts[FLUTTER] == (SEEDS / FLUTTER).read_text(encoding="utf-8")
    assert (encoder_dir(elsewhere) / "model.onnx").is_file()


def test_killed_build_leaves_the_old_build_then_a_changed_source_rebuilds(
        source_copy: Path, tmp_path: Path, searcher: Searcher, milvus_uri: str) -> None:
    """SIGKILL while a rebuild uploads: the alias still names the old build, whole; the next
    build (after a source changed) is used and drops what the killed one left."""
    settings = on_milvus(Settings.resolve(sources=source_copy, index_dir=tmp_path / "idx"),
                         milvus_uri)
    alias = publish(settings, searcher.index)
    client = connect(settings.milvus)
    old = current_collection(client, alias)
    before = set(client.list_collections())
    where = ["--sources", str(source_copy), "--index-dir", str(settings.index_dir),
             "--backend", "milvus", "--milvus-uri", milvus_uri]
    build = subprocess.Popen([sys.executable, "-m", "myoqa", "index", "--rebuild", *where],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while not {c for c in client.list_collections() if c.startswith(alias)} - before:
        assert build.poll() is None and time.monotonic() < deadline, "the build never uploaded"
        time.sleep(0.05)
    build.send_signal(signal.SIGKILL)
    build.wait()
    left = {c for c in client.list_collections() if c.startswith(alias)} - before
    assert left and current_collection(client, alias) == old
    question = "what is diaphragmatic flutter?"
    remote = open_milvus_searcher(settings, notify=fail)
    assert remote.search(question).to_json() == two_signals(searcher).search(question).to_json()

    flutter = source_copy / FLUTTER
    flutter.write_text(flutter.read_text(encoding="utf-8") + " quuxflutter jerks the toes",
                       encoding="utf-8")
    proc = run_cli("ask", "--json", "--mode", "bm25", "quuxflutter", *where)
    assert proc.returncode == 0, proc.stderr
    assert f"sources changed ({FLUTTER}); building the index in Milvus ({alias})" in proc.stderr
    top = json.loads(proc.stdout)["passages"][0]
    assert "quuxflutter" in top["text"]
    assert top["text"] == flutter.read_text(encoding="utf-8")[top["start"]:top["end"]]
    assert not left & set(client.list_collections())
    again = run_cli("ask", "--json", "--mode", "bm25", "quuxflutter", *where)
    assert again.returncode == 0 and "building" not in again.stderr


def test_med_through_milvus(med_searcher: Searcher, milvus_uri: str, tmp_path: Path) -> None:
    """`myoqa eval --beir` on MED through Milvus, next to the local backend (printed)."""
    from myoqa.eval_report import beir_index_dir

    collection = beir.load(MED)
    root = Settings.resolve(index_dir=tmp_path)
    settings = on_milvus(replace(root, index_dir=beir_index_dir(root, MED)), milvus_uri)
    publish(settings, med_searcher.index, collection.documents)
    local, _run = beir.evaluate(two_signals(med_searcher), collection, "hybrid")
    proc = run_cli("eval", "--beir", str(MED), "--mode", "hybrid", "--json", "--index-dir",
                   str(tmp_path), "--backend", "milvus", "--milvus-uri", milvus_uri,
                   timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert "building" not in proc.stderr
    remote = json.loads(proc.stdout)["measures"]["hybrid"]
    print(f"\nMED nDCG@10 hybrid: local {local['ndcg_at_10']:.3f}, "
          f"milvus {remote['ndcg_at_10']:.3f}")
    assert remote["ndcg_at_10"] >= MED_NDCG_TARGET
    assert abs(remote["ndcg_at_10"] - local["ndcg_at_10"]) < 0.01


def test_local_ask_imports_neither_milvus_nor_ray(seed_settings: Settings) -> None:
    """The default backend never loads the [scale] libraries."""
    code = ("import json, sys\nfrom myoqa.cli import main\n"
            f"code = main(['ask', '--json', 'jerks', '--index-dir', {str(seed_settings.index_dir)!r}])\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pymilvus', 'milvus_lite', 'ray', 'grpc'))), file=sys.stderr)\n"
            "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passages"]
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_backend_usage_errors(tmp_path: Path) -> None:
    """No URI, an unknown backend, a server that is not there: one line each, exit 2 or 1."""
    proc = run_cli("ask", "x", "--backend", "milvus", env={"MYOQA_MILVUS_URI": ""})
    assert proc.returncode == 2
    assert proc.stderr == ("myoqa: error: the milvus backend needs a server (pass --milvus-uri "
                           "URI or set MYOQA_MILVUS_URI)\n")
    proc = run_cli("ask", "x", env={"MYOQA_BACKEND": "elastic"})
    assert proc.returncode == 2 and "unknown backend 'elastic'" in proc.stderr
    from conftest import free_port

    proc = run_cli("ask", "x", "--backend", "milvus", "--milvus-uri",
                   f"http://127.0.0.1:{free_port()}", "--index-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.startswith("myoqa: error: cannot reach Milvus at http://127.0.0.1:")
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", [["ask", "jerk"], ["index", "--rebuild"]])
def test_milvus_refuses_an_index_folder_inside_the_sources_as_ask_does(
        tmp_path: Path, command: list[str]) -> None:
    """The local index folder (the encoder's home) is checked as the local backend checks it,
    before the server is reached (none listens here)."""
    from conftest import free_port, one_line_error, writable_copy

    sources = writable_copy(SEEDS, tmp_path / "sources")
    proc = run_cli(*command, "--backend", "milvus", "--milvus-uri",
                   f"http://127.0.0.1:{free_port()}", "--sources", str(sources),
                   "--index-dir", str(sources / "index"))
    one_line_error(proc, 1, f"the index folder {sources / 'index'} is inside the sources folder")
    assert sorted(p.name for p in sources.iterdir()) == [FLUTTER, "001_f6f440b41de63d6e.txt"]
