"""Processes killed, interrupted and run side by side: the index always stays whole and loadable.

Each test runs real `python -m myoqa` processes with the real model. Kills and interrupts at an
exact instant stop the process at a named step first (MYOQA_TEST_PAUSE, see myoqa.faultpoints), so
they land there on a busy machine as on an idle one; the others are timed by what a process is
doing (the encoder mapped, a .tmp- build appeared, a new build switched in). Builds that only need
to be builds use a one-file corpus.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import FLUTTER, PROSE, SEEDS, builds, cli_env, copy_index, leftovers, run_cli
from myoqa.config import CACHE_ENV, Settings
from myoqa.engine import query_encoder_factory
from myoqa.faultpoints import PAUSE_ENV
from myoqa.index import Index
from myoqa.index.encoders import ENCODERS
from myoqa.index.store import current_build, load

pytestmark = pytest.mark.faults

KILLS_PER_PHASE = 3
HANG_GUARD = 600  # seconds: only ends a hung test, never a measurement
TINY = "Myoclonus is a brief, involuntary twitching of a muscle or a group of muscles.\n"


# The child gets Python's Ctrl-C handler back before myoqa starts, even when this test run was
# started with `&` from a non-interactive shell (its children then inherit an ignored SIGINT).
WITH_CTRL_C = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "sys.argv[0] = 'myoqa'; runpy.run_module('myoqa', run_name='__main__')")


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def _paused(step: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """A myoqa process stopped at `step` (see myoqa.faultpoints), waiting for a signal."""
    proc = _start(*args, env={**env, PAUSE_ENV: step})
    guard = threading.Timer(HANG_GUARD, proc.kill)
    guard.start()
    said = []
    try:
        for line in proc.stderr:
            if line == f"myoqa: test pause at {step}\n":
                return proc
            said.append(line)
    finally:
        guard.cancel()
    proc.wait()
    raise AssertionError(f"myoqa {' '.join(args)} ended before {step!r}: {''.join(said)}")


def _tiny_sources(folder: Path, extra: dict[str, str] | None = None) -> Path:
    folder.mkdir()
    for name, text in {"tiny.txt": TINY, **(extra or {})}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _mapped(proc: subprocess.Popen[str], fragment: str) -> bool:
    try:
        return fragment in Path(f"/proc/{proc.pid}/maps").read_text()
    except OSError:
        return False


def _names(index_dir: Path, prefix: str) -> list[Path]:
    try:
        return [p for p in index_dir.iterdir() if p.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[str]) -> bool:
    """Poll until `ready()` or the process ends; True when `ready()` came first."""
    deadline = time.monotonic() + 600  # only a guard against a hung test, never a measurement
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("the process neither reached the phase nor ended")


def _check_whole(index_dir: Path) -> Index:
    """CURRENT names a build that loads, agrees with itself and answers with its own encoder."""
    index = load(index_dir)
    vector = query_encoder_factory(index)().encode(["myoclonus"])
    assert vector.shape == (1, index.dimension)
    return index


PHASES = {  # how far into a phase a kill may land, at most (seconds after reaching it)
    "starting": 1.0, "loading the encoder": 1.0, "writing files": 0.3, "switching CURRENT": 0.0}


def _all_leftovers(index_dir: Path, env: dict[str, str] | None = None) -> list[str]:
    """What killed runs left in an index folder and in the encoders of the cache they used."""
    cache = Path((env or {}).get(CACHE_ENV) or os.environ[CACHE_ENV])
    return leftovers(index_dir) + leftovers(cache / ENCODERS)


def _reached(phase: str, proc: subprocess.Popen[str], index_dir: Path,
             before: set[str]) -> Callable[[], bool]:
    """Whether a build has got to `phase`."""
    return {
        "starting": lambda: True,
        "loading the encoder": lambda: _mapped(proc, "model.onnx.data"),
        "writing files": lambda: bool(_names(index_dir, ".tmp-")),
        "switching CURRENT": lambda: bool({p.name for p in _names(index_dir, "build-")} - before),
    }[phase]


def test_sigkill_at_any_point_of_a_build_leaves_a_whole_index(seed_settings: Settings,
                                                              tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    env = cli_env(index_dir, _tiny_sources(tmp_path / "src"))
    rng = random.Random(1123)
    landed: Counter[str] = Counter()
    left: set[str] = set()
    for phase in list(PHASES) * KILLS_PER_PHASE:
        before = {p.name for p in _names(index_dir, "build-")}
        proc = _start("index", "--rebuild", env=env)
        if _wait_until(_reached(phase, proc, index_dir, before), proc):
            time.sleep(rng.uniform(0, PHASES[phase]))
        landed[phase] += proc.poll() is None
        proc.kill()
        proc.communicate()
        left.update(_all_leftovers(index_dir))
        _check_whole(index_dir)
    final = subprocess.run([sys.executable, "-m", "myoqa", "index", "--rebuild"],
                           capture_output=True, text=True, env={**os.environ, **env}, check=False)
    assert final.returncode == 0, final.stderr
    assert _check_whole(index_dir).texts == {"tiny.txt": TINY}
    assert not _all_leftovers(index_dir) and len(_names(index_dir, "build-")) == 2
    kills = len(PHASES) * KILLS_PER_PHASE
    print(f"\n[faults] SIGKILL: {kills} kills, {sum(landed.values())} landed mid-build "
          f"({dict(landed)}); the index loaded and answered after every one; "
          f"{len(left)} leftovers of killed builds were removed by the next build")
    assert sum(landed.values()) >= kills // 2, "most kills must land while the build runs"


FIRST_BUILD = ("marker write", "encoders proof", "export proof", "export written", "build proof",
               "build written", "current switch")
SIGNALS = {"SIGKILL": signal.SIGKILL, "Ctrl-C": signal.SIGINT}


def _stop(step: str, how: str, *args: str, env: dict[str, str], index_dir: Path) -> None:
    """Run myoqa to `step`, then kill or interrupt it there; an interrupted one exits 130 and
    leaves nothing partial (past `current switch` Ctrl-C waits until the build is in)."""
    proc = _paused(step, *args, env=env)
    proc.send_signal(SIGNALS[how])
    _out, err = proc.communicate(timeout=HANG_GUARD)
    if how == "Ctrl-C":
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert err.splitlines()[-1] == "myoqa: interrupted", err
        assert not _all_leftovers(index_dir, env)


@pytest.mark.parametrize("how", SIGNALS)
def test_stopped_at_each_step_of_a_first_build_the_next_run_goes_on(tmp_path: Path,
                                                                    how: str) -> None:
    """SIGKILL or Ctrl-C at each named step of a first build, one after another in one folder,
    then in the middle of pruning: each next run accepts what the last one left (it gets to a
    later step), and the next build leaves one whole index and nothing else. Before, a kill
    between making a folder and writing its proof left a folder every command refused."""
    index_dir = tmp_path / "index"
    env = {**cli_env(index_dir, _tiny_sources(tmp_path / "src")),
           CACHE_ENV: str(tmp_path / "cache")}  # a first export too
    for step in FIRST_BUILD:
        _stop(step, how, "index", env=env, index_dir=index_dir)
        if how == "Ctrl-C" and step != "current switch":
            assert not (index_dir / "CURRENT").exists() and not builds(index_dir)
    for args in (["index"], ["index", "--rebuild"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr
    assert len(builds(index_dir)) == 2
    _stop("removal", how, "index", "--rebuild", env=env, index_dir=index_dir)
    final = run_cli("index", "--rebuild", env=env)
    assert final.returncode == 0, final.stderr
    whole = _check_whole(index_dir)
    assert whole.texts == {"tiny.txt": TINY}
    assert not _all_leftovers(index_dir, env) and len(builds(index_dir)) == 2
    late = whole.manifest.late
    assert late is not None  # on by default: its saved graph is an encoder folder too
    shared = tmp_path / "cache" / ENCODERS
    assert {str(p) for p in shared.iterdir() if p.name != ".owner"} == {
        whole.manifest.model.encoder, late.encoder}
    assert not (index_dir / ENCODERS).exists()


INTERRUPTS = {  # the command, and the step it is stopped at (else: while it searches)
    "index while writing files": ("index", "build proof"),
    "ask while rebuilding a stale index": ("ask", "build written"),
    "eval while searching": ("eval", None),
}


@pytest.mark.parametrize("case", INTERRUPTS)
def test_ctrl_c_exits_130_without_traceback_or_partial_files(seed_settings: Settings,
                                                             tmp_path: Path, case: str) -> None:
    command, step = INTERRUPTS[case]
    index_dir = copy_index(seed_settings, tmp_path)
    before = current_build(index_dir)
    run_out = tmp_path / "run.jsonl"
    if command == "eval":
        env, args = cli_env(index_dir, SEEDS), ["eval", "--run-out", str(run_out)]
    else:
        env = cli_env(index_dir, _tiny_sources(tmp_path / "src"))
        args = ["ask", "myoclonus"] if command == "ask" else ["index", "--rebuild"]
    if step:
        proc = _paused(step, *args, env=env)
    else:
        proc = _start(*args, env=env)
        assert _wait_until(lambda: _mapped(proc, "model.onnx.data"), proc), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "myoqa: interrupted" and "Traceback" not in err, err
    assert not _all_leftovers(index_dir) and not run_out.exists()
    assert current_build(index_dir) == before
    assert {p.name for p in _names(index_dir, "build-")} == {before.name}
    _check_whole(index_dir)


def _holds_lock(index_dir: Path) -> bool:
    with open(index_dir / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


ASKS = [("what is diaphragmatic flutter?", FLUTTER),
        ("which drug is most effective for myoclonic seizures in primary generalized epilepsy?",
         PROSE)]


def test_asks_during_a_rebuild_all_answer_from_a_whole_index(seed_settings: Settings,
                                                             tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    env = cli_env(index_dir, SEEDS)
    before = {p.name for p in _names(index_dir, "build-")}
    builder = _start("index", "--rebuild", env=env)
    moments = [lambda: True, lambda: _mapped(builder, "model.onnx.data"),
               lambda: bool(_names(index_dir, ".tmp-")),
               lambda: bool({p.name for p in _names(index_dir, "build-")} - before)]
    asks, during = [], 0
    for i, moment in enumerate(moments * 2):
        during += _wait_until(moment, builder) and builder.poll() is None
        question, source = ASKS[i % len(ASKS)]
        asks.append((_start("ask", question, "--json", "-k", "3", env=env), source))
    assert builder.wait(timeout=600) == 0, builder.communicate()[1]
    texts = {p.name: p.read_text(encoding="utf-8") for p in SEEDS.iterdir()}
    for proc, source in asks:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Traceback" not in err, err
        passages = json.loads(out)["passages"]
        assert len(passages) == 3 and passages[0]["source"] == source
        assert all(p["text"] == texts[p["source"]][p["start"]:p["end"]] for p in passages)
    print(f"\n[faults] concurrency: {len(asks)} asks served, {during} of them started while "
          "`myoqa index --rebuild` ran")
    assert during >= len(asks) // 2
    _check_whole(index_dir)


def _waits_on(proc: subprocess.Popen[str], lock: Path) -> bool:
    """Whether a process has the index's lock file open (it then blocks on the lock held here)."""
    try:
        return any(os.readlink(fd) == str(lock) for fd in Path(f"/proc/{proc.pid}/fd").iterdir())
    except OSError:
        return False


