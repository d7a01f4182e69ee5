"""`myoqa bench`: the speed benchmark behind the README's numbers (medians over repeats).

Measures cold one-shot `myoqa ask` against importing sentence-transformers in the same run,
warm in-process queries on the seeds, `myoqa --help`, the chat's start-up, embedding throughput,
and search on synthetic corpora of growing size (texts and vectors generated, so embedding time
is measured apart). Results go to a JSON file and a PNG plot.
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from myoqa.colbert import ENV, OFF
from myoqa.config import CACHE_ENV, PROJECT_ROOT, Settings
from myoqa.errors import MyoqaError, UsageError
from myoqa.index.tables import UnitTable
from myoqa.output_files import Kept, check_folder, kept_folders, write_output

QUESTION = "which drugs are used to treat myoclonus?"
MED = PROJECT_ROOT / "eval" / "datasets" / "med"
DIM = 384
MAX_SIZE = 10_000_000  # synthetic passages; 1,000,000 peak near 2.7 GB
RESULTS_FILE = "latest.json"
PLOT_FILE = "scale.png"


def check_out_dir(out_dir: Path, kept: Sequence[Kept] = ()) -> None:
    """Refuse, before minutes of measuring, a results folder that cannot be one, or one inside
    the sources or index folder (`kept`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"bench --out {out_dir} is not a folder",
                         f"name a folder for {RESULTS_FILE} and {PLOT_FILE}")
    check_folder(out_dir, kept)


def _child(cmd: list[str], what: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run a measured child process; its failure is one line naming the step and its last
    error line, not a traceback."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise MyoqaError(f"the benchmark step '{what}' failed: {last}")
    return proc


def _median_run(cmd: list[str], repeats: int, env: dict[str, str]) -> float:
    """Median wall time of a command in fresh processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _child(cmd, " ".join(cmd[2:]), env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def cold_start(settings: Settings, repeats: int) -> dict[str, Any]:
    """Fresh-process `myoqa ask` (index built) with late interaction as `settings` say and with
    it off (two signals), vs `import sentence_transformers`, interleaved, so the ratios are of
    one run on one machine state."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MYOQA_INDEX_DIR": str(settings.index_dir),
           "MYOQA_SOURCES": str(settings.sources)}
    two = {**env, ENV: OFF}
    ask = [sys.executable, "-m", "myoqa", "ask", QUESTION, "--json"]
    st = [sys.executable, "-c", "import sentence_transformers"]
    helpcmd = [sys.executable, "-m", "myoqa", "--help"]
    _child(ask, "myoqa ask", env)
    asks, twos, sts, helps = [], [], [], []
    for _ in range(repeats):
        asks.append(_median_run(ask, 1, env))
        twos.append(_median_run(ask, 1, two))
        sts.append(_median_run(st, 1, env))
        helps.append(_median_run(helpcmd, 1, env))
    ask_s, two_s, st_s = (statistics.median(x) for x in (asks, twos, sts))
    return {"ask_cold_s": ask_s, "ask_cold_two_signals_s": two_s,
            "late": settings.late is not None, "late_ratio": ask_s / two_s,
            "import_sentence_transformers_s": st_s, "ratio": ask_s / st_s,
            "help_s": statistics.median(helps), "repeats": repeats, "load_average": _load()}


def _load() -> list[float]:
    """The machine's load averages (1, 5, 15 minutes) when a step ends: the machine is shared,
    so figures come with how busy it was."""
    return [round(x, 2) for x in os.getloadavg()]


def warm_queries(settings: Settings, repeats: int) -> dict[str, Any]:
    """In-process hybrid queries on the seeds, query embedding included: with late
    interaction as `settings` say, and with it off (two signals), interleaved."""
    from dataclasses import replace

    from myoqa.engine import open_searcher

    searchers = {"late": open_searcher(settings),
                 "two": open_searcher(replace(settings, late=None))}
    questions = [json.loads(line)["question"] for line in
                 (PROJECT_ROOT / "eval" / "questions.jsonl").read_text("utf-8").splitlines()]
    samples: dict[str, list[float]] = {name: [] for name in searchers}
    for searcher in searchers.values():
        searcher.search(QUESTION)
    for i in range(repeats):
        for name, searcher in searchers.items():
            start = time.perf_counter()
            searcher.search(questions[i % len(questions)], "hybrid", 5)
            samples[name].append(time.perf_counter() - start)
    two = _percentiles(samples["two"])
    return {**_percentiles(samples["late"]), "two_signals_p50_ms": two["p50_ms"],
            "two_signals_p95_ms": two["p95_ms"], "queries": repeats, "load_average": _load()}


