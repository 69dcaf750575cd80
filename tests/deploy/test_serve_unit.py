"""`mu0 serve` without a server: exposure guard, environments, overrides, stopping process groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from flows import processes as P
from flows import serve as S


def test_loopback_by_default_and_exposure_needs_auth(tmp_path):
    opts = S.ServeOptions(home=tmp_path)
    assert opts.host == "127.0.0.1" and opts.api_url == "http://127.0.0.1:4200/api"
    S.check_exposure(opts)
    with pytest.raises(S.ServeError, match="PREFECT_SERVER_API_AUTH_STRING"):
        S.check_exposure(S.ServeOptions(home=tmp_path, host="0.0.0.0"))
    S.check_exposure(S.ServeOptions(home=tmp_path, host="0.0.0.0", auth_string="admin:pw"))
    with pytest.raises(S.ServeError, match="refusing to bind"):
        S.serve(S.ServeOptions(home=tmp_path, host="0.0.0.0"))


def test_environments_isolate_home_and_carry_auth_and_database(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:1/api")
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "leaked:pw")
    opts = S.ServeOptions(home=tmp_path, port=4321, auth_string="admin:pw", poll_seconds=2,
                          database_url="postgresql+asyncpg://p:pw@db:5432/prefect")
    srv, run = S.server_env(opts), S.runner_env(opts)
    assert srv["PREFECT_HOME"] == run["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert "PREFECT_API_URL" not in srv and srv["PREFECT_SERVER_API_AUTH_STRING"] == "admin:pw"
    assert srv["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert run["PREFECT_API_URL"] == "http://127.0.0.1:4321/api" and run["PREFECT_API_AUTH_STRING"] == "admin:pw"
    assert "PREFECT_SERVER_API_AUTH_STRING" not in run and run["PREFECT_RUNNER_POLL_FREQUENCY"] == "2"
    assert S.server_command(opts)[-4:] == ["--host", "127.0.0.1", "--port", "4321"]
    assert srv["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api" and srv["PREFECT_SERVER_API_PORT"] == "4321"
    # secrets never travel on a command line
    argv = " ".join(S.runner_command(opts))
    assert "admin:pw" not in argv and "asyncpg" not in argv
    assert S._options_from_json(S._options_to_json(opts)).port == 4321
    assert S.auth_header("admin:pw") == {"Authorization": "Basic YWRtaW46cHc="}


def test_overrides_touch_only_what_they_name():
    specs = S.load_specs()
    opts = S.ServeOptions(inbox="/in", dataset="/ds", interval=7)
    out = {s["name"]: s for s in S.apply_overrides(specs, opts)}
    assert out["inbox"]["parameters"]["inbox"] == "/in"
    assert out["inbox"]["schedules"] == [{"interval": 7, "active": True}]
    assert out["ingest"]["parameters"]["dataset"] == out["inbox"]["parameters"]["dataset"] == "/ds"
    assert "schedules" not in out["ingest"]
    assert {s["name"]: s for s in specs}["inbox"]["parameters"]["inbox"] == "data/inbox"  # input untouched


def test_stop_without_a_running_platform(tmp_path):
    assert S.stop(tmp_path, echo=lambda *_: None) is False
    (tmp_path / S.PID_FILE).write_text(json.dumps({"supervisor": 2**22 + 12345, "server": None, "runner": None}))
    assert S.stop(tmp_path, echo=lambda *_: None) is True  # stale state is cleaned up
    assert not (tmp_path / S.PID_FILE).exists()


def test_stop_group_ends_the_group_and_children_in_their_own_session():
    # a leader that ignores SIGINT, with a child that escaped into a new session (as Prefect flow runs do)
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN);"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True);"
        "print('up', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"up"
    time.sleep(0.2)
    stray = P.descendants(proc.pid)
    assert len(stray) == 1
    t0 = time.monotonic()
    P.stop_group(proc.pid, signal.SIGINT, grace=0.5)
    assert time.monotonic() - t0 < 10
    proc.wait(timeout=5)  # already reaped by stop_group
    assert not stray[0].is_running()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_cli_help_and_bad_param():
    res = CliRunner().invoke(S.serve_app, ["--help"])
    assert res.exit_code == 0 and "--stop" in res.output and "--auth-string" in res.output
    res = CliRunner().invoke(S.serve_app, ["--param", "oops"])
    assert res.exit_code != 0


def test_an_exited_unreaped_supervisor_counts_as_stopped():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while P.alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not P.alive(proc.pid)  # a zombie until we wait() below
    proc.wait()
    assert not P.alive(proc.pid) and P.alive(os.getpid())
