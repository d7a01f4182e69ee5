"""The embedding job on a local 2-CPU Ray: the ONNX encoder in actors (no torch there) gives the
local build's vectors, and `myoqa index --embed-with ray` builds an index that answers as locally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import SEEDS, free_port, run_cli, two_signals
from myoqa.index import Index
from myoqa.index.store import load
from myoqa.search import Searcher

pytestmark = pytest.mark.ray
MIN_COSINE = 0.9999
MED_SAMPLE = 400


def vectors_of(index: Index, rows: np.ndarray) -> np.ndarray:
    """Stored vectors of passages then spans, by their position in that order."""
    n = len(index.passages)
    passages = index.passage_vectors.reconstruct_n(0, n)
    return np.vstack([passages, np.asarray(index.span_vectors)])[rows]


def texts_of(index: Index) -> list[str]:
    return [index.text(u) for u in index.passages] + [index.text(u) for u in index.spans]


def test_ray_vectors_match_the_local_build(searcher: Searcher, med_searcher: Searcher,
                                           ray_address: str) -> None:
    """Cosine ≥ 0.9999 to the sentence-transformers vectors of the build, on every seeds
    passage and span and on a spread sample of MED's, with progress for every text."""
    from myoqa.scale.ray_embed import RayEncoder

    encoder = RayEncoder(searcher.index.encoder_dir, ray_address)
    for index, rows in ((searcher.index, None), (med_searcher.index, MED_SAMPLE)):
        texts = texts_of(index)
        picked = (np.arange(len(texts)) if rows is None
                  else np.linspace(0, len(texts) - 1, rows).astype(np.int64))
        heard: list[int] = []
        got = encoder.encode([texts[i] for i in picked], heard.append)
        assert sum(heard) == len(picked)
        cosine = (got * vectors_of(index, picked)).sum(axis=1)
        assert cosine.min() >= MIN_COSINE


def test_ray_workers_run_without_torch(ray_address: str, searcher: Searcher) -> None:
    """A worker that holds the encoder has not imported torch or sentence-transformers."""
    import ray

    from myoqa.scale.ray_embed import ENCODER_FILES

    files = ray.put({n: (searcher.index.encoder_dir / n).read_bytes() for n in ENCODER_FILES})

    @ray.remote(num_cpus=1)
    def embed_and_list(shipped: list) -> tuple[list[float], list[str]]:
        import sys

        from myoqa.scale.ray_embed import _Embedder

        out = _Embedder(shipped[0])({"row": np.array([0]), "text": np.array(["jerks"])})
        return out["vector"][0].tolist(), sorted(
            m for m in sys.modules if m.split(".")[0] in ("torch", "sentence_transformers"))

    vector, heavy = ray.get(embed_and_list.remote([files]))  # nested: passed on unresolved
    assert heavy == []
    assert float(np.dot(vector, searcher.embed("jerks"))) >= MIN_COSINE


def test_index_embed_with_ray_answers_as_locally(tmp_path: Path, searcher: Searcher,
                                                  ray_address: str) -> None:
    """`myoqa index --embed-with ray --ray-address ADDR` joins the running Ray; the index it
    builds answers the bundled question as the local build does."""
    index_dir = tmp_path / "ray-index"
    proc = run_cli("index", "--embed-with", "ray", "--ray-address", ray_address,
                   "--index-dir", str(index_dir), timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith("myoqa: ") for line in proc.stderr.splitlines()), proc.stderr
    built = load(index_dir)
    n = len(built.passages) + len(built.spans)
    cosine = (vectors_of(built, np.arange(n)) * vectors_of(searcher.index, np.arange(n))).sum(1)
    assert cosine.min() >= MIN_COSINE
    question = "what is diaphragmatic flutter?"
    ask = run_cli("ask", "--json", question, "--index-dir", str(index_dir))
    assert ask.returncode == 0, ask.stderr
    local = two_signals(searcher).search(question).to_json()
    remote = json.loads(ask.stdout)
    assert [(p["source"], p["start"], p["end"]) for p in remote["passages"]] == [
        (p["source"], p["start"], p["end"]) for p in local["passages"]]


def test_ray_embedding_feeds_milvus(tmp_path: Path, searcher: Searcher, ray_address: str,
                                    milvus_uri: str) -> None:
    """`myoqa index --backend milvus --embed-with ray` uploads Ray's vectors; questions through
    Milvus then get the local build's passages."""
    library = tmp_path / "raylib"
    shutil.copytree(SEEDS, library)
    where = ["--sources", str(library), "--index-dir", str(tmp_path / "idx"), "--backend",
             "milvus", "--milvus-uri", milvus_uri]
    proc = run_cli("index", "--embed-with", "ray", "--ray-address", ray_address, *where,
                   timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "in Milvus at" in proc.stdout
    question = "which drugs are used to treat myoclonus?"
    ask = run_cli("ask", "--json", question, *where)
    assert ask.returncode == 0, ask.stderr
    assert "building" not in ask.stderr
    local = two_signals(searcher).search(question).to_json()
    remote = json.loads(ask.stdout)
    assert [(p["source"], p["start"], p["end"]) for p in remote["passages"]] == [
        (p["source"], p["start"], p["end"]) for p in local["passages"]]


def test_an_address_nothing_answers_is_one_line(tmp_path: Path) -> None:
    """`--ray-address 127.0.0.1:PORT` with nothing listening: one line at once, before the
    sources are read (Ray retried for minutes, printing lines about another address)."""
    address = f"127.0.0.1:{free_port()}"
    proc = run_cli("index", "--embed-with", "ray", "--ray-address", address, "--index-dir",
                   str(tmp_path / "idx"), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == (f"myoqa: error: cannot reach Ray at {address} (Connection refused) "
                           "(check --ray-address (host:port of the Ray head), or leave it out "
                           "to run Ray here)\n")
    assert not (tmp_path / "idx").exists()
