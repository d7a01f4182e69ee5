"""Named steps where a test can stop myoqa to kill or interrupt it at an exact instant.

With `MYOQA_TEST_PAUSE=<step>` in the environment, the process writes `myoqa: test pause at
<step>` on stderr the first time it reaches that step, then waits for a signal: SIGKILL ends it
there, Ctrl-C raises KeyboardInterrupt there (or is held, where myoqa holds it, and the process
goes on). Without the variable `pause` only compares two strings; nothing else ever reads it.

Steps, in the order a first build meets them: `marker write` (the index folder's marker created,
empty), `encoders proof` and `export proof` (the `encoders/` folder or an encoder's temporary
folder made, its proof not written), `export written` (the encoder exported, not renamed in),
`build proof` (a build's temporary folder made, no proof), `build written` (every file of the
build synced), `current switch` (the build renamed in, CURRENT not yet switched), `removal`
(a folder being removed, emptied but for its proof: pruning, or clean-up after a failure).
"""

from __future__ import annotations

import os
import signal
import threading

PAUSE_ENV = "MYOQA_TEST_PAUSE"
_step = os.environ.get(PAUSE_ENV)


def pause(step: str) -> None:
    """Stop at `step` until a signal arrives, when the environment asked for it (once)."""
    global _step
    if step != _step:
        return
    _step = None
    os.write(2, f"myoqa: test pause at {step}\n".encode())
    if threading.current_thread() is threading.main_thread():
        signal.pause()
    else:
        threading.Event().wait()