def test_two_rebuilds_at_once_take_turns(seed_settings: Settings, tmp_path: Path) -> None:
    """While a build holds the lock (this test, standing in for one), two more rebuilds wait;
    released, they build one after the other. Held here, because a rebuild of a tiny corpus
    can finish before a second process has even started."""
    index_dir = copy_index(seed_settings, tmp_path)
    env = cli_env(index_dir, _tiny_sources(tmp_path / "src"))
    lock = index_dir / ".lock"
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [_start("index", "--rebuild", env=env) for _ in range(2)]
        for proc in procs:
            assert _wait_until(lambda proc=proc: _waits_on(proc, lock), proc)
        fcntl.flock(held, fcntl.LOCK_UN)
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("another build of this index is running; waiting for it" in err
               for _, err in outs), outs
    built = {Path(out.split()[1]).name for out, _ in outs}
    assert len(built) == 2 and current_build(index_dir).name in built
    assert {p.name for p in _names(index_dir, "build-")} == built
    assert not _all_leftovers(index_dir)
    _check_whole(index_dir)


def test_asks_on_a_stale_index_build_it_once(seed_settings: Settings, tmp_path: Path) -> None:
    index_dir = copy_index(seed_settings, tmp_path)
    sources = _tiny_sources(tmp_path / "src", {"lance.txt": "Myoclonus after cardiac arrest "
                                               "and hypoxia is called Lance-Adams syndrome.\n"})
    env = cli_env(index_dir, sources)
    before = {p.name for p in _names(index_dir, "build-")}
    asks = [_start("ask", "Lance-Adams hypoxia", "--json", "-k", "1", env=env) for _ in range(4)]
    new_builds: set[str] = set()
    while any(p.poll() is None for p in asks):
        new_builds |= {p.name for p in _names(index_dir, "build-")} - before
        time.sleep(0.02)
    for proc in asks:
        out, err = proc.communicate()
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert json.loads(out)["passages"][0]["source"] == "lance.txt"
    new_builds |= {p.name for p in _names(index_dir, "build-")} - before
    print(f"\n[faults] {len(asks)} asks on a stale index made {len(new_builds)} build(s)")
    assert len(new_builds) == 1
