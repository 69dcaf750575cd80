"""Fixtures for the platform tests: a real `mu0 serve` on loopback, a separate Ray head, tiny corpora.

Everything started here runs in its own process group on a free port and is stopped in `finally`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The few REST calls the tests need (urllib, optional basic auth)."""

    def __init__(self, url: str, auth: str | None = None):
        self.url, self.auth = url.rstrip("/"), auth

    def call(self, method: str, path: str, body=None, timeout: float = 10.0):
        headers = {"Content-Type": "application/json"}
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def deployment(self, flow: str, name: str) -> dict:
        return self.call("GET", f"/deployments/name/{flow}/{name}")

    def run_deployment(self, dep_id: str, parameters: dict | None = None) -> str:
        return self.call("POST", f"/deployments/{dep_id}/create_flow_run", {"parameters": parameters or {}})["id"]

    def flow_run(self, run_id: str) -> dict:
        return self.call("GET", f"/flow_runs/{run_id}")

    def wait_run(self, run_id: str, timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(1.0)
        raise TimeoutError(f"flow run {run_id} not finished after {timeout} s: {run['state_type']}")

    def runs_of(self, dep_id: str) -> list[dict]:
        body = {"deployments": {"id": {"any_": [dep_id]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
        return self.call("POST", "/flow_runs/filter", body)


def parse_time(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def episode_ids(dataset: Path) -> set[str]:
    from storage.dataset import existing_episode_ids

    return set(existing_episode_ids(str(dataset)))


def expected_ids(paths) -> set[str]:
    from tasks.config import PRESETS
    from tasks.run.discover import content_hash

    key = PRESETS["sim"].extraction_key()
    return {content_hash(Path(p).resolve(), key) for p in paths}


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_tree(proc: subprocess.Popen, extra: list | None = None) -> None:
    """SIGTERM then SIGKILL a process group started by a test, plus descendants that left it."""
    import psutil

    procs = _descendants(proc.pid) + list(extra or [])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="session")
def deploy_corpus(tmp_path_factory) -> Path:
    """Two tiny Meta-World episodes (30 steps) for ingest-through-the-platform tests."""
    from tasks.sim.generate import generate_corpus

    out = tmp_path_factory.mktemp("deploy-corpus")
    generate_corpus(out, 2, ["reach", "button-press"], camera="static", max_steps=30, seed=100)
    return out


@dataclass
class Platform:
    home: Path
    port: int
    url: str
    api: Api
    inbox: Path
    dataset: Path
    corpus: Path
    proc: subprocess.Popen
    startup_s: float
    interval: float


def start_platform(home: Path, port: int, extra_args: list[str], env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "flows.serve", "--home", str(home), "--port", str(port), *extra_args]
    log = open(home / "serve-stdout.log", "ab")
    return subprocess.Popen(cmd, cwd=home, env=env or os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_deployments(api: Api, proc: subprocess.Popen, home: Path, names: set[str], timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mu0 serve exited {proc.returncode}:\n{(home / 'serve-stdout.log').read_text()[-3000:]}")
        try:
            got = {d["name"] for d in api.call("POST", "/deployments/filter", {})}
            if names <= got:
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"deployments {names} not registered after {timeout} s; logs in {home}/logs")


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
