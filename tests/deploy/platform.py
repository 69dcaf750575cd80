"""Helpers of the system tests: a real Prefect server + workers (`mu0 serve`), its API, process trees."""


from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


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
