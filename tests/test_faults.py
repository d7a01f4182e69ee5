"""Processes killed, interrupted and run side by side: the index always stays whole and loadable.

Each test runs real `python -m myoqa` processes with the real model. Kills and interrupts are
timed by what a process is doing (torch loaded, a .tmp- build folder or its encoder appeared, a new
build switched in, the query encoder's weights mapped), so they land in the same phases on a slow
machine as on a fast one. Builds that only need to be builds use a one-file corpus.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FLUTTER, PROSE, SEEDS
from myoqa import index as store
from myoqa.config import Settings
from myoqa.engine import query_encoder_factory

pytestmark = pytest.mark.slow

KILLS_PER_PHASE = 3
TINY = "Myoclonus is a brief, involuntary twitching of a muscle or a group of muscles.\n"


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "myoqa", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def _env(index_dir: Path, sources: Path) -> dict[str, str]:
    return {"MYOQA_INDEX_DIR": str(index_dir), "MYOQA_SOURCES": str(sources)}


def _copy_index(settings: Settings, target: Path) -> Path:
    shutil.copytree(settings.index_dir, target)
    return target


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


def _leftovers(index_dir: Path) -> list[str]:
    return sorted(p.name for p in _names(index_dir, ".tmp-") + _names(index_dir, ".CURRENT-"))


def _check_whole(index_dir: Path) -> store.Index:
    """CURRENT names a build that loads, agrees with itself and answers with its own encoder."""
    index = store.load(index_dir)
    vector = query_encoder_factory(index)().encode(["myoclonus"])
    assert vector.shape == (1, index.dimension)
    return index


PHASES = {  # how far into a phase a kill may land, at most (seconds after reaching it)
    "starting": 1.0, "loading the model": 2.0, "writing files": 0.3, "exporting the encoder": 1.5,
    "switching CURRENT": 0.0}


def _reached(phase: str, proc: subprocess.Popen[str], index_dir: Path,
             before: set[str]) -> Callable[[], bool]:
    """Whether a build has got to `phase`."""
    return {
        "starting": lambda: True,
        "loading the model": lambda: _mapped(proc, "libtorch"),
        "writing files": lambda: bool(_names(index_dir, ".tmp-")),
        "exporting the encoder": lambda: any((t / "encoder").exists()
                                             for t in _names(index_dir, ".tmp-")),
        "switching CURRENT": lambda: bool({p.name for p in _names(index_dir, "build-")} - before),
    }[phase]


def test_sigkill_at_any_point_of_a_build_leaves_a_whole_index(seed_settings: Settings,
                                                              tmp_path: Path) -> None:
    index_dir = _copy_index(seed_settings, tmp_path / "index")
    env = _env(index_dir, _tiny_sources(tmp_path / "src"))
    rng = random.Random(1123)
    landed: Counter[str] = Counter()
    leftovers: set[str] = set()
    for phase in list(PHASES) * KILLS_PER_PHASE:
        before = {p.name for p in _names(index_dir, "build-")}
        proc = _start("index", "--rebuild", env=env)
        if _wait_until(_reached(phase, proc, index_dir, before), proc):
            time.sleep(rng.uniform(0, PHASES[phase]))
        landed[phase] += proc.poll() is None
        proc.kill()
        proc.communicate()
        leftovers.update(_leftovers(index_dir))
        _check_whole(index_dir)
    final = subprocess.run([sys.executable, "-m", "myoqa", "index", "--rebuild"],
                           capture_output=True, text=True, env={**os.environ, **env}, check=False)
    assert final.returncode == 0, final.stderr
    assert _check_whole(index_dir).texts == {"tiny.txt": TINY}
    assert not _leftovers(index_dir) and len(_names(index_dir, "build-")) == 2
    kills = len(PHASES) * KILLS_PER_PHASE
    print(f"\n[faults] SIGKILL: {kills} kills, {sum(landed.values())} landed mid-build "
          f"({dict(landed)}); the index loaded and answered after every one; "
          f"{len(leftovers)} leftovers of killed builds were removed by the next build")
    assert sum(landed.values()) >= kills // 2, "most kills must land while the build runs"


INTERRUPTS = {
    "index while loading the model": ("index", lambda p, d: _mapped(p, "libtorch")),
    "index while writing files": ("index", lambda p, d: bool(_names(d, ".tmp-"))),
    "index while exporting the encoder": (
        "index", lambda p, d: any((t / "encoder").exists() for t in _names(d, ".tmp-"))),
    "ask while rebuilding a stale index": ("ask", lambda p, d: _mapped(p, "libtorch")),
    "eval while searching": ("eval", lambda p, d: _mapped(p, "model.onnx.data")),
}


@pytest.mark.parametrize("case", INTERRUPTS)
def test_ctrl_c_exits_130_without_traceback_or_partial_files(seed_settings: Settings,
                                                             tmp_path: Path, case: str) -> None:
    command, reached = INTERRUPTS[case]
    index_dir = _copy_index(seed_settings, tmp_path / "index")
    before = store.current_build(index_dir)
    run_out = tmp_path / "run.jsonl"
    if command == "eval":
        env, args = _env(index_dir, SEEDS), ["eval", "--run-out", str(run_out)]
    else:
        env = _env(index_dir, _tiny_sources(tmp_path / "src"))
        args = ["index", "--rebuild"] if command == "index" else ["ask", "myoclonus"]
    proc = _start(*args, env=env)
    assert _wait_until(lambda: reached(proc, index_dir), proc), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "myoqa: interrupted" and "Traceback" not in err, err
    assert store.current_build(index_dir) == before and not _leftovers(index_dir)
    assert {p.name for p in _names(index_dir, "build-")} == {before.name}
    assert not run_out.exists()
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
    index_dir = _copy_index(seed_settings, tmp_path / "index")
    env = _env(index_dir, SEEDS)
    before = {p.name for p in _names(index_dir, "build-")}
    builder = _start("index", "--rebuild", env=env)
    moments = [lambda: True, lambda: _mapped(builder, "libtorch"),
               lambda: bool(_names(index_dir, ".tmp-")),
               lambda: any((t / "encoder").exists() for t in _names(index_dir, ".tmp-")),
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


def test_two_rebuilds_at_once_take_turns(seed_settings: Settings, tmp_path: Path) -> None:
    index_dir = _copy_index(seed_settings, tmp_path / "index")
    env = _env(index_dir, _tiny_sources(tmp_path / "src"))
    first = _start("index", "--rebuild", env=env)
    assert _wait_until(lambda: _holds_lock(index_dir), first)
    second = _start("index", "--rebuild", env=env)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    assert "another build of this index is running; waiting for it" in outs[1][1]
    built = [out.split()[1] for out, _ in outs]
    assert built[0] != built[1] and store.current_build(index_dir) == Path(built[1])
    assert {p.name for p in _names(index_dir, "build-")} == {Path(b).name for b in built}
    assert not _leftovers(index_dir)
    _check_whole(index_dir)


def test_asks_on_a_stale_index_build_it_once(seed_settings: Settings, tmp_path: Path) -> None:
    index_dir = _copy_index(seed_settings, tmp_path / "index")
    sources = _tiny_sources(tmp_path / "src", {"lance.txt": "Myoclonus after cardiac arrest "
                                               "and hypoxia is called Lance-Adams syndrome.\n"})
    env = _env(index_dir, sources)
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
