"""Running the benchmark: the steps by name, in order, their results written as JSON (and the
scale plot where matplotlib is installed) into a results folder."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from myoqa.bench_steps import STEPS
from myoqa.config import Settings, project_root
from myoqa.errors import MyoqaError, UsageError
from myoqa.output_files import Kept, check_folder, kept_folders, write_output

MAX_SIZE = 10_000_000
"""The largest synthetic corpus `--sizes` accepts, in passages."""
RESULTS_FILE = "latest.json"
PLOT_FILE = "scale.png"
MED_FOLDER = ("eval", "datasets", "med")
"""Where a checkout keeps the MED collection (the med_build step runs only inside one)."""


def check_out_dir(out_dir: Path, kept: Sequence[Kept] = ()) -> None:
    """Refuse, before minutes of measuring, a results folder that cannot be one, or one inside
    the sources or index folder (`kept`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"bench --out {out_dir} is not a folder",
                         f"name a folder for {RESULTS_FILE} and {PLOT_FILE}")
    check_folder(out_dir, kept)


def med_folder() -> Path | None:
    """The MED collection of the checkout around the current folder, if there is one."""
    root = project_root()
    folder = root.joinpath(*MED_FOLDER) if root else None
    return folder if folder and folder.is_dir() else None


def _step(name: str, settings: Settings, sizes: list[int], repeats: int) -> Any:
    """The results of the step `name` (None: it does not apply here)."""
    from myoqa.bench import steps

    if name == "cold":
        return steps.cold_start(settings, repeats)
    if name == "warm":
        return steps.warm_queries(settings)
    if name == "chat":
        return steps.chat_startup(settings, max(3, repeats // 2))
    if name == "embedding":
        return steps.embedding_throughput(settings)
    if name == "updates":
        return steps.updates(settings, max(3, repeats // 2))
    if name == "med_build":
        med = med_folder()
        return steps.med_build(med) if med else None
    from myoqa.bench.scale import scale

    return scale(sizes)


def run(settings: Settings, out_dir: Path, sizes: list[int], repeats: int,
        log: Callable[[str], None], steps: tuple[str, ...]) -> dict[str, Any]:
    """Run the measurements named in `steps` (of STEPS, in STEPS' order) and write
    RESULTS_FILE, and PLOT_FILE when there are scale results, into out_dir."""
    from myoqa.bench.plot import can_plot, plot
    from myoqa.diagnostics import say as stderr_notify
    from myoqa.engine import open_searcher

    open_searcher(settings, notify=stderr_notify, preload_late=False)  # built before timing
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.machine()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for name in STEPS:
        if name in steps:
            log(f"bench: {name}…")
            results[name] = _step(name, settings, sizes, repeats)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MyoqaError(f"cannot create the results folder {out_dir}: "
                         f"{exc.strerror or exc}") from None
    kept = kept_folders(settings.sources, settings.index_dir)
    write_output(out_dir / RESULTS_FILE, json.dumps(results, indent=1), kept=kept)
    if results.get("scale"):
        if can_plot():
            plot(results["scale"], out_dir / PLOT_FILE, kept)
        else:
            log(f"bench: matplotlib is not installed, so no {PLOT_FILE} "
                "(pip install matplotlib to draw it)")
    return results
