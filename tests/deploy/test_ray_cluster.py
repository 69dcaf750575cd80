"""(d) The ingest deployment against a separately started Ray head, by address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.deploy.platform import episode_ids, expected_ids

pytestmark = pytest.mark.slow

_JOBS = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
me = ray.get_runtime_context().get_job_id()
hexid = lambda j: j if isinstance(j, str) else j.hex()
jobs = [j for j in ray._private.state.jobs() if hexid(j["JobID"]) != me]
pids = [j["DriverInfo"]["DriverPid"] if isinstance(j.get("DriverInfo"), dict) else j.get("DriverPid") for j in jobs]
print(json.dumps({"jobs": len(jobs), "pids": pids, "cpus": ray.cluster_resources().get("CPU")}))
"""


def test_ingest_on_an_existing_ray_cluster(platform, ray_head, tmp_path):
    api = platform.api
    dep = api.deployment("ingest", "ingest")
    dataset = tmp_path / "traces-ray"
    t0 = time.monotonic()
    run_id = api.run_deployment(dep["id"], {"dataset": str(dataset), "runner": "ray", "ray_address": ray_head})
    run = api.wait_run(run_id)
    took = time.monotonic() - t0
    assert run["state_type"] == "COMPLETED", run["state"]
    assert episode_ids(dataset) == expected_ids(p for p in platform.corpus.iterdir() if p.is_dir())

    # the flow run was a driver (job) on that cluster, in a process other than this one
    out = subprocess.run([sys.executable, "-c", _JOBS, ray_head], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["jobs"] >= 1 and info["cpus"] == 2.0 and os.getpid() not in info["pids"], info
    print(f"\n[ray] ingest of 2 episodes on the Ray head at {ray_head} (by address): {took:.1f} s trigger->Completed")