def embedding_throughput(settings: Settings) -> dict[str, Any]:
    """Passages per second when building: sentence-transformers, and the ONNX query encoder."""
    from myoqa.embedding import SentenceTransformerEncoder, load_model
    from myoqa.engine import open_searcher
    from myoqa.onnx_encoder import OnnxEncoder

    searcher = open_searcher(settings)
    texts = [searcher.index.text(p) for p in searcher.index.passages] * 4
    out = {"passages": len(texts)}
    for name, encoder in (("sentence_transformers", SentenceTransformerEncoder(
            load_model(settings.model))), ("onnx", OnnxEncoder(searcher.index.encoder_dir))):
        encoder.encode(texts[:8])
        start = time.perf_counter()
        encoder.encode(texts)
        out[f"{name}_passages_per_s"] = len(texts) / (time.perf_counter() - start)
    return out


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def updates(settings: Settings, repeats: int) -> dict[str, Any]:
    """A first build, full rebuilds, and one line appended to one source followed by a fresh
    `myoqa ask` (which rebuilds incrementally first), interleaved, on a copy of the sources."""
    import shutil
    import tempfile

    from myoqa.index.store import current_build

    with tempfile.TemporaryDirectory(prefix="myoqa-bench-") as tmp:
        sources = Path(tmp) / "sources"
        shutil.copytree(settings.sources, sources)
        index_dir, cache = Path(tmp) / "index", Path(tmp) / "cache"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MYOQA_INDEX_DIR": str(index_dir),
               "MYOQA_SOURCES": str(sources), CACHE_ENV: str(cache)}
        myoqa = [sys.executable, "-m", "myoqa"]
        first = _timed([*myoqa, "index"], env)
        shared = _folder_mb(cache)
        second = _timed([*myoqa, "index"], {**env, "MYOQA_INDEX_DIR": str(Path(tmp) / "second")})
        second_mb = _folder_mb(cache) - shared + _folder_mb(Path(tmp) / "second" / "encoders")
        target = max(sources.iterdir(), key=lambda p: p.stat().st_size)
        fulls, asks = [], []
        for i in range(repeats):
            fulls.append(_timed([*myoqa, "index", "--rebuild"], env))
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(f"\nAppended sentence number {i} about myoclonus.\n")
            asks.append(_timed([*myoqa, "ask", QUESTION, "--json"], env))
        full, ask = statistics.median(fulls), statistics.median(asks)
        return {"first_build_s": first, "full_rebuild_s": full, "append_then_ask_s": ask,
                "ratio": ask / full, "repeats": repeats,
                "build_folder_mb": _folder_mb(current_build(index_dir)),
                "encoder_mb": _folder_mb(cache / "encoders"),
                "second_index_s": second, "second_index_encoder_mb": second_mb}


