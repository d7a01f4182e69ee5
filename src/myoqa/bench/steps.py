"""The benchmark's steps over the seeds: cold one-shot `myoqa ask`, warm in-process queries,
the chat's start-up, embedding throughput, incremental updates, and building MED.

Each step opens indexes through `myoqa.engine` (or runs `myoqa` itself in fresh processes) and
returns a plain JSON-ready dict; what it needs at run time (the questions it times) ships in
the package, so `myoqa bench` runs outside a checkout.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from myoqa.bench.harness import child, job, load, median_run, peak_mb, percentiles, timed
from myoqa.colbert import ENV, OFF
from myoqa.config import CACHE_ENV, Settings

QUESTION = "which drugs are used to treat myoclonus?"
"""The question cold starts and the chat's start-up ask."""
WARM_QUERIES = 300
"""Warm queries timed per signal set."""


def questions() -> list[str]:
    """The questions warm queries cycle through (the project's eval questions, shipped as
    package data)."""
    text = resources.files("myoqa.bench").joinpath("questions.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _env(settings: Settings) -> dict[str, str]:
    """The environment of a `myoqa` child over the sources and index of `settings`."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "MYOQA_INDEX_DIR": str(settings.index_dir),
            "MYOQA_SOURCES": str(settings.sources)}


def cold_start(settings: Settings, repeats: int) -> dict[str, Any]:
    """Fresh-process `myoqa ask` (index built) with late interaction as `settings` say and with
    it off (two signals), vs `import sentence_transformers`, interleaved, so the ratios are of
    one run on one machine state."""
    env = _env(settings)
    two = {**env, ENV: OFF}
    ask = [sys.executable, "-m", "myoqa", "ask", QUESTION, "--json"]
    st = [sys.executable, "-c", "import sentence_transformers"]
    helpcmd = [sys.executable, "-m", "myoqa", "--help"]
    child(ask, "myoqa ask", env)
    asks, twos, sts, helps = [], [], [], []
    for _ in range(repeats):
        asks.append(median_run(ask, 1, env))
        twos.append(median_run(ask, 1, two))
        sts.append(median_run(st, 1, env))
        helps.append(median_run(helpcmd, 1, env))
    ask_s, two_s, st_s = (statistics.median(x) for x in (asks, twos, sts))
    return {"ask_cold_s": ask_s, "ask_cold_two_signals_s": two_s,
            "late": settings.late is not None, "late_ratio": ask_s / two_s,
            "import_sentence_transformers_s": st_s, "ratio": ask_s / st_s,
            "help_s": statistics.median(helps), "repeats": repeats, "load_average": load()}


def warm_queries(settings: Settings, repeats: int = WARM_QUERIES) -> dict[str, Any]:
    """In-process hybrid queries on the seeds, query embedding included: with late
    interaction as `settings` say, and with it off (two signals), interleaved."""
    from myoqa.engine import open_searcher

    searchers = {"late": open_searcher(settings),
                 "two": open_searcher(replace(settings, late=None))}
    asked = questions()
    samples: dict[str, list[float]] = {name: [] for name in searchers}
    for searcher in searchers.values():
        searcher.search(QUESTION)
    for i in range(repeats):
        for name, searcher in searchers.items():
            start = time.perf_counter()
            searcher.search(asked[i % len(asked)], "hybrid", 5)
            samples[name].append(time.perf_counter() - start)
    two = percentiles(samples["two"])
    return {**percentiles(samples["late"]), "two_signals_p50_ms": two["p50_ms"],
            "two_signals_p95_ms": two["p95_ms"], "queries": repeats, "load_average": load()}


def embedding_throughput(settings: Settings) -> dict[str, Any]:
    """Passages per second when building: sentence-transformers, and the ONNX query encoder
    the index was embedded with."""
    from myoqa.embedding import SentenceTransformerEncoder, load_model
    from myoqa.engine import open_searcher, query_encoder_factory

    searcher = open_searcher(replace(settings, late=None))
    texts = [searcher.index.text(p) for p in searcher.index.passages] * 4
    out: dict[str, Any] = {"passages": len(texts)}
    for name, encoder in (("sentence_transformers", SentenceTransformerEncoder(
            load_model(settings.model))), ("onnx", query_encoder_factory(searcher.index)())):
        encoder.encode(texts[:8])
        start = time.perf_counter()
        encoder.encode(texts)
        out[f"{name}_passages_per_s"] = len(texts) / (time.perf_counter() - start)
    return out


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def updates(settings: Settings, repeats: int) -> dict[str, Any]:
    """A first build, full rebuilds, and one line appended to one source followed by a fresh
    `myoqa ask` (which rebuilds incrementally first), interleaved, on a copy of the sources."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="myoqa-bench-") as tmp:
        sources = Path(tmp) / "sources"
        shutil.copytree(settings.sources, sources)
        index_dir, cache = Path(tmp) / "index", Path(tmp) / "cache"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MYOQA_INDEX_DIR": str(index_dir),
               "MYOQA_SOURCES": str(sources), CACHE_ENV: str(cache)}
        myoqa = [sys.executable, "-m", "myoqa"]
        first = timed([*myoqa, "index"], "first build", env)
        shared = _folder_mb(cache)
        second = timed([*myoqa, "index"], "second index folder",
                       {**env, "MYOQA_INDEX_DIR": str(Path(tmp) / "second")})
        second_mb = _folder_mb(cache) - shared + _folder_mb(Path(tmp) / "second" / "encoders")
        target = max(sources.iterdir(), key=lambda p: p.stat().st_size)
        fulls, asks = [], []
        for i in range(repeats):
            fulls.append(timed([*myoqa, "index", "--rebuild"], "full rebuild", env))
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(f"\nAppended sentence number {i} about myoclonus.\n")
            asks.append(timed([*myoqa, "ask", QUESTION, "--json"], "append then ask", env))
        status = json.loads(child([*myoqa, "status", "--json"], "status", env).stdout)
        full, ask = statistics.median(fulls), statistics.median(asks)
        return {"first_build_s": first, "full_rebuild_s": full, "append_then_ask_s": ask,
                "ratio": ask / full, "repeats": repeats,
                "build_folder_mb": _folder_mb(Path(status["build"])),
                "encoder_mb": _folder_mb(cache / "encoders"),
                "second_index_s": second, "second_index_encoder_mb": second_mb}


