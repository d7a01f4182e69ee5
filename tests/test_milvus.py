"""The Milvus backend against a real Milvus: milvus-lite's server on 127.0.0.1 (started by the
`milvus_uri` fixture) and the in-process file URI. Same answers as the local index, exact text
without local files, staleness, a killed build, and MED through Milvus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from helpers import (
    FLUTTER,
    MED,
    SEEDS,
    FakeEncoder,
    eval_questions,
    milvus_server,
    run_cli,
    two_signals,
    write_sources,
)
from myoqa import beir
from myoqa.analysis import Analyzer
from myoqa.bm25 import Postings, SparseBM25
from myoqa.chunking import ChunkParams, chunk
from myoqa.cli import MILVUS_TWO_SIGNALS
from myoqa.config import MilvusSettings, Settings
from myoqa.corpus import load_sources
from myoqa.errors import MyoqaError
from myoqa.faultpoints import PAUSE_ENV
from myoqa.index import BuildParams, Index
from myoqa.index.build import EncoderInfo, build
from myoqa.index.ownership import claim
from myoqa.scale import milvus_lock
from myoqa.scale.milvus_batches import batches
from myoqa.scale.milvus_client import connect
from myoqa.scale.milvus_engine import (
    encoder_dir,
    library_alias,
    library_identity,
    open_milvus_searcher,
)
from myoqa.scale.milvus_lock import BuildLock, Holder, lock_name
from myoqa.scale.milvus_manifest import TermCounts, current_collection
from myoqa.scale.milvus_schema import SourceText, passage_rows, span_rows, text_rows
from myoqa.scale.milvus_upload import BATCH_STEP, index_batch, upload
from myoqa.search import MODES, Searcher

pytestmark = pytest.mark.milvus
QUESTIONS = eval_questions()
KILL_WAIT_SECONDS = 600
SMALL_BATCH = 1  # unit: each source of the seeds is a batch
MED_NDCG_TARGET = 0.78
JERKS = {"jerks.txt": "Myoclonus is a brief, shock-like jerk of a muscle or a group of muscles. "
                      "Clonazepam and levetiracetam are used to treat it.\n"}


def on_milvus(settings: Settings, uri: str) -> Settings:
    """`settings` with the Milvus backend at `uri`."""
    return replace(settings, backend="milvus", milvus=MilvusSettings.resolve(uri))


def publish(settings: Settings, index: Index, sources: list | None = None) -> str:
    """Upload an index already built locally as the library's current build in Milvus (as a
    build would, without embedding again) with its query encoder; return the alias."""
    params = BuildParams(model=settings.model)
    alias = library_alias(settings, params, settings.milvus, sources)
    upload(connect(settings.milvus), index, alias, library_identity(settings, sources),
           settings.milvus)
    if not encoder_dir(settings).exists():
        claim(settings.index_dir)
        shutil.copytree(index.encoder_dir.parent, encoder_dir(settings).parent)
    return alias


def fail(message: str) -> None:
    raise AssertionError(f"unexpected rebuild: {message}")


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
                                                      source_copy: Path, searcher: Searcher
                                                      ) -> None:
    """The in-process milvus-lite file: a client naming the library's folder without having it
    (another machine), nor an index folder, answers from the stored snapshots, with the same
    exact text, and keeps the ONNX query encoder it exported for its next questions."""
    settings = on_milvus(replace(seed_settings, sources=source_copy), str(tmp_path / "myoqa.db"))
    publish(settings, searcher.index)
    shutil.rmtree(source_copy)
    elsewhere = replace(settings, index_dir=tmp_path / "client")
    remote = open_milvus_searcher(elsewhere, notify=fail)
    question = "what is diaphragmatic flutter?"
    assert remote.search(question).to_json() == two_signals(searcher).search(question).to_json()
    assert remote.index.texts[FLUTTER] == (SEEDS / FLUTTER).read_text(encoding="utf-8")
    assert (encoder_dir(elsewhere) / "model.onnx").is_file()


def test_killed_build_leaves_the_old_build_then_a_changed_source_rebuilds(
        source_copy: Path, tmp_path: Path, searcher: Searcher, milvus_uri: str) -> None:
    """SIGKILL while a rebuild uploads (stopped after its first batch is written): the alias
    still names the old build, whole; the next build (after a source changed) is used and
    drops what the killed one left."""
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
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", PAUSE_ENV: BATCH_STEP})
    assert build.stderr is not None
    for line in build.stderr:
        if line == f"myoqa: test pause at {BATCH_STEP}\n":
            break
    else:
        raise AssertionError("the build ended before writing a batch")
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
    from helpers import free_port

    proc = run_cli("ask", "x", "--backend", "milvus", "--milvus-uri",
                   f"http://127.0.0.1:{free_port()}", "--index-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.startswith("myoqa: error: cannot reach the Milvus server at "
                                  "http://127.0.0.1:")
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", [["ask", "jerk"], ["index", "--rebuild"]])
def test_milvus_refuses_an_index_folder_inside_the_sources_as_ask_does(
        tmp_path: Path, command: list[str]) -> None:
    """The local index folder (the encoder's home) is checked as the local backend checks it,
    before the server is reached (none listens here)."""
    from helpers import free_port, one_line_error, writable_copy

    sources = writable_copy(SEEDS, tmp_path / "sources")
    proc = run_cli(*command, "--backend", "milvus", "--milvus-uri",
                   f"http://127.0.0.1:{free_port()}", "--sources", str(sources),
                   "--index-dir", str(sources / "index"))
    one_line_error(proc, 1, f"the index folder {sources / 'index'} is inside the sources folder")
    assert sorted(p.name for p in sources.iterdir()) == [FLUTTER, "001_f6f440b41de63d6e.txt"]


def on_cli(sources: Path, index_dir: Path, uri: str) -> list[str]:
    """The flags that point `myoqa` at a library kept in Milvus."""
    return ["--sources", str(sources), "--index-dir", str(index_dir), "--backend", "milvus",
            "--milvus-uri", uri]


def test_two_folders_of_one_name_are_two_libraries(tmp_path: Path) -> None:
    """`other/msrc` and `msrc` get their own aliases (they shared one, each ask rebuilding over
    the other); a link to a folder names the same library as the folder."""
    one = write_sources(tmp_path / "other" / "msrc", JERKS)
    two = write_sources(tmp_path / "msrc", JERKS)
    (tmp_path / "link").symlink_to(one)

    def alias(sources: Path) -> str:
        settings = on_milvus(Settings.resolve(sources=sources, index_dir=tmp_path / "i"),
                             str(tmp_path / "m.db"))
        return library_alias(settings, BuildParams(model=settings.model), settings.milvus, None)

    assert alias(one) != alias(two)
    assert alias(tmp_path / "link") == alias(one)
    assert alias(one).startswith("myoqa_msrc_")


def test_a_build_never_replaces_another_library(tmp_path: Path, seeds_on_server: Settings,
                                                searcher: Searcher) -> None:
    """A library whose `--collection` holds another library's build is refused before any
    embedding, by `index --rebuild` and by `ask`; that build stays current. A client without
    the sources naming another folder called `seeds` does not get the seeds' text."""
    uri = seeds_on_server.milvus.uri
    shared = replace(seeds_on_server, milvus=MilvusSettings.resolve(uri, collection="shared"))
    alias = publish(shared, searcher.index)
    client = connect(shared.milvus)
    before = current_collection(client, alias)
    other = write_sources(tmp_path / SEEDS.name, JERKS)
    where = [*on_cli(other, seeds_on_server.index_dir, uri), "--collection", alias]
    for command in (["index", "--rebuild"], ["ask", "clonazepam"]):
        proc = run_cli(*command, *where)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == (
            f"myoqa: error: the Milvus collection {alias} holds another library "
            f"({SEEDS.resolve()}), not {other.resolve()} (pass another --collection NAME for "
            "this one)\n")
    assert current_collection(client, alias) == before

    elsewhere = replace(seeds_on_server, sources=tmp_path / "gone" / SEEDS.name)
    with pytest.raises(MyoqaError):
        open_milvus_searcher(elsewhere, notify=lambda _m: None)


def test_three_asks_on_a_new_library_build_it_once(tmp_path: Path, seed_settings: Settings,
                                                   milvus_uri: str) -> None:
    """Three asks at once on a library Milvus does not hold yet: one builds it, the others wait
    for that build (they failed with "collection … does not exist") and all three answer."""
    library = write_sources(tmp_path / "lib", JERKS)
    asks = [subprocess.Popen([sys.executable, "-m", "myoqa", "ask", "--json", "clonazepam",
                              *on_cli(library, seed_settings.index_dir, milvus_uri)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}) for _ in range(3)]
    done = [(ask.communicate(timeout=KILL_WAIT_SECONDS), ask.returncode) for ask in asks]
    assert [code for _out, code in done] == [0, 0, 0], [err for (_o, err), _c in done]
    errs = [err for (_out, err), _code in done]
    assert sum("building the index in Milvus" in err for err in errs) == 1, errs
    for (out, _err), _code in done:
        assert "Clonazepam" in json.loads(out)["passages"][0]["text"]


def test_a_rebuild_waits_for_the_lock_and_a_dead_holders_lock_is_taken_over(
        tmp_path: Path, seed_settings: Settings, milvus_uri: str) -> None:
    """`index --rebuild` waits while another process holds the library's build lock, then
    builds; a lock left by a killed process of this machine is taken over at once."""
    library = write_sources(tmp_path / "lib", JERKS)
    settings = on_milvus(Settings.resolve(sources=library, index_dir=seed_settings.index_dir),
                         milvus_uri)
    alias = library_alias(settings, BuildParams(model=settings.model), settings.milvus, None)
    client = connect(settings.milvus)
    command = [sys.executable, "-m", "myoqa", "index", "--rebuild",
               *on_cli(library, seed_settings.index_dir, milvus_uri)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with BuildLock(client, alias, fail):
        build = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        assert build.stderr is not None
        line = build.stderr.readline()
        assert line.startswith("myoqa: another myoqa (") and "waiting for it" in line, line
        assert current_collection(client, alias) is None
    _out, err = build.communicate(timeout=KILL_WAIT_SECONDS)
    assert build.returncode == 0, err
    first = current_collection(client, alias)
    assert first is not None

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = BuildLock(client, alias, fail)
    killed.me = Holder(socket.gethostname(), int(gone.stdout), "killed")
    assert killed._create()
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env, timeout=KILL_WAIT_SECONDS, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "waiting" not in proc.stderr
    assert current_collection(client, alias) not in (None, first)
    assert lock_name(alias) not in client.list_collections()


def test_a_silent_holder_elsewhere_loses_the_lock_after_its_lease(
        milvus_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder on another machine whose beat stops (killed there) loses the lock once the
    lease passes; it then finds it no longer holds it before switching an alias."""
    monkeypatch.setattr(milvus_lock, "LEASE_SECONDS", 0.0)
    client = connect(MilvusSettings.resolve(milvus_uri))
    alias = f"lease_{uuid.uuid4().hex[:8]}"
    elsewhere = BuildLock(client, alias, fail)
    elsewhere.me = Holder("another-machine", 1, "silent")
    assert elsewhere._create()
    with BuildLock(client, alias, fail) as mine:
        assert mine.holds()
        with pytest.raises(MyoqaError, match="took over the build"):
            elsewhere.check()
    assert lock_name(alias) not in client.list_collections()


def test_a_server_stopped_between_questions_is_one_line(tmp_path: Path, seed_settings: Settings,
                                                        searcher: Searcher) -> None:
    """A Milvus server killed while the chat or an ask uses it: "cannot reach the Milvus
    server at URI (…)", not "unexpected MilvusException … this is a bug"."""
    with milvus_server(tmp_path) as (uri, server):
        settings = on_milvus(seed_settings, uri)
        publish(settings, searcher.index)
        remote = open_milvus_searcher(settings, notify=fail)
        assert remote.search("jerks").results
        server.kill()
        server.wait()
        with pytest.raises(MyoqaError) as caught:
            remote.search("what is diaphragmatic flutter?")
        assert str(caught.value).startswith(f"cannot reach the Milvus server at {uri} (")
        proc = run_cli("ask", "jerks", *on_cli(SEEDS, seed_settings.index_dir, uri))
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"myoqa: error: cannot reach the Milvus server at {uri} (")
        assert len(proc.stderr.splitlines()) == 1


def test_milvus_uri_naming_a_file_or_another_folder_is_refused(tmp_path: Path) -> None:
    """`--milvus-uri junk.db` naming an ordinary file, or a folder of the user's that is not a
    milvus-lite database: one line (it was a traceback), and nothing in them changes."""
    junk = tmp_path / "junk.db"
    junk.write_text("precious\n", encoding="utf-8")
    notes = tmp_path / "notes.db"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine\n", encoding="utf-8")
    for uri, what in ((junk, "names a file"), (notes, "names a folder that is not")):
        for command in (["ask", "jerks"], ["status"]):
            proc = run_cli(*command, *on_cli(SEEDS, tmp_path / "idx", str(uri)))
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr.startswith(f"myoqa: error: --milvus-uri {uri} {what}")
            assert len(proc.stderr.splitlines()) == 1
    assert junk.read_text(encoding="utf-8") == "precious\n"
    assert [p.name for p in notes.iterdir()] == ["keep.txt"]


def test_a_wrong_database_is_reported_before_embedding(tmp_path: Path, milvus_uri: str) -> None:
    """A database name the server does not have: one line before the sources are embedded
    (it came after a full local build)."""
    library = write_sources(tmp_path / "lib", JERKS)
    uri = f"{milvus_uri}/nosuch"
    proc = run_cli("index", *on_cli(library, tmp_path / "idx", uri))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"myoqa: error: Milvus at {uri} refused the connection "
                                  "(database 'nosuch' does not exist)")
    assert len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "idx").exists()


