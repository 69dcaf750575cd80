"""Named fault points for the reliability tests: pause (or die) at an exact place in a run.

Off unless `MU0_FAULT` is set, e.g. `MU0_FAULT=pause@committed:tracks` (sleep there until killed)
or `MU0_FAULT=kill@stage:track` (the process kills itself there, once: `MU0_FAULT_ONCE` names a file
whose existence means "already done"). Reaching the point writes `MU0_FAULT_MARKER` (a path) so a
test knows the run is exactly there before it acts. RELIABILITY.md lists the points.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def fault_point(name: str) -> None:
    spec = os.environ.get("MU0_FAULT")
    if not spec:
        return
    action, _, where = spec.partition("@")
    if where != name:
        return
    once = os.environ.get("MU0_FAULT_ONCE")
    if once:
        if Path(once).exists():
            return
        Path(once).write_text(str(os.getpid()))
    marker = os.environ.get("MU0_FAULT_MARKER")
    if marker:
        Path(marker).write_text(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        time.sleep(float(os.environ.get("MU0_FAULT_PAUSE_S", "600")))
