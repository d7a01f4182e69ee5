"""`myoqa bench`: the speed benchmark behind the README's numbers (medians over repeats).

It measures cold one-shot `myoqa ask` against importing sentence-transformers in the same run,
warm in-process queries on the seeds, `myoqa --help`, the chat's start-up, embedding
throughput, incremental updates, and search on synthetic corpora of growing size.

Modules, one job each: `runner` (the steps by name, the results folder), `steps` (the steps
over the seeds), `scale` (the synthetic sizes), `synthetic` (the generated corpus), `harness`
(fresh processes, medians, load), `report` (the README table; the targets live there), `plot`
(the scale plot, where matplotlib is installed), `__main__` (a child job). This module imports
nothing heavy: a timed child starts through it.
"""

from myoqa.bench.report import table
from myoqa.bench.runner import MAX_SIZE, STEPS, check_out_dir, run

__all__ = ["MAX_SIZE", "STEPS", "check_out_dir", "run", "table"]
