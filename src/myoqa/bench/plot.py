"""The scale plot (optional): query latency and peak memory against corpus size, drawn only
where matplotlib is installed (a development extra, not a dependency of the package)."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from myoqa.output_files import Kept, write_output


def can_plot() -> bool:
    """Whether matplotlib is installed here."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(points: list[dict[str, Any]], path: Path, kept: Sequence[Kept] = ()) -> None:
    """Query latency and peak memory against corpus size, as a PNG at `path`."""
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
