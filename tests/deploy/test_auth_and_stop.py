"""Basic auth when exposed, and Ctrl-C (SIGINT) shutting everything down cleanly."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
import urllib.error
from pathlib import Path

import pytest

from flows.processes import port_free
from tests.deploy.platform import Api, _descendants, free_port, kill_tree, start_platform, wait_deployments

pytestmark = pytest.mark.slow


def test_auth_string_guards_the_api_and_ctrl_c_stops_everything():
    home = Path(tempfile.mkdtemp(prefix="mu0-auth-"))
    port = free_port()
    # PREFECT_SERVER_API_AUTH_STRING is how operators pass it (the --auth-string option reads it)
    import os

    env = {**os.environ, "PREFECT_SERVER_API_AUTH_STRING": "admin:s3cret"}
    proc = start_platform(home, port, ["--param", 'runner="sequential"'], env=env)
    api = Api(f"http://127.0.0.1:{port}/api", auth="admin:s3cret")
    children = []
    try:
        wait_deployments(api, proc, home, {"ingest", "inbox"})  # the runner registered them with the auth string
        children = _descendants(proc.pid)
        assert Api(api.url).call("GET", "/health") is True  # probes stay open
        for who in (Api(api.url), Api(api.url, auth="admin:wrong")):
            with pytest.raises(urllib.error.HTTPError) as err:
                who.call("POST", "/deployments/filter", {})
            assert err.value.code == 401
        state = json.loads((home / "serve.json").read_text())
        assert state["api_url"] == api.url and "s3cret" not in (home / "serve.json").read_text()

        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        assert proc.wait(timeout=60) == 0
        took = time.monotonic() - t0
        assert not [p for p in children if p.is_running() and p.status() != "zombie"]
        assert port_free("127.0.0.1", port) and not (home / "serve.json").exists()
        print(f"\n[auth] Ctrl-C -> all stopped in {took:.1f} s")
    finally:
        kill_tree(proc, [p for p in children if p.is_running()])
        shutil.rmtree(home, ignore_errors=True)