def test_status_and_info_through_milvus(tmp_path: Path, seeds_on_server: Settings,
                                        searcher: Searcher) -> None:
    """`status --backend milvus` (a usage error before) reports the library's collection and
    build; a library Milvus does not hold is `missing`, exit 1."""
    uri = seeds_on_server.milvus.uri
    where = on_cli(SEEDS, seeds_on_server.index_dir, uri)
    proc = run_cli("status", "--json", *where)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["state"] == "current" and status["backend"] == "milvus"
    assert status["collection"] == library_alias(seeds_on_server, BuildParams(
        model=seeds_on_server.model), seeds_on_server.milvus, None)
    assert status["library"] == str(SEEDS.resolve())
    assert status["manifest"]["counts"]["passages"] == len(searcher.index.passages)
    info = run_cli("info", *where)
    assert info.returncode == 0 and "state:     current" in info.stdout
    missing = run_cli("status", *on_cli(tmp_path / "gone", seeds_on_server.index_dir, uri))
    assert missing.returncode == 1
    assert "state:     missing" in missing.stdout
    assert missing.stderr.startswith("myoqa: error: no myoqa index named ")


def test_a_milvus_lite_file_open_elsewhere_is_waited_for(tmp_path: Path) -> None:
    """milvus-lite serves a file to one process at a time: a second one says it waits, and goes
    on when the first closes it (before: "cannot reach Milvus … Open local milvus failed")."""
    uri = str(tmp_path / "lib.db")
    code = ("import sys\nfrom pymilvus import MilvusClient\n"
            f"MilvusClient(uri={uri!r}).list_collections()\nprint('open', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline() == "open\n"
    status = subprocess.Popen([sys.executable, "-m", "myoqa", "status",
                               *on_cli(SEEDS, tmp_path / "idx", uri)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert status.stderr is not None
    assert status.stderr.readline() == (f"myoqa: another process has the milvus-lite database "
                                        f"{uri} open; waiting for it\n")
    holder.stdin.close()
    holder.wait()
    out, err = status.communicate(timeout=KILL_WAIT_SECONDS)
    assert status.returncode == 1
    assert "state:     missing" in out
    assert err.startswith("myoqa: error: no myoqa index named ")


def test_a_dropped_handshake_is_tried_again(milvus_uri: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy server that drops one connection handshake (CI saw "Fail connecting to server"
    once, the server up) is connected on the next try; a server that never answers is still
    one clear error."""
    import pymilvus
    from pymilvus.exceptions import MilvusException

    real = pymilvus.MilvusClient
    tries: list[str] = []

    def flaky(**kwargs: object) -> object:
        tries.append(str(kwargs["uri"]))
        if len(tries) == 1:
            raise MilvusException(code=2, message="Fail connecting to server")
        return real(**kwargs)

    monkeypatch.setattr(pymilvus, "MilvusClient", flaky)
    client = connect(MilvusSettings.resolve(milvus_uri))
    assert isinstance(client.list_collections(), list)
    assert tries == [milvus_uri, milvus_uri]

    from helpers import free_port
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MyoqaError, match=f"cannot reach the Milvus server at {nobody}"):
        connect(MilvusSettings.resolve(nobody))
    assert tries.count(nobody) == 4


def test_streamed_batches_hold_the_rows_of_a_local_build() -> None:
    """A build streamed a few sources at a time writes the rows an in-memory build of the same
    sources gives: the same passage and span ids, sources, offsets, span ranges, terms,
    vectors and snapshots (a batch's numbering continues the previous one's)."""
    sources = load_sources(SEEDS)
    params = BuildParams(model="fake")
    local = index_batch(build(sources, params, FakeEncoder(), EncoderInfo(Path(), {})))
    streamed = list(batches([SourceText(s.name, s.text, s.sha256) for s in sources],
                            params.chunking, FakeEncoder(), units_per_batch=SMALL_BATCH))
    assert len(streamed) == len(sources) > 1
    texts: list[dict] = []
    for batch in streamed:
        texts += text_rows(batch, len(texts))
    assert [r for b in streamed for r in passage_rows(b, params.analyzer)] == list(
        passage_rows(local, params.analyzer))
    assert [r for b in streamed for r in span_rows(b)] == list(span_rows(local))
    assert texts == list(text_rows(local, 0))


def test_term_counts_give_the_local_bm25_numbers() -> None:
    """The counts a streaming build keeps give the local BM25's document frequencies (in the
    local vocabulary's order), average length, IDF floor and largest IDF."""
    analyzer = Analyzer()
    passages = [s.text[u.start:u.end] for s in load_sources(SEEDS)
                for u in chunk(s.name, s.text, ChunkParams())[0]]
    counts = TermCounts()
    for text in passages:
        counts.add(analyzer.terms(text))
    postings = Postings.from_texts(passages, analyzer)
    local = SparseBM25(postings)
    assert list(counts.df.items()) == list(zip(postings.vocab,
                                               np.diff(postings.indptr).tolist(), strict=True))
    stats = counts.stats()
    assert stats.passages == len(passages)
    assert stats.avgdl == float(postings.doc_len.astype(np.float64).sum() / len(passages))
    assert stats.max_idf == local.max_idf
    raw = np.log(len(passages) - np.diff(postings.indptr) + 0.5) - np.log(
        np.diff(postings.indptr) + 0.5)
    assert (raw < 0).any() and stats.idf_floor == float(local.idf_values[raw < 0][0])
