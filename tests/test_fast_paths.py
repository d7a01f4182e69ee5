"""The fast query path gives the slow path's answers: ONNX vs sentence-transformers, and the
benchmark's synthetic index searches like a real one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import eval_questions, run_cli
from myoqa import engine
from myoqa.config import DEFAULT_MODEL
from myoqa.embedding import SentenceTransformerEncoder, load_model
from myoqa.onnx_encoder import OnnxEncoder
from myoqa.search import Searcher
from myoqa.search.late import Preload

QUESTIONS = eval_questions()


@pytest.fixture(scope="module")
def slow_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(load_model(DEFAULT_MODEL))


@pytest.mark.slow  # loads torch, then every eval question and every seed passage
def test_onnx_matches_sentence_transformers_on_every_question_and_passage(
        searcher: Searcher, slow_encoder: SentenceTransformerEncoder) -> None:
    fast = OnnxEncoder(searcher.index.encoder_dir)
    texts = QUESTIONS + [searcher.index.text(p) for p in searcher.index.passages]
    a, b = fast.encode(texts), slow_encoder.encode(texts)
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosines.min() >= 0.9999


@pytest.mark.slow  # every eval question, two modes, both encoders: minutes
def test_ask_json_is_the_same_on_the_fast_and_slow_paths(
        searcher: Searcher, slow_encoder: SentenceTransformerEncoder) -> None:
    slow = Searcher(searcher.index, lambda: slow_encoder, late=searcher.late)
    for question in QUESTIONS:
        for mode in ("hybrid", "dense"):
            fast_json = searcher.search(question, mode, 5).to_json()
            slow_json = slow.search(question, mode, 5).to_json()
            for f, s in zip(fast_json["passages"], slow_json["passages"], strict=False):
                assert f.pop("score") == pytest.approx(s.pop("score"), abs=1e-5)
            assert fast_json.pop("best_similarity") == pytest.approx(
                slow_json.pop("best_similarity"), abs=1e-5)
            assert fast_json == slow_json, question


def test_a_preloaded_query_encoder_is_taken_only_from_the_build_that_opened(
        searcher: Searcher, tmp_path) -> None:
    index = searcher.index
    mine = OnnxEncoder(index.encoder_dir)
    other = engine.query_encoder_factory(index, Preload(lambda: (tmp_path / "other", mine)))()
    assert other is not mine and other.dimension == index.dimension
    assert engine.query_encoder_factory(index, Preload(lambda: (index.path, mine)))() is mine
    failed = Preload(lambda: (_ for _ in ()).throw(OSError("no index yet")))
    assert engine.query_encoder_factory(index, failed)().dimension == index.dimension


def test_preloading_the_current_builds_encoder_gives_that_build(seed_settings) -> None:
    build, encoder = engine.preload_query_encoder(seed_settings.index_dir).result()
    assert build == engine.open_searcher(seed_settings).index.path
    assert isinstance(encoder, OnnxEncoder)


@pytest.mark.bench
def test_bench_runs_end_to_end_on_small_sizes(seed_settings, tmp_path) -> None:
    out = tmp_path / "bench"
    steps = "cold,warm,chat,embedding,updates,scale"  # all but building MED (minutes)
    proc = run_cli("bench", "--sizes", "3000,25000", "--repeats", "1", "--out", str(out),
                   "--steps", steps,
                   env={"MYOQA_INDEX_DIR": str(seed_settings.index_dir)}, timeout=900)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert set(steps.split(",")) <= set(results) and "med_build" not in results
    assert results["updates"]["build_folder_mb"] < 10
    assert [p["passages"] for p in results["scale"]] == [3000, 25000]
    assert results["scale"][0]["dense_index"] == "flat"
    assert results["scale"][1]["dense_index"].startswith("ivf")
    assert all(p["dense_recall_at_10"] >= 0.9 for p in results["scale"])
    assert (out / "scale.png").stat().st_size > 1000
    assert "| cold `myoqa ask`" in proc.stdout
