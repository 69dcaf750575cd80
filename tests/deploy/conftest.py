"""Fixtures for the platform tests: a real `mu0 serve` on loopback, a separate Ray head, tiny corpora.

Everything started here runs in its own process group on a free port and is stopped in `finally`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.deploy.platform import (
    free_port,
    Api,
    _descendants,
    kill_tree,
    Platform,
    start_platform,
    wait_deployments,
    VENV_BIN,
)


@pytest.fixture(scope="session")
def deploy_corpus(tmp_path_factory) -> Path:
    """Two tiny Meta-World episodes (30 steps) for ingest-through-the-platform tests."""
    from tasks.sim.generate import generate_corpus

    out = tmp_path_factory.mktemp("deploy-corpus")
    generate_corpus(out, 2, ["reach", "button-press"], camera="static", max_steps=30, seed=100)
    return out


@pytest.fixture(scope="session")
def platform(tmp_path_factory, deploy_corpus):
    """`python -m flows.serve` (what `mu0 serve` runs) with a 10 s inbox schedule, sequential runner, sim preset."""
    from tasks.config import PRESETS

    home = Path(tempfile.mkdtemp(prefix="mu0-serve-"))
    inbox, dataset = home / "inbox", home / "traces"
    inbox.mkdir()
    port, interval = free_port(), 10.0
    args = [
        "--inbox", str(inbox), "--dataset", str(dataset), "--interval", str(interval), "--poll-seconds", "2",
        "--param", 'runner="sequential"', "--param", "settle_seconds=1",
        "--param", "config=" + PRESETS["sim"].model_dump_json(),
        "--param", "source=" + json.dumps(str(deploy_corpus)),
    ]
    t0 = time.monotonic()
    proc = start_platform(home, port, args)
    api = Api(f"http://127.0.0.1:{port}/api")
    try:
        wait_deployments(api, proc, home, {"ingest", "inbox"})
        startup = time.monotonic() - t0
        yield Platform(home, port, f"http://127.0.0.1:{port}", api, inbox, dataset, deploy_corpus, proc, startup, interval)
    finally:
        children = _descendants(proc.pid)
        t1 = time.monotonic()
        stopped = subprocess.run([sys.executable, "-m", "flows.serve", "--home", str(home), "--stop"],
                                 capture_output=True, text=True, timeout=90)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        left = [p for p in children if p.is_running() and p.status() != "zombie"]
        kill_tree(proc, left)
        print(f"\n[platform] startup {startup:.1f} s; --stop took {time.monotonic() - t1:.1f} s "
              f"(rc {stopped.returncode}); leftover processes: {len(left)}")
        shutil.rmtree(home, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not left, f"processes outlived `mu0 serve --stop`: {[p.cmdline()[:3] for p in left]}"


@pytest.fixture(scope="session")
def ray_head():
    """A separately started `ray start --head` on 127.0.0.1 with 2 CPUs; yields its address."""
    import psutil

    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="mu0ray", dir="/tmp")  # short: Ray's unix sockets live below it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}", "--block"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited {proc.returncode}")
            if list(Path(temp_dir).glob("session_*/sockets/raylet*")):
                break
            time.sleep(0.5)
        yield address
    finally:
        mine = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
        kill_tree(proc, mine)
        shutil.rmtree(temp_dir, ignore_errors=True)
