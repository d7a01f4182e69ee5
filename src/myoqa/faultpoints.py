"""Named steps where a test can stop myoqa to kill or interrupt it at an exact instant.

With `MYOQA_TEST_PAUSE=<step>` in the environment, the process writes `myoqa: test pause at
<step>` on stderr the first time it reaches that step, then waits: SIGKILL ends it there, Ctrl-C
goes to the handler in place (KeyboardInterrupt there, or held where myoqa holds it, and the
process goes on; outside the main thread only SIGKILL ends the wait). Without the variable
`pause` only compares two strings.

Steps, in the order a first build meets them: `marker write` (the index folder's marker created,
empty), `encoders proof` and `export proof` (the `encoders/` folder or an encoder's temporary
folder made, its proof not written), `export written` (the encoder exported, not renamed in),
`build proof` (a build's temporary folder made, no proof), `build written` (every file of the
build synced), `current switch` (the build renamed in, CURRENT not yet switched), `removal`
(a folder being removed, emptied but for its proof: pruning, or clean-up after a failure).
A Milvus build meets `milvus batch written` (a batch inserted into the new build's collections,
the alias unchanged).
"""

from __future__ import annotations

import os
import signal
import threading
import time

PAUSE_ENV = "MYOQA_TEST_PAUSE"
POLL_SECONDS = 0.05  # how often a paused process looks for Ctrl-C (Python runs handlers then)
_step = os.environ.get(PAUSE_ENV)


def pause(step: str) -> None:
    """Stop at `step` until a signal arrives, when the environment asked for it (once).

    Ctrl-C is caught here first and, once the wait is over, raised again for the handler that
    was in place: one sent the moment the line is read is never lost, whichever thread the
    kernel hands it to.
    """
    global _step
    if step != _step:
        return
    _step = None
    if threading.current_thread() is not threading.main_thread():
        os.write(2, f"myoqa: test pause at {step}\n".encode())
        threading.Event().wait()
    arrived: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: arrived.append(signum))
    try:
        os.write(2, f"myoqa: test pause at {step}\n".encode())
        while not arrived:
            time.sleep(POLL_SECONDS)
    finally:
        signal.signal(signal.SIGINT, previous)
    signal.raise_signal(signal.SIGINT)
