"""Process-group plumbing for `mu0 serve`: start children in their own groups, stop them for good.

Prefect starts flow-run processes outside the runner's group, so stopping also walks descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil


def port_free(host: str, port: int) -> bool:
    """Nobody listens on host:port (connections in TIME_WAIT do not count, as for the server itself)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def alive(pid: int | None) -> bool:
    """True while `pid` runs; an exited process its parent has not reaped yet (a zombie) counts as gone."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:  # the process is gone
        return []


def wait_group_gone(pgid: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:  # reap our own child so it does not linger as a zombie that still "exists"
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not group_alive(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def stop_group(pgid: int, first: signal.Signals = signal.SIGTERM, grace: float = 10.0) -> None:
    """Signal a process group, wait up to `grace`, then SIGKILL what is left of it.

    Descendants that moved to their own session (Prefect starts flow runs that way) are found
    beforehand and get the same treatment, so no flow run or local Ray outlives the platform.
    """
    strays = descendants(pgid)
    for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if wait_group_gone(pgid, wait):
            break
    alive = [p for p in strays if p.is_running()]
    if alive:
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, left = psutil.wait_procs(alive, timeout=5.0)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