def med_build(directory: Path) -> dict[str, Any]:
    """Peak memory and time of building the MED collection's index, in a fresh process."""
    code = ("import json, resource, sys, tempfile, time; from pathlib import Path; "
            "from myoqa import beir; from myoqa.config import Settings; "
            "from myoqa.index.opener import ready_index; t = time.perf_counter(); "
            "d = Path(tempfile.mkdtemp()); s = beir.load(Path(sys.argv[1])).documents; "
            "ready_index(Settings.resolve(d, d / 'index'), lambda m: None, sources=s); "
            "print(json.dumps({'documents': len(s), 'seconds': time.perf_counter() - t, "
            "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    proc = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True,
                          text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def chat_startup(settings: Settings, repeats: int) -> dict[str, Any]:
    """Seconds from launching `myoqa chat` to an interactive input and to the first answer."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MYOQA_INDEX_DIR": str(settings.index_dir),
           "MYOQA_SOURCES": str(settings.sources)}
    code = ("import sys, time; t0 = float(sys.argv[1]); from myoqa.tui.timing import time_startup;"
            " print(json.dumps(time_startup(t0, sys.argv[2])))")
    ready, answered, final = [], [], []
    for _ in range(repeats):
        start = time.time()
        proc = _child([sys.executable, "-c", "import json; " + code, str(start), QUESTION],
                      "chat start-up", env)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        ready.append(result["ready_s"])
        answered.append(result["answer_s"])
        final.append(result["final_answer_s"])
    return {"interactive_s": statistics.median(ready), "first_answer_s": statistics.median(answered),
            "hybrid_answer_s": statistics.median(final), "repeats": repeats}


SYNTHETIC_BATCH = 20_000
"""Synthetic passages generated at once: the corpus streams in, as a real build's batches do."""
PASSAGES_PER_SOURCE = 1000


@dataclass(frozen=True)
class Synthetic:
    """A synthetic corpus: source texts, passages as an offset table, float16 vectors, and the
    queries with their exact nearest passages (from the float32 vectors, before rounding)."""

    texts: dict[str, str]
    passages: UnitTable
    vectors: np.ndarray
    queries: np.ndarray
    picks: np.ndarray
    truth: np.ndarray


def synthetic_corpus(n: int, queries: int = 0, seed: int = 0) -> Synthetic:
    """`n` passages of 60 Zipf-distributed words each, one source per 1,000 passages, and
    clustered unit vectors (so that approximate search meets structure as real embeddings do),
    made SYNTHETIC_BATCH at a time and kept in float16 as an index keeps them; `queries` query
    vectors near random passages, with the ten passages nearest each by the float32 vectors."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.07
    weights /= weights.sum()
    picks = np.random.default_rng(seed + 1).integers(0, n, queries)
    noise = np.random.default_rng(seed + 2)
    qvecs = np.zeros((queries, DIM), np.float32)
    texts: dict[str, str] = {}
    source, start, end = (np.empty(n, np.int64) for _ in range(3))
    vectors = np.empty((n, DIM), np.float16)
    for lo, batch in _vector_batches(n, seed + 3):
        hi = lo + len(batch)
        words = rng.choice(len(vocab), size=(hi - lo, 60), p=weights)
        for s in range(lo, hi, PASSAGES_PER_SOURCE):
            lines = [" ".join(vocab[row]) for row in words[s - lo:s - lo + PASSAGES_PER_SOURCE]]
            sizes = np.array([len(line) for line in lines])
            texts[f"synthetic/{s // PASSAGES_PER_SOURCE:05d}.txt"] = "\n".join(lines)
            at = slice(s, s + len(lines))
            source[at] = s // PASSAGES_PER_SOURCE
            start[at] = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]])
            end[at] = start[at] + sizes
        vectors[lo:hi] = batch
        mine = (picks >= lo) & (picks < hi)
        qvecs[mine] = query_vectors(batch, picks[mine] - lo, noise)
    best = np.zeros((queries, 0), np.float32), np.zeros((queries, 0), np.int64)
    if queries:  # the same float32 batches again, now that the queries are known
        for lo, batch in _vector_batches(n, seed + 3):
            best = _merge_best(best, batch, lo, qvecs)
    table = UnitTable(list(texts), source.astype(np.int32), start, end)
    return Synthetic(texts, table, vectors, qvecs, picks, best[1])


def _vector_batches(n: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """The synthetic float32 vectors, SYNTHETIC_BATCH at a time (the same for the same seed)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((max(16, n // 250), DIM), dtype=np.float32))
    for lo in range(0, n, SYNTHETIC_BATCH):
        yield lo, clustered_vectors(min(SYNTHETIC_BATCH, n - lo), rng, centres)


def _merge_best(best: tuple[np.ndarray, np.ndarray], batch: np.ndarray, first: int,
                queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ten best (scores, ids) so far, merged with those of `batch` (rows from `first`)."""
    sims = queries @ batch.T
    top = np.argsort(-sims, axis=1)[:, :10]
    scores = np.concatenate([best[0], np.take_along_axis(sims, top, 1)], axis=1)
    ids = np.concatenate([best[1], top + first], axis=1)
    keep = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)


def clustered_vectors(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around `centres` (topics: a corpus has one per 250 passages), a vector's
    cosine to its topic about 0.75 (real sentence embeddings of one subject spread about as
    much)."""
    out = rng.standard_normal((n, DIM), dtype=np.float32)
    out *= np.float32(0.9 / np.sqrt(DIM))
    out += centres[rng.integers(0, len(centres), n)]
    return _unit(out)


def query_vectors(vectors: np.ndarray, picks: np.ndarray, rng: np.random.Generator
                  ) -> np.ndarray:
    """Queries near chosen passages, at the cosine (about 0.6) a question has to its answer."""
    noise = rng.standard_normal((len(picks), DIM), dtype=np.float32) * np.float32(
        1.33 / np.sqrt(DIM))
    return _unit(vectors[picks].astype(np.float32) + noise)


def _unit(x: np.ndarray) -> np.ndarray:
    """`x` (float32) with each row scaled to length 1, in place."""
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class _FixedEncoder:
    """Hands out prepared query vectors, so scale timings leave the model out."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.i = vectors, 0

    def encode(self, texts: list[str]) -> np.ndarray:  # noqa: ARG002 (the encoder protocol)
        self.i += 1
        return self.vectors[(self.i - 1) % len(self.vectors)][None, :]


def scale_point(n: int, queries: int) -> dict[str, Any]:
    """Build time, query latency, recall and memory for one synthetic size (run in a child)."""
    from myoqa.index import BuildParams
    from myoqa.index.build import from_parts
    from myoqa.search import Searcher

    corpus = synthetic_corpus(n, queries)
    generated_mb = _peak_mb()
    start = time.perf_counter()
    index = from_parts(corpus.texts, corpus.passages, [], corpus.vectors,
                       np.zeros((0, DIM), np.float32), BuildParams(model="synthetic"))
    build_s = time.perf_counter() - start
    qtexts = [" ".join(index.text(index.passages[int(i)]).split()[:8:2]) for i in corpus.picks]
    searcher = Searcher(index, lambda: _FixedEncoder(corpus.queries))
    searcher.search(qtexts[0])
    searcher._encoder.i = 0
    samples = []
    for text in qtexts:
        t = time.perf_counter()
        searcher.search(text, "hybrid", 5)
        samples.append(time.perf_counter() - t)
    _, found = index.passage_vectors.search(corpus.queries, 10)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(corpus.truth, found, strict=False)]))
    return {"passages": n, "build_s": build_s, **_percentiles(samples),
            "dense_index": index.manifest.dense_index, "dense_recall_at_10": recall,
            "peak_rss_mb": _peak_mb(), "generated_peak_rss_mb": generated_mb,
            "load_average": _load()}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(sizes: list[int], queries: int) -> list[dict[str, Any]]:
    """Each size in a fresh process, so peak memory is that size's own."""
    out = []
    for n in sizes:
        code = ("import json, sys; from myoqa.bench import scale_point; "
                "print(json.dumps(scale_point(int(sys.argv[1]), int(sys.argv[2]))))")
        proc = _child([sys.executable, "-c", code, str(n), str(queries)],
                      f"scale {n:,} passages")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  scale {n:>9,}: {out[-1]}", file=sys.stderr)
    return out


def plot(points: list[dict[str, Any]], path: Path, kept: Sequence[Kept] = ()) -> None:
    """Query latency and peak memory against corpus size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [p["passages"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(sizes, [p["p50_ms"] for p in points], "o-", label="p50")
    left.plot(sizes, [p["p95_ms"] for p in points], "s--", label="p95")
    left.set(xscale="log", yscale="log", xlabel="passages", ylabel="hybrid query (ms)",
             title="Query latency")
    left.legend()
    right.plot(sizes, [p["peak_rss_mb"] for p in points], "o-", color="tab:red")
    right.set(xscale="log", xlabel="passages", ylabel="peak RSS (MB)", title="Peak memory")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_output(path, png.getvalue(), kept=kept)


def run(settings: Settings, out_dir: Path, sizes: list[int], repeats: int,
        log: Callable[[str], None], steps: tuple[str, ...]) -> dict[str, Any]:
    """Run the measurements named in `steps` (bench_steps.STEPS) and write `latest.json` and
    `scale.png` into out_dir."""
    from myoqa.diagnostics import say as stderr_notify
    from myoqa.index.opener import ready_index

    ready_index(settings, stderr_notify)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.machine()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for name, step in (("cold", lambda: cold_start(settings, repeats)),
                       ("warm", lambda: warm_queries(settings, 300)),
                       ("chat", lambda: chat_startup(settings, max(3, repeats // 2))),
                       ("embedding", lambda: embedding_throughput(settings)),
                       ("updates", lambda: updates(settings, max(3, repeats // 2))),
                       ("med_build", lambda: med_build(MED) if MED.is_dir() else None),
                       ("scale", lambda: scale(sizes, 200))):
        if name not in steps:
            continue
        log(f"bench: {name}…")
        results[name] = step()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MyoqaError(f"cannot create the results folder {out_dir}: "
                         f"{exc.strerror or exc}") from None
    kept = kept_folders(settings.sources, settings.index_dir)
    write_output(out_dir / RESULTS_FILE, json.dumps(results, indent=1), kept=kept)
    if results.get("scale"):
        plot(results["scale"], out_dir / PLOT_FILE, kept)
    return results


def _loads(step: dict[str, Any]) -> str:
    return " / ".join(f"{x:.1f}" for x in step.get("load_average", [])) or "—"


def table(results: dict[str, Any]) -> str:
    """The README table: each figure beside its target."""
    rows: list[tuple[str, str, str]] = []
    c = results.get("cold")
    if c:
        st_s = c["import_sentence_transformers_s"]
        signals = "three signals" if c.get("late") else "two signals"
        rows += [(f"cold `myoqa ask` (fresh process, {signals})", f"{c['ask_cold_s']:.2f} s",
                  "≤ 0.50 s (quiet machine)"),
                 ("cold `myoqa ask` with `MYOQA_COLBERT=off` (two signals), same run",
                  f"{c['ask_cold_two_signals_s']:.2f} s", "—"),
                 ("… late interaction on / off", f"{c['late_ratio']:.2f}×", "≤ 1.25×"),
                 (f"… as a share of `import sentence_transformers` ({st_s:.2f} s)",
                  f"{c['ratio']:.2f}×", "≤ 0.2×"),
                 ("`myoqa --help`", f"{c['help_s']:.2f} s", "≤ 0.3 s"),
                 ("… machine load (1 / 5 / 15 min) as these ended", _loads(c), "—")]
    w = results.get("warm")
    if w:
        rows += [("warm hybrid query p50 / p95 (seeds)",
                  f"{w['p50_ms']:.1f} / {w['p95_ms']:.1f} ms", "≤ 10 / 15 ms"),
                 ("… with `MYOQA_COLBERT=off` (two signals), same run",
                  f"{w['two_signals_p50_ms']:.1f} / {w['two_signals_p95_ms']:.1f} ms", "—"),
                 ("… machine load (1 / 5 / 15 min) as these ended", _loads(w), "—")]
    ch = results.get("chat")
    if ch:
        rows += [("chat: launch → interactive input", f"{ch['interactive_s']:.2f} s", "≤ 1.0 s"),
                 ("chat: launch → first answer", f"{ch['first_answer_s']:.2f} s", "≤ 1.5 s"),
                 ("chat: launch → hybrid answer (after the model loads)",
                  f"{ch['hybrid_answer_s']:.2f} s", "—")]
    e = results.get("embedding")
    if e:
        rows += [("embedding (build, sentence-transformers)",
                  f"{e['sentence_transformers_passages_per_s']:.0f} passages/s", "—"),
                 ("embedding (ONNX encoder)", f"{e['onnx_passages_per_s']:.0f} passages/s", "—")]
    u = results.get("updates")
    if u:
        rows += [
            ("first build of the seeds (exports the ONNX encoder once)",
             f"{u['first_build_s']:.2f} s", "—"),
            ("full rebuild (`myoqa index --rebuild`, every passage embedded)",
             f"{u['full_rebuild_s']:.2f} s", "no slower than before"),
            ("one line appended to one source → next `myoqa ask` answers",
             f"{u['append_then_ask_s']:.2f} s ({u['ratio']:.2f}× a full rebuild)",
             "≤ 3 s and ≤ 0.3×"),
            ("seeds build folder / shared encoder folder",
             f"{u['build_folder_mb']:.2f} MB / {u['encoder_mb']:.0f} MB", "≤ 10 MB / —"),
        ]
        if "second_index_s" in u:  # results of a bench before encoders were shared lack it
            rows.append(("a second index folder, same model: first build / encoder MB it adds",
                         (f"{u['second_index_s']:.2f} s "
                          f"({u['second_index_s'] / u['first_build_s']:.2f}× the first) / "
                          f"{u['second_index_encoder_mb']:.0f} MB"), "no export, 0 MB"))
    m = results.get("med_build")
    if m:
        rows.append((f"building MED ({m['documents']:,} documents): time, peak memory",
                     f"{m['seconds']:.1f} s, {m['peak_rss_mb']:.0f} MB", "bounded"))
    targets = {10_000: ("—", "—"), 100_000: ("≤ 5 ms", "≤ 400 MB"),
               1_000_000: ("≤ 50 ms", "≤ 36 s, ≤ 3,000 MB"), 10_000_000: ("≤ 300 ms", "—")}
    for p in results.get("scale") or []:
        q_target, b_target = targets.get(p["passages"], ("—", "—"))
        rows.append((f"{p['passages']:,} passages: hybrid p50 / p95",
                     f"{p['p50_ms']:.1f} / {p['p95_ms']:.1f} ms", q_target))
        rows.append((f"{p['passages']:,} passages: build (no embedding), peak memory",
                     f"{p['build_s']:.1f} s, {p['peak_rss_mb']:.0f} MB", b_target))
        rows.append((f"{p['passages']:,} passages: dense recall@10 ({p['dense_index']})",
                     f"{p['dense_recall_at_10']:.3f}", "≥ 0.98"))
    lines = ["| measure | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {t} |" for a, b, t in rows]
    return "\n".join(lines)