def med_build(directory: Path) -> dict[str, Any]:
    """Peak memory and time of building the MED collection's index, in a fresh process."""
    return job("med", str(directory), what="building MED",
               env={**os.environ, "HF_HUB_OFFLINE": "1"})


def med_point(directory: Path) -> dict[str, Any]:
    """Build MED's index in a fresh temporary folder (run in a child: its peak is its own)."""
    import tempfile

    from myoqa import beir
    from myoqa.engine import open_searcher

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="myoqa-bench-med-") as tmp:
        folder = Path(tmp)
        documents = beir.load(directory).documents
        open_searcher(Settings.resolve(folder, folder / "index"), notify=lambda _: None,
                      sources=documents, preload_late=False)
        return {"documents": len(documents), "seconds": time.perf_counter() - start,
                "peak_rss_mb": peak_mb()}


def chat_startup(settings: Settings, repeats: int) -> dict[str, Any]:
    """Seconds from launching the chat (headless, in a fresh process) to an interactive input
    and to the first answer."""
    ready, answered, final = [], [], []
    for _ in range(repeats):
        result = job("chat", repr(time.time()), QUESTION, what="chat start-up",
                     env=_env(settings))
        ready.append(result["ready_s"])
        answered.append(result["answer_s"])
        final.append(result["final_answer_s"])
    return {"interactive_s": statistics.median(ready), "first_answer_s": statistics.median(answered),
            "hybrid_answer_s": statistics.median(final), "repeats": repeats}
