"""Kill a child process at a named fault point (storage/faults.py): the reliability tests' one way to crash a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


def kill_at(code: str, args: list[str], point: str, marker: Path, env: dict | None = None, timeout_s: float = 300) -> None:
    """Run `python -c code args...` until it pauses at `point`, then SIGKILL its whole process group."""
    env = {**(env or os.environ), "MU0_FAULT": f"pause@{point}", "MU0_FAULT_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, start_new_session=True, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before reaching {point}: {proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
