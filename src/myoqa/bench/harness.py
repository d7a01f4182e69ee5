"""Fresh processes for the benchmark: measured children whose failure is one line, medians of
their wall times, the child jobs of `python -m myoqa.bench`, and how busy the machine was.

Nothing here imports numpy or the index, so a child timed from its launch (the chat's start-up)
pays only for what it measures.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from myoqa.errors import MyoqaError

JOBS_MODULE = "myoqa.bench"
"""The module whose `__main__` runs one child job (scale, med, chat) and prints its JSON."""


def child(cmd: list[str], what: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run a measured child process; its failure is one line naming the step and its last
    error line, not a traceback."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise MyoqaError(f"the benchmark step '{what}' failed: {last}")
    return proc


def timed(cmd: list[str], what: str, env: dict[str, str] | None = None) -> float:
    """Wall time of one fresh process running `cmd`."""
    start = time.perf_counter()
    child(cmd, what, env)
    return time.perf_counter() - start


def median_run(cmd: list[str], repeats: int, env: dict[str, str]) -> float:
    """Median wall time of a command in fresh processes."""
    return statistics.median(timed(cmd, " ".join(cmd[2:]), env) for _ in range(repeats))


def job(name: str, *args: str, what: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the child job `name` (see `myoqa.bench.__main__`) in a fresh process and return the
    JSON object it printed last."""
    proc = child([sys.executable, "-m", JOBS_MODULE, name, *args], what, env)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p95 of `samples` (seconds), in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    return {"p50_ms": _percentile(ms, 50), "p95_ms": _percentile(ms, 95)}


def _percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile of sorted values, interpolated linearly (as numpy's default)."""
    at = (len(ordered) - 1) * q / 100
    lo = int(at)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)


def load() -> list[float]:
    """The machine's load averages (1, 5, 15 minutes) when a step ends: the machine is shared,
    so figures come with how busy it was."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
