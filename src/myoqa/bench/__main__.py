"""`python -m myoqa.bench JOB ARG…`: one measured job in this fresh process, its results
printed as one JSON line (the harness runs these: a job's peak memory and start-up are its own).

Jobs: `scale N QUERIES` (a synthetic size), `med FOLDER` (building MED), `chat LAUNCHED
QUESTION` (the chat's start-up, timed from the wall-clock time LAUNCHED).
"""

import json
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> dict[str, Any]:
    """Run the job `argv` names (imports only what that job needs)."""
    name, *args = argv
    if name == "scale":
        from myoqa.bench.scale import scale_point

        return scale_point(int(args[0]), int(args[1]))
    if name == "med":
        from myoqa.bench.steps import med_point

        return med_point(Path(args[0]))
    if name == "chat":
        from myoqa.tui.timing import time_startup

        return time_startup(float(args[0]), args[1])
    raise SystemExit(f"myoqa.bench: unknown job {name!r}")


print(json.dumps(main(sys.argv[1:])))
